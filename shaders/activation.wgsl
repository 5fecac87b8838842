// Activations, forward and backward: SiLU, GELU (tanh approximation, GPT-2's "gelu_new" = torch
// gelu(approximate="tanh")), exact GELU (nn.GELU, "gelu": GPT-NeoX, Falcon), ReLU (OPT), tanh
// (PEFT's prefix projection MLP), and the gated MLP product h = act(g) * u (SwiGLU with act = silu,
// GeGLU with act = gelu_tanh).
//
// Template: src/kernels/activation.ts builds one module per kernel and activation from a generated
// prelude (`const ACT: u32`: 0 = silu, 1 = gelu_tanh, 2 = gelu, 3 = relu, 4 = tanh), the common part below
// (act / act_grad) and one `//#kernel` section. All tensors f32. Flat 256-wide workgroups on a 2D
// grid: e = gid.x + gid.y * p.stride.
//
//   silu(x)      = x * sigmoid(x)                       silu'(x) = s * (1 + x * (1 - s)), s = sigmoid(x)
//   gelu_tanh(x) = 0.5 x (1 + tanh(k (x + 0.044715 x³))), k = sqrt(2 / pi)
//   gelu_tanh'(x)= 0.5 (1 + t) + 0.5 x (1 - t²) k (1 + 3 * 0.044715 x²),  t = tanh(...)
// GELU is evaluated through the identity 0.5 (1 + tanh z) = sigmoid(2z), so with
// s = sigmoid(2z): gelu = x s and gelu' = s + 2 x s (1 - s) k (1 + 3 * 0.044715 x²); no tanh, no
// 1 + tanh cancellation for very negative x, no overflow (exp(+big) = inf gives s = 0).
//   gelu(x)      = 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2)
//   gelu'(x)     = 0.5 erfc(-x / sqrt 2) + x exp(-x² / 2) / sqrt(2 pi)
// erfc is Numerical Recipes' Chebyshev fit (relative error < 1.2e-7 everywhere), so the tail for
// negative x keeps its relative accuracy instead of cancelling in 1 + erf.
//   relu(x)      = max(x, 0),  relu'(x) = 1 if x > 0 else 0 (torch's threshold_backward)
//   tanh(x)      = sign(x) (1 - e) / (1 + e), e = exp(-2|x|) (no overflow; WGSL's tanh may be
//                  coarse), and its odd Taylor series below |x| = 1/4, where 1 - e would cancel
//   tanh'(x)     = 4 e / (1 + e)² (= 1 - tanh², without the cancellation of 1 - t² near |t| = 1)
//
// Kernels (bindings after the uniform at 0):
//   act_fwd    1 x [n], 2 y [n]:               y = act(x)
//   act_bwd    1 dy [n], 2 x [n], 3 dx [n]:    dx (+)= dy * act'(x)
//   gated_fwd  1 g, 2 u, 3 h:  h[t*I + j] = act(g[t*gs + go + j]) * u[t*us + uo + j]
//              for t < rows, j < I. Separate g, u: rows = 1, I = n, strides 0. Fused gu [rows, 2I]
//              (gate columns first, up second): g and u bind the same buffer (read-only twice),
//              gs = us = 2I, go = 0, uo = I.
//   gated_bwd  1 dh, 2 g, 3 u, 4 dg, 5 du (separate tensors [n]):
//              dg = dh * u * act'(g),  du = dh * act(g)
//   gated_bwd_fused  1 dh [rows, I], 2 gu [rows, 2I], 3 dgu [rows, 2I]: the same, gate gradient
//              into columns [0, I) of dgu and up gradient into [I, 2I).

const GELU_K: f32 = 0.7978845608028654;   // sqrt(2 / pi)
const GELU_C: f32 = 0.044715;

fn sigmoid(x: f32) -> f32 {
  return 1.0 / (1.0 + exp(-x));
}

fn erfc(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277)))))))));
  return select(2.0 - r, r, x >= 0.0);
}

fn tanh_act(x: f32) -> f32 {
  let a = abs(x);
  if (a < 0.25) {
    let q = x * x;
    return x * (1.0 + q * (-0.3333333333 + q * (0.1333333333 + q * (-0.0539682540 + q * 0.0218694885))));
  }
  let e = exp(-2.0 * a);
  return sign(x) * (1.0 - e) / (1.0 + e);
}

const INV_SQRT2: f32 = 0.7071067811865476;
const INV_SQRT_2PI: f32 = 0.3989422804014327;

fn act(x: f32) -> f32 {
  if (ACT == 0u) { return x * sigmoid(x); }
  if (ACT == 2u) { return 0.5 * x * erfc(-x * INV_SQRT2); }
  if (ACT == 3u) { return max(x, 0.0); }
  if (ACT == 4u) { return tanh_act(x); }
  return x * sigmoid(2.0 * GELU_K * (x + GELU_C * x * x * x));
}

fn act_grad(x: f32) -> f32 {
  if (ACT == 0u) {
    let s = sigmoid(x);
    return s * (1.0 + x * (1.0 - s));
  }
  if (ACT == 2u) { return 0.5 * erfc(-x * INV_SQRT2) + x * exp(-0.5 * x * x) * INV_SQRT_2PI; }
  if (ACT == 3u) { return select(0.0, 1.0, x > 0.0); }
  if (ACT == 4u) {
    let e = exp(-2.0 * abs(x));
    return 4.0 * e / ((1.0 + e) * (1.0 + e));
  }
  let s = sigmoid(2.0 * GELU_K * (x + GELU_C * x * x * x));
  return s + 2.0 * x * s * (1.0 - s) * GELU_K * (1.0 + 3.0 * GELU_C * x * x);
}

//#kernel act_fwd
struct P { n: u32, stride: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x + gid.y * p.stride;
  if (e >= p.n) { return; }
  y[e] = act(x[e]);
}

//#kernel act_bwd
struct P { n: u32, stride: u32, accumulate: u32, _pad: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x + gid.y * p.stride;
  if (e >= p.n) { return; }
  let d = dy[e] * act_grad(x[e]);
  if (p.accumulate == 1u) { dx[e] = dx[e] + d; } else { dx[e] = d; }
}

//#kernel gated_fwd
struct P { n: u32, stride: u32, I: u32, gs: u32, go: u32, us: u32, uo: u32, _pad: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read_write> h: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x + gid.y * p.stride;
  if (e >= p.n) { return; }
  let t = e / p.I;
  let j = e - t * p.I;
  h[e] = act(g[t * p.gs + p.go + j]) * u[t * p.us + p.uo + j];
}

//#kernel gated_bwd
struct P { n: u32, stride: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> dh: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> u: array<f32>;
@group(0) @binding(4) var<storage, read_write> dg: array<f32>;
@group(0) @binding(5) var<storage, read_write> du: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x + gid.y * p.stride;
  if (e >= p.n) { return; }
  let x = g[e];
  let d = dh[e];
  dg[e] = d * u[e] * act_grad(x);
  du[e] = d * act(x);
}

//#kernel gated_bwd_fused
struct P { n: u32, stride: u32, I: u32, _pad: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> dh: array<f32>;
@group(0) @binding(2) var<storage, read> gu: array<f32>;
@group(0) @binding(3) var<storage, read_write> dgu: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x + gid.y * p.stride;
  if (e >= p.n) { return; }
  let t = e / p.I;
  let j = e - t * p.I;
  let gi = t * 2u * p.I + j;
  let x = gu[gi];
  let d = dh[e];
  dgu[gi] = d * gu[gi + p.I] * act_grad(x);
  dgu[gi + p.I] = d * act(x);
}
