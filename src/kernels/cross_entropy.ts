/**
 * The LM head fused with the cross-entropy, chunked over the vocabulary (see
 * shaders/cross_entropy.wgsl): the [T, V] logits never exist, only one [T, Vc] chunk.
 *
 *   pass 1, per chunk:  logits chunk = h·W_chunkᵀ  ->  running max / Σexp per row (online logsumexp)
 *   finalize:           lse, row losses, lossSum += Σ loss, countSum += #counted    (one workgroup)
 *   pass 2, per chunk:  recompute the logits chunk (skipped when there is a single chunk),
 *                       dh (+)= ((softmax - onehot)·gradScale)·W_chunk, dlogits formed in the loader
 * Eval mode (dh null) runs pass 1 and the finalize only. Everything is deterministic: fixed chunk
 * order, fixed-order reductions, no atomics.
 *
 * A head weight bigger than the storage binding limit (e.g. f32 [150k, 2048]) is bound one chunk of
 * rows at a time, at offsets aligned to minStorageBufferOffsetAlignment.
 */
import source from '../../shaders/cross_entropy.wgsl?raw';
import { type Binding, type Gpu, type Recorder, params } from '../gpu/context';
import { GpuError, GpuLimitError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import type { Workspace } from '../gpu/workspace';
import {
  type WeightDType,
  bindable,
  bindingLimit,
  itemGrid,
  needDims,
  needElems,
  rowsPerWindow,
  variantPipeline,
  weightArrayType,
  weightDType,
  weightLoader,
  wgslModule,
  windowOf,
} from './common';
import { type LogitTransform, recordLogitTransform } from './logits';
import { SMALL_M, recordMatmul } from './matmul';

/** Targets at or above V (this one in particular) are ignored: no loss, no count, no gradient. */
export const IGNORE_TARGET = 0xffffffff;

/** Default byte budget of the [T, Vc] logits chunk. */
export const CE_SCRATCH_BYTES = 32 * 1024 * 1024;

export interface CrossEntropyArgs {
  h: Tensor; // f32 [T, H] final hidden states (at least T rows)
  w: Tensor; // f32 | f16 | bf16 [V, H] LM head (possibly the tied embedding)
  targets: Tensor; // u32 [T]; >= V (e.g. 0xFFFFFFFF) = ignored
  T: number;
  H: number;
  V: number;
  /** Multiplies dlogits, e.g. 1 / (counted tokens of the step). Unused without dh. */
  gradScale: number;
  /** f32 [T, H] dLoss/dh, or null for eval (loss only). */
  dh: Tensor | null;
  /** Add into dh instead of overwriting it (default false). */
  accumulateDh?: boolean;
  rowLoss: Tensor; // f32 [T] (output): loss per row, 0 for ignored rows
  lossSum: Tensor; // f32 [1]: += Σ rowLoss
  countSum: Tensor; // f32 or u32 [1]: += number of counted rows
  ws: Workspace; // scratch: 'ce.logits' [T, Vc], 'ce.stats' [T, 3], 'ce.lse' [T]
  /** Optional output f32 [T]: the row logsumexp (otherwise kept in ws 'ce.lse'). */
  lse?: Tensor;
  /** Vocabulary chunk Vc (tests force tiny ones); lowered if a limit requires. */
  chunk?: number;
  /** Byte budget of the logits chunk when `chunk` is not given (default CE_SCRATCH_BYTES). */
  scratchBytes?: number;
  /** Binding limit used for W (default: the device's maxStorageBufferBindingSize; tests lower it). */
  maxBindingBytes?: number;
  /** The head's bias / scale / soft-cap (src/kernels/logits.ts), applied to every chunk. */
  transform?: LogitTransform;
}

export interface LogitsArgs {
  h: Tensor; // f32 [rows, H]
  w: Tensor; // f32 | f16 | bf16 [V, H]
  logits: Tensor; // f32 [T, V] (output)
  T: number;
  H: number;
  V: number;
  /** First row of h to use (default 0). */
  hRowOffset?: number;
  /** Binding limit used for W (default: the device limit). */
  maxBindingBytes?: number;
  /** The head's bias / scale / soft-cap. */
  transform?: LogitTransform;
}

// ------------------------------------------------------------------ template

type KernelName = 'ce_logits' | 'ce_stats' | 'ce_finalize' | 'ce_dh';

interface Gemm {
  wx: number;
  wy: number;
  tm: number;
  tn: number;
  bk: number;
}
/** 64 x 64 tiles, 256 threads of 4 x 4: training shapes. */
const WIDE: Gemm = { wx: 16, wy: 16, tm: 4, tn: 4, bk: 16 };
/** 4 x 256 tiles, 256 threads of 4 x 1: a few rows (generation). */
const THIN: Gemm = { wx: 256, wy: 1, tm: 4, tn: 1, bk: 8 };

function gemmFor(rows: number): Gemm {
  return rows <= 4 ? THIN : WIDE;
}

interface Variant {
  g?: Gemm;
  w?: WeightDType; // ce_logits, ce_dh
  wBinding?: number;
  count?: 'f32' | 'u32'; // ce_finalize
}

/** Full WGSL of one kernel variant (exported for compile checks in tests). */
export function crossEntropyShader(kernel: KernelName, v: Variant): string {
  const L: string[] = [];
  if (v.g) {
    const g = v.g;
    L.push(
      `const WX: u32 = ${g.wx}u;`,
      `const WY: u32 = ${g.wy}u;`,
      `const NT: u32 = ${g.wx * g.wy}u;`,
      `const TM: u32 = ${g.tm}u;`,
      `const TN: u32 = ${g.tn}u;`,
      `const BM: u32 = ${g.wy * g.tm}u;`,
      `const BN: u32 = ${g.wx * g.tn}u;`,
      `const BK: u32 = ${g.bk}u;`,
    );
  }
  if (v.w) {
    const o = { typedF32: true };
    L.push(`@group(0) @binding(${v.wBinding!}) var<storage, read> w: ${weightArrayType(v.w, o)};`);
    L.push(weightLoader('wload', 'w', v.w, o));
  }
  if (v.count) {
    L.push(`@group(0) @binding(6) var<storage, read_write> countSum: array<${v.count}>;`);
    L.push(
      v.count === 'u32'
        ? 'fn addCount(c: u32) { countSum[0] = countSum[0] + c; }'
        : 'fn addCount(c: u32) { countSum[0] = countSum[0] + f32(c); }',
    );
  }
  return wgslModule({ source, kernel, prelude: L, describe: `${kernel} ${JSON.stringify(v)}` });
}

function pipelineFor(gpu: Gpu, kernel: KernelName, v: Variant): GPUComputePipeline {
  const g = v.g ? `_${v.g.wy * v.g.tm}x${v.g.wx * v.g.tn}` : '';
  const name = `${kernel}${g}${v.w ? `_${v.w}` : ''}${v.count ? `_count${v.count}` : ''}`;
  return variantPipeline(gpu, name, () => crossEntropyShader(kernel, v));
}

// ------------------------------------------------------------------ checks and windows

interface WPlan {
  /** Rows of W per binding window (V when W is bound whole). */
  maxRows: number;
  /** Binding and in-binding element index of row `r0`'s first element, for rows [r0, r0+n). */
  bind(r0: number, n: number): { binding: Binding; wOff: number };
}

/** How W is bound: whole when it fits `limit`, else in aligned windows of at most maxRows rows. */
function planW(gpu: Gpu, w: Tensor, H: number, V: number, limit: number, what: string): WPlan {
  weightDType(w, what);
  const rows = rowsPerWindow(gpu, w, H, limit, what);
  if (rows === Infinity) return { maxRows: V, bind: (r0) => ({ binding: w, wOff: r0 * H }) };
  return {
    maxRows: rows,
    bind(r0, n) {
      const win = windowOf(gpu, w, r0 * H, (r0 + n) * H, limit, what);
      return { binding: win.binding, wOff: r0 * H - win.first };
    },
  };
}

/**
 * The vocabulary chunk recordCrossEntropy uses: `chunk` if given, else the byte budget of the
 * [T, Vc] logits (rounded down to a multiple of 64), then lowered so the logits chunk and a W window
 * each fit a binding. Always between 1 and V.
 */
export function crossEntropyChunk(
  gpu: Gpu,
  a: { T: number; H: number; V: number; w: Tensor; chunk?: number; scratchBytes?: number; maxBindingBytes?: number },
): number {
  const what = 'cross-entropy';
  const T = Math.max(1, a.T);
  let vc: number;
  if (a.chunk !== undefined) {
    if (!Number.isInteger(a.chunk) || a.chunk < 1)
      throw new GpuError(`${what}: chunk must be a positive integer, got ${a.chunk}.`);
    vc = a.chunk;
  } else {
    const perRow = Math.floor((a.scratchBytes ?? CE_SCRATCH_BYTES) / (T * 4));
    vc = Math.max(64, Math.floor(perRow / 64) * 64);
  }
  const plan = planW(gpu, a.w, a.H, a.V, bindingLimit(gpu, a.maxBindingBytes), what);
  const capL = Math.floor(gpu.limits.maxStorageBufferBindingSize / (T * 4));
  if (capL < 1) throw new GpuLimitError(`${what}: T = ${a.T} rows do not fit one binding even with a 1-column chunk.`);
  vc = Math.min(vc, plan.maxRows, capL, a.V);
  if (a.chunk === undefined && vc > 64 && vc < a.V) vc = Math.floor(vc / 64) * 64; // whole GEMM tiles
  return Math.max(1, vc);
}

// ------------------------------------------------------------------ recording

function recordLogitsChunk(
  gpu: Gpu,
  rec: Recorder,
  g: Gemm,
  wt: WeightDType,
  h: Tensor,
  hOff: number,
  w: { binding: Binding; wOff: number },
  out: Tensor,
  T: number,
  H: number,
  n: number,
  ldo: number,
  oOff: number,
): void {
  const pipe = pipelineFor(gpu, 'ce_logits', { g, w: wt, wBinding: 2 });
  const bm = g.wy * g.tm;
  const bn = g.wx * g.tn;
  rec.dispatch(
    pipe,
    [h, w.binding, out],
    [Math.ceil(n / bn), Math.ceil(T / bm)],
    params(T, H, n, hOff, w.wOff, ldo, oOff, 0),
  );
}

/**
 * Records the fused LM-head cross-entropy (see the file comment): rowLoss, lse, lossSum/countSum
 * accumulation and, unless dh is null, dh (+)= dLoss/dh · gradScale.
 */
export function recordCrossEntropy(gpu: Gpu, rec: Recorder, a: CrossEntropyArgs): void {
  const what = 'cross-entropy';
  const { T, H, V } = a;
  needDims(what, { T, H, V });
  if (V === 0 || H === 0) throw new GpuError(`${what}: H and V must be positive.`);
  if (T === 0) return;
  const wt = weightDType(a.w, what);
  needElems(what, 'h', a.h, T * H, ['f32']);
  needElems(what, 'w', a.w, V * H, [wt]);
  needElems(what, 'targets', a.targets, T, ['u32', 'i32']);
  needElems(what, 'rowLoss', a.rowLoss, T, ['f32']);
  needElems(what, 'lossSum', a.lossSum, 1, ['f32']);
  needElems(what, 'countSum', a.countSum, 1, ['f32', 'u32']);
  if (a.dh) needElems(what, 'dh', a.dh, T * H, ['f32']);
  if (a.lse) needElems(what, 'lse', a.lse, T, ['f32']);
  bindable(gpu, what, {
    h: a.h,
    targets: a.targets,
    rowLoss: a.rowLoss,
    dh: a.dh,
    lse: a.lse,
    lossSum: a.lossSum,
    countSum: a.countSum,
  });
  if (!Number.isFinite(a.gradScale)) throw new GpuError(`${what}: gradScale must be finite, got ${a.gradScale}.`);

  const vc = crossEntropyChunk(gpu, a);
  const plan = planW(gpu, a.w, H, V, bindingLimit(gpu, a.maxBindingBytes), what);
  const chunks: [number, number][] = [];
  for (let c0 = 0; c0 < V; c0 += vc) chunks.push([c0, Math.min(vc, V - c0)]);

  const L = a.ws.get('ce.logits', [T, vc]);
  const stats = a.ws.get('ce.stats', [T, 3]);
  const lse = a.lse ?? a.ws.get('ce.lse', [T]);
  const g = gemmFor(T);
  const [nx, ny] = itemGrid(gpu, T);
  const statsPipe = pipelineFor(gpu, 'ce_stats', {});

  const transform = (c0: number, n: number) =>
    a.transform && recordLogitTransform(gpu, rec, { logits: L, T, n, ldl: n, c0, V, transform: a.transform });

  // Pass 1: online logsumexp over the chunks, and the target logits.
  chunks.forEach(([c0, n], ci) => {
    recordLogitsChunk(gpu, rec, g, wt, a.h, 0, plan.bind(c0, n), L, T, H, n, n, 0);
    transform(c0, n);
    rec.dispatch(statsPipe, [L, a.targets, stats], [nx, ny], params(T, n, n, c0, ci === 0 ? 1 : 0, nx, V, 0));
  });
  const countType = a.countSum.dtype === 'u32' ? 'u32' : 'f32';
  const fin = pipelineFor(gpu, 'ce_finalize', { count: countType });
  rec.dispatch(fin, [stats, a.targets, lse, a.rowLoss, a.lossSum, a.countSum], [1], params(T, V, 0, 0));

  // Pass 2: dh (+)= dlogits · W, chunk by chunk in a fixed order.
  if (!a.dh) return;
  const dhPipe = pipelineFor(gpu, 'ce_dh', { g, w: wt, wBinding: 4 });
  const bm = g.wy * g.tm;
  const bn = g.wx * g.tn;
  chunks.forEach(([c0, n], ci) => {
    const wb = plan.bind(c0, n);
    if (chunks.length > 1) {
      recordLogitsChunk(gpu, rec, g, wt, a.h, 0, wb, L, T, H, n, n, 0);
      transform(c0, n);
    }
    const acc = ci > 0 || a.accumulateDh ? 1 : 0;
    const lscale = a.transform?.scale ?? 1;
    const softcap = a.transform?.softcap ?? 0;
    rec.dispatch(
      dhPipe,
      [L, lse, a.targets, wb.binding, a.dh!],
      [Math.ceil(H / bn), Math.ceil(T / bm)],
      params(T, H, n, n, c0, wb.wOff, acc, V, { f: a.gradScale }, { f: lscale }, { f: softcap }, 0),
    );
  });
}

/**
 * Records logits [T, V] = h[hRowOffset .. +T]·Wᵀ (generation; W bound in windows when too big). Up
 * to SMALL_M rows go through recordMatmul's small-M kernel, more through the ce_logits GEMM.
 */
export function recordLogits(gpu: Gpu, rec: Recorder, a: LogitsArgs): void {
  const what = 'logits';
  const { T, H, V } = a;
  const r0 = a.hRowOffset ?? 0;
  needDims(what, { T, H, V, hRowOffset: r0 });
  if (T === 0 || V === 0) return;
  if (H === 0) throw new GpuError(`${what}: H must be positive.`);
  const wt = weightDType(a.w, what);
  needElems(what, 'h', a.h, (r0 + T) * H, ['f32']);
  needElems(what, 'w', a.w, V * H, [wt]);
  needElems(what, 'logits', a.logits, T * V, ['f32']);
  bindable(gpu, what, { h: a.h, logits: a.logits });
  const plan = planW(gpu, a.w, H, V, bindingLimit(gpu, a.maxBindingBytes), what);
  if (T <= SMALL_M) {
    // Generation (a token or a few): the small-M GEMV kernel of recordMatmul, W bound in windows
    // of rows when it exceeds the binding limit (the N chunks of the A·Bᵀ layout).
    recordMatmul(gpu, rec, {
      a: a.h,
      aOffset: r0 * H,
      b: a.w,
      c: a.logits,
      M: T,
      N: V,
      K: H,
      transB: true,
      maxBindingBytes: a.maxBindingBytes,
    });
  } else {
    const g = gemmFor(T);
    for (let c0 = 0; c0 < V; c0 += plan.maxRows) {
      const n = Math.min(plan.maxRows, V - c0);
      recordLogitsChunk(gpu, rec, g, wt, a.h, r0 * H, plan.bind(c0, n), a.logits, T, H, n, V, c0);
    }
  }
  if (a.transform)
    recordLogitTransform(gpu, rec, { logits: a.logits, T, n: V, ldl: V, c0: 0, V, transform: a.transform });
}
