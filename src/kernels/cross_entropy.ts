/**
 * The LM head fused with the cross-entropy, chunked over the vocabulary (see
 * shaders/cross_entropy.wgsl): the [T, V] logits never exist, only one [T, Vc] chunk.
 *
 *   pass 1, per chunk:  logits chunk = h·W_chunkᵀ  ->  running max / Σexp per row (online logsumexp)
 *   finalize:           lse, row losses, lossSum += Σ loss, countSum += #counted    (one workgroup)
 *   pass 2, per chunk:  recompute the logits chunk (skipped when there is a single chunk), turn it
 *                       in place into G = (softmax - onehot)·gradScale, dh (+)= G·W_chunk
 * Both GEMMs run on the matmul family (recordMatmul: its fastest member for the device, W bound in
 * windows when it exceeds the binding limit).
 * Eval mode (dh null) runs pass 1 and the finalize only. Everything is deterministic: fixed chunk
 * order, fixed-order reductions, no atomics.
 *
 * A head weight bigger than the storage binding limit (e.g. f32 [150k, 2048]) is bound one chunk of
 * rows at a time, at offsets aligned to minStorageBufferOffsetAlignment.
 */
import source from '../../shaders/cross_entropy.wgsl?raw';
import { type Gpu, type Recorder, params } from '../gpu/context';
import { GpuError, GpuLimitError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import type { Workspace } from '../gpu/workspace';
import {
  bindable,
  bindingLimit,
  flatGrid,
  itemGrid,
  needDims,
  needElems,
  rowsPerWindow,
  variantPipeline,
  weightDType,
  wgslModule,
} from './common';
import { rowWidth } from './row-width';
import { type LogitTransform, recordLogitTransform } from './logits';
import { recordMatmul } from './matmul';

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

type KernelName = 'ce_stats' | 'ce_finalize' | 'ce_grad';

/** ce_stats' invocations per row on GPUs (see rowWidth). */
const CE_STATS_WIDTH = 256;

interface Variant {
  count?: 'f32' | 'u32'; // ce_finalize
  ws?: number; // ce_stats: invocations per row (rowWidth)
}

/** Full WGSL of one kernel variant (exported for compile checks in tests). */
export function crossEntropyShader(kernel: KernelName, v: Variant): string {
  const L: string[] = [];
  if (kernel === 'ce_stats') L.push(`const WS: u32 = ${v.ws ?? CE_STATS_WIDTH}u;`);
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
  const name = `${kernel}${v.count ? `_count${v.count}` : ''}${v.ws ? `_ws${v.ws}` : ''}`;
  return variantPipeline(gpu, name, () => crossEntropyShader(kernel, v));
}

// ------------------------------------------------------------------ checks and windows

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
  weightDType(a.w, what);
  // Rows of W one binding window holds (every row when W fits whole).
  const maxRows = rowsPerWindow(gpu, a.w, a.H, bindingLimit(gpu, a.maxBindingBytes), what);
  const capL = Math.floor(gpu.limits.maxStorageBufferBindingSize / (T * 4));
  if (capL < 1) throw new GpuLimitError(`${what}: T = ${a.T} rows do not fit one binding even with a 1-column chunk.`);
  vc = Math.min(vc, maxRows, capL, a.V);
  if (a.chunk === undefined && vc > 64 && vc < a.V) vc = Math.floor(vc / 64) * 64; // whole GEMM tiles
  return Math.max(1, vc);
}

// ------------------------------------------------------------------ recording

/** logits [T, n] (chunk columns c0 .. c0+n of W) = h·W_chunkᵀ on the matmul family, into out [.., ldo] at column oOff. */
function recordLogitsChunk(
  gpu: Gpu,
  rec: Recorder,
  a: { h: Tensor; w: Tensor; maxBindingBytes?: number },
  hRow0: number,
  c0: number,
  n: number,
  out: Tensor,
  T: number,
  H: number,
  ldo: number,
  oOff: number,
): void {
  recordMatmul(gpu, rec, {
    a: a.h,
    aOffset: hRow0 * H,
    b: a.w,
    bOffset: c0 * H,
    ldb: H,
    transB: true,
    c: out,
    ldc: ldo,
    cOffset: oOff,
    M: T,
    N: n,
    K: H,
    maxBindingBytes: a.maxBindingBytes,
  });
}

/**
 * Records the fused LM-head cross-entropy (see the file comment): rowLoss, lse, lossSum/countSum
 * accumulation and, unless dh is null, dh (+)= dLoss/dh · gradScale.
 */
