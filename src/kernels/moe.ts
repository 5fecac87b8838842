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
export function recordRouter(gpu: Gpu, rec: Recorder, args: RouterArgs): void {
  const what = 'recordRouter';
  needDims(what, { T: args.T, E: args.E, K: args.K });
  if (args.K < 1 || args.K > args.E) throw new GpuError(`${what}: K must be in 1..E (${args.E}), got ${args.K}.`);
  needElems(what, 'logits', args.logits, args.T * args.E, ['f32']);
  needElems(what, 'w', args.w, args.T * args.E, ['f32']);
  noAlias(what, args.w, { logits: args.logits });
  if (args.T === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, args.T, 64);
  rec.dispatch(kernel(gpu, 'moe_router'), [args.logits, args.w], [gx, gy], params(args.T, stride, args.E, args.K));
}

export interface RouterBackwardArgs {
  w: Tensor; // f32 [T, E] the router's weights
  g: Tensor; // f32 [T, E] dL/dw
  dl: Tensor; // f32 [T, E] out: dL/dlogits
  T: number;
  E: number;
}

/** dl = dL/d(router logits) from dL/dw (see shaders/moe.wgsl moe_router_bwd). */
export function recordRouterBackward(gpu: Gpu, rec: Recorder, args: RouterBackwardArgs): void {
  const what = 'recordRouterBackward';
  needDims(what, { T: args.T, E: args.E });
  for (const [k, t] of [
    ['w', args.w],
    ['g', args.g],
    ['dl', args.dl],
  ] as const)
    needElems(what, k, t, args.T * args.E, ['f32']);
  noAlias(what, args.dl, { w: args.w, g: args.g });
  if (args.T === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, args.T, 64);
  rec.dispatch(kernel(gpu, 'moe_router_bwd'), [args.w, args.g, args.dl], [gx, gy], params(args.T, stride, args.E, 0));
}

/**
 * The checks of the per-expert row ops: T, H, E and the expert are counts, the expert is one of E,
 * and each named tensor is f32 with T rows of its width (H or E).
 */
function needExpertRows(
  what: string,
  d: { T: number; H: number; E: number; expert: number },
  rows: Record<string, [Tensor, number]>,
): void {
  needDims(what, { T: d.T, H: d.H, E: d.E, expert: d.expert });
  if (d.expert >= d.E) throw new GpuError(`${what}: expert ${d.expert} is past E (${d.E}).`);
  for (const [name, [t, width]] of Object.entries(rows)) needElems(what, name, t, d.T * width, ['f32']);
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
export function recordScaleRows(gpu: Gpu, rec: Recorder, args: ScaleRowsArgs): void {
  const what = 'recordScaleRows';
  needExpertRows(what, args, { w: [args.w, args.E], x: [args.x, args.H], out: [args.out, args.H] });
  noAlias(what, args.out, { w: args.w, x: args.x });
  const n = args.T * args.H;
  if (n === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, n);
  const u = params(n, stride, args.H, args.E, args.expert, args.accumulate ? 1 : 0, 0, 0);
  rec.dispatch(kernel(gpu, 'moe_scale_rows'), [args.w, args.x, args.out], [gx, gy], u);
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
export function recordRowDot(gpu: Gpu, rec: Recorder, args: RowDotArgs): void {
  const what = 'recordRowDot';
  needExpertRows(what, args, { a: [args.a, args.H], b: [args.b, args.H], g: [args.g, args.E] });
  noAlias(what, args.g, { a: args.a, b: args.b });
  if (args.T === 0) return;
  const [gx, gy] = itemGrid(gpu, args.T);
  const u = params(args.T, gx, args.H, args.E, args.expert, 0, 0, 0);
  rec.dispatch(kernel(gpu, 'moe_row_dot'), [args.a, args.b, args.g], [gx, gy], u);
}
