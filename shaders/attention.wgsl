// Causal grouped-query attention: FlashAttention-2 style forward (online softmax, saves the row
// logsumexp), the three-dispatch backward without atomics, and a row kernel for generation with a
// KV cache. No [S, S] matrix is ever written to global memory.
//
// This file is a template of several kernels. src/kernels/attention.ts builds one module per kernel:
//   generated prelude (consts below, plus the optional lse binding of attn_fwd)
//   + the common part (everything before the first `//#kernel` marker)
//   + the section of that kernel (from its `//#kernel <name>` line to the next marker).
// Prelude consts: HD head dim; BR, BC tile sizes; NT = BR*BC threads; PSTR = HD + 1 (padded row
// stride of the workgroup tiles that are read column-wise); DPC = ceil(HD / BC); DPR = ceil(HD / BR);
// WD threads of attn_decode_rows; DPW = ceil(HD / WD).
//
// Loops: the per-thread accumulator loops (`t < nd`) take their bound from the uniform p.hd rather
// than the baked DPC / DPR, and the loops over a tile's keys / rows stop at the tile's real extent
// (cn, rn). Fully unrolled with constant bounds, they made Mesa lavapipe's first compile of the
// backward kernels take 10-35 s at head dim 64-128; with runtime bounds it is about a second.
//
// Layouts (row-major f32):
//   q, o, dq, dO  [B*nq, nH, hd]     row (b*nq + i), head h
//   k, v, dk, dv  [B*nk, nKV, hd]    row (b*nk + j), kv head h / group   (group = nH / nKV)
//   lse, D        [B*nq, nH]
// Training: nq = nk = S, qPos0 = 0. Generation: batch 1, nq = Tq queries at absolute positions
// qPos0 + i (qPos0 = past), nk = the cache length; keys are the cache rows.
// Causal: query i (absolute position qPos0 + i) sees keys j <= qPos0 + i. Sequences are right-padded,
// so no key mask beyond the causal one is needed; rows past nq are neither read nor written.
// Sliding window (p.window > 0): the query at position t sees only keys t - window < j <= t (as
// transformers' sliding_window_overlay); tiles entirely outside every row's window are skipped.
//
// Scores (fn score in the common part): s = scale * q.k, then, per variant,
//   SOFTCAP  s = softcap * tanh(s / softcap)            (Gemma 2); backward multiplies dS by 1 - tanh^2
//   ALIBI    s += alibi(h, j) = slope[h] * j * alibiMul  (BLOOM; Falcon rounds slope * j to bfloat16,
//            the slopes arrive rounded) with j the key's position.
// The prelude sets SOFTCAP / ALIBI (bool consts) and NSLOPE (vec4s of slopes in P: 64 with ALiBi, 1 without).
// Packed sequences (training only): the prelude declares `kstart` (u32 [B*nq], bound after the
// kernel's other buffers: attn_fwd 6, attn_bwd_dq 8, attn_bwd_dkdv 9) and key_start(row) reads it;
// query i of sequence b then also needs j >= key_start(b*nq + i), its example's first token, so no
// example sees another. Without the flag key_start() returns 0 and the kernels are the plain ones.
//
// Kernels (bindings after the uniform P at 0):
//   attn_fwd        1 q, 2 k, 3 v, 4 o, [5 lse]. Grid (ceil(nq/BR), nH, B). Thread (r, c) of the
//                   BR x BC block computes score (r, c) of each KV tile; row max / sum are read from
//                   workgroup memory by every thread of the row (same order, so the same values);
//                   thread (r, c) owns output dims c, c+BC, ... of row r. Fused: QK^T, scale, causal
//                   mask, online softmax, PV, normalisation, logsumexp.
//   attn_bwd_d      1 dO, 2 o, 3 D. One thread per (row, head): D = rowsum(dO * O).
//   attn_bwd_dq     1 q, 2 k, 3 v, 4 dO, 5 lse, 6 D, 7 dq. Grid (ceil(S/BR), nH, B). Recomputes
//                   P = exp(scale*QK^T - lse), dS = P*(dO V^T - D), dq = scale * dS K over KV tiles.
//   attn_bwd_dkdv   1 q, 2 k, 3 v, 4 dO, 5 lse, 6 D, 7 dk, 8 dv. Grid (ceil(S/BC), nKV, B): BC keys
//                   per workgroup, query tiles of BR rows, over the `group` query heads sharing the
//                   kv head and the query tiles at or after the key block (fully masked tiles are
//                   skipped). Thread (c, r) owns dims r, r+BR, ... of key c: dv = P^T dO,
//                   dk = scale * dS^T Q. Each output element has a single writer: no atomics.
//   attn_decode_rows 1 q, 2 k, 3 v, 4 o. Grid (Tq, nH). WD threads scan the keys of one query row
//                   in tiles of WD (thread = key for the scores, thread = dims for the output).

