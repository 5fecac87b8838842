/**
 * RMSNorm and LayerNorm over the last dimension of a row-major [rows, dim] f32 tensor (see
 * shaders/norm.wgsl). Forward saves rstd (and mean for LayerNorm); backward gives dX only, since
 * the norm weights are frozen. Weights and biases may be f32, f16 or bf16.
 *
 * Qwen3's q/k norm is the same RMSNorm with rows = T·heads and dim = headDim.
 * Aliasing: outputs must not share a buffer with inputs (WebGPU forbids a buffer bound both
 * writable and read in one dispatch).
 */
import code from '../../shaders/norm.wgsl?raw';
import { type Gpu, type Recorder, params } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { itemGrid, needDims, needElems, noAlias, variantPipeline, weightDType, weightLoader } from './common';
import { rowWidth } from './row-width';

export interface RmsNormArgs {
  x: Tensor; // f32 [rows, dim]
  w: Tensor; // f32 | f16 | bf16 [dim]
  y: Tensor; // f32 [rows, dim] (output)
  rstd: Tensor; // f32 [rows] (output, saved for backward)
  rows: number;
  dim: number;
  eps: number;
  /** Added to every weight: 0 (default) for llama / qwen, 1 for Gemma's (1 + w). */
  weightOffset?: number;
}

export interface RmsNormBackwardArgs {
  dy: Tensor; // f32 [rows, dim]
  x: Tensor; // f32 [rows, dim] (the forward's input)
  w: Tensor; // f32 | f16 | bf16 [dim]
  rstd: Tensor; // f32 [rows] (from the forward)
  dx: Tensor; // f32 [rows, dim] (output)
  rows: number;
  dim: number;
  /** dx += ... instead of dx = ... (default false). */
  accumulate?: boolean;
  weightOffset?: number;
}

export interface LayerNormArgs {
  x: Tensor; // f32 [rows, dim]
  w: Tensor; // f32 | f16 | bf16 [dim]
  b: Tensor; // f32 | f16 | bf16 [dim]
  y: Tensor; // f32 [rows, dim] (output)
  mean: Tensor; // f32 [rows] (output)
  rstd: Tensor; // f32 [rows] (output)
  rows: number;
  dim: number;
  eps: number;
  weightOffset?: number;
}

export interface LayerNormBackwardArgs {
  dy: Tensor; // f32 [rows, dim]
  x: Tensor; // f32 [rows, dim]
  w: Tensor; // f32 | f16 | bf16 [dim]
  mean: Tensor; // f32 [rows]
  rstd: Tensor; // f32 [rows]
  dx: Tensor; // f32 [rows, dim] (output)
  rows: number;
  dim: number;
  accumulate?: boolean;
  weightOffset?: number;
}

type Kernel = 'rms_fwd' | 'rms_bwd' | 'ln_fwd' | 'ln_bwd';

/** Invocations per row: one SIMD group on CPU drivers, else 64 or 256 by the row's length (rowWidth). */
function workgroupFor(gpu: Gpu, dim: number): number {
  return rowWidth(gpu, dim <= 256 ? 64 : 256);
}

function pipelineFor(gpu: Gpu, kernel: Kernel, dim: number, w: Tensor, b?: Tensor): GPUComputePipeline {
  const wg = workgroupFor(gpu, dim);
  const wd = weightDType(w, kernel);
  const prelude = [`const WG: u32 = ${wg}u;`, weightLoader('wload', 'w', wd)];
  let label = `${kernel}_${wd}_wg${wg}`;
  if (b) {
    const bd = weightDType(b, kernel);
    prelude.push(weightLoader('bload', 'b', bd));
    label += `_b${bd}`;
  }
  return variantPipeline(gpu, label, () => ({ source: code, kernel, prelude }));
}

/** y = x·rstd·(w + weightOffset), rstd = 1/sqrt(mean(x²) + eps) per row; saves rstd. */
export function recordRmsNorm(gpu: Gpu, rec: Recorder, args: RmsNormArgs): void {
  const what = 'recordRmsNorm';
  needDims(what, { rows: args.rows, dim: args.dim });
  const n = args.rows * args.dim;
  needElems(what, 'x', args.x, n, ['f32']);
  needElems(what, 'w', args.w, args.dim);
  needElems(what, 'y', args.y, n, ['f32']);
  needElems(what, 'rstd', args.rstd, args.rows, ['f32']);
  noAlias(what, args.y, { x: args.x, w: args.w, rstd: args.rstd });
  noAlias(what, args.rstd, { x: args.x, w: args.w });
  if (n === 0) return;
  const [gx, gy] = itemGrid(gpu, args.rows);
  const u = params(args.rows, args.dim, gx, { f: args.eps }, { f: args.weightOffset ?? 0 }, 0, 0, 0);
  rec.dispatch(pipelineFor(gpu, 'rms_fwd', args.dim, args.w), [args.x, args.w, args.y, args.rstd], [gx, gy], u);
}

