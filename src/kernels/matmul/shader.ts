/**
 * The WGSL of a matmul variant: a generated prelude (tile consts, flags, the bindings of the
 * variant and its loaders a1 / b1 / a2 / b2 / bias_at) + the uniform block (shaders/matmul_params.wgsl)
 * + the workgroup-tile kernels' per-element epilogue (shaders/matmul_epilogue.wgsl, tiled and wg)
 * + the dropout library + the body (shaders/matmul.wgsl, the tiled kernel; matmul_small.wgsl, the
 * small-M kernel; matmul_direct.wgsl, register blocks from direct loads; matmul_wg.wgsl, vec4
 * double-buffered workgroup tiles).
 * Loaders see global (row, col) positions of the stored operands; the *Adj uniforms turn them into
 * indices inside the binding windows.
 */
import dropoutSource from '../../../shaders/dropout.wgsl?raw';
import body from '../../../shaders/matmul.wgsl?raw';
import directBody from '../../../shaders/matmul_direct.wgsl?raw';
import wgBody from '../../../shaders/matmul_wg.wgsl?raw';
import epilogueSource from '../../../shaders/matmul_epilogue.wgsl?raw';
import paramsSource from '../../../shaders/matmul_params.wgsl?raw';
import smallBody from '../../../shaders/matmul_small.wgsl?raw';
import nf4Library from '../../../shaders/nf4.wgsl?raw';
import { type WeightDType, templateSections, weightArrayType, weightLoader, wgslModule } from '../common';
import { type OperandSpec, directPrelude, operandPrelude } from './direct';

/** Depth of one workgroup-memory stage of the tiled kernel. */
export const BK = 16;

export interface MatmulVariant {
  /**
   * The kernel: `tiled` (shaders/matmul.wgsl, workgroup-memory tiles bm x bn), `small` (the small-M
   * GEMV kernel, mr rows) or `direct` (shaders/matmul_direct.wgsl, tm x tn register blocks from
   * direct loads, wx x wy invocations) or `wg` (shaders/matmul_wg.wgsl: tm x tn per invocation,
   * wx x wy invocations, bk depths per double-buffered stage).
   */
  kernel: 'tiled' | 'small' | 'direct' | 'wg';
  bm: number;
  bn: number;
  tm?: number;
  tn?: number;
  wx?: number;
  wy?: number;
  bk?: number;
  /**
   * Direct kernel: whether the one-depth step for a depth range that is not a multiple of 4 is
   * compiled in (a K chunk of such a length, e.g. K % 4 != 0); absent: it is. Without it lavapipe
   * compiles the shader in about a third less time (25-45%).
   */
  kTail?: boolean;
  /** Direct and wg kernels: A / B read with vector loads (4-aligned strides, offsets and windows). */
  vecA?: boolean;
  vecB?: boolean;
  transA: boolean;
  transB: boolean;
  /**
   * B's elements: f32, f16 / bf16 (packed two per u32), or 'nf4', a 4-bit NF4 weight bound as its
   * packed indices NF4W and statistics NF4S and dequantized by the loader (shaders/nf4.wgsl; the
   * statistics' section offsets are the uniforms nf4Abs / nf4Abs2).
   */
  bType: WeightDType | 'nf4';
  /** With bType 'nf4': double-quantized absmax values (bnb_4bit_use_double_quant). */
  nf4DoubleQuant?: boolean;
  seg2: null | { transA: boolean; transB: boolean };
  bias: WeightDType | null;
  dropA: boolean;
  dropB: boolean;
  outDrop: boolean;
  /**
   * Rows of the small-M kernel (shaders/matmul_small.wgsl: 1, 2, 4 or 8; bm and bn are then
   * ignored), or absent for the tiled kernel.
   */
  mr?: number;
  /**
   * Small-M kernel only: a 16-bit Bᵀ whose rows start on a u32 word (even ldb and offset), read one
   * packed word (two depths) per load.
   */
  pairs?: boolean;
  /**
   * Small-M kernel with Bᵀ only: the depth lanes of a column group are one aligned run of this
   * many subgroup lanes (Gpu.features.subgroupLanes) and are summed with shuffles instead of
   * workgroup memory. 0 or absent: the workgroup-memory reduction (16 lanes).
   */
  sg?: number;
  /**
   * shader-f16 with an f16 B (or bias): bound as array<f16> and read natively instead of unpacking
   * u32 words. f16 widens to f32 exactly, so results are bit-identical to the packed-u32 path;
   * arithmetic stays f32 (f16 math would change training numerics).
   */
  f16?: boolean;
}

