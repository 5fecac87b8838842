// The LM head's logit transform, in place on a block of logits (the cross-entropy's vocabulary
// chunk, or generation's [T, V] logits), as transformers' heads compute it:
//   z = (z + bias[c0 + j]) * scale          (Phi / GPT-J head bias; Granite's 1 / logits_scaling)
//   z = softcap * tanh(z / softcap)          (Gemma 2 final_logit_softcapping; softcap = 0: none)
// The cross-entropy's gradient pass (ce_grad) multiplies by the derivative, scale * (1 - tanh^2),
// recomputed from the transformed value.
//
// Template: src/kernels/logits.ts builds one module per bias dtype from a generated prelude:
// `const HAS_BIAS: bool` and, with a bias, its binding 2 (array<u32>) and loader `bload(i)` (f32,
// or f16 / bf16 packed two per word); without one, `fn bload(i: u32) -> f32 { return 0.0; }`.
//
// Layout: L f32, row t of the block at t * ldl, columns j < n; bias [V].
// Kernel `logit_transform` (bindings after the uniform at 0): 1 L (read_write), [2 bias].
// Flat 256-wide workgroups on a 2D grid: e = gid.x + gid.y * stride, t = e / n, j = e % n.

//#kernel logit_transform
struct P {
  count: u32,    // T * n
  stride: u32,
  n: u32,
  ldl: u32,
  c0: u32,       // vocabulary index of column 0
  scale: f32,
  softcap: f32,
  _pad: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> L: array<f32>;

// tanh from exp (WGSL's tanh may be coarse): 1 - 2 / (e^(2x) + 1).
fn tanh_exp(x: f32) -> f32 {
  return 1.0 - 2.0 / (exp(2.0 * x) + 1.0);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x + gid.y * p.stride;
  if (e >= p.count) { return; }
  let t = e / p.n;
  let j = e - t * p.n;
  let i = t * p.ldl + j;
  var z = L[i];
  if (HAS_BIAS) { z = z + bload(p.c0 + j); }
  z = z * p.scale;
  if (p.softcap > 0.0) { z = p.softcap * tanh_exp(z / p.softcap); }
  L[i] = z;
}
