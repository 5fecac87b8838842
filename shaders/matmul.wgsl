// Tiled, register-blocked matmul with an optional second K segment (the fused LoRA linear).
//
//   C[m, n] = (accumulate ? C[m, n] : 0)
//           + alpha * ( sum_k  opA(A)[m, k]  * opB(B)[k, n]                       (segment 1)
//                     + drop_out(m, n) * alpha2 * sum_k2 opA2(A2)[m, k2] * opB2(B2)[k2, n] )   (segment 2)
//           + bias[n]
//
// This file is the body of a template: src/kernels/matmul/shader.ts prepends a generated prelude
// (and the dropout library of shaders/dropout.wgsl) that bakes in the variant:
//   consts   BM, BN (workgroup tile edge, 16 or 64), BK = 16, WX = BN/4, WY = BM/4, NT = WX*WY
//            invocations (256 at 64x64), each owning a 4x4 block of C;
//            TRANS_A, TRANS_B, HAS_SEG2, HAS_BIAS, OUT_DROP.
//   bindings 0 uniform P (below)
//            1 A  f32 array, opA(A) is [M, K]: row-major [M, lda] (TRANS_A false) or [K, lda] (true)
//            2 B  f32, or f16 / bf16 packed two per u32 (with shader-f16, an f16 B is array<f16>),
//                 opB(B) is [K, N]: row-major [K, ldb]
//                 (TRANS_B false) or [N, ldb] (true, i.e. C = A·Bᵀ, the nn.Linear X·Wᵀ layout);
//                 or a 4-bit NF4 B (QLoRA's frozen weight): 2 NF4W packed indices, 3 NF4S statistics
//                 (shaders/nf4.wgsl; p.nf4Abs / p.nf4Abs2 locate its absmax sections), the bindings
//                 below shifted by one
//            3 A2 f32, 4 B2 f32 (only with HAS_SEG2; same conventions with lda2 / ldb2)
//            . bias f32 / f16 / bf16 [N] (only with HAS_BIAS)
//            last C f32 row-major [M, ldc] (read too when accumulate = 1)
//   loaders  a1(m,k), b1(k,n), a2(m,k), b2(k,n), bias_at(n): widen 16-bit B (f16 via
//            unpack2x16float, bf16 via bitcast of bits << 16), apply dropout to the stored element of
//            A or B when asked (mask of its stored (row, col)), and fold alpha2 into b2.
//
// Indices are global: rows [m0, mEnd), columns [n0, nEnd), segment-1 depth [k0, kEnd). A binding
// may be a window of its buffer (big weights are split into chunks bound with offsets); the
// *Adj uniforms convert a global element index into the window (u32 arithmetic wraps, so they
// carry negative offsets too). Split-K: workgroup z sums depth [k0 + z*kSplit, +kSplit) and writes
// its partial C at z*cStrideZ (reduced afterwards by shaders/splitk_reduce.wgsl, in a fixed order).
// Segment 2 (K2 extra columns, e.g. the LoRA rank) runs after segment 1 in the same K loop: for
// the forward Y = X·Wᵀ + b + s·S·Bᵀ it is [X | S]·[W | s·B]ᵀ. With OUT_DROP its sum is kept apart
// from segment 1's and multiplied by the dropout mask of the output element (dX through dropout).
// Fused: 16-bit widening or NF4 dequantization, operand dropout, the LoRA segment, alpha, bias and
// accumulate.

// The uniform block P and its binding: shaders/matmul_params.wgsl (shared by the matmul bodies).

// Tiles in workgroup memory, k-major: tileA[kk*BM + row], tileB[kk*BN + col].
// (BK*BM + BK*BN) * 4 bytes = 8 KiB at 64x64. Tiles stay f32 even for an f16 B read natively: an f16
// tile would need a conversion per use in the inner loop (measured 0.87x on lavapipe; conversions
// run at a fraction of the FMA rate on GPUs), while widening once at staging costs nothing there. Staging has one scalar load site per operand (lavapipe's
// LLVM compile time grows quickly with every inlined load site).
var<workgroup> tileA: array<f32, BK * BM>;
var<workgroup> tileB: array<f32, BK * BN>;

