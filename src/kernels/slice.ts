/** Column-block copies between row-major f32 matrices (see shaders/slice.wgsl). */
import code from '../../shaders/slice.wgsl?raw';
import { type Gpu, type Recorder, params } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';

export interface CopyColumnsArgs {
  src: Tensor; // f32 [rows, srcStride]
  dst: Tensor; // f32 [rows, dstStride]
  rows: number;
  width: number;
  srcStride: number;
  srcCol0: number;
  dstStride: number;
  dstCol0: number;
  accumulate?: boolean;
}

export function recordCopyColumns(gpu: Gpu, rec: Recorder, a: CopyColumnsArgs): void {
  const pipe = gpu.pipeline('copy_columns', code);
  const u = params(a.rows, a.width, a.srcStride, a.srcCol0, a.dstStride, a.dstCol0, a.accumulate ? 1 : 0, 0);
  rec.dispatch(pipe, [a.src, a.dst], [Math.ceil(a.width / 64), Math.ceil(a.rows / 4)], u);
}