export function recordCrossEntropy(gpu: Gpu, rec: Recorder, args: CrossEntropyArgs): void {
  const what = 'cross-entropy';
  const { T, H, V } = args;
  needDims(what, { T, H, V });
  if (V === 0 || H === 0) throw new GpuError(`${what}: H and V must be positive.`);
  if (T === 0) return;
  const wt = weightDType(args.w, what);
  needElems(what, 'h', args.h, T * H, ['f32']);
  needElems(what, 'w', args.w, V * H, [wt]);
  needElems(what, 'targets', args.targets, T, ['u32', 'i32']);
  needElems(what, 'rowLoss', args.rowLoss, T, ['f32']);
  needElems(what, 'lossSum', args.lossSum, 1, ['f32']);
  needElems(what, 'countSum', args.countSum, 1, ['f32', 'u32']);
  if (args.dh) needElems(what, 'dh', args.dh, T * H, ['f32']);
  if (args.lse) needElems(what, 'lse', args.lse, T, ['f32']);
  bindable(gpu, what, {
    h: args.h,
    targets: args.targets,
    rowLoss: args.rowLoss,
    dh: args.dh,
    lse: args.lse,
    lossSum: args.lossSum,
    countSum: args.countSum,
  });
  if (!Number.isFinite(args.gradScale)) throw new GpuError(`${what}: gradScale must be finite, got ${args.gradScale}.`);

  const vc = crossEntropyChunk(gpu, args);
  const chunks: [number, number][] = [];
  for (let c0 = 0; c0 < V; c0 += vc) chunks.push([c0, Math.min(vc, V - c0)]);

  const L = args.ws.get('ce.logits', [T, vc]);
  const stats = args.ws.get('ce.stats', [T, 3]);
  const lse = args.lse ?? args.ws.get('ce.lse', [T]);
  const [nx, ny] = itemGrid(gpu, T);
  const statsPipe = pipelineFor(gpu, 'ce_stats', { ws: rowWidth(gpu, CE_STATS_WIDTH) });

  const transform = (c0: number, n: number) =>
    args.transform && recordLogitTransform(gpu, rec, { logits: L, T, n, ldl: n, c0, V, transform: args.transform });

  // Pass 1: online logsumexp over the chunks, and the target logits.
  chunks.forEach(([c0, n], ci) => {
    recordLogitsChunk(gpu, rec, args, 0, c0, n, L, T, H, n, 0);
    transform(c0, n);
    rec.dispatch(statsPipe, [L, args.targets, stats], [nx, ny], params(T, n, n, c0, ci === 0 ? 1 : 0, nx, V, 0));
  });
  const countType = args.countSum.dtype === 'u32' ? 'u32' : 'f32';
  const fin = pipelineFor(gpu, 'ce_finalize', { count: countType });
  rec.dispatch(fin, [stats, args.targets, lse, args.rowLoss, args.lossSum, args.countSum], [1], params(T, V, 0, 0));

  // Pass 2: dh (+)= G · W_chunk, chunk by chunk in a fixed order (G formed in place in L).
  if (!args.dh) return;
  const gradPipe = pipelineFor(gpu, 'ce_grad', {});
  chunks.forEach(([c0, n], ci) => {
    if (chunks.length > 1) {
      recordLogitsChunk(gpu, rec, args, 0, c0, n, L, T, H, n, 0);
      transform(c0, n);
    }
    const [gx, gy, stride] = flatGrid(gpu, T * n);
    const lscale = args.transform?.scale ?? 1;
    const softcap = args.transform?.softcap ?? 0;
    const u = params(T, n, n, c0, V, stride, { f: args.gradScale }, { f: lscale }, { f: softcap }, 0, 0, 0);
    rec.dispatch(gradPipe, [lse, args.targets, L], [gx, gy], u);
    recordMatmul(gpu, rec, {
      a: L,
      b: args.w,
      bOffset: c0 * H,
      ldb: H,
      c: args.dh!,
      M: T,
      N: H,
      K: n,
      accumulate: ci > 0 || !!args.accumulateDh,
      maxBindingBytes: args.maxBindingBytes,
    });
  });
}

/**
 * Records logits [T, V] = h[hRowOffset .. +T]·Wᵀ (generation) on the matmul family: its small-M
 * members for a token or a few, W bound in windows of rows when it exceeds the binding limit.
 */
export function recordLogits(gpu: Gpu, rec: Recorder, args: LogitsArgs): void {
  const what = 'logits';
  const { T, H, V } = args;
  const r0 = args.hRowOffset ?? 0;
  needDims(what, { T, H, V, hRowOffset: r0 });
  if (T === 0 || V === 0) return;
  if (H === 0) throw new GpuError(`${what}: H must be positive.`);
  const wt = weightDType(args.w, what);
  needElems(what, 'h', args.h, (r0 + T) * H, ['f32']);
  needElems(what, 'w', args.w, V * H, [wt]);
  needElems(what, 'logits', args.logits, T * V, ['f32']);
  bindable(gpu, what, { h: args.h, logits: args.logits });
  recordLogitsChunk(gpu, rec, args, r0, 0, V, args.logits, T, H, V, 0);
  if (args.transform)
    recordLogitTransform(gpu, rec, { logits: args.logits, T, n: V, ldl: V, c0: 0, V, transform: args.transform });
}