// Stages opA rows [mTile, mTile + BM) x depth [kBase, kBase + BK), zeros outside the bounds;
// segment 2 reads A2 instead.
fn stageA(li: u32, seg2: bool, mTile: u32, kBase: u32, kLim: u32) {
  for (var e = li; e < BK * BM; e += NT) {
    var kk: u32;
    var mm: u32;
    // Neighbouring invocations read neighbouring addresses of the stored layout.
    if (TRANS_A) { mm = e % BM; kk = e / BM; } else { kk = e % BK; mm = e / BK; }
    let k = kBase + kk;
    let m = mTile + mm;
    var v = 0.0;
    if (k < kLim && m < p.mEnd) {
      if (HAS_SEG2 && seg2) { v = a2(m, k); } else { v = a1(m, k); }
    }
    tileA[kk * BM + mm] = v;
  }
}

// Stages opB depth [kBase, kBase + BK) x columns [nTile, nTile + BN).
fn stageB(li: u32, seg2: bool, nTile: u32, kBase: u32, kLim: u32) {
  for (var e = li; e < BK * BN; e += NT) {
    var kk: u32;
    var nn: u32;
    if (TRANS_B) { kk = e % BK; nn = e / BK; } else { nn = e % BN; kk = e / BN; }
    let k = kBase + kk;
    let n = nTile + nn;
    var v = 0.0;
    if (k < kLim && n < p.nEnd) {
      if (HAS_SEG2 && seg2) { v = b2(k, n); } else { v = b1(k, n); }
    }
    tileB[kk * BN + nn] = v;
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

  // acc[i] holds row lid.y*4 + i, columns lid.x*4 .. +3. With OUT_DROP, segment 1's sums move to
  // acc1 when segment 2 starts, so acc then holds segment 2 alone.
  var acc: array<vec4<f32>, 4>;
  var acc1: array<vec4<f32>, 4>;
  let r0 = lid.y * 4u;
  let c0 = lid.x * 4u;

  for (var t = 0u; t < t1 + t2; t++) {
    let seg2 = t >= t1;
    var kBase = kLo + t * BK;
    var kLim = kHi;
    if (seg2) {
      kBase = (t - t1) * BK;
      kLim = p.k2;
    }
    if (OUT_DROP && t == t1) {
      acc1 = acc;
      acc = array<vec4<f32>, 4>();
    }
    stageA(li, seg2, mTile, kBase, kLim);
    stageB(li, seg2, nTile, kBase, kLim);
    workgroupBarrier();
    // A trip count the compiler cannot see keeps it from unrolling the loop fully, which made
    // lavapipe (LLVM) spend seconds compiling each variant (and runs no faster there); it also
    // skips the zero padding of a partial last tile.
    let kn = min(BK, kLim - kBase);
    for (var kk = 0u; kk < kn; kk++) {
      let ao = kk * BM + r0;
      let a = vec4<f32>(tileA[ao], tileA[ao + 1u], tileA[ao + 2u], tileA[ao + 3u]);
      let bo = kk * BN + c0;
      let b = vec4<f32>(tileB[bo], tileB[bo + 1u], tileB[bo + 2u], tileB[bo + 3u]);
      acc[0] += a.x * b;
      acc[1] += a.y * b;
      acc[2] += a.z * b;
      acc[3] += a.w * b;
    }
    workgroupBarrier();
  }
  if (OUT_DROP && t2 == 0u) {
    acc1 = acc;
    acc = array<vec4<f32>, 4>();
  }

  // Trip counts the compiler cannot see here too (as in the K loop); zero past the edges.
  let mb = mTile + r0;
  let nb = nTile + c0;
  let rows = select(0u, min(4u, p.mEnd - mb), mb < p.mEnd);
  let cols = select(0u, min(4u, p.nEnd - nb), nb < p.nEnd);
  for (var i = 0u; i < rows; i++) {
    let m = mb + i;
    for (var j = 0u; j < cols; j++) {
      store_c(m, nb + j, wid.z, acc[i][j], acc1[i][j]); // shaders/matmul_epilogue.wgsl
    }
  }
}
