/**
 * General matmul on the GPU (see shaders/matmul.wgsl for the kernel and its template prelude):
 *
 *   C[M, N] = (accumulate ? C : 0) + alpha * (opA(A)·opB(B) + alpha2 * drop_out ∘ opA2(A2)·opB2(B2)) + bias
 *
 * opA(A) is A [M, K] or, with transA, Aᵀ of A stored [K, M]; opB(B) is B [K, N] or, with transB,
 * Bᵀ of B stored [N, K] (so X·Wᵀ for an nn.Linear weight is `transB: true`). A is f32; B (the
 * weight) may be f32, f16 or bf16 (packed two per u32, widened in the loader); C is f32.
 *
 * The optional `extra` segment adds r more columns to the same K loop (the fused LoRA linear). A
 * dropout mask may be applied to segment 1's A or B operand as it is loaded, and to segment 2's
 * contribution per output element. Split-K (deterministic two-pass) serves reductions over a long
 * K with a small output (dA, dB over the tokens).
 *
 * Operands larger than maxStorageBufferBindingSize are split into chunks bound as windows of their
 * buffer (offsets aligned to minStorageBufferOffsetAlignment): M chunks (A rows unless transA, C
 * rows; a single C row too long for a binding is split along N), N chunks (B rows when transB, e.g. a big LM head) and K chunks (B rows unless transB, A
 * rows with transA; later K chunks accumulate).
 */
import dropoutLib from '../../shaders/dropout.wgsl?raw';
import loraCode from '../../shaders/lora.wgsl?raw';
import body from '../../shaders/matmul.wgsl?raw';
import smallBody from '../../shaders/matmul_small.wgsl?raw';
import { type Binding, type Gpu, type Recorder, params } from '../gpu/context';
import { GpuError, GpuLimitError } from '../gpu/errors';
import type { DType, Tensor } from '../gpu/tensor';
import type { Workspace } from '../gpu/workspace';
import { dropoutThreshold } from '../reference/dropout';

export type WeightDType = 'f32' | 'f16' | 'bf16';

/** Dropout with probability p, mask = hash(seed, row, col) (src/reference/dropout.ts). */
export interface DropoutSpec {
  seed: number;
  p: number;
}

/** A second K segment in the same accumulation (all f32; bound in windows that follow the M and N chunks). */
export interface MatmulExtra {
  a: Tensor; // opA2(A2) is [M, K]: stored [M, lda2] or [K, lda2] with transA
  b: Tensor; // opB2(B2) is [K, N]: stored [K, ldb2] or [N, ldb2] with transB
  K: number;
  transA?: boolean;
  transB?: boolean;
  lda?: number;
  ldb?: number;
  /** Scale of this segment relative to segment 1 (default 1). */
  alpha?: number;
  /** Multiply this segment's contribution to C[m, n] by the dropout mask of (m, n). */
  dropoutOut?: DropoutSpec | null;
}

export interface MatmulArgs {
  a: Tensor; // f32
  b: Tensor; // f32 | f16 | bf16
  c: Tensor; // f32 [M, ldc]
  M: number;
  N: number;
  K: number;
  transA?: boolean;
  transB?: boolean;
  bias?: Tensor | null; // f32 | f16 | bf16 [N]
  alpha?: number;
  accumulate?: boolean;
  /** Row strides of the stored operands in elements (default: dense). */
  lda?: number;
  ldb?: number;
  ldc?: number;
  /** Element offsets of the operands' first element inside their buffers (default 0). */
  aOffset?: number;
  bOffset?: number;
  cOffset?: number;
  /** Second K segment (fused LoRA). */
  extra?: MatmulExtra | null;
  /** Dropout of segment 1's A operand (mask over A's stored (row, col)). */
  dropoutA?: DropoutSpec | null;
  /** Dropout of segment 1's B operand (f32 B only; mask over B's stored (row, col)). */
  dropoutB?: DropoutSpec | null;
  /** Split the K loop into this many slices summed by a second pass (needs `ws`; default 1). */
  splitK?: number;
  ws?: Workspace;
  /** Lower the per-binding byte limit (tests of the chunked path); never raises it. */
  maxBindingBytes?: number;
}

const BK = 16;

