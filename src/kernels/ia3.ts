/**
 * (IA)³ kernels (shaders/ia3.wgsl): the column scaling X ∘ l of a linear layer's input or output
 * and the gradient Σ_rows A ∘ B of the scaling vector. src/kernels/linear.ts composes them with the
 * frozen matmul; the float64 spec is src/reference/linear.ts.
 */
import code from '../../shaders/ia3.wgsl?raw';
import { type Gpu, type Recorder, params } from '../gpu/context';
import { GpuLimitError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { bindable, flatGrid, needDims, needElems, noAlias, variantPipeline } from './common';

function kernel(gpu: Gpu, name: string): GPUComputePipeline {
  return variantPipeline(gpu, name, () => ({ source: code, kernel: name }));
}

export interface Ia3ScaleArgs {
  x: Tensor; // f32 [rows, cols]
  l: Tensor; // f32 [cols]
  out: Tensor; // f32 [rows, cols], not x's or l's buffer
  rows: number;
  cols: number;
  /** out += x ∘ l instead of out = x ∘ l. */
  accumulate?: boolean;
}

/** out (+)= x ∘ l, l broadcast over the rows. */
export function recordIa3Scale(gpu: Gpu, rec: Recorder, a: Ia3ScaleArgs): void {
  const what = 'recordIa3Scale';
  needDims(what, { rows: a.rows, cols: a.cols });
  const n = a.rows * a.cols;
  needElems(what, 'x', a.x, n, ['f32']);
  needElems(what, 'l', a.l, a.cols, ['f32']);
  needElems(what, 'out', a.out, n, ['f32']);
  noAlias(what, a.out, { x: a.x, l: a.l });
  bindable(gpu, what, { x: a.x, out: a.out });
  if (n === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, n);
  rec.dispatch(kernel(gpu, 'ia3_scale'), [a.x, a.l, a.out], [gx, gy], params(n, stride, a.cols, a.accumulate ? 1 : 0));
}

export interface Ia3GradArgs {
  a: Tensor; // f32 [rows, cols]
  b: Tensor; // f32 [rows, cols]
  dl: Tensor; // f32 [cols]
  rows: number;
  cols: number;
  /** dl += ... (gradient accumulation) instead of dl = .... */
  accumulate?: boolean;
}

/** dl (+)= Σ_rows a ∘ b, in a fixed order (deterministic). */
export function recordIa3Grad(gpu: Gpu, rec: Recorder, g: Ia3GradArgs): void {
  const what = 'recordIa3Grad';
  needDims(what, { rows: g.rows, cols: g.cols });
  needElems(what, 'a', g.a, g.rows * g.cols, ['f32']);
  needElems(what, 'b', g.b, g.rows * g.cols, ['f32']);
  needElems(what, 'dl', g.dl, g.cols, ['f32']);
  noAlias(what, g.dl, { a: g.a, b: g.b });
  bindable(gpu, what, { a: g.a, b: g.b });
  if (g.cols === 0) return;
  const groups = Math.ceil(g.cols / 64);
  if (groups > gpu.limits.maxComputeWorkgroupsPerDimension) {
    throw new GpuLimitError(`${what}: ${g.cols} columns are more than one dispatch covers.`);
  }
  rec.dispatch(kernel(gpu, 'ia3_grad'), [g.a, g.b, g.dl], [groups, 1], params(g.rows, g.cols, g.accumulate ? 1 : 0, 0));
}
