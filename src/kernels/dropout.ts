/**
 * Dropout applied to a whole f32 tensor (shaders/dropout.wgsl `dropout_apply`), with the mask defined
 * in src/numerics/dropout.ts (hash of seed, row, col). The LoRA linear does not call this: it
 * applies the same mask inside the matmul loaders. Useful for other layers and to test the mask.
 *
 *   y[row, col] = x[row, col] * (keep ? 1 / (1 - p) : 0)        x, y f32 [rows, cols], y != x
 */
import source from '../../shaders/dropout.wgsl?raw';
import { type Gpu, type Recorder, params } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { dropoutThreshold } from '../numerics/dropout';
import { flatGrid, variantPipeline } from './common';

export interface DropoutArgs {
  x: Tensor; // f32 [rows, cols]
  y: Tensor; // f32 [rows, cols]
  rows: number;
  cols: number;
  seed: number;
  p: number;
}

export function recordDropout(gpu: Gpu, rec: Recorder, args: DropoutArgs): void {
  const n = args.rows * args.cols;
  if (n === 0) return;
  if (args.x.buffer === args.y.buffer) throw new GpuError('recordDropout: y must not alias x.');
  const pipe = variantPipeline(gpu, 'dropout_apply', () => ({ source, kernel: 'dropout_apply' }));
  const [gx, gy, stride] = flatGrid(gpu, n);
  const u = params(
    args.rows,
    args.cols,
    args.seed >>> 0,
    dropoutThreshold(args.p),
    { f: 1 / (1 - args.p) },
    stride,
    0,
    0,
  );
  rec.dispatch(pipe, [args.x, args.y], [gx, gy], u);
}
