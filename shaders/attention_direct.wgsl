// Attention for CPU drivers (lavapipe, SwiftShader): the kernels of shaders/attention.wgsl (same
// uniform block P, same masks and score variants, same layouts and grids' meaning) without
// workgroup memory or barriers. A workgroup is WL invocations that form one subgroup (one SIMD group
// on a CPU driver); invocation `li` owns the 16-byte chunks li, li + WL, ... of every head-dim row
// it touches, and a dot product over the head dim is its chunks' partial dot summed with
// subgroupAdd (shuffles within one SIMD register there). Each invocation keeps a block of rows in
// registers and reads the other operand with direct vector loads, so every K / V (or Q / dO) value
// loaded feeds TQ (or TK) multiply-adds. (On lavapipe workgroup memory and barriers are expensive
// and speed follows arithmetic per loaded value; see docs/ENGINE.md.)
//
// Module: src/kernels/attention-variants.ts's prelude (consts, optional lse / kstart bindings) +
// the common part of shaders/attention.wgsl (P, visible, first_key, score, dscore, NEG) + the
// common part of this file (kept) + one section below.
// Prelude consts: WL invocations per workgroup (the subgroup), NCH 16-byte chunks per invocation,
// GUARD (the head dim's HD4 = p.hd / 4 chunks do not fill NCH * WL: chunks past HD4 are masked),
// TQ query rows and TK keys per block, SOFTCAP / ALIBI / NSLOPE as for the tiled kernels. The head
// dim itself is the uniform p.hd, so one module serves every head dim with the same NCH and GUARD.
// (Soft-cap and ALiBi stay compile-time flags: as run-time switches lavapipe evaluated the soft-cap
// for every score whether on or not, 1.3x slower forward and backward.)
// q, k, v, o, dO, dq, dk, dv are bound as array<vec4f> (rows of HD4 vectors); lse, D as array<f32>.
//
// Kernels (bindings as in shaders/attention.wgsl):
//   attn_fwd       Grid (ceil(nq/TQ), nH, B). TQ query rows; over key blocks of TK: scores, online
//                  softmax per row (every invocation holds the same row max / sum), P·V into the
//                  invocation's chunks. Rows past nq compute row nq-1 again and are not stored.
//   attn_bwd_dq    Grid (ceil(nq/TQ), nH, B). TQ query rows (q, dO in registers); per key:
//                  P = exp(score - lse), dS = P·(dO·V - D), dq += dS·K with the K chunks just loaded.
//   attn_bwd_dkdv  Grid (ceil(nk/TK), nKV, B). TK keys (k, v in registers) over the group's query
//                  heads and the queries that see them: dv += P·dO, dk += dS·Q.
//                  Each output element has a single writer.
// Blocks read past the end clamp their row (the load stays in bounds) and mask its scores; masks
// are selects rather than branches (less code to compile, the same speed).
//
// Compile cost: Mesa's lavapipe unrolls every loop with a constant trip count and compiles each
// unrolled storage load or store into one scalar access per lane with its own bounds check, so a
// cold first dispatch costs in proportion to the load / store sites of the unrolled code. Where
// it runs no slower, a loop over the rows of a register block is therefore kept a loop (bounded by
// kept(n)) and the block passes through it one row per iteration: the block shifts down a slot and
// the new row fills the last one (or the first slot is consumed, then the shift), so each load or
// store is written once rather than TQ or TK times. attn_fwd does this for its q rows, its o rows
// and both passes over a key block's keys (6x less compile time at head dim 64, and 1.3x faster:
// the shifts are cheaper than the spills of the larger code); attn_bwd_dq for its q / dO rows
// only (shifting its dq rows out made it 1.15x slower); attn_bwd_dkdv not at all (shifting its k /
// v rows in or its dk / dv rows out made it 1.1x / 1.25x slower). Figures: docs/ENGINE.md.

// n as a value the compiler cannot fold (p.heads is never 0): a loop bounded by it stays a loop.
fn kept(n: u32) -> u32 {
  return select(n, 0u, p.heads == 0u);
}

//#kernel attn_fwd
@group(0) @binding(1) var<storage, read> q: array<vec4f>;
@group(0) @binding(2) var<storage, read> k: array<vec4f>;
@group(0) @binding(3) var<storage, read> v: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> o: array<vec4f>;

