/**
 * Mixture-of-experts routing and mixing (see shaders/moe.wgsl for bindings and layouts): the
 * router's softmax / top-k / renormalisation and its backward, the per-expert weighting of rows,
 * and the per-token dot products that give dL/d(routing weight). The expert MLPs themselves are
 * ordinary linears (src/kernels/linear.ts); src/model/runner-moe.ts strings them together.
 */
import code from '../../shaders/moe.wgsl?raw';
import { type Gpu, type Recorder, params } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { flatGrid, itemGrid, needDims, needElems, noAlias, variantPipeline } from './common';

function kernel(gpu: Gpu, name: string): GPUComputePipeline {
  return variantPipeline(gpu, name, () => ({ source: code, kernel: name }));
}

export interface RouterArgs {
  logits: Tensor; // f32 [T, E]
  w: Tensor; // f32 [T, E] out
  T: number;
  E: number;
  /** Experts per token (1 <= K <= E). */
  K: number;
}

/** w = the renormalised top-K softmax weights of each token's router logits (0 for other experts). */
export function recordRouter(gpu: Gpu, rec: Recorder, a: RouterArgs): void {
  const what = 'recordRouter';
  needDims(what, { T: a.T, E: a.E, K: a.K });
  if (a.K < 1 || a.K > a.E) throw new GpuError(`${what}: K must be in 1..E (${a.E}), got ${a.K}.`);
  needElems(what, 'logits', a.logits, a.T * a.E, ['f32']);
  needElems(what, 'w', a.w, a.T * a.E, ['f32']);
  noAlias(what, a.w, { logits: a.logits });
  if (a.T === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, a.T, 64);
  rec.dispatch(kernel(gpu, 'moe_router'), [a.logits, a.w], [gx, gy], params(a.T, stride, a.E, a.K));
}

export interface RouterBackwardArgs {
  w: Tensor; // f32 [T, E] the router's weights
  g: Tensor; // f32 [T, E] dL/dw
  dl: Tensor; // f32 [T, E] out: dL/dlogits
  T: number;
  E: number;
}

/** dl = dL/d(router logits) from dL/dw (see shaders/moe.wgsl moe_router_bwd). */
export function recordRouterBackward(gpu: Gpu, rec: Recorder, a: RouterBackwardArgs): void {
  const what = 'recordRouterBackward';
  needDims(what, { T: a.T, E: a.E });
  for (const [k, t] of [
    ['w', a.w],
    ['g', a.g],
    ['dl', a.dl],
  ] as const)
    needElems(what, k, t, a.T * a.E, ['f32']);
  noAlias(what, a.dl, { w: a.w, g: a.g });
  if (a.T === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, a.T, 64);
  rec.dispatch(kernel(gpu, 'moe_router_bwd'), [a.w, a.g, a.dl], [gx, gy], params(a.T, stride, a.E, 0));
}

export interface ScaleRowsArgs {
  w: Tensor; // f32 [T, E]
  x: Tensor; // f32 [T, H]
  out: Tensor; // f32 [T, H]
  T: number;
  H: number;
  E: number;
  /** The column of w that scales each row. */
  expert: number;
  /** out += instead of out =. */
  accumulate: boolean;
}

/** out[t, :] (+)= w[t, expert]·x[t, :]. */
export function recordScaleRows(gpu: Gpu, rec: Recorder, a: ScaleRowsArgs): void {
  const what = 'recordScaleRows';
  needDims(what, { T: a.T, H: a.H, E: a.E, expert: a.expert });
  if (a.expert >= a.E) throw new GpuError(`${what}: expert ${a.expert} is past E (${a.E}).`);
  needElems(what, 'w', a.w, a.T * a.E, ['f32']);
  needElems(what, 'x', a.x, a.T * a.H, ['f32']);
  needElems(what, 'out', a.out, a.T * a.H, ['f32']);
  noAlias(what, a.out, { w: a.w, x: a.x });
  const n = a.T * a.H;
  if (n === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, n);
  const u = params(n, stride, a.H, a.E, a.expert, a.accumulate ? 1 : 0, 0, 0);
  rec.dispatch(kernel(gpu, 'moe_scale_rows'), [a.w, a.x, a.out], [gx, gy], u);
}

export interface RowDotArgs {
  a: Tensor; // f32 [T, H]
  b: Tensor; // f32 [T, H]
  g: Tensor; // f32 [T, E]: column `expert` is written
  T: number;
  H: number;
  E: number;
  expert: number;
}

/** g[t, expert] = Σ_j a[t, j]·b[t, j]. */
export function recordRowDot(gpu: Gpu, rec: Recorder, a: RowDotArgs): void {
  const what = 'recordRowDot';
  needDims(what, { T: a.T, H: a.H, E: a.E, expert: a.expert });
  if (a.expert >= a.E) throw new GpuError(`${what}: expert ${a.expert} is past E (${a.E}).`);
  needElems(what, 'a', a.a, a.T * a.H, ['f32']);
  needElems(what, 'b', a.b, a.T * a.H, ['f32']);
  needElems(what, 'g', a.g, a.T * a.E, ['f32']);
  noAlias(what, a.g, { a: a.a, b: a.b });
  if (a.T === 0) return;
  const [gx, gy] = itemGrid(gpu, a.T);
  const u = params(a.T, gx, a.H, a.E, a.expert, 0, 0, 0);
  rec.dispatch(kernel(gpu, 'moe_row_dot'), [a.a, a.b, a.g], [gx, gy], u);
}
