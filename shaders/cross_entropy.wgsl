// Cross-entropy with the LM head fused and the vocabulary chunked: the [T, V] logits are never
// materialised, only one [T, Vc] chunk at a time.
//
//   logits_t = W·h_t                 (W [V, H] f32, or f16 / bf16 packed two per u32)
//   lse_t    = logsumexp_v logits_t[v]
//   loss_t   = lse_t - logits_t[target_t]          for counted rows (target_t < V), else 0
//   dh_t     = gradScale · Σ_v (softmax_t[v] - [v == target_t]) · W[v, :]   (0 for other rows)
// Heads that transform their logits (bias, scale, soft-cap: src/kernels/logits.ts, applied to each
// chunk right after ce_logits) get the transform's derivative in ce_dh: the loader multiplies by
// lscale · (1 - (z / softcap)²) with z the stored, transformed logit.
//
// This file is a template of several kernels; src/kernels/cross_entropy.ts builds one module per
// kernel: a generated prelude (tile consts, the W binding of the variant's dtype and its loader
// `wload(e)`, the count type) + the common part (before the first `//#kernel` marker) + the section
// of that kernel. Prelude consts of the GEMM kernels: WX x WY threads (NT), each owning TM x TN
// outputs (rows ty + i*WY, columns tx + j*WX), tile BM = WY*TM rows by BN = WX*TN columns, depth BK.
//
// Loops: the GEMM depth loop inside a BK block runs to a runtime bound (min(BK, rest)) so Mesa
// lavapipe does not unroll it; unrolled, each GEMM variant took several seconds to compile there.
//
// Layouts (row-major): h f32 [T, H] (rows from hOff); W [V, H]; targets u32 [T] (any value >= V,
// e.g. 0xFFFFFFFF, is ignored); L f32 chunk scratch [T, ldl]; stats f32 [T, 3] = running max,
// running sum of exp(logit - max), target logit; lse, rowLoss f32 [T]; dh f32 [T, H].
// W may be bound as a window of its buffer (a chunk of rows, for weights above the binding limit):
// `wOff` is the element index, inside the binding, of the chunk's first row.
//
// Kernels (bindings after the uniform at 0):
//   ce_logits    1 h, 2 W, 3 out. out[t*ldo + oOff + j] = Σ_k h[hOff + t*H + k] · W[wOff + j*H + k]
//                for t < T, j < n. Grid (ceil(n/BN), ceil(T/BM)). Register-tiled GEMM (NT).
//   ce_stats     1 L, 2 targets, 3 stats. One workgroup per row: chunk max and Σ exp by fixed-order
//                tree reductions, merged into the running (max, sum) (online logsumexp); picks the
//                target's logit when it falls in the chunk. Grid (nx, ceil(T/nx)).
//   ce_finalize  1 stats, 2 targets, 3 lse, 4 rowLoss, 5 lossSum f32 [1], 6 countSum f32|u32 [1].
//                One workgroup: lse and row losses, then the step's loss sum and counted-token count
//                are added into the accumulators by a fixed-order reduction (no atomics).
//   ce_dh        1 L, 2 lse, 3 targets, 4 W, 5 dh. dh[t, :] (+)= Σ_j G[t, j] · W[wOff + j*H + :]
//                with G = (exp(L - lse_t) - onehot) · gradScale formed in the A-tile loader (the
//                dlogits are never stored). Grid (ceil(H/BN), ceil(T/BM)). Chunks run in a fixed
//                order, each adding into dh: deterministic.