@compute @workgroup_size(WL)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let h = wid.y;
  let b = wid.z;
  let hd4 = p.hd / 4u;
  let i0 = wid.x * TQ;
  let qS = p.heads * hd4;
  let kS = p.kvHeads * hd4;
  let qH = h * hd4 + li;                  // chunk li of head h in a q / o row
  let kH = (h / p.group) * hd4 + li;      // ... of its kv head in a k / v row

  var qr: array<vec4f, TQ * NCH>;
  var acc: array<vec4f, TQ * NCH>;
  var m: array<f32, TQ>;
  var l: array<f32, TQ>;
  var kf: array<u32, TQ>;     // first key of the row's example (packed sequences)
  var qpos: array<u32, TQ>;
  for (var r = 0u; r < TQ; r++) {
    m[r] = NEG;
    l[r] = 0.0;
    for (var t = 0u; t < NCH; t++) { acc[r * NCH + t] = vec4f(0.0); }
  }
  for (var r = 0u; r < kept(TQ); r++) {   // row r enters at slot TQ - 1 (see "Compile cost")
    for (var x = 0u; x + 1u < TQ; x++) {
      kf[x] = kf[x + 1u];
      qpos[x] = qpos[x + 1u];
      for (var t = 0u; t < NCH; t++) { qr[x * NCH + t] = qr[(x + 1u) * NCH + t]; }
    }
    let row = b * p.nq + min(i0 + r, p.nq - 1u);
    kf[TQ - 1u] = key_start(row);
    qpos[TQ - 1u] = p.qPos0 + min(i0 + r, p.nq - 1u);
    for (var t = 0u; t < NCH; t++) {
      var x = vec4f(0.0);
      if (!GUARD || li + t * WL < hd4) { x = q[row * qS + qH + t * WL]; }
      qr[(TQ - 1u) * NCH + t] = x;
    }
  }

  let kEnd = p.qPos0 + min(i0 + TQ, p.nq);   // keys [0, kEnd) are seen by some row of the block
  for (var j0 = first_key(p.qPos0 + i0); j0 < kEnd; j0 += TK) {
    var s: array<f32, TQ * TK>;
    for (var c = 0u; c < kept(TK); c++) {   // key j0 + c's scores enter column TK - 1 (see "Compile cost")
      let j = j0 + c;
      let kRow = (b * p.nk + min(j, kEnd - 1u)) * kS + kH;
      var kr: array<vec4f, NCH>;
      for (var t = 0u; t < NCH; t++) {
        var x = vec4f(0.0);
        if (!GUARD || li + t * WL < hd4) { x = k[kRow + t * WL]; }
        kr[t] = x;
      }
      for (var r = 0u; r < TQ; r++) {
        for (var x = 0u; x + 1u < TK; x++) { s[r * TK + x] = s[r * TK + x + 1u]; }
        var part = 0.0;
        for (var t = 0u; t < NCH; t++) { part += dot(qr[r * NCH + t], kr[t]); }
        let ok = (j < kEnd) & visible(j, qpos[r]) & (j >= kf[r]);
        s[r * TK + TK - 1u] = select(NEG, score(subgroupAdd(part), h, j), ok);
      }
    }
    for (var r = 0u; r < TQ; r++) {
      var mx = m[r];
      for (var c = 0u; c < TK; c++) { mx = max(mx, s[r * TK + c]); }
      let alpha = exp(m[r] - mx);
      m[r] = mx;
      var ps = 0.0;
      for (var c = 0u; c < TK; c++) {
        let sc = s[r * TK + c];
        let pc = select(0.0, exp(sc - mx), sc > NEG);
        s[r * TK + c] = pc;
        ps += pc;
      }
      l[r] = l[r] * alpha + ps;
      for (var t = 0u; t < NCH; t++) { acc[r * NCH + t] *= alpha; }
    }
    for (var c = 0u; c < kept(TK); c++) {   // key j0 + c's probabilities leave column 0
      let vRow = (b * p.nk + min(j0 + c, kEnd - 1u)) * kS + kH;
      for (var t = 0u; t < NCH; t++) {
        var vv = vec4f(0.0);
        if (!GUARD || li + t * WL < hd4) { vv = v[vRow + t * WL]; }
        for (var r = 0u; r < TQ; r++) { acc[r * NCH + t] = fma(vec4f(s[r * TK]), vv, acc[r * NCH + t]); }
      }
      for (var r = 0u; r < TQ; r++) {
        for (var x = 0u; x + 1u < TK; x++) { s[r * TK + x] = s[r * TK + x + 1u]; }
      }
    }
  }

  for (var r = 0u; r < kept(TQ); r++) {   // row r leaves from slot 0 (see "Compile cost")
    let i = i0 + r;
    if (i < p.nq) {
      let inv = 1.0 / l[0];   // l >= 1: the query's own key is always visible
      let row = b * p.nq + i;
      for (var t = 0u; t < NCH; t++) {
        if (!GUARD || li + t * WL < hd4) { o[row * qS + qH + t * WL] = acc[t] * inv; }
      }
      if (li == 0u) { store_lse(row * p.heads + h, m[0] + log(l[0])); }
    }
    for (var x = 0u; x + 1u < TQ; x++) {
      m[x] = m[x + 1u];
      l[x] = l[x + 1u];
      for (var t = 0u; t < NCH; t++) { acc[x * NCH + t] = acc[(x + 1u) * NCH + t]; }
    }
  }
}

