/**
 * The first two stages of recordMatmul (src/kernels/matmul.ts):
 *
 *   validateMatmul  checks the arguments (dims, dtypes, buffer sizes, dropout combinations) and
 *                   normalises them into a MatmulProblem: strides, offsets, flags with defaults;
 *   planMatmul      picks the kernel variant and splits the problem into chunks whose operand
 *                   windows each fit the storage binding limit (M chunks: A rows unless transA, C
 *                   rows, a C row too long for one binding split along N; N chunks: B rows when
 *                   transB; K chunks: B rows unless transB, A rows with transA, later K chunks
 *                   accumulate), or into split-K slices summed by a second pass;
 *   chunkWindows    binds one chunk: the window of every operand and its index adjustment.
 *
 * B may be a 4-bit NF4 weight (src/kernels/nf4.ts): its packed indices and statistics are bound
 * whole (a 4-bit weight never needs chunks: 2^28 elements fit a 128 MiB binding) and the loader
 * dequantizes each element as it stages it (shaders/nf4.wgsl), so no f32 copy is ever made.
 */
import type { Binding, Gpu } from '../../gpu/context';
import { GpuError, GpuLimitError } from '../../gpu/errors';
import type { Tensor } from '../../gpu/tensor';
import type { Workspace } from '../../gpu/workspace';
import {
  type MatmulBType,
  type WeightDType,
  bindingLimit,
  elemBytes,
  needDims,
  needElems,
  weightDType,
  windowOf,
} from '../common';
import type { Nf4Tensor } from '../nf4';
import { BK, type MatmulVariant, smallBn } from './shader';
import { type MatmulConfig, SMALL_M, type ShapeOf, chooseConfig } from './variants';

/** Dropout with probability p, mask = hash(seed, row, col) (src/numerics/dropout.ts). */
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

/** The element type of B: a float tensor's, or 'nf4' for a 4-bit NF4 weight. */
export interface MatmulArgs {
  a: Tensor; // f32
  b: Tensor | Nf4Tensor; // f32 | f16 | bf16, or 4-bit NF4 (element i of its row-major [rows, cols])
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
  /** Run this member of the family (src/kernels/matmul/variants.ts) instead of the chosen one. */
  variant?: string;
}

/** The extra segment with its defaults applied. */
interface Extra {
  a: Tensor;
  b: Tensor;
  K: number;
  transA: boolean;
  transB: boolean;
  lda: number;
  ldb: number;
}

/** A checked matmul with every default applied. */
export interface MatmulProblem {
  args: MatmulArgs;
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  bType: MatmulBType;
  /** B when it is a 4-bit NF4 weight. */
  nf4: Nf4Tensor | null;
  biasType: WeightDType | null;
  lda: number;
  ldb: number;
  ldc: number;
  aOff: number;
  bOff: number;
  cOff: number;
  ex: Extra | null;
  /** The dropout applied to segment 1's A or B operand (null: none). */
  dropIn: DropoutSpec | null;
  dropA: boolean;
  dropB: boolean;
  /** The dropout of the extra segment's contribution (null: none). */
  dropOut: DropoutSpec | null;
  /** Per-binding byte limit. */
  limit: number;
}

const WHAT = 'matmul';

