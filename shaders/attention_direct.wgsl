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
// Module: src/kernels/attention.ts's prelude (consts, optional lse / kstart bindings) + the common
// part of shaders/attention.wgsl (P, visible, first_key, score, dscore, NEG) + one section below.
// Prelude consts: HD head dim (a multiple of 4), HD4 = HD / 4, WL invocations per workgroup (the
// subgroup), NCH = ceil(HD4 / WL) chunks per invocation, TQ query rows and TK keys per block.
// q, k, v, o, dO, dq, dk, dv are bound as array<vec4f> (rows of HD4 vectors); lse, D as array<f32>.
//
// Kernels (bindings as in shaders/attention.wgsl):
//   attn_fwd       Grid (ceil(nq/TQ), nH, B). TQ query rows; over key blocks of TK: scores, online
//                  softmax per row (every invocation holds the same row max / sum), P·V into the
//                  invocation's chunks. Rows past nq compute row nq-1 again and are not stored.
//   attn_bwd_dq    Grid (ceil(nq/TQ), nH, B). TQ query rows (q, dO in registers); per key block:
//                  P = exp(score - lse), dS = P·(dO·V - D), dq += dS·K with the K chunks just loaded.
//   attn_bwd_dkdv  Grid (ceil(nk/TK), nKV, B). TK keys (k, v in registers) over the group's query
//                  heads and the query blocks of TQ rows that see them: dv += P·dO, dk += dS·Q.
//                  Each output element has a single writer.
// Blocks read past the end clamp their row (the load stays in bounds) and mask its scores.

//#kernel attn_fwd
@group(0) @binding(1) var<storage, read> q: array<vec4f>;
@group(0) @binding(2) var<storage, read> k: array<vec4f>;
@group(0) @binding(3) var<storage, read> v: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> o: array<vec4f>;