//#kernel attn_bwd_dq
@group(0) @binding(1) var<storage, read> q: array<vec4f>;
@group(0) @binding(2) var<storage, read> k: array<vec4f>;
@group(0) @binding(3) var<storage, read> v: array<vec4f>;
@group(0) @binding(4) var<storage, read> dO: array<vec4f>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> D: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq: array<vec4f>;

@compute @workgroup_size(WL)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let h = wid.y;
  let b = wid.z;
  let hd4 = p.hd / 4u;
  let i0 = wid.x * TQ;
  let qS = p.heads * hd4;
  let kS = p.kvHeads * hd4;
  let qH = h * hd4 + li;
  let kH = (h / p.group) * hd4 + li;

  var qr: array<vec4f, TQ * NCH>;
  var dor: array<vec4f, TQ * NCH>;
  var acc: array<vec4f, TQ * NCH>;
  var rowLse: array<f32, TQ>;
  var rowD: array<f32, TQ>;
  var kf: array<u32, TQ>;
  for (var x = 0u; x < TQ * NCH; x++) { acc[x] = vec4f(0.0); }
  for (var r = 0u; r < kept(TQ); r++) {   // row r enters at slot TQ - 1 (see "Compile cost")
    for (var x = 0u; x + 1u < TQ; x++) {
      kf[x] = kf[x + 1u];
      rowLse[x] = rowLse[x + 1u];
      rowD[x] = rowD[x + 1u];
      for (var t = 0u; t < NCH; t++) {
        qr[x * NCH + t] = qr[(x + 1u) * NCH + t];
        dor[x * NCH + t] = dor[(x + 1u) * NCH + t];
      }
    }
    let row = b * p.nq + min(i0 + r, p.nq - 1u);
    kf[TQ - 1u] = key_start(row);
    rowLse[TQ - 1u] = lse[row * p.heads + h];
    rowD[TQ - 1u] = D[row * p.heads + h];
    for (var t = 0u; t < NCH; t++) {
      var x = vec4f(0.0);
      var y = vec4f(0.0);
      if (!GUARD || li + t * WL < hd4) {
        x = q[row * qS + qH + t * WL];
        y = dO[row * qS + qH + t * WL];
      }
      qr[(TQ - 1u) * NCH + t] = x;
      dor[(TQ - 1u) * NCH + t] = y;
    }
  }

  let kEnd = min(i0 + TQ, p.nq);
  for (var j = first_key(i0); j < kEnd; j++) {
    let kRow = (b * p.nk + j) * kS + kH;
    var kr: array<vec4f, NCH>;
    var vr: array<vec4f, NCH>;
    for (var t = 0u; t < NCH; t++) {
      var x = vec4f(0.0);
      var y = vec4f(0.0);
      if (!GUARD || li + t * WL < hd4) {
        x = k[kRow + t * WL];
        y = v[kRow + t * WL];
      }
      kr[t] = x;
      vr[t] = y;
    }
    for (var r = 0u; r < TQ; r++) {
      var part = vec2f(0.0);
      for (var t = 0u; t < NCH; t++) {
        part += vec2f(dot(qr[r * NCH + t], kr[t]), dot(dor[r * NCH + t], vr[t]));
      }
      let sd = subgroupAdd(part);
      let pr = exp(score(sd.x, h, j) - rowLse[r]);
      let ok = visible(j, min(i0 + r, p.nq - 1u)) & (j >= kf[r]);
      let ds = select(0.0, pr * (sd.y - rowD[r]) * dscore(sd.x), ok);
      for (var t = 0u; t < NCH; t++) { acc[r * NCH + t] = fma(vec4f(ds), kr[t], acc[r * NCH + t]); }
    }
  }

  for (var r = 0u; r < TQ; r++) {
    let i = i0 + r;
    if (i < p.nq) {
      for (var t = 0u; t < NCH; t++) {
        if (!GUARD || li + t * WL < hd4) { dq[(b * p.nq + i) * qS + qH + t * WL] = acc[r * NCH + t] * p.scale; }
      }
    }
  }
}

