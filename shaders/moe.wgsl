// Mixture-of-experts routing (Mixtral's MixtralTopKRouter and the weighted sum of expert outputs).
//
// Template: src/kernels/moe.ts builds one module per kernel from the section after
// `//#kernel <name>` (no prelude). Row kernels run one thread per token on a flat 2D grid
// (t = gid.x + gid.y * p.stride); moe_row_dot runs one 64-thread workgroup per token.
//
// Kernels (binding 0 is the uniform P of each section):
//   moe_router     1 logits f32 [T, E], 2 w f32 [T, E]. Per token: p = softmax(logits) (max
//                  subtracted), the K largest p (ties: the lower expert index) renormalised to sum
//                  to 1, in descending order; w = that weight for the K chosen experts, 0 elsewhere.
//   moe_router_bwd 1 w f32 [T, E], 2 g f32 [T, E] (dL/dw), 3 dl f32 [T, E] (dL/dlogits). The K
//                  renormalised weights are the softmax of the chosen logits alone, so
//                  dl[e] = w[e]·(g[e] - Σ_k w[k]·g[k]) (0 for the experts not chosen).
//   moe_scale_rows 1 w f32 [T, E], 2 x f32 [T, H], 3 out f32 [T, H]:
//                  out[t, j] (+)= w[t, e]·x[t, j] for the expert `e` of the uniform (`acc` adds).
//   moe_row_dot    1 a f32 [T, H], 2 b f32 [T, H], 3 g f32 [T, E]: g[t, e] = Σ_j a[t, j]·b[t, j]
//                  (fixed per-thread stride and tree: reproducible).

//#kernel moe_router
struct P { T: u32, stride: u32, E: u32, K: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let t = g.x + g.y * p.stride;
  if (t >= p.T) { return; }
  let base = t * p.E;
  var m = logits[base];
  for (var e = 1u; e < p.E; e++) { m = max(m, logits[base + e]); }
  var s = 0.0;
  for (var e = 0u; e < p.E; e++) { s += exp(logits[base + e] - m); }
  // w holds -1 for experts not yet chosen, then each chosen expert's probability.
  for (var e = 0u; e < p.E; e++) { w[base + e] = -1.0; }
  var total = 0.0;
  for (var k = 0u; k < p.K; k++) {
    var best = 0u;
    var bestP = -1.0;
    for (var e = 0u; e < p.E; e++) {
      let pe = exp(logits[base + e] - m) / s;
      if (w[base + e] < 0.0 && pe > bestP) { best = e; bestP = pe; }
    }
    w[base + best] = bestP;
    total += bestP;
  }
  for (var e = 0u; e < p.E; e++) {
    let v = w[base + e];
    w[base + e] = select(v / total, 0.0, v < 0.0);
  }
}

//#kernel moe_router_bwd
struct P { T: u32, stride: u32, E: u32, _pad: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> gw: array<f32>;
@group(0) @binding(3) var<storage, read_write> dl: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let t = g.x + g.y * p.stride;
  if (t >= p.T) { return; }
  let base = t * p.E;
  var dot = 0.0;
  for (var e = 0u; e < p.E; e++) { dot += w[base + e] * gw[base + e]; }
  for (var e = 0u; e < p.E; e++) { dl[base + e] = w[base + e] * (gw[base + e] - dot); }
}

//#kernel moe_scale_rows
struct P { n: u32, stride: u32, H: u32, E: u32, e: u32, acc: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.x + g.y * p.stride;
  if (i >= p.n) { return; }
  let v = w[(i / p.H) * p.E + p.e] * x[i];
  out[i] = select(v, out[i] + v, p.acc != 0u);
}

//#kernel moe_row_dot
struct P { T: u32, gx: u32, H: u32, E: u32, e: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> gw: array<f32>;

var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let t = wid.x + wid.y * p.gx;
  if (t >= p.T) { return; }
  var s = 0.0;
  for (var j = li; j < p.H; j += 64u) { s += a[t * p.H + j] * b[t * p.H + j]; }
  part[li] = s;
  workgroupBarrier();
  for (var h = 32u; h > 0u; h >>= 1u) {
    if (li < h) { part[li] += part[li + h]; }
    workgroupBarrier();
  }
  if (li == 0u) { gw[t * p.E + p.e] = part[0]; }
}
