// The per-element epilogue of the workgroup-tile matmul bodies (shaders/matmul.wgsl,
// matmul_wg.wgsl), added to each by src/kernels/matmul/shader.ts as matmul_params.wgsl is. It
// needs the prelude's OUT_DROP, HAS_BIAS, bias_at and the binding C, and P (matmul_params.wgsl).
//
// store_c(m, n, z, sum, kept): C[m, n] of split-K slice z from the element's sums: `sum` over the
// last segment run; with OUT_DROP, `kept` is segment 1's sum and `sum` segment 2's, scaled by the
// output dropout mask. Then alpha, the bias and accumulate.
fn store_c(m: u32, n: u32, z: u32, sum: f32, kept: f32) {
  var v = sum;
  if (OUT_DROP) { v = kept + dropout_mul(p.seedOut, p.thrOut, p.scaleOut, m, n) * v; }
  v *= p.alpha;
  if (HAS_BIAS) {
    if (p.useBias != 0u) { v += bias_at(n); }
  }
  let ci = m * p.ldc + n + p.cAdj + z * p.cStrideZ;
  if (p.accumulate != 0u) { v += C[ci]; }
  C[ci] = v;
}