/** Columns per workgroup of the small-M kernel: KL depth lanes x CG groups of 4 columns = 256 invocations. */
export function smallBn(sg: number | undefined): number {
  return (4 * 256) / (sg || 16);
}

/** The generated prelude: constants, bindings and loaders of one variant. */
function prelude(v: MatmulVariant): string[] {
  const L: string[] = [];
  const b = (x: boolean) => (x ? 'true' : 'false');
  const nativeB = !!v.f16 && v.bType === 'f16';
  const nativeBias = !!v.f16 && v.bias === 'f16';
  if (v.mr) {
    const kl = v.sg || 16;
    L.push(
      `const MR = ${v.mr}u;`,
      `const BN = ${smallBn(v.sg)}u;`,
      `const KL = ${kl}u;`,
      `const CG = ${256 / kl}u;`,
      'const NT = 256u;',
    );
    L.push(`const SUBGROUP = ${b(!!v.sg)};`);
    // The value of lane (this lane xor o) of the subgroup; unused (and no extension needed) without SUBGROUP.
    L.push(`fn lane_xor(v: vec4<f32>, o: u32) -> vec4<f32> { return ${v.sg ? 'subgroupShuffleXor(v, o)' : 'v'}; }`);
  } else {
    L.push(`const BM = ${v.bm}u;`, `const BN = ${v.bn}u;`, `const BK = ${BK}u;`);
    L.push(`const WX = ${v.bn / 4}u;`, `const WY = ${v.bm / 4}u;`, `const NT = ${(v.bm / 4) * (v.bn / 4)}u;`);
  }
  L.push(`const TRANS_A = ${b(v.transA)};`, `const TRANS_B = ${b(v.transB)};`);
  L.push(`const HAS_SEG2 = ${b(!!v.seg2)};`, `const HAS_BIAS = ${b(!!v.bias)};`, `const OUT_DROP = ${b(v.outDrop)};`);
  let slot = 1;
  const bOpts = { typedF32: true, nativeF16: nativeB };
  L.push(`@group(0) @binding(${slot++}) var<storage, read> A: array<f32>;`);
  if (v.bType === 'nf4') {
    L.push(`const NF4_DQ = ${b(!!v.nf4DoubleQuant)};`);
    L.push(`@group(0) @binding(${slot++}) var<storage, read> NF4W: array<u32>;`);
    L.push(`@group(0) @binding(${slot++}) var<storage, read> NF4S: array<u32>;`);
  } else L.push(`@group(0) @binding(${slot++}) var<storage, read> B: ${weightArrayType(v.bType, bOpts)};`);
  if (v.seg2) {
    L.push(`@group(0) @binding(${slot++}) var<storage, read> A2: array<f32>;`);
    L.push(`@group(0) @binding(${slot++}) var<storage, read> B2: array<f32>;`);
  }
  const biasOpts = { typedF32: true, nativeF16: nativeBias };
  if (v.bias) L.push(`@group(0) @binding(${slot++}) var<storage, read> BIAS: ${weightArrayType(v.bias, biasOpts)};`);
  L.push(`@group(0) @binding(${slot}) var<storage, read_write> C: array<f32>;`);

  // Segment 1 loaders; (row, col) is the stored position, used by the dropout mask.
  L.push(
    v.bType === 'nf4'
      ? 'fn load_b(i: u32) -> f32 { return nf4_load(i, p.nf4Abs, p.nf4Abs2); }'
      : weightLoader('load_b', 'B', v.bType, bOpts),
  );
  const aRow = v.transA ? 'k' : 'm';
  const aCol = v.transA ? 'm' : 'k';
  let aExpr = `A[${aRow} * p.lda + ${aCol} + p.aAdj]`;
  if (v.dropA) aExpr += ` * dropout_mul(p.seedIn, p.thrIn, p.scaleIn, ${aRow}, ${aCol})`;
  L.push(`fn a1(m: u32, k: u32) -> f32 { return ${aExpr}; }`);
  const bRow = v.transB ? 'n' : 'k';
  const bCol = v.transB ? 'k' : 'n';
  let bExpr = `load_b(${bRow} * p.ldb + ${bCol} + p.bAdj)`;
  if (v.dropB) bExpr += ` * dropout_mul(p.seedIn, p.thrIn, p.scaleIn, ${bRow}, ${bCol})`;
  L.push(`fn b1(k: u32, n: u32) -> f32 { return ${bExpr}; }`);
  if (v.seg2) {
    const a2 = v.seg2.transA ? 'A2[k * p.lda2 + m + p.a2Adj]' : 'A2[m * p.lda2 + k + p.a2Adj]';
    const b2 = v.seg2.transB ? 'B2[n * p.ldb2 + k + p.b2Adj]' : 'B2[k * p.ldb2 + n + p.b2Adj]';
    L.push(`fn a2(m: u32, k: u32) -> f32 { return ${a2}; }`);
    L.push(`fn b2(k: u32, n: u32) -> f32 { return p.alpha2 * ${b2}; }`);
  } else {
    L.push(`fn a2(m: u32, k: u32) -> f32 { return 0.0; }`, `fn b2(k: u32, n: u32) -> f32 { return 0.0; }`);
  }
  L.push(`const PAIRED = ${b(!!v.pairs)};`);
  if (v.pairs && nativeB) {
    L.push(
      'fn b1pair(k: u32, n: u32) -> vec2<f32> { let i = n * p.ldb + k + p.bAdj; return vec2<f32>(f32(B[i]), f32(B[i + 1u])); }',
    );
  } else if (v.pairs) {
    const widen2 =
      v.bType === 'f16' ? 'unpack2x16float(w)' : 'vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u))';
    L.push(`fn b1pair(k: u32, n: u32) -> vec2<f32> { let w = B[(n * p.ldb + k + p.bAdj) >> 1u]; return ${widen2}; }`);
  } else {
    L.push('fn b1pair(k: u32, n: u32) -> vec2<f32> { return vec2<f32>(0.0); }');
  }
  if (v.bias) {
    L.push(weightLoader('load_bias', 'BIAS', v.bias, biasOpts));
    L.push('fn bias_at(n: u32) -> f32 { return load_bias(n + p.biasAdj); }');
  } else L.push(`fn bias_at(n: u32) -> f32 { return 0.0; }`);
  return L;
}