/** Checks the arguments; null for an empty output (M or N = 0). */
export function validateMatmul(gpu: Gpu, args: MatmulArgs): MatmulProblem | null {
  const { M, N, K } = args;
  needDims(WHAT, { M, N, K });
  if (M === 0 || N === 0) return null;
  const transA = !!args.transA;
  const transB = !!args.transB;
  if (args.a.dtype !== 'f32') throw new GpuError(`matmul: A "${args.a.label}" must be f32, got ${args.a.dtype}.`);
  if (args.c.dtype !== 'f32') throw new GpuError(`matmul: C "${args.c.label}" must be f32, got ${args.c.dtype}.`);
  const nf4 = 'format' in args.b ? args.b : null;
  const bType: MatmulBType = nf4 ? 'nf4' : weightDType(args.b as Tensor, 'matmul: B');
  const biasType = args.bias ? weightDType(args.bias, 'matmul: bias') : null;
  if (args.dropoutB && args.dropoutB.p > 0 && bType !== 'f32')
    throw new GpuError('matmul: dropout of B needs an f32 B.');
  const dropA = !!args.dropoutA && args.dropoutA.p > 0;
  const dropB = !!args.dropoutB && args.dropoutB.p > 0;
  if (dropA && dropB) throw new GpuError('matmul: dropout on both A and B is not supported.');
  const lda = args.lda ?? (transA ? M : K);
  const ldb = args.ldb ?? (transB ? K : N);
  const ldc = args.ldc ?? N;
  const aOff = args.aOffset ?? 0;
  const bOff = args.bOffset ?? 0;
  const cOff = args.cOffset ?? 0;
  if (K > 0) {
    needElems(WHAT, 'A', args.a, aOff + (transA ? (K - 1) * lda + M : (M - 1) * lda + K));
    const bEnd = bOff + (transB ? (N - 1) * ldb + K : (K - 1) * ldb + N);
    if (!nf4) needElems(WHAT, 'B', args.b as Tensor, bEnd);
    else if (nf4.rows * nf4.cols < bEnd) {
      throw new GpuError(
        `matmul: the NF4 weight "${nf4.label}" has ${nf4.rows * nf4.cols} elements ([${nf4.rows}, ${nf4.cols}]); ` +
          `the shapes need ${bEnd}.`,
      );
    }
  }
  needElems(WHAT, 'C', args.c, cOff + (M - 1) * ldc + N);
  if (args.bias) needElems(WHAT, 'bias', args.bias, N);

  let ex: Extra | null = null;
  if (args.extra && args.extra.K > 0) {
    const e = args.extra;
    if (e.a.dtype !== 'f32' || e.b.dtype !== 'f32') throw new GpuError('matmul: the extra segment must be f32.');
    const t2a = !!e.transA;
    const t2b = !!e.transB;
    ex = {
      a: e.a,
      b: e.b,
      K: e.K,
      transA: t2a,
      transB: t2b,
      lda: e.lda ?? (t2a ? M : e.K),
      ldb: e.ldb ?? (t2b ? e.K : N),
    };
    needElems(WHAT, 'extra A', e.a, t2a ? (e.K - 1) * ex.lda + M : (M - 1) * ex.lda + e.K);
    needElems(WHAT, 'extra B', e.b, t2b ? (N - 1) * ex.ldb + e.K : (e.K - 1) * ex.ldb + N);
  }
  const dropOut = ex && args.extra?.dropoutOut && args.extra.dropoutOut.p > 0 ? args.extra.dropoutOut : null;

  const limit = bindingLimit(gpu, args.maxBindingBytes);
  for (const t of nf4 ? [nf4.q, nf4.stats] : []) {
    if (t.buffer.size > limit) {
      throw new GpuLimitError(
        `matmul: the NF4 weight "${t.label}" (${t.buffer.size} bytes) must fit one binding (${limit} bytes).`,
      );
    }
  }
  if (args.bias && args.bias.buffer.size > limit) {
    throw new GpuLimitError(
      `matmul: "${args.bias.label}" (${args.bias.buffer.size} bytes) must fit one binding (${limit} bytes).`,
    );
  }
  const dropIn = dropA ? args.dropoutA! : dropB ? args.dropoutB! : null;
  return {
    args: args,
    M,
    N,
    K,
    transA,
    transB,
    bType,
    nf4,
    biasType,
    lda,
    ldb,
    ldc,
    aOff,
    bOff,
    cOff,
    ex,
    dropIn,
    dropA,
    dropB,
    dropOut,
    limit,
  };
}

// ------------------------------------------------------------------ plan

/** Rows baked into the small-M kernel for M rows: the next of 1, 2, 4, 8 (few variants to compile). */
function smallRows(m: number): number {
  return m <= 1 ? 1 : m <= 2 ? 2 : m <= 4 ? 4 : 8;
}

