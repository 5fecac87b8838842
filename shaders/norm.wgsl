// RMSNorm (llama family, also Qwen3's per-head q/k norm) and LayerNorm (GPT-2): forward, and
// backward for the input only (norm weights are frozen, so no dW / dB is ever formed).
//
// Template: src/kernels/norm.ts builds one module per kernel and weight dtype from a generated
// prelude (`const WG`, the workgroup size, a power of two; loaders `wload(i)` / `bload(i)` that
// widen the weight / bias bound as array<u32>: f32 via bitcast, f16 / bf16 packed two per word),
// the common part below (the tree reduction) and one `//#kernel` section.
//
// Layouts (row-major): x, y, dy, dx f32 [rows, dim]; w, b [dim] (f32 | f16 | bf16);
// rstd, mean f32 [rows]. One workgroup per row; row = wid.x + wid.y * p.gx (2D grid, so rows past
// 65535 work, e.g. T * heads for the q/k norm). Threads stride the row by WG; sums use a fixed
// tree, so results are deterministic. `wOff` is added to every weight (0; 1 for Gemma-style
// (1 + w) norms).
//
// Kernels (bindings after the uniform at 0):
//   rms_fwd  1 x, 2 w, 3 y, 4 rstd.   rstd = 1 / sqrt(Σ x² / dim + eps);  y = (x * rstd) * (w + wOff)
//   rms_bwd  1 dy, 2 x, 3 w, 4 rstd, 5 dx.  With w' = w + wOff, r = rstd:
//            dx (+)= r * w' * dy - x * r³ / dim * Σ_j dy_j w'_j x_j
//   ln_fwd   1 x, 2 w, 3 b, 4 y, 5 mean, 6 rstd.  mean = Σ x / dim;  var = Σ (x - mean)² / dim
//            (two passes over the row, biased variance like torch); rstd = 1 / sqrt(var + eps);
//            y = (x - mean) * rstd * w' + b
//   ln_bwd   1 dy, 2 x, 3 w, 4 mean, 5 rstd, 6 dx.  With g = dy * w', xh = (x - mean) * rstd:
//            dx (+)= rstd * (g - Σ g / dim - xh * Σ (g * xh) / dim)
// `accumulate` = 1 adds into dx (e.g. into the residual stream's gradient) instead of overwriting.

var<workgroup> red: array<vec2f, WG>;

// Sum of v over the workgroup (fixed tree). Every thread gets the total. Call from uniform control flow.
fn reduce2(li: u32, v: vec2f) -> vec2f {
  red[li] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (li < s) { red[li] = red[li] + red[li + s]; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier(); // everyone has read red[0] before a later reduction overwrites it
  return total;
}

//#kernel rms_fwd
struct P { rows: u32, dim: u32, gx: u32, eps: f32, wOff: f32, _pad0: u32, _pad1: u32, _pad2: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> rstd: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let row = wid.x + wid.y * p.gx;
  if (row >= p.rows) { return; }
  let base = row * p.dim;
  var s = 0.0;
  for (var j = li; j < p.dim; j += WG) {
    let v = x[base + j];
    s += v * v;
  }
  let ss = reduce2(li, vec2f(s, 0.0)).x;
  let r = 1.0 / sqrt(ss / f32(p.dim) + p.eps);
  for (var j = li; j < p.dim; j += WG) {
    y[base + j] = (x[base + j] * r) * (wload(j) + p.wOff);
  }
  if (li == 0u) { rstd[row] = r; }
}

//#kernel rms_bwd
struct P { rows: u32, dim: u32, gx: u32, accumulate: u32, wOff: f32, _pad0: u32, _pad1: u32, _pad2: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<u32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let row = wid.x + wid.y * p.gx;
  if (row >= p.rows) { return; }
  let base = row * p.dim;
  var s = 0.0;
  for (var j = li; j < p.dim; j += WG) {
    s += dy[base + j] * (wload(j) + p.wOff) * x[base + j];
  }
  let dot = reduce2(li, vec2f(s, 0.0)).x;
  let r = rstd[row];
  let c = dot * r * r * r / f32(p.dim);
  for (var j = li; j < p.dim; j += WG) {
    let g = r * (wload(j) + p.wOff) * dy[base + j] - c * x[base + j];
    if (p.accumulate == 1u) { dx[base + j] = dx[base + j] + g; } else { dx[base + j] = g; }
  }
}

//#kernel ln_fwd
struct P { rows: u32, dim: u32, gx: u32, eps: f32, wOff: f32, _pad0: u32, _pad1: u32, _pad2: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> b: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let row = wid.x + wid.y * p.gx;
  if (row >= p.rows) { return; }
  let base = row * p.dim;
  let n = f32(p.dim);
  var s = 0.0;
  for (var j = li; j < p.dim; j += WG) { s += x[base + j]; }
  let mu = reduce2(li, vec2f(s, 0.0)).x / n;
  var q = 0.0;
  for (var j = li; j < p.dim; j += WG) {
    let d = x[base + j] - mu;
    q += d * d;
  }
  let variance = reduce2(li, vec2f(q, 0.0)).x / n;
  let r = 1.0 / sqrt(variance + p.eps);
  for (var j = li; j < p.dim; j += WG) {
    y[base + j] = (x[base + j] - mu) * r * (wload(j) + p.wOff) + bload(j);
  }
  if (li == 0u) {
    mean[row] = mu;
    rstd[row] = r;
  }
}

//#kernel ln_bwd
struct P { rows: u32, dim: u32, gx: u32, accumulate: u32, wOff: f32, _pad0: u32, _pad1: u32, _pad2: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<u32>;
@group(0) @binding(4) var<storage, read> mean: array<f32>;
@group(0) @binding(5) var<storage, read> rstd: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let row = wid.x + wid.y * p.gx;
  if (row >= p.rows) { return; }
  let base = row * p.dim;
  let n = f32(p.dim);
  let mu = mean[row];
  let r = rstd[row];
  var acc = vec2f(0.0);
  for (var j = li; j < p.dim; j += WG) {
    let g = dy[base + j] * (wload(j) + p.wOff);
    let xh = (x[base + j] - mu) * r;
    acc += vec2f(g, g * xh);
  }
  let sums = reduce2(li, acc) / n;
  for (var j = li; j < p.dim; j += WG) {
    let g = dy[base + j] * (wload(j) + p.wOff);
    let xh = (x[base + j] - mu) * r;
    let d = r * (g - sums.x - xh * sums.y);
    if (p.accumulate == 1u) { dx[base + j] = dx[base + j] + d; } else { dx[base + j] = d; }
  }
}
