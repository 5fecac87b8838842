/**
 * Non-finite scan (see shaders/finite.wgsl): records, for one tensor, the index of its first NaN or
 * infinite element into `flags[slot]` (0xffffffff = none). Callers set the flags to 0xffffffff,
 * record one scan per tensor into one recorder and read the flags back once, so checking a whole
 * model costs one pass over its bytes and one readback.
 *
 * A tensor above the storage binding limit is scanned in windows of whole words at offsets aligned
 * to minStorageBufferOffsetAlignment.
 */
import code from '../../shaders/finite.wgsl?raw';
import { type Gpu, type Recorder, params } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { bindingLimit, flatGrid, needDims, needElems, variantPipeline, weightDType } from './common';

/** flags[slot] when the tensor is all finite. */
export const ALL_FINITE = 0xffffffff;

export interface FiniteScanArgs {
  /** f32, f16 or bf16 tensor; its first `n` elements are scanned. */
  x: Tensor;
  n: number;
  /** u32 [slots] */
  flags: Tensor;
  slot: number;
  /** Binding size limit used for x (default: the device's; tests lower it). */
  maxBindingBytes?: number;
}

const MODE = { f32: 0, f16: 1, bf16: 2 } as const;

export function recordFiniteScan(gpu: Gpu, rec: Recorder, args: FiniteScanArgs): void {
  const what = 'recordFiniteScan';
  needDims(what, { n: args.n, slot: args.slot });
  const dt = weightDType(args.x, what);
  needElems(what, 'x', args.x, args.n);
  needElems(what, 'flags', args.flags, args.slot + 1, ['u32']);
  const totalWords = dt === 'f32' ? args.n : Math.ceil(args.n / 2);
  if (totalWords === 0) return;
  const pipe = variantPipeline(gpu, 'finite_scan', () => ({ source: code, kernel: 'scan' }));
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  const limit = bindingLimit(gpu, args.maxBindingBytes);
  // Whole aligned windows: each starts on an aligned byte offset and holds whole words.
  const windowBytes = Math.max(align, Math.floor(limit / align) * align);
  for (let start = 0; start < totalWords * 4; start += windowBytes) {
    const size = Math.min(windowBytes, totalWords * 4 - start);
    const n = size / 4;
    const [gx, gy, stride] = flatGrid(gpu, n);
    rec.dispatch(
      pipe,
      [{ buffer: args.x.buffer, offset: start, size }, args.flags],
      [gx, gy],
      params(n, stride, MODE[dt], args.slot, start / 4, 0, 0, 0),
    );
  }
}