/** Workgroup tile edge: 16 for skinny dimensions (the LoRA rank), else 64 (few variants to compile). */
function tileFor(n: number): number {
  return n <= 16 ? 16 : 64;
}

type Chunk = [start: number, count: number];

export interface MatmulPlan {
  config: MatmulConfig;
  variant: MatmulVariant;
  mChunks: Chunk[];
  nChunks: Chunk[];
  kChunks: Chunk[];
  /** Split-K slices (1: none) and the depth of each. */
  splits: number;
  kSplit: number;
  /** Workgroups along N for nc columns and along M for mc rows. */
  gridX(nc: number): number;
  gridY(mc: number): number;
}

/** Splits [0, total) into chunks of at most `max` (rounded down to a multiple of `tile` when possible). */
function chunks(total: number, max: number, tile: number): Chunk[] {
  if (total <= max) return [[0, total]];
  const size = max >= tile ? Math.floor(max / tile) * tile : max;
  const out: Chunk[] = [];
  for (let s = 0; s < total; s += size) out.push([s, Math.min(size, total - s)]);
  return out;
}

/** The problem's shape, as variants.ts selects and tunes by it. */
export function shapeOf(p: MatmulProblem): ShapeOf {
  return { M: p.M, N: p.N, K: p.K, transA: p.transA, transB: p.transB, bType: p.bType, lora: !!p.ex };
}