/**
 * The prelude of a direct or wg variant: the operand bindings and loaders of
 * src/kernels/matmul/direct.ts, and the direct kernel's unrolled block or the wg kernel's constants.
 * Segment 2's layout, the bias' dtype and (direct) the output dropout are uniforms there: the
 * variant's seg2 says only that A2 / B2 are bound, its bias that one is bound, 'f16' when an f16
 * bias' widening is compiled in.
 */
function blockVariantPrelude(v: MatmulVariant): string[] {
  const ops: OperandSpec = {
    transA: v.transA,
    transB: v.transB,
    bType: v.bType,
    nf4DoubleQuant: v.nf4DoubleQuant,
    vecA: !!v.vecA,
    vecB: !!v.vecB,
    dropA: v.dropA,
    dropB: v.dropB,
    seg2: !!v.seg2,
    bias: !!v.bias,
    biasF16: v.bias === 'f16',
    nativeB: !!v.f16 && v.bType === 'f16',
  };
  if (v.kernel !== 'wg') {
    return directPrelude({ ...ops, tm: v.tm!, tn: v.tn!, wx: v.wx!, wy: v.wy!, kTail: v.kTail ?? true });
  }
  const [tm, tn, wx, wy, bk] = [v.tm!, v.tn!, v.wx!, v.wy!, v.bk!];
  const nt = wx * wy;
  const b = (x: boolean) => (x ? 'true' : 'false');
  return [
    `const BM = ${wy * tm}u;`,
    `const BN = ${wx * tn}u;`,
    `const BK = ${bk}u;`,
    `const TM = ${tm}u;`,
    `const TN = ${tn}u;`,
    `const WX = ${wx}u;`,
    `const WY = ${wy}u;`,
    `const NT = ${nt}u;`,
    `const LA = ${(wy * tm * bk) / (4 * nt)}u;`,
    `const LB = ${(bk * wx * tn) / (4 * nt)}u;`,
    `const TRANS_A = ${b(v.transA)};`,
    `const TRANS_B = ${b(v.transB)};`,
    `const OUT_DROP = ${b(v.outDrop)};`,
    ...operandPrelude(ops),
  ];
}