//#kernel attn_bwd_dkdv
@group(0) @binding(1) var<storage, read> q: array<vec4f>;
@group(0) @binding(2) var<storage, read> k: array<vec4f>;
@group(0) @binding(3) var<storage, read> v: array<vec4f>;
@group(0) @binding(4) var<storage, read> dO: array<vec4f>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> D: array<f32>;
@group(0) @binding(7) var<storage, read_write> dk: array<vec4f>;
@group(0) @binding(8) var<storage, read_write> dv: array<vec4f>;

@compute @workgroup_size(WL)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let kvh = wid.y;
  let b = wid.z;
  let hd4 = p.hd / 4u;
  let j0 = wid.x * TK;
  let qS = p.heads * hd4;
  let kS = p.kvHeads * hd4;
  let kH = kvh * hd4 + li;

  var kr: array<vec4f, TK * NCH>;
  var vr: array<vec4f, TK * NCH>;
  var accK: array<vec4f, TK * NCH>;
  var accV: array<vec4f, TK * NCH>;
  for (var c = 0u; c < TK; c++) {
    let kRow = (b * p.nk + min(j0 + c, p.nk - 1u)) * kS + kH;
    for (var t = 0u; t < NCH; t++) {
      var x = vec4f(0.0);
      var y = vec4f(0.0);
      if (!GUARD || li + t * WL < hd4) {
        x = k[kRow + t * WL];
        y = v[kRow + t * WL];
      }
      kr[c * NCH + t] = x;
      vr[c * NCH + t] = y;
      accK[c * NCH + t] = vec4f(0.0);
      accV[c * NCH + t] = vec4f(0.0);
    }
  }

  var iEnd = p.nq;   // past the last query that sees a key of the block (window)
  if (p.window > 0u) { iEnd = min(p.nq, j0 + TK + p.window - 1u); }
  for (var g = 0u; g < p.group; g++) {
    let h = kvh * p.group + g;
    let qH = h * hd4 + li;
    for (var i = j0; i < iEnd; i++) {   // query i sees keys <= i: the block's first key j0 first
      let row = b * p.nq + i;
      let rowLse = lse[row * p.heads + h];
      let rowD = D[row * p.heads + h];
      let kFirst = key_start(row);
      var qr: array<vec4f, NCH>;
      var dor: array<vec4f, NCH>;
      for (var t = 0u; t < NCH; t++) {
        var x = vec4f(0.0);
        var y = vec4f(0.0);
        if (!GUARD || li + t * WL < hd4) {
          x = q[row * qS + qH + t * WL];
          y = dO[row * qS + qH + t * WL];
        }
        qr[t] = x;
        dor[t] = y;
      }
      for (var c = 0u; c < TK; c++) {
        let j = j0 + c;
        var part = vec2f(0.0);
        for (var t = 0u; t < NCH; t++) {
          part += vec2f(dot(kr[c * NCH + t], qr[t]), dot(vr[c * NCH + t], dor[t]));
        }
        let sd = subgroupAdd(part);
        let ok = (j < p.nk) & visible(j, i) & (j >= kFirst);
        let pr = select(0.0, exp(score(sd.x, h, j) - rowLse), ok);
        let ds = pr * (sd.y - rowD) * dscore(sd.x);
        for (var t = 0u; t < NCH; t++) {
          accV[c * NCH + t] = fma(vec4f(pr), dor[t], accV[c * NCH + t]);
          accK[c * NCH + t] = fma(vec4f(ds), qr[t], accK[c * NCH + t]);
        }
      }
    }
  }

  for (var c = 0u; c < TK; c++) {
    let j = j0 + c;
    if (j < p.nk) {
      let kRow = (b * p.nk + j) * kS + kH;
      for (var t = 0u; t < NCH; t++) {
        if (!GUARD || li + t * WL < hd4) {
          dk[kRow + t * WL] = accK[c * NCH + t] * p.scale;
          dv[kRow + t * WL] = accV[c * NCH + t];
        }
      }
    }
  }
}
