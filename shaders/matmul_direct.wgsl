// Register-blocked matmul with direct loads: no workgroup memory, no barriers. Each invocation
// computes a TM x TN block of C from operands it reads itself, 4 depths at a time, so every value
// loaded feeds TN (or TM) multiply-adds. Fast where workgroup memory and barriers are expensive and
// loads are not coalesced (CPU Vulkan drivers such as lavapipe); the same contract as
// shaders/matmul.wgsl:
//
//   C[m, n] = (accumulate ? C[m, n] : 0)
//           + alpha * ( sum_k  opA(A)[m, k]  * opB(B)[k, n]                       (segment 1)
//                     + drop_out(m, n) * alpha2 * sum_k2 opA2(A2)[m, k2] * opB2(B2)[k2, n] )   (segment 2)
//           + bias[n]
//
// src/kernels/matmul/direct.ts generates the prelude (the block is unrolled there, with constant
// register indices, so the accumulators stay in registers):
//   consts   TM, TN (block per invocation), WX x WY invocations, BM = WY*TM, BN = WX*TN,
//            HAS_SEG2, HAS_BIAS (whether A2 / B2 and the bias are bound).
//   bindings 0 uniform P (the layout of shaders/matmul.wgsl)
//            1 A  f32 as array<vec4<f32>>: opA(A) [M, K] stored [M, lda], or [K, lda] with TRANS_A
//            2 B  f32 as array<vec4<f32>>, f16 / bf16 as array<vec2<u32>> (4 halves per element;
//                 array<vec4<f16>> with shader-f16): opB(B) [K, N] stored [K, ldb], or [N, ldb]
//                 a 4-bit NF4 B is two bindings instead, NF4W (packed indices) and NF4S (statistics),
//                 read one element at a time through shaders/nf4.wgsl's nf4_load (as in matmul.wgsl)
//            then A2, B2 f32 (HAS_SEG2; its layout from the strides a2Sm / a2Sk / b2Sk / b2Sn),
//            BIAS as u32 words (HAS_BIAS; f32, f16 or bf16 by P.biasType), last C f32 [M, ldc]. The
//            LoRA layout, bias dtype and output dropout (P.outDrop) are uniforms, so one shader
//            serves all of them.
//   functions
//            init(mBase, nBase)  the block's rows and columns, clamped into [m0, mEnd) x [n0, nEnd)
//                                for loading (rows and columns past the end are computed, not stored);
//            step4(k)            depths k .. k+3 of segment 1 (vector loads along each operand's
//                                contiguous axis where strides, offsets and windows are 4-aligned;
//                                a vector that starts inside a row of the tensor ends inside its
//                                16-byte-rounded buffer, and its lanes past the end feed only
//                                outputs that are never stored);
//            step1(k)            one depth (the tail when the depth range is not a multiple of 4;
//                                empty in the variants whose K chunks all are: names with _k4);
//            seg2(k)             one depth of segment 2 (the LoRA rank), scalar loads;
//            out_drop()          multiplies the block (holding segment 2 alone) by the output dropout
//                                mask, before segment 1 is added to it;
//            store(z)            alpha, bias, accumulate, bounds; split-K slice z writes at z*cStrideZ.
// Grid: (ceil(nChunk / BN), ceil(mChunk / BM), split-K slices). Fused: 16-bit widening, operand
// dropout, the LoRA segment, alpha, bias and accumulate.

// The uniform block P and its binding: shaders/matmul_params.wgsl (shared by the matmul bodies).

@compute @workgroup_size(WX, WY)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let mBase = p.m0 + wid.y * BM + lid.y * TM;
  let nBase = p.n0 + wid.x * BN + lid.x * TN;
  if (mBase >= p.mEnd || nBase >= p.nEnd) { return; }
  init(mBase, nBase);
  if (HAS_SEG2) {
    // Segment 2 first, so the output dropout scales it alone.
    for (var k = 0u; k < p.k2; k++) { seg2(k); }
    if (p.outDrop != 0u && p.k2 > 0u) { out_drop(); }
  }
  let kLo = p.k0 + wid.z * p.kSplit;
  let kHi = min(p.kEnd, kLo + p.kSplit);
  if (kHi > kLo) {
    let k4 = kLo + ((kHi - kLo) & ~3u);
    // Trip counts the compiler cannot see: it does not unroll these loops (lavapipe's LLVM takes
    // seconds per fully unrolled variant), only the block inside.
    for (var k = kLo; k < k4; k += 4u) { step4(k); }
    for (var k = k4; k < kHi; k++) { step1(k); }
  }
  store(wid.z);
}
