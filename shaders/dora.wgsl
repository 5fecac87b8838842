// DoRA (PEFT use_dora): the small passes around the LoRA linear's matmuls (src/kernels/dora.ts).
// Notation: W [outF, inF] frozen, A [r, inF], B [outF, r], s = scale, m [outF] the magnitude,
// n_o = ||W_o + s·(B·A)_o|| the norm of output row o of the adapted weight (detached from the
// graph, as PEFT does), g_o = m_o / n_o. The matmuls that feed these passes (src/kernels/linear.ts):
//   PT = A·Wᵀ [r, outF] (the frozen weight's own loader: f16/bf16/NF4, Conv1D), G = A·Aᵀ [r, r].
// Flat kernels use 256-wide workgroups on a 2D grid (e = gid.x + gid.y * stride), as elementwise.wgsl.
//
// Kernels (binding 0 is the uniform P of each section):
//   dora_norm     1 wn2 f32 [outF] = ||W_o||², 2 b f32 [outF, r], 3 pt f32 [r, outF], 4 gram f32 [r, r],
//                 5 mag f32 [outF], 6 gi f32 [2·outF] out: gi[o] = g_o, gi[outF + o] = 1 / n_o, with
//                 n_o² = ||W_o||² + 2s·Σ_j B[o,j]·PT[j,o] + s²·Σ_jk B[o,j]·G[j,k]·B[o,k].
//   dora_colscale 1 x f32 [rows, outF], 2 gi, 3 out f32 [rows, outF]:
//                 out[t,o] = (accumulate ? out[t,o] : 0) + (g_o - shift)·x[t,o]
//                 (forward y += (g - 1)∘Z; backward g∘dY and (g - 1)∘dY).
//   dora_dmag     1 dy f32 [rows, outF], 2 z f32 [rows, outF], 3 gi, 4 dm f32 [outF] (read_write):
//                 dm[o] = (accumulate ? dm[o] : 0) + (1 / n_o)·Σ_t dy[t,o]·z[t,o], one invocation per
//                 o summing t in order (no atomics: bit-reproducible).

//#kernel dora_norm
struct P { outF: u32, r: u32, scale: f32, _pad: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> wn2: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> pt: array<f32>;
@group(0) @binding(4) var<storage, read> gram: array<f32>;
@group(0) @binding(5) var<storage, read> mag: array<f32>;
@group(0) @binding(6) var<storage, read_write> gi: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let o = gid.x;
  if (o >= p.outF) { return; }
  var cross = 0.0;
  var quad = 0.0;
  for (var j = 0u; j < p.r; j++) {
    let bj = b[o * p.r + j];
    cross += bj * pt[j * p.outF + o];
    var gb = 0.0;
    for (var k = 0u; k < p.r; k++) { gb += gram[j * p.r + k] * b[o * p.r + k]; }
    quad += bj * gb;
  }
  let n2 = max(wn2[o] + 2.0 * p.scale * cross + p.scale * p.scale * quad, 0.0);
  let inv = 1.0 / sqrt(n2);
  gi[o] = mag[o] * inv;
  gi[p.outF + o] = inv;
}

//#kernel dora_colscale
struct P { n: u32, stride: u32, outF: u32, shift: f32, accumulate: u32, _p0: u32, _p1: u32, _p2: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gi: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x + gid.y * p.stride;
  if (e >= p.n) { return; }
  let v = (gi[e % p.outF] - p.shift) * x[e];
  out[e] = select(v, out[e] + v, p.accumulate != 0u);
}

//#kernel dora_dmag
struct P { rows: u32, outF: u32, accumulate: u32, _pad: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> z: array<f32>;
@group(0) @binding(3) var<storage, read> gi: array<f32>;
@group(0) @binding(4) var<storage, read_write> dm: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let o = gid.x;
  if (o >= p.outF) { return; }
  var acc = 0.0;
  for (var t = 0u; t < p.rows; t++) { acc += dy[t * p.outF + o] * z[t * p.outF + o]; }
  let v = gi[p.outF + o] * acc;
  dm[o] = select(v, dm[o] + v, p.accumulate != 0u);
}