struct P {
  nq: u32,       // query rows per sequence
  nk: u32,       // key rows per sequence (row stride between batches of k / v)
  qPos0: u32,    // absolute position of query row 0
  heads: u32,
  kvHeads: u32,
  group: u32,    // heads / kvHeads
  scale: f32,
  hd: u32,       // = HD, as a runtime loop bound (see "Loops")
  window: u32,   // sliding window (keys per query), 0 = none
  softcap: f32,  // SOFTCAP variants
  alibiMul: f32, // ALIBI variants: multiplies the (rounded) bias
  alibiBf16: u32,// ALIBI variants: 1 = round slope * position to bfloat16 (Falcon)
  slopes: array<vec4f, NSLOPE>,
}

@group(0) @binding(0) var<uniform> p: P;

const NEG: f32 = -3.0e38;   // masked score; exp(NEG - finite) underflows to 0

// Whether the query at position qpos sees the key at position j (causal, then the window).
fn visible(j: u32, qpos: u32) -> bool {
  return j <= qpos && (p.window == 0u || j + p.window > qpos);
}

// First key position any of the query positions [q0, ..] can see.
fn first_key(q0: u32) -> u32 {
  if (p.window == 0u || q0 + 1u < p.window) { return 0u; }
  return q0 + 1u - p.window;
}

fn round_bf16(x: f32) -> f32 {
  let b = bitcast<u32>(x);
  return bitcast<f32>((b + 0x7fffu + ((b >> 16u) & 1u)) & 0xffff0000u);
}

// tanh from exp (WGSL's tanh may be coarse): 1 - 2 / (e^(2x) + 1); saturates cleanly to +-1.
fn tanh_exp(x: f32) -> f32 {
  return 1.0 - 2.0 / (exp(2.0 * x) + 1.0);
}

// The score of raw product q.k for head h and key position j.
fn score(raw: f32, h: u32, j: u32) -> f32 {
  var s = raw * p.scale;
  if (SOFTCAP) { s = p.softcap * tanh_exp(s / p.softcap); }
  if (ALIBI) {
    var b = p.slopes[h >> 2u][h & 3u] * f32(j);
    if (p.alibiBf16 == 1u) { b = round_bf16(b); }
    s = s + b * p.alibiMul;
  }
  return s;
}

// d score / d (scale * q.k): the soft-cap's 1 - tanh^2 (1 without soft-capping).
fn dscore(raw: f32) -> f32 {
  if (!SOFTCAP) { return 1.0; }
  let t = tanh_exp(raw * p.scale / p.softcap);
  return 1.0 - t * t;
}

//#kernel attn_fwd
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;

