// Small-M matmul (GEMV-style; generation runs every linear layer and the LM head with M = 1):
//
//   C[m, n] = (accumulate ? C[m, n] : 0)
//           + alpha * ( sum_k  opA(A)[m, k]  * opB(B)[k, n]                       (segment 1)
//                     + drop_out(m, n) * alpha2 * sum_k2 opA2(A2)[m, k2] * opB2(B2)[k2, n] )   (segment 2)
//           + bias[n]
//
// The same contract as shaders/matmul.wgsl, for at most MR (1, 2, 4 or 8) rows: one workgroup covers
// every row and BN = 64 output columns, so no work goes to padding rows of a 16-row tile.
// src/kernels/matmul/shader.ts prepends the same generated prelude as for the tiled kernel (bindings,
// loaders a1/b1/a2/b2/bias_at, TRANS_*, HAS_SEG2, HAS_BIAS, OUT_DROP) with these consts:
//   MR rows baked in (rows [m0, mEnd) are used, mEnd - m0 <= MR), NT = 256 invocations = KL lanes
//   along the depth x CG groups of 4 columns, BN = 4 * CG columns per workgroup. KL = 16 (BN = 64)
//   with the workgroup-memory reduction; with SUBGROUP (Bᵀ only) KL = the subgroup lanes the device
//   was checked to lay out in aligned runs (8 on lavapipe: BN = 128; 32 on most GPUs: BN = 32).
//   bindings 0 uniform P (below; the same layout as shaders/matmul.wgsl)
//            1 A  f32, opA(A) is [M, K]: row-major [M, lda] (TRANS_A false) or [K, lda] (true)
//            2 B  f32, or f16 / bf16 packed two per u32 (widened in b1: f16 via unpack2x16float,
//                 bf16 via bitcast<f32>(bits << 16)); opB(B) is [K, N]: [K, ldb] or, with TRANS_B,
//                 [N, ldb] (C = A·Bᵀ, the nn.Linear X·Wᵀ layout); or a 4-bit NF4 B bound as NF4W and
//                 NF4S (as in shaders/matmul.wgsl: dequantized in b1, the bindings after it shift by one)
//            3 A2 f32, 4 B2 f32 (only with HAS_SEG2; the LoRA segment, lda2 / ldb2)
//            . bias f32 / f16 / bf16 [N] (only with HAS_BIAS)
//            last C f32 row-major [M, ldc] (read too when accumulate = 1)
//   PAIRED   (prelude const) B is 16-bit, TRANS_B, and every row starts on a u32 word: a lane reads
//            one packed word b1pair(k, n) = depths (k, k + 1) per column instead of two halves.
//   grid     (ceil((nEnd - n0) / BN), 1, 1); no split-K (cStrideZ unused).
//
// Each invocation owns 4 columns (nb .. nb+3) and every row, and sums the depths k = k0 + kx,
// k0 + kx + KL, ... (PAIRED: k0 + 2kx and its successor, step 2KL); lanes of one column group read neighbouring k (TRANS_B) or neighbouring
// columns read neighbouring groups (not TRANS_B), so loads stay contiguous. Segment 2 is summed
// apart and folded in (times the output dropout mask with OUT_DROP) before the reduction, which is
// linear. The KL partial sums of an output are then added in workgroup memory in a fixed lane order
// (deterministic, no atomics), one row at a time (4 KiB). Columns past nEnd are loaded clamped to
// the last column and never stored. Fused: 16-bit widening or NF4 dequantization (the decode path
// of QLoRA), operand dropout, the LoRA segment, alpha, bias and accumulate.

// The uniform block P and its binding: shaders/matmul_params.wgsl (shared by the matmul bodies).

var<workgroup> red: array<vec4<f32>, NT>;

// Index in `red` of lane x of column group g (the same mapping as main's).
fn lane_slot(x: u32, g: u32) -> u32 {
  if (TRANS_B) { return g * KL + x; }
  return x * CG + g;
}