/** The full WGSL of a matmul variant (exported for compile checks in tests). */
export function matmulShader(v: MatmulVariant): string {
  const enable: string[] = [];
  if (v.f16 && (v.bType === 'f16' || v.bias === 'f16')) enable.push('f16');
  if (v.sg) enable.push('subgroups');
  return wgslModule({
    source: { direct: directBody, wg: wgBody, small: smallBody, tiled: body }[v.kernel],
    prelude: v.kernel === 'direct' || v.kernel === 'wg' ? blockVariantPrelude(v) : prelude(v),
    enable,
    libs: [
      paramsSource,
      ...(v.kernel === 'tiled' || v.kernel === 'wg' ? [epilogueSource] : []),
      templateSections(dropoutSource).common,
      ...(v.bType === 'nf4' ? [nf4Library] : []),
    ],
    describe: JSON.stringify(v),
  });
}

function kernelName(v: MatmulVariant): string {
  if (v.kernel === 'small') return `matmul_small${v.mr}${v.pairs ? 'p' : ''}${v.sg ? `_sg${v.sg}` : ''}`;
  if (v.kernel === 'wg') {
    return `matmul_wg${v.tm}x${v.tn}_wg${v.wx}x${v.wy}_bk${v.bk}${v.vecA ? '_va' : ''}${v.vecB ? '_vb' : ''}`;
  }
  if (v.kernel === 'direct') {
    const k4 = v.kTail === false ? '_k4' : '';
    return `matmul_direct${v.tm}x${v.tn}_wg${v.wx}x${v.wy}${v.vecA ? '_va' : ''}${v.vecB ? '_vb' : ''}${k4}`;
  }
  return `matmul_${v.bm}x${v.bn}`;
}

/** A name that identifies the variant completely (the pipeline label and its cache key). */
export function matmulVariantName(v: MatmulVariant): string {
  return (
    kernelName(v) +
    `_${v.transA ? 't' : 'n'}${v.transB ? 't' : 'n'}_${v.bType}${v.bType === 'nf4' && v.nf4DoubleQuant ? 'dq' : ''}` +
    (v.seg2 ? `_seg2${v.seg2.transA ? 't' : 'n'}${v.seg2.transB ? 't' : 'n'}` : '') +
    (v.bias ? `_bias${v.bias}` : '') +
    (v.dropA ? '_dropA' : '') +
    (v.dropB ? '_dropB' : '') +
    (v.outDrop ? '_dropOut' : '') +
    (v.f16 && (v.bType === 'f16' || v.bias === 'f16') ? '_nativef16' : '')
  );
}