var<workgroup> qs: array<f32, BR * HD>;     // query tile, row r at r*HD (read as a broadcast)
var<workgroup> ks: array<f32, BC * PSTR>;   // key tile, padded rows
var<workgroup> vs: array<f32, BC * HD>;     // value tile
var<workgroup> ss: array<f32, BR * BC>;     // scores, then probabilities

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = li / BC;
  let c = li % BC;
  let h = wid.y;
  let b = wid.z;
  let kvh = h / p.group;
  let i0 = wid.x * BR;
  let qStride = p.heads * HD;
  let kStride = p.kvHeads * HD;

  for (var e = li; e < BR * HD; e += NT) {
    let i = i0 + e / HD;
    var x = 0.0;
    if (i < p.nq) { x = q[(b * p.nq + i) * qStride + h * HD + e % HD]; }
    qs[e] = x;
  }

  let i = i0 + r;
  let rowOk = i < p.nq;
  let qpos = p.qPos0 + i;
  let kEnd = p.qPos0 + min(i0 + BR, p.nq);   // keys [0, kEnd) are seen by some row of the block
  var kFirst = 0u;                            // packed sequences: the row's example start
  if (rowOk) { kFirst = key_start(b * p.nq + i); }

  var m = NEG;
  var l = 0.0;
  var acc: array<f32, DPC>;
  let nd = (p.hd + BC - 1u) / BC;   // = DPC, but from a uniform: see "Loops" above
  let kStart = (first_key(p.qPos0 + i0) / BC) * BC;   // earlier tiles are outside every window
  for (var j0 = kStart; j0 < kEnd; j0 += BC) {
    workgroupBarrier();   // the previous tile is no longer read (and qs is complete)
    for (var e = li; e < BC * HD; e += NT) {
      let cc = e / HD;
      let d = e % HD;
      let j = j0 + cc;
      var kx = 0.0;
      var vx = 0.0;
      if (j < kEnd) {
        let g = (b * p.nk + j) * kStride + kvh * HD + d;
        kx = k[g];
        vx = v[g];
      }
      ks[cc * PSTR + d] = kx;
      vs[e] = vx;
    }
    workgroupBarrier();
    let cn = min(BC, kEnd - j0);   // keys of this tile (runtime bound, see "Loops")

    let j = j0 + c;
    var s = NEG;
    if (rowOk && visible(j, qpos) && j >= kFirst) {
      var dot = 0.0;
      for (var d = 0u; d < HD; d++) { dot = fma(qs[r * HD + d], ks[c * PSTR + d], dot); }
      s = score(dot, h, j);
    }
    ss[li] = s;
    workgroupBarrier();

    var tmax = NEG;
    for (var cc = 0u; cc < cn; cc++) { tmax = max(tmax, ss[r * BC + cc]); }
    let mNew = max(m, tmax);
    var pr = 0.0;
    if (s > NEG) { pr = exp(s - mNew); }
    workgroupBarrier();   // every thread of the row has read the raw scores
    ss[li] = pr;
    workgroupBarrier();

    let alpha = exp(m - mNew);
    m = mNew;
    var psum = 0.0;
    for (var cc = 0u; cc < cn; cc++) { psum += ss[r * BC + cc]; }
    l = l * alpha + psum;
    for (var t = 0u; t < nd; t++) {
      let d = c + t * BC;
      if (d < HD) {
        var a = acc[t] * alpha;
        for (var cc = 0u; cc < cn; cc++) { a = fma(ss[r * BC + cc], vs[cc * HD + d], a); }
        acc[t] = a;
      }
    }
  }

  if (rowOk) {
    let inv = 1.0 / l;   // l >= 1: the query's own key is always visible
    let row = b * p.nq + i;
    for (var t = 0u; t < nd; t++) {
      let d = c + t * BC;
      if (d < HD) { o[row * qStride + h * HD + d] = acc[t] * inv; }
    }
    if (c == 0u) { store_lse(row * p.heads + h, m + log(l)); }
  }
}

//#kernel attn_bwd_d
@group(0) @binding(1) var<storage, read> dO: array<f32>;
@group(0) @binding(2) var<storage, read> o: array<f32>;
@group(0) @binding(3) var<storage, read_write> D: array<f32>;

// Reuses P with other meanings: p.nq = rows * heads (the number of D values), p.nk = workgroups
// along x (the grid is 2-D when one dimension is not enough).
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let idx = (wid.y * p.nk + wid.x) * 256u + li;
  if (idx >= p.nq) { return; }
  var s = 0.0;
  let base = idx * HD;
  for (var d = 0u; d < HD; d++) { s = fma(dO[base + d], o[base + d], s); }
  D[idx] = s;
}

//#kernel attn_bwd_dq
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> dO: array<f32>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> D: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq: array<f32>;