/** Picks the variant and the chunks (see the file comment). */
export function planMatmul(gpu: Gpu, p: MatmulProblem): MatmulPlan {
  const { M, N, K, ex, limit, args: a } = p;
  const bm = tileFor(M);
  const bn = tileFor(N);
  const variant: MatmulVariant = {
    kernel: 'tiled',
    bm,
    bn,
    transA: p.transA,
    transB: p.transB,
    bType: p.bType,
    nf4DoubleQuant: p.nf4?.doubleQuant,
    seg2: ex ? { transA: ex.transA, transB: ex.transB } : null,
    bias: p.biasType,
    dropA: p.dropA,
    dropB: p.dropB,
    outDrop: !!p.dropOut,
    f16: gpu.features.f16 && (p.bType === 'f16' || p.biasType === 'f16'),
  };

  // Chunk sizes so that every window fits the binding limit (with room for the aligned start).
  const budget = limit - gpu.limits.minStorageBufferOffsetAlignment - 16;
  const rowsFit = (ld: number, eb: number) => Math.floor(budget / Math.max(1, ld * eb));
  // (A 4-bit B was checked to fit one binding whole.)
  const big = (t: Tensor | Nf4Tensor) => !('format' in t) && t.buffer.size > limit;
  let mMax = M;
  let nMax = N;
  let kMax = Math.max(K, 1);
  if (big(a.a)) {
    if (p.transA) kMax = Math.min(kMax, rowsFit(p.lda, 4));
    else mMax = Math.min(mMax, rowsFit(p.lda, 4));
  }
  if (big(a.b)) {
    const eb = elemBytes(a.b as Tensor);
    if (p.transB) nMax = Math.min(nMax, rowsFit(p.ldb, eb));
    else kMax = Math.min(kMax, rowsFit(p.ldb, eb));
  }
  if (big(a.c)) {
    // Whole rows of C when one fits; else one row at a time, split along N (e.g. the [1, V] logits).
    const r = rowsFit(p.ldc, 4);
    if (r >= 1) mMax = Math.min(mMax, r);
    else {
      mMax = 1;
      nMax = Math.min(nMax, Math.floor(budget / 4));
    }
  }
  // The extra segment is chunked along with M and N where its rows follow them.
  if (ex && big(ex.a) && !ex.transA) mMax = Math.min(mMax, rowsFit(ex.lda, 4));
  if (ex && big(ex.b) && ex.transB) nMax = Math.min(nMax, rowsFit(ex.ldb, 4));
  if (mMax < 1 || nMax < 1 || kMax < 1) {
    throw new GpuLimitError(
      `matmul [${M}x${K}]·[${K}x${N}]: one row of an operand exceeds the ${limit}-byte binding limit; ` +
        'this layout cannot be split into chunks.',
    );
  }
  const mChunks = chunks(M, mMax, 64);
  const nChunks = chunks(N, nMax, 64);
  const kChunks: Chunk[] = K === 0 ? [[0, 0]] : chunks(K, kMax, BK);
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
  const shape = shapeOf(p);
  // 4-aligned strides and offsets: what vector loads along A's / B's stored rows need first.
  const alignA = p.lda % 4 === 0 && p.aOff % 4 === 0;
  const alignB = p.ldb % 4 === 0 && p.bOff % 4 === 0;
  const config = chooseConfig(gpu, shape, a.variant, splits, {
    seg2: ex ? { transA: ex.transA, transB: ex.transB } : null,
    bias: p.biasType,
    dropA: p.dropA,
    dropB: p.dropB,
    dropOut: !!p.dropOut,
    alignA,
    alignB,
  });
  let tileM = bm;
  let tileN = bn;
  if (config.kernel === 'small') {
    variant.kernel = 'small';
    variant.mr = smallRows(M);
    // Window starts are aligned to >= 4 bytes and K chunks are multiples of BK, so the parity of
    // a row's first element is that of ldb and bOffset.
    variant.pairs =
      p.transB && (p.bType === 'f16' || p.bType === 'bf16') && !p.dropB && p.ldb % 2 === 0 && p.bOff % 2 === 0;
    const lanes = gpu.features.subgroupLanes;
    if (p.transB && lanes >= 4) variant.sg = Math.min(lanes, 32);
    tileM = SMALL_M;
    tileN = smallBn(variant.sg);
  } else if (config.kernel === 'direct' || config.kernel === 'wg') {
    // Direct: blocks shrink to 4 along a dimension of at most 4. The workgroup stays the member's
    // (idle invocations of a skinny problem return at once; every other size would be one more
    // shader to compile, seconds each on a CPU driver).
    const direct = config.kernel === 'direct';
    const tm = config.tm === 0 ? smallRows(M) : direct && M <= 4 ? 4 : config.tm!;
    const tn = direct && N <= 4 ? 4 : config.tn!;
    variant.kernel = config.kernel;
    variant.tm = tm;
    variant.tn = tn;
    variant.wx = config.wx!;
    variant.wy = config.wy!;
    if (!direct) variant.bk = config.bk!;
    // Vector loads along a stored row need 4-aligned strides, offsets and starts of every chunk
    // along the vector's axis (window starts are aligned to at least 64 elements).
    const starts = (c: Chunk[]) => c.every(([s0]) => s0 % 4 === 0);
    variant.vecA = alignA && starts(p.transA ? mChunks : kChunks);
    variant.vecB =
      p.bType !== 'nf4' && alignB && starts(p.transB ? kChunks : nChunks) && (!p.dropB || p.bType === 'f32');
    tileM = variant.wy * tm;
    tileN = variant.wx * tn;
    // The LoRA segment's layout, the bias' dtype and the direct kernel's output dropout are
    // uniforms of these kernels (src/kernels/matmul/direct.ts operandPrelude); the variant keeps
    // only whether A2 / B2 and the bias are bound (one binding more costs lavapipe ~5% of a GEMM)
    // and whether an f16 bias' widening is compiled in (f16 models), so fewer shaders compile.
    if (ex) variant.seg2 = { transA: false, transB: false };
    if (p.biasType) variant.bias = p.biasType === 'f16' || p.bType === 'f16' ? 'f16' : 'f32';
    if (direct) {
      variant.outDrop = false;
      // Whether a depth range may end off a multiple of 4: a K chunk's length is (split-K slices
      // are multiples of 16 but the last, which ends at K, as the one chunk does).
      variant.kTail = kChunks.some(([, kc]) => kc % 4 !== 0);
    }
    variant.f16 = gpu.features.f16 && p.bType === 'f16';
  }
  return {
    config,
    variant,
    mChunks,
    nChunks,
    kChunks,
    splits,
    kSplit,
    gridX: (nc) => Math.ceil(nc / tileN),
    gridY: (mc) => Math.ceil(mc / tileM),
  };
}