//#kernel ce_logits
struct P {
  T: u32,
  H: u32,
  n: u32,      // chunk width (columns of out written)
  hOff: u32,   // element offset of h's row 0
  wOff: u32,   // element index of the chunk's first W row inside the W binding
  ldo: u32,    // row stride of out
  oOff: u32,   // column of out for chunk column 0
  _pad: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> h: array<f32>;
// binding 2 (W) and wload() come from the prelude
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> As: array<f32, BK * BM>;   // As[kk*BM + m]
var<workgroup> Bs: array<f32, BK * BN>;   // Bs[kk*BN + n]

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let tx = li % WX;
  let ty = li / WX;
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  var acc: array<f32, TM * TN>;
  for (var k0 = 0u; k0 < p.H; k0 += BK) {
    for (var e = li; e < BM * BK; e += NT) {
      let mm = e / BK;
      let kk = e % BK;
      let m = m0 + mm;
      let kx = k0 + kk;
      var x = 0.0;
      if (m < p.T && kx < p.H) { x = h[p.hOff + m * p.H + kx]; }
      As[kk * BM + mm] = x;
    }
    for (var e = li; e < BN * BK; e += NT) {
      let nn = e / BK;
      let kk = e % BK;
      let n = n0 + nn;
      let kx = k0 + kk;
      var x = 0.0;
      if (n < p.n && kx < p.H) { x = wload(p.wOff + n * p.H + kx); }
      Bs[kk * BN + nn] = x;
    }
    workgroupBarrier();
    let kn = min(BK, p.H - k0);   // runtime bound: see "Loops" in the header
    for (var kk = 0u; kk < kn; kk++) {
      var a: array<f32, TM>;
      var b: array<f32, TN>;
      for (var i = 0u; i < TM; i++) { a[i] = As[kk * BM + ty + i * WY]; }
      for (var j = 0u; j < TN; j++) { b[j] = Bs[kk * BN + tx + j * WX]; }
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) { acc[i * TN + j] = fma(a[i], b[j], acc[i * TN + j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    let m = m0 + ty + i * WY;
    for (var j = 0u; j < TN; j++) {
      let n = n0 + tx + j * WX;
      if (m < p.T && n < p.n) { out[m * p.ldo + p.oOff + n] = acc[i * TN + j]; }
    }
  }
}

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

const WS: u32 = 256u;
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

//#kernel ce_dh
struct P {
  T: u32,
  H: u32,
  n: u32,        // chunk width (depth of this GEMM)
  ldl: u32,      // row stride of L
  c0: u32,       // vocabulary index of chunk column 0
  wOff: u32,     // element index of the chunk's first W row inside the W binding
  accumulate: u32,
  V: u32,
  gradScale: f32,
  lscale: f32,    // the logit transform's scale (1 without one)
  softcap: f32,   // its soft-cap (0 without one)
  _pad: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> L: array<f32>;
@group(0) @binding(2) var<storage, read> lse: array<f32>;
@group(0) @binding(3) var<storage, read> targets: array<u32>;
// binding 4 (W) and wload() come from the prelude
@group(0) @binding(5) var<storage, read_write> dh: array<f32>;

var<workgroup> As: array<f32, BK * BM>;   // G[m, j] at As[kk*BM + m]
var<workgroup> Bs: array<f32, BK * BN>;   // W[j, c] at Bs[kk*BN + c]
var<workgroup> rowLse: array<f32, BM>;
var<workgroup> rowTgt: array<u32, BM>;

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let tx = li % WX;
  let ty = li / WX;
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  for (var e = li; e < BM; e += NT) {
    let m = m0 + e;
    var x = 0.0;
    var tg = 0xffffffffu;
    if (m < p.T) {
      x = lse[m];
      tg = targets[m];
    }
    rowLse[e] = x;
    rowTgt[e] = tg;
  }
  workgroupBarrier();
  var acc: array<f32, TM * TN>;
  for (var j0 = 0u; j0 < p.n; j0 += BK) {
    for (var e = li; e < BM * BK; e += NT) {
      let mm = e / BK;
      let kk = e % BK;
      let m = m0 + mm;
      let j = j0 + kk;
      let tg = rowTgt[mm];
      var g = 0.0;
      if (m < p.T && j < p.n && tg < p.V) {
        let z = L[m * p.ldl + j];
        g = exp(z - rowLse[mm]);
        if (tg == p.c0 + j) { g = g - 1.0; }
        g = g * p.gradScale * p.lscale;
        if (p.softcap > 0.0) {
          let t = z / p.softcap;
          g = g * (1.0 - t * t);
        }
      }
      As[kk * BM + mm] = g;
    }
    for (var e = li; e < BN * BK; e += NT) {
      let kk = e / BN;
      let nn = e % BN;
      let j = j0 + kk;
      let c = n0 + nn;
      var x = 0.0;
      if (j < p.n && c < p.H) { x = wload(p.wOff + j * p.H + c); }
      Bs[kk * BN + nn] = x;
    }
    workgroupBarrier();
    let kn = min(BK, p.n - j0);   // runtime bound: see "Loops" in the header
    for (var kk = 0u; kk < kn; kk++) {
      var a: array<f32, TM>;
      var b: array<f32, TN>;
      for (var i = 0u; i < TM; i++) { a[i] = As[kk * BM + ty + i * WY]; }
      for (var j = 0u; j < TN; j++) { b[j] = Bs[kk * BN + tx + j * WX]; }
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) { acc[i * TN + j] = fma(a[i], b[j], acc[i * TN + j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    let m = m0 + ty + i * WY;
    for (var j = 0u; j < TN; j++) {
      let c = n0 + tx + j * WX;
      if (m < p.T && c < p.H) {
        let idx = m * p.H + c;
        var x = acc[i * TN + j];
        if (p.accumulate == 1u) { x = x + dh[idx]; }
        dh[idx] = x;
      }
    }
  }
}
