// The second pass of the deterministic split-K matmul (src/kernels/matmul.ts; WGSL has no float
// atomics): the first pass writes one partial C per slice of the K loop, this kernel adds them in
// a fixed order, so results are bit-identical from run to run (the LoRA dA / dB reductions over
// the tokens use it).
//
//   out[cOff + row*ldc + col] = (accumulate ? out[...] : 0)
//                             + sum_{z = 0 .. splits-1, in this order} part[z*strideZ + row*cols + col]
//
// Bindings: 0 uniform R; 1 part f32 [splits, rows, cols]; 2 out f32 [.., ldc].
// One invocation per output element; 2D grid, x covers rowStride elements per grid row.

struct R {
  rows: u32,
  cols: u32,
  ldc: u32,
  cOff: u32,
  splits: u32,
  strideZ: u32,
  accumulate: u32,
  rowStride: u32,
}

@group(0) @binding(0) var<uniform> rp: R;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> outp: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.y * rp.rowStride + g.x;
  if (i >= rp.rows * rp.cols) { return; }
  var s = 0.0;
  for (var z = 0u; z < rp.splits; z++) { s += part[z * rp.strideZ + i]; }
  let o = rp.cOff + (i / rp.cols) * rp.ldc + i % rp.cols;
  if (rp.accumulate != 0u) { s = outp[o] + s; }
  outp[o] = s;
}
