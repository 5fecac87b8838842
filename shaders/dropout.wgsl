// Dropout: the mask library (the common part: functions only, no bindings) and one kernel that
// applies it to a whole tensor. Modules that apply dropout inside another kernel (the matmul
// loaders of src/kernels/matmul.ts) take only the common part, through wgslModule's `libs`.
//
// The mask is a pure function of (seed, row, col) of the dropped tensor's row-major storage, so a
// backward pass regenerates exactly the forward's mask instead of saving it. Its twin in TypeScript,
// src/reference/dropout.ts, must agree bit for bit (tested).
//
//   h         = pcg(pcg(pcg(seed) + row) + col)            (u32 arithmetic, wrapping)
//   keep      = h >= threshold,   threshold = min(2^32 - 1, round(p * 2^32))
//   multiplier = keep ? scale : 0, scale = 1 / (1 - p)
//
// pcg is the output permutation of the PCG-RXS-M-XS 32-bit generator after one LCG step.
//
// Kernel dropout_apply: y[row, col] = x[row, col] * dropout_mul(seed, threshold, scale, row, col)
//   Bindings: 0 uniform D; 1 x f32 [rows, cols]; 2 y f32 [rows, cols] (may not alias x).
//   One invocation per element; 2D grid, x covers rowStride elements per grid row.

fn dropout_pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

fn dropout_hash(seed: u32, row: u32, col: u32) -> u32 {
  return dropout_pcg(dropout_pcg(dropout_pcg(seed) + row) + col);
}

// The factor element (row, col) is multiplied by: 0 when dropped, `scale` when kept.
fn dropout_mul(seed: u32, threshold: u32, scale: f32, row: u32, col: u32) -> f32 {
  return select(0.0, scale, dropout_hash(seed, row, col) >= threshold);
}

//#kernel dropout_apply
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
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.y * dp.rowStride + g.x;
  if (i >= dp.rows * dp.cols) { return; }
  let row = i / dp.cols;
  let col = i % dp.cols;
  dy[i] = dx[i] * dropout_mul(dp.seed, dp.threshold, dp.scale, row, col);
}