@compute @workgroup_size(WL)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let h = wid.y;
  let b = wid.z;
  let kvh = h / p.group;
  let i0 = wid.x * TQ;
  let qS = p.heads * HD4;
  let kS = p.kvHeads * HD4;

  var qr: array<vec4f, TQ * NCH>;
  var acc: array<vec4f, TQ * NCH>;
  var m: array<f32, TQ>;
  var l: array<f32, TQ>;
  var kf: array<u32, TQ>;     // first key of the row's example (packed sequences)
  var qpos: array<u32, TQ>;
  for (var r = 0u; r < TQ; r++) {
    let i = min(i0 + r, p.nq - 1u);
    kf[r] = key_start(b * p.nq + i);
    qpos[r] = p.qPos0 + i;
    m[r] = NEG;
    l[r] = 0.0;
    for (var t = 0u; t < NCH; t++) {
      let c = li + t * WL;
      var x = vec4f(0.0);
      if (c < HD4) { x = q[(b * p.nq + i) * qS + h * HD4 + c]; }
      qr[r * NCH + t] = x;
      acc[r * NCH + t] = vec4f(0.0);
    }
  }

  let kEnd = p.qPos0 + min(i0 + TQ, p.nq);   // keys [0, kEnd) are seen by some row of the block
  for (var j0 = first_key(p.qPos0 + i0); j0 < kEnd; j0 += TK) {
    var s: array<f32, TQ * TK>;
    for (var c = 0u; c < TK; c++) {
      let j = j0 + c;
      let jl = min(j, kEnd - 1u);
      var kr: array<vec4f, NCH>;
      for (var t = 0u; t < NCH; t++) {
        let d = li + t * WL;
        var x = vec4f(0.0);
        if (d < HD4) { x = k[(b * p.nk + jl) * kS + kvh * HD4 + d]; }
        kr[t] = x;
      }
      for (var r = 0u; r < TQ; r++) {
        var part = 0.0;
        for (var t = 0u; t < NCH; t++) { part += dot(qr[r * NCH + t], kr[t]); }
        let raw = subgroupAdd(part);
        var sc = NEG;
        if (j < kEnd && visible(j, qpos[r]) && j >= kf[r]) { sc = score(raw, h, j); }
        s[r * TK + c] = sc;
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
        var pc = 0.0;
        if (sc > NEG) { pc = exp(sc - mx); }
        s[r * TK + c] = pc;
        ps += pc;
      }
      l[r] = l[r] * alpha + ps;
      for (var t = 0u; t < NCH; t++) { acc[r * NCH + t] *= alpha; }
    }
    for (var c = 0u; c < TK; c++) {
      let jl = min(j0 + c, kEnd - 1u);
      for (var t = 0u; t < NCH; t++) {
        let d = li + t * WL;
        var vv = vec4f(0.0);
        if (d < HD4) { vv = v[(b * p.nk + jl) * kS + kvh * HD4 + d]; }
        for (var r = 0u; r < TQ; r++) { acc[r * NCH + t] = fma(vec4f(s[r * TK + c]), vv, acc[r * NCH + t]); }
      }
    }
  }

  for (var r = 0u; r < TQ; r++) {
    let i = i0 + r;
    if (i < p.nq) {
      let inv = 1.0 / l[r];   // l >= 1: the query's own key is always visible
      let row = b * p.nq + i;
      for (var t = 0u; t < NCH; t++) {
        let d = li + t * WL;
        if (d < HD4) { o[row * qS + h * HD4 + d] = acc[r * NCH + t] * inv; }
      }
      if (li == 0u) { store_lse(row * p.heads + h, m[r] + log(l[r])); }
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
  let kvh = h / p.group;
  let i0 = wid.x * TQ;
  let qS = p.heads * HD4;
  let kS = p.kvHeads * HD4;

  var qr: array<vec4f, TQ * NCH>;
  var dor: array<vec4f, TQ * NCH>;
  var acc: array<vec4f, TQ * NCH>;
  var rowLse: array<f32, TQ>;
  var rowD: array<f32, TQ>;
  var kf: array<u32, TQ>;
  for (var r = 0u; r < TQ; r++) {
    let i = min(i0 + r, p.nq - 1u);
    let row = b * p.nq + i;
    kf[r] = key_start(row);
    rowLse[r] = lse[row * p.heads + h];
    rowD[r] = D[row * p.heads + h];
    for (var t = 0u; t < NCH; t++) {
      let c = li + t * WL;
      var x = vec4f(0.0);
      var y = vec4f(0.0);
      if (c < HD4) {
        let g = row * qS + h * HD4 + c;
        x = q[g];
        y = dO[g];
      }
      qr[r * NCH + t] = x;
      dor[r * NCH + t] = y;
      acc[r * NCH + t] = vec4f(0.0);
    }
  }

  let kEnd = min(i0 + TQ, p.nq);
  for (var j = first_key(i0); j < kEnd; j++) {
    var kr: array<vec4f, NCH>;
    var vr: array<vec4f, NCH>;
    for (var t = 0u; t < NCH; t++) {
      let d = li + t * WL;
      var x = vec4f(0.0);
      var y = vec4f(0.0);
      if (d < HD4) {
        let g = (b * p.nk + j) * kS + kvh * HD4 + d;
        x = k[g];
        y = v[g];
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
      var ds = 0.0;
      if (visible(j, min(i0 + r, p.nq - 1u)) && j >= kf[r]) {
        let pr = exp(score(sd.x, h, j) - rowLse[r]);
        ds = pr * (sd.y - rowD[r]) * dscore(sd.x);
      }
      for (var t = 0u; t < NCH; t++) { acc[r * NCH + t] = fma(vec4f(ds), kr[t], acc[r * NCH + t]); }
    }
  }

  for (var r = 0u; r < TQ; r++) {
    let i = i0 + r;
    if (i < p.nq) {
      for (var t = 0u; t < NCH; t++) {
        let d = li + t * WL;
        if (d < HD4) { dq[(b * p.nq + i) * qS + h * HD4 + d] = acc[r * NCH + t] * p.scale; }
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
  let j0 = wid.x * TK;
  let qS = p.heads * HD4;
  let kS = p.kvHeads * HD4;

  var kr: array<vec4f, TK * NCH>;
  var vr: array<vec4f, TK * NCH>;
  var accK: array<vec4f, TK * NCH>;
  var accV: array<vec4f, TK * NCH>;
  for (var c = 0u; c < TK; c++) {
    let j = min(j0 + c, p.nk - 1u);
    for (var t = 0u; t < NCH; t++) {
      let d = li + t * WL;
      var x = vec4f(0.0);
      var y = vec4f(0.0);
      if (d < HD4) {
        let g = (b * p.nk + j) * kS + kvh * HD4 + d;
        x = k[g];
        y = v[g];
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
    for (var i = j0; i < iEnd; i++) {   // query i sees keys <= i: the block's first key j0 first
      let row = b * p.nq + i;
      let rowLse = lse[row * p.heads + h];
      let rowD = D[row * p.heads + h];
      let kFirst = key_start(row);
      var qr: array<vec4f, NCH>;
      var dor: array<vec4f, NCH>;
      for (var t = 0u; t < NCH; t++) {
        let d = li + t * WL;
        var x = vec4f(0.0);
        var y = vec4f(0.0);
        if (d < HD4) {
          let gi = row * qS + h * HD4 + d;
          x = q[gi];
          y = dO[gi];
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
        var pr = 0.0;
        var ds = 0.0;
        if (j < p.nk && visible(j, i) && j >= kFirst) {
          pr = exp(score(sd.x, h, j) - rowLse);
          ds = pr * (sd.y - rowD) * dscore(sd.x);
        }
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
      for (var t = 0u; t < NCH; t++) {
        let d = li + t * WL;
        if (d < HD4) {
          let g = (b * p.nk + j) * kS + kvh * HD4 + d;
          dk[g] = accK[c * NCH + t] * p.scale;
          dv[g] = accV[c * NCH + t];
        }
      }
    }
  }
}
