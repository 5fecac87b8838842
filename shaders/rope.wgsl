// Rotary position embedding, rotate-half convention (transformers' Llama / Qwen / Mistral / NeoX),
// or with interleaved pairs (GPT-J's rotate_every_two: p.interleaved = 1):
//
//   out = x * cos + rotate_half(x) * sin,  rotate_half(x) = cat(-x2, x1)  over the first `rot`
//   dims of every head (x1 = dims [0, rot/2), x2 = dims [rot/2, rot)); dims [rot, headDim) pass
//   through unchanged (partial rotary). Pair i is (i, i + rot/2), or (2i, 2i + 1) when interleaved.
//   For pair i < rot/2 at position pos:
//     angle = f32(pos) * invFreq[i]          (one f32 multiply, as transformers' f32 freqs)
//     c = cos(angle) * scale, s = sin(angle) * scale     (scale: attention_scaling, usually 1)
//     out[a] = x[a] * c - x[b] * s,  out[b] = x[b] * c + x[a] * s   (a, b: pair i's dims)
//   `inverse` = 1 rotates by -angle (s -> -s): the backward pass, since the rotation is orthogonal.
//   invFreq (f32, computed on the CPU exactly like transformers' inv_freq, optionally scaled) is
//   in the uniform block, up to 256 frequencies (rot <= 512).
//
// cos / sin are evaluated here, not with WGSL's builtins: those are only required to be within
// 2^-11 absolute on [-pi, pi] (SwiftShader's are about that coarse: 4e-4 errors in RoPE) and are
// unbounded outside it. The angle is reduced by quadrant, r = a - k pi/2 with a four-part
// (Cody-Waite) split of pi/2 (P1..P3 of at most 6 significant bits, so k * P1..P3 are exact for
// |k| < 2^18: angles, hence positions, up to ~4e5), then single-precision minimax polynomials on [-pi/4, pi/4]
// (the classic Cephes sinf / cosf coefficients, |error| < 1e-7). Only + and * are used, so every
// adapter gives the same accuracy (~2e-7 absolute, measured on lavapipe and SwiftShader).
//
// Layouts: x, out f32 [rows, heads, headDim] (row-major, rows = tokens); positions u32 [rows].
// Invocations are flattened: e = gid.x + gid.y * p.stride; row-head = e / perRow, j = e % perRow.
// j < rot/2 rotates pair j; (out-of-place only) j >= rot/2 copies pass-through dim rot + j - rot/2.
//
// Kernels (bindings after the uniform at 0):
//   rope_ip   1 x (read_write), 2 positions.   x = rope(x) in place (perRow = rot/2).
//   rope_out  1 x, 2 positions, 3 out.         out = rope(x) (perRow = rot/2 + headDim - rot).

struct P {
  n: u32,        // rows * heads * perRow
  stride: u32,   // grid row pitch in invocations
  heads: u32,
  headDim: u32,
  half: u32,     // rot / 2
  perRow: u32,
  inverse: u32,
  scale: f32,
  interleaved: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
  invFreq: array<vec4f, 64>,
}
@group(0) @binding(0) var<uniform> p: P;

const TWO_OVER_PI: f32 = 0.63661974668502808;
const P1: f32 = 1.5625;
const P2: f32 = 0.008056640625;
const P3: f32 = 0.00023651123046875;
const P4: f32 = 0.0000031749393656355096;
const S1: f32 = -1.6666654611e-1;
const S2: f32 = 8.3321608736e-3;
const S3: f32 = -1.9515295891e-4;
const K1: f32 = 4.166664568298827e-2;
const K2: f32 = -1.388731625493765e-3;
const K3: f32 = 2.443315711809948e-5;

// (cos, sin) of the f32 angle a, times the scale; sin negated for the inverse rotation.
fn cos_sin(a: f32) -> vec2f {
  let k = round(a * TWO_OVER_PI);
  let r = (((a - k * P1) - k * P2) - k * P3) - k * P4;
  let z = r * r;
  let sr = r + r * z * (S1 + z * (S2 + z * S3));
  let cr = (1.0 - 0.5 * z) + z * z * (K1 + z * (K2 + z * K3));
  // quadrant q = k mod 4: (cos, sin) = (c, s), (-s, c), (-c, -s), (s, -c)
  let q = u32(i32(k)) & 3u;
  var cs = vec2f(cr, sr);
  if ((q & 1u) == 1u) { cs = vec2f(-sr, cr); }
  if (q >= 2u) { cs = -cs; }
  if (p.inverse == 1u) { cs.y = -cs.y; }
  return cs * p.scale;
}

fn angle(pos: u32, i: u32) -> f32 {
  return f32(pos) * p.invFreq[i >> 2u][i & 3u];
}

// The two dims of pair i.
fn pair(i: u32) -> vec2u {
  if (p.interleaved == 1u) { return vec2u(2u * i, 2u * i + 1u); }
  return vec2u(i, i + p.half);
}

//#kernel rope_ip
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let e = g.x + g.y * p.stride;
  if (e >= p.n) { return; }
  let rh = e / p.perRow;
  let i = e % p.perRow;
  let t = rh / p.heads;
  let base = rh * p.headDim;
  let cs = cos_sin(angle(positions[t], i));
  let d = pair(i);
  let x1 = x[base + d.x];
  let x2 = x[base + d.y];
  x[base + d.x] = x1 * cs.x - x2 * cs.y;
  x[base + d.y] = x2 * cs.x + x1 * cs.y;
}

//#kernel rope_out
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let e = g.x + g.y * p.stride;
  if (e >= p.n) { return; }
  let rh = e / p.perRow;
  let j = e % p.perRow;
  let t = rh / p.heads;
  let base = rh * p.headDim;
  if (j < p.half) {
    let cs = cos_sin(angle(positions[t], j));
    let d = pair(j);
    let x1 = x[base + d.x];
    let x2 = x[base + d.y];
    out[base + d.x] = x1 * cs.x - x2 * cs.y;
    out[base + d.y] = x2 * cs.x + x1 * cs.y;
  } else {
    let d = 2u * p.half + (j - p.half);
    out[base + d] = x[base + d];
  }
}
