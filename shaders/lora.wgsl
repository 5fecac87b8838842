// LoRA helper kernels (shaders/dropout.wgsl is prepended). The GEMM-shaped LoRA work
// (S = drop(X)·Aᵀ, dS = s·dY·B, dB = s·dYᵀ·S, dA = dSᵀ·drop(X), and the fused
// Y = X·Wᵀ + b + s·S·Bᵀ and dX = dY·W + drop'(dS·A)) runs on the matmul template; this file holds
// what is not a GEMM. Two entry points, each with its own uniform block at binding 0:
//
// reduce_partials: the second pass of the deterministic split-K reduction of dA / dB over M
//   (WGSL has no float atomics). out[row, col] at out[cOff + row*ldc + col]:
//     out = (accumulate ? out : 0) + sum_{z = 0 .. splits-1, in this order} part[z*strideZ + row*cols + col]
//   Bindings: 0 uniform R; 1 part f32 [splits, rows, cols]; 2 out f32 [.., ldc].
//   One invocation per output element; 2D grid, x covers rowStride elements per grid row.
//
// dropout_apply: y[row, col] = x[row, col] * dropout_mul(seed, threshold, scale, row, col)
//   Bindings: 0 uniform D; 1 x f32 [rows, cols]; 2 y f32 [rows, cols] (may not alias x).
//   Same mask as the matmul loaders, so tests compare it bit for bit with src/reference/dropout.ts.

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
fn reduce_partials(@builtin(global_invocation_id) g: vec3u) {
  let i = g.y * rp.rowStride + g.x;
  if (i >= rp.rows * rp.cols) { return; }
  var s = 0.0;
  for (var z = 0u; z < rp.splits; z++) { s += part[z * rp.strideZ + i]; }
  let o = rp.cOff + (i / rp.cols) * rp.ldc + i % rp.cols;
  if (rp.accumulate != 0u) { s = outp[o] + s; }
  outp[o] = s;
}

struct D {
  rows: u32,
  cols: u32,
  seed: u32,
  threshold: u32,
  scale: f32,
  rowStride: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> dp: D;
@group(0) @binding(1) var<storage, read> dx: array<f32>;
@group(0) @binding(2) var<storage, read_write> dy: array<f32>;

@compute @workgroup_size(256)
fn dropout_apply(@builtin(global_invocation_id) g: vec3u) {
  let i = g.y * dp.rowStride + g.x;
  if (i >= dp.rows * dp.cols) { return; }
  let row = i / dp.cols;
  let col = i % dp.cols;
  dy[i] = dx[i] * dropout_mul(dp.seed, dp.threshold, dp.scale, row, col);
}