// ------------------------------------------------------------------ windows of one chunk

export interface ChunkWindows {
  /** A, B (an NF4 B: its indices and statistics), [A2, B2], [bias], C in binding order. */
  bindings: Binding[];
  /**
   * Added (mod 2^32) to an operand's element index (row·ld + col) to get the index inside its
   * binding: the operand's offset minus the elements before the window.
   */
  aAdj: number;
  bAdj: number;
  cAdj: number;
  a2Adj: number;
  b2Adj: number;
}

/** B's bindings: the window of a float B, or an NF4 B's indices and statistics. */
export function bBindings(p: MatmulProblem, window?: Binding): Binding[] {
  return p.nf4 ? [p.nf4.q, p.nf4.stats] : [window ?? (p.args.b as Tensor)];
}

/** The operand windows of rows [m0, m0+mc), columns [n0, n0+nc) and depth [k0, k0+kc). */
export function chunkWindows(
  gpu: Gpu,
  p: MatmulProblem,
  m0: number,
  mc: number,
  n0: number,
  nc: number,
  k0: number,
  kc: number,
): ChunkWindows {
  const { args: a, lda, ldb, ldc, aOff, bOff, cOff, limit, ex } = p;
  const win = (t: Tensor, lo: number, hi: number, what: string) => windowOf(gpu, t, lo, hi, limit, `matmul: ${what}`);
  const adj = (first: number, offset = 0) => (offset - first) >>> 0;
  const aLo = aOff + (p.transA ? k0 * lda + m0 : m0 * lda + k0);
  const aHi = aOff + (p.transA ? (k0 + kc - 1) * lda + m0 + mc : (m0 + mc - 1) * lda + k0 + kc);
  const bLo = bOff + (p.transB ? n0 * ldb + k0 : k0 * ldb + n0);
  const bHi = bOff + (p.transB ? (n0 + nc - 1) * ldb + k0 + kc : (k0 + kc - 1) * ldb + n0 + nc);
  const cLo = cOff + m0 * ldc + n0;
  const cHi = cOff + (m0 + mc - 1) * ldc + n0 + nc;
  const wa = win(a.a, aLo, kc > 0 ? aHi : aLo, 'A');
  const wb = p.nf4 ? { binding: p.nf4.q, first: 0 } : win(a.b as Tensor, bLo, kc > 0 ? bHi : bLo, 'B');
  const wc = win(a.c, cLo, cHi, 'C');
  const bindings: Binding[] = [wa.binding, ...bBindings(p, wb.binding)];
  let a2Adj = 0;
  let b2Adj = 0;
  if (ex) {
    const K2 = ex.K;
    const wa2 = ex.transA
      ? win(ex.a, m0, (K2 - 1) * ex.lda + m0 + mc, 'extra A')
      : win(ex.a, m0 * ex.lda, (m0 + mc - 1) * ex.lda + K2, 'extra A');
    const wb2 = ex.transB
      ? win(ex.b, n0 * ex.ldb, (n0 + nc - 1) * ex.ldb + K2, 'extra B')
      : win(ex.b, n0, (K2 - 1) * ex.ldb + n0 + nc, 'extra B');
    bindings.push(wa2.binding, wb2.binding);
    a2Adj = adj(wa2.first);
    b2Adj = adj(wb2.first);
  }
  if (a.bias) bindings.push(a.bias);
  bindings.push(wc.binding);
  return {
    bindings,
    aAdj: adj(wa.first, aOff),
    bAdj: adj(wb.first, bOff),
    cAdj: adj(wc.first, cOff),
    a2Adj,
    b2Adj,
  };
}
