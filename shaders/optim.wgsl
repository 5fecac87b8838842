// Optimizer steps on f32 LoRA parameters, with global-norm gradient clipping done on the GPU (no
// readback): the clip coefficient is formed from the summed squares written by
// recordSumSquares (shaders/elementwise.wgsl, sumsq_*).
//
// Template: src/kernels/optim.ts builds one module per kernel and clip mode from a generated prelude:
// with CLIP, the binding `normSq` (f32, element 0 = Σ g² over all trainable gradients, RAW, i.e.
// before gradScale) and its `clip_coef()`; without, clip_coef() returns 1.
//
// Effective gradient (torch order: scale the loss, clip_grad_norm_, step):
//   g = grad * gradScale * clip,  clip = min(1, maxNorm / (sqrt(normSq) * |gradScale| + 1e-6))
//
// Kernels (bindings after the uniform at 0; every tensor f32 [n], 256-wide workgroups on a 2D
// grid, e = gid.x + gid.y * stride):
//   adamw  1 param (rw), 2 grad, 3 m (rw), 4 v (rw) [, 5 normSq]. torch.optim.AdamW
//          (amsgrad=False, maximize=False):
//            param *= 1 - lr * wd                           (decoupled weight decay, `decay`)
//            m = lerp(m, g, 1 - beta1)                       (torch's lerp: see lerp1 below)
//            v = v * beta2 + (1 - beta2) * g * g
//            param -= stepSize * m / (sqrt(v) / bc2Sqrt + eps)
//          with stepSize = lr / (1 - beta1^t) and bc2Sqrt = sqrt(1 - beta2^t) formed on the CPU in
//          float64 from the step t (as torch does with Python floats).
//   sgd    1 param (rw), 2 grad [, 3 normSq]. torch.optim.SGD without momentum:
//            d = g + wd * param  (coupled L2 weight decay);  param -= lr * d

//#kernel adamw
struct P {
  n: u32,
  stride: u32,
  decay: f32,      // 1 - lr * weightDecay
  w1: f32,         // 1 - beta1 (lerp weight)
  beta2: f32,
  w2: f32,         // 1 - beta2
  stepSize: f32,   // lr / (1 - beta1^t)
  bc2Sqrt: f32,    // sqrt(1 - beta2^t)
  eps: f32,
  gradScale: f32,
  maxNorm: f32,
  _pad: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

// torch's lerp(start, end, weight): start + weight * (end - start) when |weight| < 0.5, otherwise
// end - (end - start) * (1 - weight).
fn lerp1(start: f32, end: f32, weight: f32) -> f32 {
  if (abs(weight) < 0.5) { return start + weight * (end - start); }
  return end - (end - start) * (1.0 - weight);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x + gid.y * p.stride;
  if (e >= p.n) { return; }
  let g = grad[e] * p.gradScale * clip_coef();
  let mt = lerp1(m[e], g, p.w1);
  let vt = v[e] * p.beta2 + p.w2 * g * g;
  m[e] = mt;
  v[e] = vt;
  let denom = sqrt(vt) / p.bc2Sqrt + p.eps;
  param[e] = param[e] * p.decay - p.stepSize * (mt / denom);
}

//#kernel sgd
struct P {
  n: u32,
  stride: u32,
  lr: f32,
  wd: f32,
  gradScale: f32,
  maxNorm: f32,
  _pad0: u32,
  _pad1: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x + gid.y * p.stride;
  if (e >= p.n) { return; }
  let x = param[e];
  let d = grad[e] * p.gradScale * clip_coef() + p.wd * x;
  param[e] = x - p.lr * d;
}