var<workgroup> qs: array<f32, BR * HD>;
var<workgroup> dos: array<f32, BR * HD>;
var<workgroup> ks: array<f32, BC * PSTR>;
var<workgroup> vs: array<f32, BC * PSTR>;
var<workgroup> dss: array<f32, BR * BC>;

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = li / BC;
  let c = li % BC;
  let h = wid.y;
  let b = wid.z;
  let kvh = h / p.group;
  let i0 = wid.x * BR;
  let qStride = p.heads * HD;
  let kStride = p.kvHeads * HD;

  for (var e = li; e < BR * HD; e += NT) {
    let i = i0 + e / HD;
    var x = 0.0;
    var y = 0.0;
    if (i < p.nq) {
      let g = (b * p.nq + i) * qStride + h * HD + e % HD;
      x = q[g];
      y = dO[g];
    }
    qs[e] = x;
    dos[e] = y;
  }
  let i = i0 + r;
  let rowOk = i < p.nq;
  var rowLse = 0.0;
  var rowD = 0.0;
  var kFirst = 0u;
  if (rowOk) {
    rowLse = lse[(b * p.nq + i) * p.heads + h];
    rowD = D[(b * p.nq + i) * p.heads + h];
    kFirst = key_start(b * p.nq + i);
  }
  let kEnd = min(i0 + BR, p.nq);

  var acc: array<f32, DPC>;
  let nd = (p.hd + BC - 1u) / BC;   // = DPC, but from a uniform: see "Loops" above
  let kStart = (first_key(i0) / BC) * BC;
  for (var j0 = kStart; j0 < kEnd; j0 += BC) {
    workgroupBarrier();
    for (var e = li; e < BC * HD; e += NT) {
      let cc = e / HD;
      let d = e % HD;
      let j = j0 + cc;
      var kx = 0.0;
      var vx = 0.0;
      if (j < kEnd) {
        let g = (b * p.nk + j) * kStride + kvh * HD + d;
        kx = k[g];
        vx = v[g];
      }
      ks[cc * PSTR + d] = kx;
      vs[cc * PSTR + d] = vx;
    }
    workgroupBarrier();
    let cn = min(BC, kEnd - j0);

    let j = j0 + c;
    var ds = 0.0;
    if (rowOk && visible(j, i) && j >= kFirst) {
      var s = 0.0;
      var dp = 0.0;
      for (var d = 0u; d < HD; d++) {
        s = fma(qs[r * HD + d], ks[c * PSTR + d], s);
        dp = fma(dos[r * HD + d], vs[c * PSTR + d], dp);
      }
      let pr = exp(score(s, h, j) - rowLse);
      ds = pr * (dp - rowD) * dscore(s);
    }
    dss[li] = ds;
    workgroupBarrier();

    for (var t = 0u; t < nd; t++) {
      let d = c + t * BC;
      if (d < HD) {
        var a = acc[t];
        for (var cc = 0u; cc < cn; cc++) { a = fma(dss[r * BC + cc], ks[cc * PSTR + d], a); }
        acc[t] = a;
      }
    }
  }

  if (rowOk) {
    let base = (b * p.nq + i) * qStride + h * HD;
    for (var t = 0u; t < nd; t++) {
      let d = c + t * BC;
      if (d < HD) { dq[base + d] = acc[t] * p.scale; }
    }
  }
}

//#kernel attn_bwd_dkdv
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> dO: array<f32>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> D: array<f32>;
@group(0) @binding(7) var<storage, read_write> dk: array<f32>;
@group(0) @binding(8) var<storage, read_write> dv: array<f32>;

var<workgroup> ks: array<f32, BC * HD>;      // this workgroup's keys (read as a broadcast)
var<workgroup> vs: array<f32, BC * HD>;
var<workgroup> qs: array<f32, BR * PSTR>;    // query tile, padded rows
var<workgroup> dos: array<f32, BR * PSTR>;
var<workgroup> ps: array<f32, BR * BC>;      // P[r, c]
var<workgroup> dss: array<f32, BR * BC>;     // dS[r, c]
var<workgroup> lses: array<f32, BR>;
var<workgroup> Ds: array<f32, BR>;

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let c = li / BR;   // key within the block
  let r = li % BR;   // query row within a tile; also the first output dim of this thread
  let kvh = wid.y;
  let b = wid.z;
  let j0 = wid.x * BC;
  let qStride = p.heads * HD;
  let kStride = p.kvHeads * HD;

  for (var e = li; e < BC * HD; e += NT) {
    let j = j0 + e / HD;
    var kx = 0.0;
    var vx = 0.0;
    if (j < p.nk) {
      let g = (b * p.nk + j) * kStride + kvh * HD + e % HD;
      kx = k[g];
      vx = v[g];
    }
    ks[e] = kx;
    vs[e] = vx;
  }
  let j = j0 + c;

  var accK: array<f32, DPR>;
  var accV: array<f32, DPR>;
  let nd = (p.hd + BR - 1u) / BR;   // = DPR, from a uniform
  let iStart = (j0 / BR) * BR;   // first query tile that reaches key j0
  var iEnd = p.nq;                // past the last query that sees a key of the block (window)
  if (p.window > 0u) { iEnd = min(p.nq, j0 + BC + p.window - 1u); }
  for (var g = 0u; g < p.group; g++) {
    let h = kvh * p.group + g;
    for (var i0 = iStart; i0 < iEnd; i0 += BR) {
      workgroupBarrier();
      for (var e = li; e < BR * HD; e += NT) {
        let rr = e / HD;
        let d = e % HD;
        let i = i0 + rr;
        var x = 0.0;
        var y = 0.0;
        if (i < p.nq) {
          let gi = (b * p.nq + i) * qStride + h * HD + d;
          x = q[gi];
          y = dO[gi];
        }
        qs[rr * PSTR + d] = x;
        dos[rr * PSTR + d] = y;
      }
      if (li < BR) {
        let i = i0 + li;
        var a = 0.0;
        var dd = 0.0;
        if (i < p.nq) {
          a = lse[(b * p.nq + i) * p.heads + h];
          dd = D[(b * p.nq + i) * p.heads + h];
        }
        lses[li] = a;
        Ds[li] = dd;
      }
      workgroupBarrier();

      let rn = min(BR, p.nq - i0);   // query rows of this tile (runtime bound)
      let i = i0 + r;
      var pr = 0.0;
      var ds = 0.0;
      if (i < p.nq && j < p.nk && visible(j, i) && j >= key_start(b * p.nq + i)) {
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < HD; d++) {
          s = fma(ks[c * HD + d], qs[r * PSTR + d], s);
          dp = fma(vs[c * HD + d], dos[r * PSTR + d], dp);
        }
        pr = exp(score(s, h, j) - lses[r]);
        ds = pr * (dp - Ds[r]) * dscore(s);
      }
      ps[r * BC + c] = pr;
      dss[r * BC + c] = ds;
      workgroupBarrier();

      for (var t = 0u; t < nd; t++) {
        let d = r + t * BR;
        if (d < HD) {
          var av = accV[t];
          var ak = accK[t];
          for (var rr = 0u; rr < rn; rr++) {
            av = fma(ps[rr * BC + c], dos[rr * PSTR + d], av);
            ak = fma(dss[rr * BC + c], qs[rr * PSTR + d], ak);
          }
          accV[t] = av;
          accK[t] = ak;
        }
      }
    }
  }

  if (j < p.nk) {
    let base = (b * p.nk + j) * kStride + kvh * HD;
    for (var t = 0u; t < nd; t++) {
      let d = r + t * BR;
      if (d < HD) {
        dk[base + d] = accK[t] * p.scale;
        dv[base + d] = accV[t];
      }
    }
  }
}

