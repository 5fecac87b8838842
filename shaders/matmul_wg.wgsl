// Matmul in workgroup-memory tiles for GPUs: coalesced vec4 loads, BM x BN tiles of C per
// workgroup, BK depths per stage, TM x TN outputs per invocation, double-buffered (the next stage
// is read from memory into registers while the current one is multiplied). The same contract as
// shaders/matmul.wgsl:
//
//   C[m, n] = (accumulate ? C[m, n] : 0)
//           + alpha * ( sum_k  opA(A)[m, k]  * opB(B)[k, n]                       (segment 1)
//                     + drop_out(m, n) * alpha2 * sum_k2 opA2(A2)[m, k2] * opB2(B2)[k2, n] )   (segment 2)
//           + bias[n]
//
// src/kernels/matmul/shader.ts generates the prelude:
//   consts   BM, BN, BK (a multiple of 4), TM, TN (multiples of 4), WX = BN/TN, WY = BM/TM,
//            NT = WX*WY invocations; LA = BM*BK/(4*NT), LB = BK*BN/(4*NT) vectors each invocation
//            stages per operand (whole numbers); TRANS_A, TRANS_B, HAS_SEG2, HAS_BIAS, OUT_DROP.
//   bindings and loaders: src/kernels/matmul/direct.ts operandPrelude (the direct kernel's): 0 the
//            uniform P (shaders/matmul_params.wgsl), 1 A f32, 2 B f32 / f16 / bf16 (or NF4W, NF4S),
//            [A2, B2 f32], [bias as u32 words], last C f32; a_v / b_v read four elements along an
//            operand's stored row (one vector load where strides, offsets and windows are
//            4-aligned), a_s / b_s one element of opA / opB, a2 / b2 segment 2 (alpha2 folded in;
//            its layout from uniform strides), bias_at (f32 / f16 / bf16 by a uniform); operand
//            dropout is applied by the loaders.
// Segment 2 (the LoRA rank) runs as extra stages after segment 1, read with scalar loads. With
// OUT_DROP its sum is kept apart and multiplied by the output dropout mask before segment 1 is
// added. Split-K: workgroup z sums depth [k0 + z*kSplit, +kSplit) and writes at z*cStrideZ.
// Fused: 16-bit widening or NF4 dequantization, operand dropout, the LoRA segment, alpha, bias and
// accumulate.

// Stage s of the tiles lives in half s % 2. tileA[m * BK/4 + k/4]: four depths of row m;
// tileB[k * BN/4 + n/4]: four columns of depth k. 2 * (BM + BN) * BK * 4 bytes.
var<workgroup> tileA: array<vec4<f32>, 2u * BM * BK / 4u>;
var<workgroup> tileB: array<vec4<f32>, 2u * BK * BN / 4u>;


// Four elements of opA rows / depths (row, k) .. along the stored row, zero outside the bounds.
fn read_a(seg2: bool, m: u32, k: u32, kLim: u32) -> vec4<f32> {
  // Stored along k (opA [M, K]) or along m (Aᵀ stored [K, M]): the vector's four positions.
  let mLast = select(m, m + 3u, TRANS_A);
  let kLast = select(k + 3u, k, TRANS_A);
  if (!seg2 && mLast < p.mEnd && kLast < kLim) {
    if (TRANS_A) { return a_v(k, m); }
    return a_v(m, k);
  }
  var v = vec4<f32>(0.0);
  for (var l = 0u; l < 4u; l++) {
    let mm = select(m, m + l, TRANS_A);
    let kk = select(k + l, k, TRANS_A);
    if (mm < p.mEnd && kk < kLim) {
      if (HAS_SEG2 && seg2) { v[l] = a2(mm, kk); } else { v[l] = a_s(mm, kk); }
    }
  }
  return v;
}