export interface MatmulVariant {
  bm: number;
  bn: number;
  transA: boolean;
  transB: boolean;
  bType: WeightDType;
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

/** Largest M served by the small-M (GEMV-style) kernel. */
export const SMALL_M = 8;
/** Columns per workgroup of the small-M kernel: KL depth lanes x CG groups of 4 columns = 256 invocations. */
function smallBn(sg: number | undefined): number {
  return (4 * 256) / (sg || 16);
}

/** Rows baked into the small-M kernel for M rows: the next of 1, 2, 4, 8 (few variants to compile). */
function smallRows(m: number): number {
  return m <= 1 ? 1 : m <= 2 ? 2 : m <= 4 ? 4 : 8;
}

/** Workgroup tile edge: 16 for skinny dimensions (the LoRA rank), else 64 (few variants to compile). */
function tileFor(n: number): number {
  return n <= 16 ? 16 : 64;
}

function weightType(t: Tensor, what: string): WeightDType {
  if (t.dtype === 'f32' || t.dtype === 'f16' || t.dtype === 'bf16') return t.dtype;
  throw new GpuError(`matmul: ${what} "${t.label}" has dtype ${t.dtype}; expected f32, f16 or bf16.`);
}

/** WGSL of an element read from a storage array `name` at local element index `idx`. */
function elementRead(name: string, dtype: WeightDType, idx: string, nativeF16 = false): string {
  if (dtype === 'f32') return `${name}[${idx}]`;
  if (nativeF16 && dtype === 'f16') return `f32(${name}[${idx}])`;
  const fn = dtype === 'f16' ? 'widen_f16' : 'widen_bf16';
  return `${fn}(${name}[(${idx}) >> 1u], ((${idx}) & 1u) == 1u)`;
}

/** The generated prelude: constants, bindings and loaders of one variant. */
function prelude(v: MatmulVariant): string {
  const L: string[] = [];
  const b = (x: boolean) => (x ? 'true' : 'false');
  const nativeF16 = !!v.f16 && v.bType === 'f16';
  const nativeBias = !!v.f16 && v.bias === 'f16';
  if (nativeF16 || nativeBias) L.push('enable f16;');
  if (v.sg) L.push('enable subgroups;');
  L.push(`// ---- generated prelude: ${JSON.stringify(v)}`);
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
  L.push(`fn widen_f16(w: u32, hi: bool) -> f32 { let v = unpack2x16float(w); return select(v.x, v.y, hi); }`);
  L.push(`fn widen_bf16(w: u32, hi: bool) -> f32 { return bitcast<f32>(select(w << 16u, w & 0xffff0000u, hi)); }`);
  let slot = 1;
  const arr = (t: WeightDType) => (t === 'f32' ? 'array<f32>' : 'array<u32>');
  L.push(`@group(0) @binding(${slot++}) var<storage, read> A: array<f32>;`);
  L.push(`@group(0) @binding(${slot++}) var<storage, read> B: ${nativeF16 ? 'array<f16>' : arr(v.bType)};`);
  if (v.seg2) {
    L.push(`@group(0) @binding(${slot++}) var<storage, read> A2: array<f32>;`);
    L.push(`@group(0) @binding(${slot++}) var<storage, read> B2: array<f32>;`);
  }
  if (v.bias)
    L.push(`@group(0) @binding(${slot++}) var<storage, read> BIAS: ${nativeBias ? 'array<f16>' : arr(v.bias)};`);
  L.push(`@group(0) @binding(${slot}) var<storage, read_write> C: array<f32>;`);

  // Segment 1 loaders; (row, col) is the stored position, used by the dropout mask.
  const aRow = v.transA ? 'k' : 'm';
  const aCol = v.transA ? 'm' : 'k';
  let aExpr = `A[${aRow} * p.lda + ${aCol} + p.aAdj]`;
  if (v.dropA) aExpr += ` * dropout_mul(p.seedIn, p.thrIn, p.scaleIn, ${aRow}, ${aCol})`;
  L.push(`fn a1(m: u32, k: u32) -> f32 { return ${aExpr}; }`);
  const bRow = v.transB ? 'n' : 'k';
  const bCol = v.transB ? 'k' : 'n';
  let bExpr = elementRead('B', v.bType, `${bRow} * p.ldb + ${bCol} + p.bAdj`, nativeF16);
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
  if (v.pairs && nativeF16) {
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
  if (v.bias)
    L.push(`fn bias_at(n: u32) -> f32 { return ${elementRead('BIAS', v.bias, 'n + p.biasAdj', nativeBias)}; }`);
  else L.push(`fn bias_at(n: u32) -> f32 { return 0.0; }`);
  L.push('// ---- end of prelude', '');
  return L.join('\n');
}

/** The full WGSL of a matmul variant (exported for compile checks in tests). */
export function matmulShader(v: MatmulVariant): string {
  return `${prelude(v)}\n${dropoutLib}\n${v.mr ? smallBody : body}`;
}

function variantName(v: MatmulVariant): string {
  return (
    (v.mr ? `matmul_small${v.mr}${v.pairs ? 'p' : ''}${v.sg ? `_sg${v.sg}` : ''}` : `matmul_${v.bm}x${v.bn}`) +
    `_${v.transA ? 't' : 'n'}${v.transB ? 't' : 'n'}_${v.bType}` +
    (v.seg2 ? `_seg2${v.seg2.transA ? 't' : 'n'}${v.seg2.transB ? 't' : 'n'}` : '') +
    (v.bias ? `_bias${v.bias}` : '') +
    (v.dropA ? '_dropA' : '') +
    (v.dropB ? '_dropB' : '') +
    (v.outDrop ? '_dropOut' : '') +
    (v.f16 && (v.bType === 'f16' || v.bias === 'f16') ? '_nativef16' : '')
  );
}

/** Generated sources by variant name, so a step's hundreds of calls reuse one string each. */
const sources = new Map<string, string>();

function pipelineFor(gpu: Gpu, v: MatmulVariant): GPUComputePipeline {
  const name = variantName(v);
  let code = sources.get(name);
  if (!code) {
    code = matmulShader(v);
    sources.set(name, code);
  }
  return gpu.pipeline(name, code);
}

const loraModule = `${dropoutLib}\n${loraCode}`;

// ------------------------------------------------------------------ binding windows

interface Window {
  binding: Binding;
  /** Added (mod 2^32) to a global element index to get the index inside the binding. */
  adj: number;
}

function elemBytes(d: DType): number {
  return d === 'f16' || d === 'bf16' ? 2 : 4;
}

/**
 * Binds elements [lo, hi) of `t` as a window of its buffer (start aligned down to `align`,
 * size rounded up to 4 bytes). Binds the whole buffer when that fits.
 */
function windowOf(t: Tensor, lo: number, hi: number, limit: number, align: number, what: string): Window {
  const eb = elemBytes(t.dtype);
  if (t.buffer.size <= limit) return { binding: t, adj: 0 };
  if (hi <= lo) return { binding: { buffer: t.buffer, offset: 0, size: Math.min(t.buffer.size, align) }, adj: 0 };
  const start = Math.floor((lo * eb) / align) * align;
  const end = Math.min(t.buffer.size, Math.ceil((hi * eb) / 4) * 4);
  if (end - start > limit) {
    throw new GpuLimitError(
      `matmul: ${what} "${t.label}" needs a ${end - start}-byte binding for one chunk; the limit is ${limit} bytes.`,
    );
  }
  return { binding: { buffer: t.buffer, offset: start, size: end - start }, adj: (0 - start / eb) >>> 0 };
}

/** Splits [0, total) into chunks of at most `max` (rounded down to a multiple of `tile` when possible). */
function chunks(total: number, max: number, tile: number): [number, number][] {
  if (total <= max) return [[0, total]];
  const size = max >= tile ? Math.floor(max / tile) * tile : max;
  const out: [number, number][] = [];
  for (let s = 0; s < total; s += size) out.push([s, Math.min(size, total - s)]);
  return out;
}

function checkFits(t: Tensor, elems: number, what: string): void {
  const need = elems * elemBytes(t.dtype);
  if (t.buffer.size < need) {
    throw new GpuError(`matmul: ${what} "${t.label}" has ${t.buffer.size} bytes; the shapes need ${need}.`);
  }
}

function dropWords(d: DropoutSpec | null | undefined): [number, number, { f: number }] {
  if (!d || d.p === 0) return [0, 0, { f: 1 }];
  return [d.seed >>> 0, dropoutThreshold(d.p), { f: 1 / (1 - d.p) }];
}

// ------------------------------------------------------------------ recordMatmul

/** Records C = alpha·opA(A)·opB(B) (+ extra segment) + bias (+ C). See the file comment. */
export function recordMatmul(gpu: Gpu, rec: Recorder, a: MatmulArgs): void {
  const { M, N, K } = a;
  for (const [k, v] of [
    ['M', M],
    ['N', N],
    ['K', K],
  ] as const) {
    if (!Number.isInteger(v) || v < 0) throw new GpuError(`matmul: ${k} must be a non-negative integer, got ${v}.`);
  }
  if (M === 0 || N === 0) return;
  const transA = !!a.transA;
  const transB = !!a.transB;
  if (a.a.dtype !== 'f32') throw new GpuError(`matmul: A "${a.a.label}" must be f32, got ${a.a.dtype}.`);
  if (a.c.dtype !== 'f32') throw new GpuError(`matmul: C "${a.c.label}" must be f32, got ${a.c.dtype}.`);
  const bType = weightType(a.b, 'B');
  const biasType = a.bias ? weightType(a.bias, 'bias') : null;
  if (a.dropoutB && a.dropoutB.p > 0 && bType !== 'f32') throw new GpuError('matmul: dropout of B needs an f32 B.');
  const dropA = !!a.dropoutA && a.dropoutA.p > 0;
  const dropB = !!a.dropoutB && a.dropoutB.p > 0;
  if (dropA && dropB) throw new GpuError('matmul: dropout on both A and B is not supported.');
  const lda = a.lda ?? (transA ? M : K);
  const ldb = a.ldb ?? (transB ? K : N);
  const ldc = a.ldc ?? N;
  const aOff = a.aOffset ?? 0;
  const bOff = a.bOffset ?? 0;
  const cOff = a.cOffset ?? 0;
  if (K > 0) {
    checkFits(a.a, aOff + (transA ? (K - 1) * lda + M : (M - 1) * lda + K), 'A');
    checkFits(a.b, bOff + (transB ? (N - 1) * ldb + K : (K - 1) * ldb + N), 'B');
  }
  checkFits(a.c, cOff + (M - 1) * ldc + N, 'C');
  if (a.bias) checkFits(a.bias, N, 'bias');

  const ex = a.extra && a.extra.K > 0 ? a.extra : null;
  let ex2: { lda: number; ldb: number; transA: boolean; transB: boolean } | null = null;
  if (ex) {
    if (ex.a.dtype !== 'f32' || ex.b.dtype !== 'f32') throw new GpuError('matmul: the extra segment must be f32.');
    const t2a = !!ex.transA;
    const t2b = !!ex.transB;
    ex2 = { transA: t2a, transB: t2b, lda: ex.lda ?? (t2a ? M : ex.K), ldb: ex.ldb ?? (t2b ? ex.K : N) };
    checkFits(ex.a, t2a ? (ex.K - 1) * ex2.lda + M : (M - 1) * ex2.lda + ex.K, 'extra A');
    checkFits(ex.b, t2b ? (N - 1) * ex2.ldb + ex.K : (ex.K - 1) * ex2.ldb + N, 'extra B');
  }
  const outDrop = !!ex?.dropoutOut && ex.dropoutOut.p > 0;

  const deviceLimit = gpu.limits.maxStorageBufferBindingSize;
  const limit = Math.min(deviceLimit, a.maxBindingBytes ?? deviceLimit);
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  if (a.bias) {
    const t = a.bias;
    if (t.buffer.size > limit) {
      throw new GpuLimitError(`matmul: "${t.label}" (${t.buffer.size} bytes) must fit one binding (${limit} bytes).`);
    }
  }

  const bm = tileFor(M);
  const bn = tileFor(N);
  const variant: MatmulVariant = {
    bm,
    bn,
    transA,
    transB,
    bType,
    seg2: ex2 ? { transA: ex2.transA, transB: ex2.transB } : null,
    bias: biasType,
    dropA,
    dropB,
    outDrop,
    f16: gpu.features.f16 && (bType === 'f16' || biasType === 'f16'),
  };

  // Chunk sizes so that every window fits the binding limit (with room for the aligned start).
  const budget = limit - align - 4;
  const rowsFit = (ld: number, eb: number) => Math.floor(budget / Math.max(1, ld * eb));
  const big = (t: Tensor) => t.buffer.size > limit;
  let mMax = M;
  let nMax = N;
  let kMax = Math.max(K, 1);
  if (big(a.a)) {
    if (transA) kMax = Math.min(kMax, rowsFit(lda, 4));
    else mMax = Math.min(mMax, rowsFit(lda, 4));
  }
  if (big(a.b)) {
    if (transB) nMax = Math.min(nMax, rowsFit(ldb, elemBytes(bType)));
    else kMax = Math.min(kMax, rowsFit(ldb, elemBytes(bType)));
  }
  if (big(a.c)) {
    // Whole rows of C when one fits; else one row at a time, split along N (e.g. the [1, V] logits).
    const r = rowsFit(ldc, 4);
    if (r >= 1) mMax = Math.min(mMax, r);
    else {
      mMax = 1;
      nMax = Math.min(nMax, Math.floor(budget / 4));
    }
  }
  // The extra segment is chunked along with M and N where its rows follow them.
  if (ex && ex2 && big(ex.a) && !ex2.transA) mMax = Math.min(mMax, rowsFit(ex2.lda, 4));
  if (ex && ex2 && big(ex.b) && ex2.transB) nMax = Math.min(nMax, rowsFit(ex2.ldb, 4));
  if (mMax < 1 || nMax < 1 || kMax < 1) {
    throw new GpuLimitError(
      `matmul [${M}x${K}]·[${K}x${N}]: one row of an operand exceeds the ${limit}-byte binding limit; ` +
        'this layout cannot be split into chunks.',
    );
  }
  const mChunks = chunks(M, mMax, bm);
  const nChunks = chunks(N, nMax, bn);
  const kChunks = K === 0 ? ([[0, 0]] as [number, number][]) : chunks(K, kMax, BK);
  const single = mChunks.length === 1 && nChunks.length === 1 && kChunks.length === 1;

  // Split-K only for a single chunk with no bias, and while the partials fit one binding.
  let splits = Math.max(1, Math.floor(a.splitK ?? 1));
  const anyBig = big(a.a) || big(a.b) || big(a.c);
  if (splits > 1 && (!single || anyBig || a.bias || ex || !a.ws || K < 2 * BK)) splits = 1;
  let kSplit = K;
  if (splits > 1) {
    kSplit = Math.ceil(Math.ceil(K / splits) / BK) * BK;
    splits = Math.ceil(K / kSplit);
    if (splits * M * N * 4 > limit) splits = 1;
    if (splits === 1) kSplit = K;
  }

  // M <= SMALL_M (generation's one token): the GEMV-style kernel, all rows in one workgroup.
  const small = splits === 1 && M <= SMALL_M;
  if (small) {
    variant.mr = smallRows(M);
    // Window starts are aligned to >= 4 bytes and K chunks are multiples of BK, so the parity of
    // a row's first element is that of ldb and bOffset.
    variant.pairs = transB && bType !== 'f32' && !dropB && ldb % 2 === 0 && bOff % 2 === 0;
    const lanes = gpu.features.subgroupLanes;
    if (transB && lanes >= 4) variant.sg = Math.min(lanes, 32);
  }
  const pipe = pipelineFor(gpu, variant);
  const gridY = (mc: number) => (small ? 1 : Math.ceil(mc / bm));
  const gridX = (nc: number) => Math.ceil(nc / (small ? smallBn(variant.sg) : bn));

  const [seedIn, thrIn, scaleIn] = dropWords(dropA ? a.dropoutA : dropB ? a.dropoutB : null);
  const [seedOut, thrOut, scaleOut] = dropWords(outDrop ? ex?.dropoutOut : null);
  const alpha = a.alpha ?? 1;
  const alpha2 = ex?.alpha ?? 1;

  if (splits > 1) {
    const part = a.ws!.get('matmul.partials', [splits, M, N]);
    const bindings: Binding[] = [a.a, a.b, part];
    const u = params(
      M,
      N,
      0,
      K,
      0,
      0,
      kSplit,
      0,
      lda,
      ldb,
      N,
      M * N,
      aOff >>> 0,
      bOff >>> 0,
      0,
      0,
      ex2?.lda ?? 0,
      ex2?.ldb ?? 0,
      0,
      0,
      { f: alpha },
      { f: alpha2 },
      0,
      0,
      seedIn,
      thrIn,
      scaleIn,
      seedOut,
      thrOut,
      scaleOut,
      0,
      0,
    );
    rec.dispatch(pipe, bindings, [Math.ceil(N / bn), Math.ceil(M / bm), splits], u);
    recordReducePartials(gpu, rec, {
      part,
      out: a.c,
      rows: M,
      cols: N,
      ldc,
      cOffset: cOff,
      splits,
      accumulate: !!a.accumulate,
    });
    return;
  }

  for (const [m0, mc] of mChunks) {
    for (const [n0, nc] of nChunks) {
      kChunks.forEach(([k0, kc], ki) => {
        const first = ki === 0;
        const aLo = aOff + (transA ? k0 * lda + m0 : m0 * lda + k0);
        const aHi = aOff + (transA ? (k0 + kc - 1) * lda + m0 + mc : (m0 + mc - 1) * lda + k0 + kc);
        const bLo = bOff + (transB ? n0 * ldb + k0 : k0 * ldb + n0);
        const bHi = bOff + (transB ? (n0 + nc - 1) * ldb + k0 + kc : (k0 + kc - 1) * ldb + n0 + nc);
        const cLo = cOff + m0 * ldc + n0;
        const cHi = cOff + (m0 + mc - 1) * ldc + n0 + nc;
        const wa = windowOf(a.a, aLo, kc > 0 ? aHi : aLo, limit, align, 'A');
        const wb = windowOf(a.b, bLo, kc > 0 ? bHi : bLo, limit, align, 'B');
        const wc = windowOf(a.c, cLo, cHi, limit, align, 'C');
        const bindings: Binding[] = [wa.binding, wb.binding];
        let a2Adj = 0;
        let b2Adj = 0;
        if (ex && ex2) {
          const K2 = ex.K;
          const t2a = ex2.transA;
          const t2b = ex2.transB;
          const wa2 = t2a
            ? windowOf(ex.a, m0, (K2 - 1) * ex2.lda + m0 + mc, limit, align, 'extra A')
            : windowOf(ex.a, m0 * ex2.lda, (m0 + mc - 1) * ex2.lda + K2, limit, align, 'extra A');
          const wb2 = t2b
            ? windowOf(ex.b, n0 * ex2.ldb, (n0 + nc - 1) * ex2.ldb + K2, limit, align, 'extra B')
            : windowOf(ex.b, n0, (K2 - 1) * ex2.ldb + n0 + nc, limit, align, 'extra B');
          bindings.push(wa2.binding, wb2.binding);
          a2Adj = wa2.adj;
          b2Adj = wb2.adj;
        }
        if (a.bias) bindings.push(a.bias);
        bindings.push(wc.binding);
        const u = params(
          m0 + mc,
          n0 + nc,
          k0,
          k0 + kc,
          m0,
          n0,
          Math.max(kc, 1),
          first && ex ? ex.K : 0,
          lda,
          ldb,
          ldc,
          0,
          (aOff + wa.adj) >>> 0,
          (bOff + wb.adj) >>> 0,
          (cOff + wc.adj) >>> 0,
          first ? (a.accumulate ? 1 : 0) : 1,
          ex2?.lda ?? 0,
          ex2?.ldb ?? 0,
          a2Adj,
          b2Adj,
          { f: alpha },
          { f: alpha2 },
          first && a.bias ? 1 : 0,
          0,
          seedIn,
          thrIn,
          scaleIn,
          seedOut,
          thrOut,
          scaleOut,
          0,
          0,
        );
        rec.dispatch(pipe, bindings, [gridX(nc), gridY(mc), 1], u);
      });
    }
  }
}

// ------------------------------------------------------------------ reduction and dropout

export interface ReducePartialsArgs {
  part: Tensor; // f32 [splits, rows, cols]
  out: Tensor; // f32, element (row, col) at cOffset + row*ldc + col
  rows: number;
  cols: number;
  ldc?: number;
  cOffset?: number;
  splits: number;
  accumulate?: boolean;
}

/** out (+)= sum over the splits in a fixed order (deterministic; shaders/lora.wgsl). */
export function recordReducePartials(gpu: Gpu, rec: Recorder, a: ReducePartialsArgs): void {
  const n = a.rows * a.cols;
  if (n === 0) return;
  const pipe = gpu.pipeline('lora_reduce_partials', loraModule, 'reduce_partials');
  const [gx, gy, stride] = grid2d(gpu, n);
  const u = params(a.rows, a.cols, a.ldc ?? a.cols, a.cOffset ?? 0, a.splits, n, a.accumulate ? 1 : 0, stride);
  rec.dispatch(pipe, [a.part, a.out], [gx, gy], u);
}

/** A 2D grid of 256-wide workgroups covering n invocations: [x groups, y groups, row stride]. */
export function grid2d(gpu: Gpu, n: number): [number, number, number] {
  const maxX = gpu.limits.maxComputeWorkgroupsPerDimension;
  const groups = Math.ceil(n / 256);
  const gx = Math.min(groups, maxX);
  const gy = Math.ceil(groups / gx);
  return [gx, gy, gx * 256];
}

export { loraModule as loraShaderModule };