//#kernel attn_decode_rows
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;

var<workgroup> qv: array<f32, HD>;
var<workgroup> red: array<f32, WD>;
var<workgroup> pw: array<f32, WD>;

@compute @workgroup_size(WD)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = wid.x;
  let h = wid.y;
  let kvh = h / p.group;
  let qStride = p.heads * HD;
  let kStride = p.kvHeads * HD;
  for (var d = li; d < HD; d += WD) { qv[d] = q[i * qStride + h * HD + d]; }
  let qpos = p.qPos0 + i;
  let kEnd = qpos + 1u;

  var m = NEG;
  var l = 0.0;
  var acc: array<f32, DPW>;
  for (var j0 = first_key(qpos); j0 < kEnd; j0 += WD) {
    workgroupBarrier();   // previous tile's pw no longer read; qv complete
    let j = j0 + li;
    var s = NEG;
    if (j < kEnd) {
      let base = j * kStride + kvh * HD;
      var dot = 0.0;
      for (var d = 0u; d < HD; d++) { dot = fma(qv[d], k[base + d], dot); }
      s = score(dot, h, j);
    }
    red[li] = s;
    workgroupBarrier();
    for (var st = WD / 2u; st > 0u; st = st / 2u) {
      if (li < st) { red[li] = max(red[li], red[li + st]); }
      workgroupBarrier();
    }
    let mNew = max(m, red[0]);
    var pr = 0.0;
    if (s > NEG) { pr = exp(s - mNew); }
    pw[li] = pr;
    workgroupBarrier();

    let alpha = exp(m - mNew);
    m = mNew;
    let cnt = min(WD, kEnd - j0);
    var psum = 0.0;
    for (var cc = 0u; cc < cnt; cc++) { psum += pw[cc]; }
    l = l * alpha + psum;
    for (var t = 0u; t < DPW; t++) {
      let d = li + t * WD;
      if (d < HD) {
        var a = acc[t] * alpha;
        for (var cc = 0u; cc < cnt; cc++) { a = fma(pw[cc], v[(j0 + cc) * kStride + kvh * HD + d], a); }
        acc[t] = a;
      }
    }
    workgroupBarrier();   // red[0] read by all before the next tile overwrites red
  }
  let inv = 1.0 / l;
  for (var t = 0u; t < DPW; t++) {
    let d = li + t * WD;
    if (d < HD) { o[i * qStride + h * HD + d] = acc[t] * inv; }
  }
}