// Four elements of opB along B's stored row: (k, n .. n+3), or (k .. k+3, n) with TRANS_B.
fn read_b(seg2: bool, k: u32, n: u32, kLim: u32) -> vec4<f32> {
  let nLast = select(n + 3u, n, TRANS_B);
  let kLast = select(k, k + 3u, TRANS_B);
  if (!seg2 && nLast < p.nEnd && kLast < kLim) {
    if (TRANS_B) { return b_v(n, k); }
    return b_v(k, n);
  }
  var v = vec4<f32>(0.0);
  for (var l = 0u; l < 4u; l++) {
    let nn = select(n + l, n, TRANS_B);
    let kk = select(k, k + l, TRANS_B);
    if (nn < p.nEnd && kk < kLim) {
      if (HAS_SEG2 && seg2) { v[l] = b2(kk, nn); } else { v[l] = b_s(kk, nn); }
    }
  }
  return v;
}

// Vector e of a stage of A (of LA*NT), as (row, depth) of its first element: consecutive
// invocations read consecutive addresses of the stored layout.
fn a_pos(e: u32) -> vec2<u32> {
  if (TRANS_A) { return vec2<u32>((e % (BM / 4u)) * 4u, e / (BM / 4u)); }
  return vec2<u32>(e / (BK / 4u), (e % (BK / 4u)) * 4u);
}

// Vector e of a stage of B (of LB*NT), as (depth, column) of its first element.
fn b_pos(e: u32) -> vec2<u32> {
  if (TRANS_B) { return vec2<u32>((e % (BK / 4u)) * 4u, e / (BK / 4u)); }
  return vec2<u32>(e / (BN / 4u), (e % (BN / 4u)) * 4u);
}

// The depth range of stage t: [kBase, kLim) of segment 1, then segment 2's.
struct Stage {
  seg2: bool,
  kBase: u32,
  kLim: u32,
}

fn stage_of(t: u32, t1: u32, kLo: u32, kHi: u32) -> Stage {
  if (t < t1) { return Stage(false, kLo + t * BK, kHi); }
  return Stage(true, (t - t1) * BK, p.k2);
}

fn fetch(li: u32, st: Stage, mTile: u32, nTile: u32, nextA: ptr<function, array<vec4<f32>, LA>>, nextB: ptr<function, array<vec4<f32>, LB>>) {
  for (var j = 0u; j < LA; j++) {
    let q = a_pos(li + j * NT);
    (*nextA)[j] = read_a(st.seg2, mTile + q.x, st.kBase + q.y, st.kLim);
  }
  for (var j = 0u; j < LB; j++) {
    let q = b_pos(li + j * NT);
    (*nextB)[j] = read_b(st.seg2, st.kBase + q.x, nTile + q.y, st.kLim);
  }
}

// Writes the fetched vectors into half h of the tiles (a vector across the tile's rows is
// scattered over four of them).
fn put(li: u32, h: u32, nextA: ptr<function, array<vec4<f32>, LA>>, nextB: ptr<function, array<vec4<f32>, LB>>) {
  let oa = h * BM * BK / 4u;
  for (var j = 0u; j < LA; j++) {
    let q = a_pos(li + j * NT);
    if (TRANS_A) {
      for (var l = 0u; l < 4u; l++) { tileA[oa + (q.x + l) * (BK / 4u) + q.y / 4u][q.y % 4u] = (*nextA)[j][l]; }
    } else {
      tileA[oa + q.x * (BK / 4u) + q.y / 4u] = (*nextA)[j];
    }
  }
  let ob = h * BK * BN / 4u;
  for (var j = 0u; j < LB; j++) {
    let q = b_pos(li + j * NT);
    if (TRANS_B) {
      for (var l = 0u; l < 4u; l++) { tileB[ob + (q.x + l) * (BN / 4u) + q.y / 4u][q.y % 4u] = (*nextB)[j][l]; }
    } else {
      tileB[ob + q.x * (BN / 4u) + q.y / 4u] = (*nextB)[j];
    }
  }
}

