// Cross-entropy with the LM head fused and the vocabulary chunked: the [T, V] logits are never
// materialised, only one [T, Vc] chunk at a time.
//
//   logits_t = W·h_t                 (W [V, H] f32, or f16 / bf16)
//   lse_t    = logsumexp_v logits_t[v]
//   loss_t   = lse_t - logits_t[target_t]          for counted rows (target_t < V), else 0
//   dh_t     = gradScale · Σ_v (softmax_t[v] - [v == target_t]) · W[v, :]   (0 for other rows)
// Heads that transform their logits (bias, scale, soft-cap: src/kernels/logits.ts, applied to each
// chunk right after its logits GEMM) get the transform's derivative in ce_grad, which multiplies by
// lscale · (1 - (z / softcap)²) with z the stored, transformed logit.
//
// The two GEMMs (a chunk's logits = h·W_chunkᵀ, and dh (+)= G·W_chunk) run on the matmul family
// (src/kernels/matmul.ts); this file holds the rest. src/kernels/cross_entropy.ts builds one module
// per kernel: a generated prelude (for ce_finalize the count type) + the common part (nothing) + the
// section of that kernel.
//
// Layouts (row-major): targets u32 [T] (any value >= V, e.g. 0xFFFFFFFF, is ignored); L f32 chunk
// scratch [T, ldl]; stats f32 [T, 3] = running max, running sum of exp(logit - max), target logit;
// lse, rowLoss f32 [T].
//
// Kernels (bindings after the uniform at 0):
//   ce_stats     1 L, 2 targets, 3 stats. One workgroup (WS invocations, from the prelude) per
//                row: chunk max and Σ exp by fixed-order tree reductions, merged into the running (max, sum) (online logsumexp); picks the
//                target's logit when it falls in the chunk. Grid (nx, ceil(T/nx)).
//   ce_finalize  1 stats, 2 targets, 3 lse, 4 rowLoss, 5 lossSum f32 [1], 6 countSum f32|u32 [1].
//                One workgroup: lse and row losses, then the step's loss sum and counted-token count
//                are added into the accumulators by a fixed-order reduction (no atomics).
//   ce_grad      1 lse, 2 targets, 3 L (read-write). Turns a chunk of logits into the dlogits
//                G[t, j] = (exp(L[t, j] - lse_t) - [c0 + j == target_t]) · gradScale (times the
//                transform's derivative), 0 for ignored rows, in place. One invocation per element; flat 2D grid.

//#kernel ce_stats
struct P {
  T: u32,
  n: u32,      // chunk width
  ldl: u32,    // row stride of L
  c0: u32,     // vocabulary index of chunk column 0
  first: u32,  // 1: this is the first chunk (initialise the running stats)
  nx: u32,     // workgroups along x (row = wid.y * nx + wid.x)
  V: u32,
  _pad: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> L: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;

// WS (invocations per row, a power of two) comes from the prelude: 256 on GPUs, 8 on CPU drivers.
var<workgroup> red: array<f32, WS>;

@compute @workgroup_size(WS)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let t = wid.y * p.nx + wid.x;
  if (t >= p.T) { return; }   // uniform: the whole workgroup leaves
  let base = t * p.ldl;
  var mx = -3.0e38;
  for (var j = li; j < p.n; j += WS) { mx = max(mx, L[base + j]); }
  red[li] = mx;
  workgroupBarrier();
  for (var st = WS / 2u; st > 0u; st = st / 2u) {
    if (li < st) { red[li] = max(red[li], red[li + st]); }
    workgroupBarrier();
  }
  let cmax = red[0];
  workgroupBarrier();
  var sm = 0.0;
  for (var j = li; j < p.n; j += WS) { sm += exp(L[base + j] - cmax); }
  red[li] = sm;
  workgroupBarrier();
  for (var st = WS / 2u; st > 0u; st = st / 2u) {
    if (li < st) { red[li] = red[li] + red[li + st]; }
    workgroupBarrier();
  }
  if (li == 0u) {
    let csum = red[0];
    let tg = targets[t];
    var m = cmax;
    var s = csum;
    var tl = 0.0;
    if (p.first == 0u) {
      let m1 = stats[t * 3u];
      let s1 = stats[t * 3u + 1u];
      tl = stats[t * 3u + 2u];
      m = max(m1, cmax);
      s = s1 * exp(m1 - m) + csum * exp(cmax - m);
    }
    if (tg < p.V && tg >= p.c0 && tg - p.c0 < p.n) { tl = L[base + tg - p.c0]; }
    stats[t * 3u] = m;
    stats[t * 3u + 1u] = s;
    stats[t * 3u + 2u] = tl;
  }
}

//#kernel ce_finalize
struct P {
  T: u32,
  V: u32,
  _pad0: u32,
  _pad1: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;
@group(0) @binding(4) var<storage, read_write> rowLoss: array<f32>;
@group(0) @binding(5) var<storage, read_write> lossSum: array<f32>;
// binding 6 (countSum, f32 or u32) and addCount() come from the prelude

const WS: u32 = 256u;
var<workgroup> redL: array<f32, WS>;
var<workgroup> redC: array<u32, WS>;

@compute @workgroup_size(WS)
fn main(@builtin(local_invocation_index) li: u32) {
  var sl = 0.0;
  var sc = 0u;
  for (var t = li; t < p.T; t += WS) {
    let x = stats[t * 3u] + log(stats[t * 3u + 1u]);
    lse[t] = x;
    var loss = 0.0;
    if (targets[t] < p.V) {
      loss = x - stats[t * 3u + 2u];
      sc += 1u;
    }
    rowLoss[t] = loss;
    sl += loss;
  }
  redL[li] = sl;
  redC[li] = sc;
  workgroupBarrier();
  for (var st = WS / 2u; st > 0u; st = st / 2u) {
    if (li < st) {
      redL[li] = redL[li] + redL[li + st];
      redC[li] = redC[li] + redC[li + st];
    }
    workgroupBarrier();
  }
  if (li == 0u) {
    lossSum[0] = lossSum[0] + redL[0];
    addCount(redC[0]);
  }
}

//#kernel ce_grad
struct P {
  T: u32,
  n: u32,         // chunk width
  ldl: u32,       // row stride of L
  c0: u32,        // vocabulary index of chunk column 0
  V: u32,
  stride: u32,    // invocations per grid row
  gradScale: f32,
  lscale: f32,    // the logit transform's scale (1 without one)
  softcap: f32,   // its soft-cap (0 without one)
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> lse: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> L: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.y * p.stride + gid.x;
  if (e >= p.T * p.n) { return; }
  let t = e / p.n;
  let j = e % p.n;
  let i = t * p.ldl + j;
  let tg = targets[t];
  var g = 0.0;
  if (tg < p.V) {
    let z = L[i];
    g = exp(z - lse[t]);
    if (tg == p.c0 + j) { g = g - 1.0; }
    g = g * p.gradScale * p.lscale;
    if (p.softcap > 0.0) {
      let c = z / p.softcap;
      g = g * (1.0 - c * c);
    }
  }
  L[i] = g;
}