@compute @workgroup_size(NT)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3u) {
  var kx: u32;
  var cg: u32;
  if (TRANS_B) { kx = li % KL; cg = li / KL; } else { cg = li % CG; kx = li / CG; }
  let rows = p.mEnd - p.m0;
  let nTile = p.n0 + wid.x * BN;
  let nb = nTile + cg * 4u;
  let nLast = p.nEnd - 1u;
  let c0 = min(nb, nLast);
  let c1 = min(nb + 1u, nLast);
  let c2 = min(nb + 2u, nLast);
  let c3 = min(nb + 3u, nLast);
  var mr: array<u32, MR>;
  for (var i = 0u; i < MR; i++) { mr[i] = p.m0 + min(i, rows - 1u); }

  var acc: array<vec4<f32>, MR>;
  if (PAIRED) {
    // One packed u32 per column holds depths k and k + 1 (k even relative to the row start).
    for (var k = p.k0 + 2u * kx; k < p.kEnd; k += 2u * KL) {
      let q0 = b1pair(k, c0);
      let q1 = b1pair(k, c1);
      let q2 = b1pair(k, c2);
      let q3 = b1pair(k, c3);
      let has1 = k + 1u < p.kEnd;
      let lo = vec4<f32>(q0.x, q1.x, q2.x, q3.x);
      // Past the end the high half belongs to another row (or is padding): zeroed, never NaN.
      let hi = select(vec4<f32>(0.0), vec4<f32>(q0.y, q1.y, q2.y, q3.y), has1);
      let k1 = select(k, k + 1u, has1);
      for (var i = 0u; i < MR; i++) { acc[i] += a1(mr[i], k) * lo + a1(mr[i], k1) * hi; }
    }
  } else {
    for (var k = p.k0 + kx; k < p.kEnd; k += KL) {
      let b = vec4<f32>(b1(k, c0), b1(k, c1), b1(k, c2), b1(k, c3));
      for (var i = 0u; i < MR; i++) { acc[i] += a1(mr[i], k) * b; }
    }
  }
  if (HAS_SEG2) {
    var acc2: array<vec4<f32>, MR>;
    for (var k = kx; k < p.k2; k += KL) {
      let b = vec4<f32>(b2(k, c0), b2(k, c1), b2(k, c2), b2(k, c3));
      for (var i = 0u; i < MR; i++) { acc2[i] += a2(mr[i], k) * b; }
    }
    for (var i = 0u; i < MR; i++) {
      var d = vec4<f32>(1.0);
      if (OUT_DROP) {
        let m = mr[i];
        d = vec4<f32>(
          dropout_mul(p.seedOut, p.thrOut, p.scaleOut, m, nb),
          dropout_mul(p.seedOut, p.thrOut, p.scaleOut, m, nb + 1u),
          dropout_mul(p.seedOut, p.thrOut, p.scaleOut, m, nb + 2u),
          dropout_mul(p.seedOut, p.thrOut, p.scaleOut, m, nb + 3u),
        );
      }
      acc[i] += d * acc2[i];
    }
  }

  if (SUBGROUP) {
    // The KL depth lanes of this column group are one aligned run of subgroup lanes (checked on
    // the device, src/gpu/subgroups.ts). A butterfly of xor shuffles (lane_xor) leaves the same full sum in
    // every lane (each pairwise add is commutative, so the order is fixed); lane j < 4 stores
    // column nb + j. No workgroup memory, no barriers.
    let n = nb + kx;
    for (var i = 0u; i < MR; i++) {
      if (i < rows) {
        var s = acc[i];
        for (var o = 1u; o < KL; o = o << 1u) { s += lane_xor(s, o); }
        if (kx < 4u && n < p.nEnd) {
          var v = s[kx] * p.alpha;
          if (HAS_BIAS) {
            if (p.useBias != 0u) { v += bias_at(n); }
          }
          let ci = (p.m0 + i) * p.ldc + n + p.cAdj;
          if (p.accumulate != 0u) { v += C[ci]; }
          C[ci] = v;
        }
      }
    }
    return;
  }

  // Output column li of the tile (li < BN): its KL partial sums, added in lane order.
  let g = li / 4u;
  let j = li % 4u;
  let n = nTile + li;
  for (var i = 0u; i < MR; i++) {
    if (i < rows) {
      red[li] = acc[i];
      workgroupBarrier();
      if (li < BN && n < p.nEnd) {
        var s = 0.0;
        for (var x = 0u; x < KL; x++) { s += red[lane_slot(x, g)][j]; }
        var v = s * p.alpha;
        if (HAS_BIAS) {
          if (p.useBias != 0u) { v += bias_at(n); }
        }
        let ci = (p.m0 + i) * p.ldc + n + p.cAdj;
        if (p.accumulate != 0u) { v += C[ci]; }
        C[ci] = v;
      }
      workgroupBarrier();
    }
  }
}