// Multiplies kq groups of four depths of half h (a partial last stage skips its zero padding; a
// trip count the compiler cannot see also keeps a CPU driver from unrolling this loop): the
// invocation's rows are lid.y + i*WY, its column vectors lid.x + g*WX.
fn multiply(lid: vec3u, h: u32, kq: u32, acc: ptr<function, array<vec4<f32>, TM * TN / 4u>>) {
  let oa = h * BM * BK / 4u;
  let ob = h * BK * BN / 4u;
  for (var k4 = 0u; k4 < kq; k4++) {
    // Every value read from workgroup memory once per four depths: TM + TN of them.
    var a: array<vec4<f32>, TM>;
    var b: array<vec4<f32>, TN>;
    for (var i = 0u; i < TM; i++) { a[i] = tileA[oa + (lid.y + i * WY) * (BK / 4u) + k4]; }
    for (var kk = 0u; kk < 4u; kk++) {
      for (var g = 0u; g < TN / 4u; g++) { b[kk * (TN / 4u) + g] = tileB[ob + (k4 * 4u + kk) * (BN / 4u) + lid.x + g * WX]; }
    }
    for (var i = 0u; i < TM; i++) {
      for (var kk = 0u; kk < 4u; kk++) {
        for (var g = 0u; g < TN / 4u; g++) { (*acc)[i * (TN / 4u) + g] += a[i][kk] * b[kk * (TN / 4u) + g]; }
      }
    }
  }
}

@compute @workgroup_size(WX, WY)
fn main(
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(local_invocation_index) li: u32,
  @builtin(workgroup_id) wid: vec3u,
) {
  let mTile = p.m0 + wid.y * BM;
  let nTile = p.n0 + wid.x * BN;
  let kLo = p.k0 + wid.z * p.kSplit;
  let kHi = min(p.kEnd, kLo + p.kSplit);
  var t1 = 0u;
  if (kHi > kLo) { t1 = (kHi - kLo + BK - 1u) / BK; }
  var t2 = 0u;
  if (HAS_SEG2) { t2 = (p.k2 + BK - 1u) / BK; }
  let stages = t1 + t2;

  // With OUT_DROP, segment 1's sums move to acc1 when segment 2 starts.
  var acc1: array<vec4<f32>, TM * TN / 4u>;
  var acc: array<vec4<f32>, TM * TN / 4u>;
  var nextA: array<vec4<f32>, LA>;
  var nextB: array<vec4<f32>, LB>;
  // Step t reads stage t into registers, multiplies stage t - 1 (in half (t - 1) % 2), then writes
  // stage t into half t % 2, last read by step t - 1, which ended with a barrier. One site of each
  // (the compile time of a CPU driver grows with every inlined copy).
  for (var t = 0u; t <= stages; t++) {
    let next = t < stages;
    if (next) { fetch(li, stage_of(t, t1, kLo, kHi), mTile, nTile, &nextA, &nextB); }
    if (t > 0u) {
      if (OUT_DROP && t - 1u == t1) {
        acc1 = acc;
        acc = array<vec4<f32>, TM * TN / 4u>();
      }
      let st = stage_of(t - 1u, t1, kLo, kHi);
      multiply(lid, (t - 1u) % 2u, (min(BK, st.kLim - st.kBase) + 3u) / 4u, &acc);
    }
    if (next) { put(li, t % 2u, &nextA, &nextB); }
    workgroupBarrier();
  }
  if (OUT_DROP && t2 == 0u) {
    acc1 = acc;
    acc = array<vec4<f32>, TM * TN / 4u>();
  }

  for (var i = 0u; i < TM; i++) {
    let m = mTile + lid.y + i * WY;
    if (m >= p.mEnd) { continue; }
    for (var g = 0u; g < TN / 4u; g++) {
      let nb = nTile + (lid.x + g * WX) * 4u;
      for (var l = 0u; l < 4u; l++) {
        let n = nb + l;
        if (n >= p.nEnd) { break; }
        let c = i * (TN / 4u) + g;
        store_c(m, n, wid.z, acc[c][l], acc1[c][l]); // shaders/matmul_epilogue.wgsl
      }
    }
  }
}
