// The uniform block of every matmul body (shaders/matmul.wgsl, matmul_small.wgsl,
// matmul_direct.wgsl, matmul_wg.wgsl), added to each by src/kernels/matmul/shader.ts; its byte layout is written by
// src/kernels/matmul.ts (the same fields in the same order). Binding 0 of group 0.

struct P {
  mEnd: u32,
  nEnd: u32,
  k0: u32,
  kEnd: u32,
  m0: u32,
  n0: u32,
  kSplit: u32,
  k2: u32,
  lda: u32,
  ldb: u32,
  ldc: u32,
  cStrideZ: u32,
  aAdj: u32,
  bAdj: u32,
  cAdj: u32,
  accumulate: u32,
  lda2: u32,
  ldb2: u32,
  a2Adj: u32,
  b2Adj: u32,
  alpha: f32,
  alpha2: f32,
  useBias: u32,
  biasAdj: u32,
  seedIn: u32,      // dropout of segment 1's A or B operand
  thrIn: u32,
  scaleIn: f32,
  seedOut: u32,     // dropout of segment 2's contribution (OUT_DROP)
  thrOut: u32,
  scaleOut: f32,
  nf4Abs: u32,      // an NF4 B: word offsets of its absmax and absmax2 sections in NF4S
  nf4Abs2: u32,
  // The register-block kernels (matmul_direct.wgsl, matmul_wg.wgsl) take these at run time, so one
  // compiled shader serves problems with and without them (the others compile them in):
  biasType: u32,    // the bias' elements: 0 f32, 1 f16, 2 bf16 (bound as array<u32>)
  outDrop: u32,     // 1: apply segment 2's output dropout (seedOut, thrOut, scaleOut)
  a2Sm: u32,        // segment 2: A2's element (m, k) is at m * a2Sm + k * a2Sk + a2Adj,
  a2Sk: u32,
  b2Sk: u32,        //   B2's element (k, n) at k * b2Sk + n * b2Sn + b2Adj
  b2Sn: u32,
}

@group(0) @binding(0) var<uniform> p: P;