/** dx (+)= dL/dx of the RMSNorm (w frozen), from the saved rstd. */
export function recordRmsNormBackward(gpu: Gpu, rec: Recorder, args: RmsNormBackwardArgs): void {
  const what = 'recordRmsNormBackward';
  needDims(what, { rows: args.rows, dim: args.dim });
  const n = args.rows * args.dim;
  needElems(what, 'dy', args.dy, n, ['f32']);
  needElems(what, 'x', args.x, n, ['f32']);
  needElems(what, 'w', args.w, args.dim);
  needElems(what, 'rstd', args.rstd, args.rows, ['f32']);
  needElems(what, 'dx', args.dx, n, ['f32']);
  noAlias(what, args.dx, { dy: args.dy, x: args.x, w: args.w, rstd: args.rstd });
  if (n === 0) return;
  const [gx, gy] = itemGrid(gpu, args.rows);
  const u = params(args.rows, args.dim, gx, args.accumulate ? 1 : 0, { f: args.weightOffset ?? 0 }, 0, 0, 0);
  rec.dispatch(
    pipelineFor(gpu, 'rms_bwd', args.dim, args.w),
    [args.dy, args.x, args.w, args.rstd, args.dx],
    [gx, gy],
    u,
  );
}

/** y = (x - mean)·rstd·(w + weightOffset) + b per row (biased variance); saves mean and rstd. */
export function recordLayerNorm(gpu: Gpu, rec: Recorder, args: LayerNormArgs): void {
  const what = 'recordLayerNorm';
  needDims(what, { rows: args.rows, dim: args.dim });
  const n = args.rows * args.dim;
  needElems(what, 'x', args.x, n, ['f32']);
  needElems(what, 'w', args.w, args.dim);
  needElems(what, 'b', args.b, args.dim);
  needElems(what, 'y', args.y, n, ['f32']);
  needElems(what, 'mean', args.mean, args.rows, ['f32']);
  needElems(what, 'rstd', args.rstd, args.rows, ['f32']);
  for (const out of [args.y, args.mean, args.rstd]) noAlias(what, out, { x: args.x, w: args.w, b: args.b });
  noAlias(what, args.y, { mean: args.mean, rstd: args.rstd });
  noAlias(what, args.mean, { rstd: args.rstd });
  if (n === 0) return;
  const [gx, gy] = itemGrid(gpu, args.rows);
  const u = params(args.rows, args.dim, gx, { f: args.eps }, { f: args.weightOffset ?? 0 }, 0, 0, 0);
  rec.dispatch(
    pipelineFor(gpu, 'ln_fwd', args.dim, args.w, args.b),
    [args.x, args.w, args.b, args.y, args.mean, args.rstd],
    [gx, gy],
    u,
  );
}

/** dx (+)= dL/dx of the LayerNorm (w, b frozen), from the saved mean and rstd. */
export function recordLayerNormBackward(gpu: Gpu, rec: Recorder, args: LayerNormBackwardArgs): void {
  const what = 'recordLayerNormBackward';
  needDims(what, { rows: args.rows, dim: args.dim });
  const n = args.rows * args.dim;
  needElems(what, 'dy', args.dy, n, ['f32']);
  needElems(what, 'x', args.x, n, ['f32']);
  needElems(what, 'w', args.w, args.dim);
  needElems(what, 'mean', args.mean, args.rows, ['f32']);
  needElems(what, 'rstd', args.rstd, args.rows, ['f32']);
  needElems(what, 'dx', args.dx, n, ['f32']);
  noAlias(what, args.dx, { dy: args.dy, x: args.x, w: args.w, mean: args.mean, rstd: args.rstd });
  if (n === 0) return;
  const [gx, gy] = itemGrid(gpu, args.rows);
  const u = params(args.rows, args.dim, gx, args.accumulate ? 1 : 0, { f: args.weightOffset ?? 0 }, 0, 0, 0);
  rec.dispatch(
    pipelineFor(gpu, 'ln_bwd', args.dim, args.w),
    [args.dy, args.x, args.w, args.mean, args.rstd, args.dx],
    [gx, gy],
    u,
  );
}
