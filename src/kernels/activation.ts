/**
 * Activations (see shaders/activation.wgsl): SiLU, GELU-tanh (GPT-2's gelu_new), exact GELU, ReLU
 * and tanh (PEFT's prefix projection MLP) forward and backward, and the gated MLP product h = act(g)·u (SwiGLU; GeGLU with act 'gelu_tanh') with its
 * backward, for separate g / u tensors or one fused [rows, 2I] gate-up tensor (gate columns first).
 * All tensors f32; outputs must not share a buffer with inputs.
 */
import code from '../../shaders/activation.wgsl?raw';
import { type Gpu, type Recorder, params } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { flatGrid, needDims, needElems, noAlias, variantPipeline } from './common';

export type Activation = 'silu' | 'gelu_tanh' | 'gelu' | 'relu' | 'tanh';

const ACT_ID: Record<Activation, number> = { silu: 0, gelu_tanh: 1, gelu: 2, relu: 3, tanh: 4 };

function pipelineFor(gpu: Gpu, kernel: string, act: Activation): GPUComputePipeline {
  const id = ACT_ID[act];
  if (id === undefined) throw new GpuError(`Unknown activation "${act}".`);
  return variantPipeline(gpu, `${kernel}_${act}`, () => ({
    source: code,
    kernel,
    prelude: [`const ACT: u32 = ${id}u;`],
  }));
}

// ------------------------------------------------------------------ plain activations

export interface ActArgs {
  x: Tensor; // f32 [n]
  y: Tensor; // f32 [n] (output)
  n: number;
}

export interface ActBackwardArgs {
  dy: Tensor; // f32 [n]
  x: Tensor; // f32 [n] (the forward's input)
  dx: Tensor; // f32 [n] (output)
  n: number;
  /** dx += ... (default false). */
  accumulate?: boolean;
}

/** y = act(x). */
export function recordActivation(gpu: Gpu, rec: Recorder, args: ActArgs & { act: Activation }): void {
  recordAct(gpu, rec, args, args.act, `record activation ${args.act}`);
}

/** dx (+)= dy·act'(x). */
export function recordActivationBackward(gpu: Gpu, rec: Recorder, args: ActBackwardArgs & { act: Activation }): void {
  recordActBackward(gpu, rec, args, args.act, `record activation ${args.act} backward`);
}

function recordAct(gpu: Gpu, rec: Recorder, args: ActArgs, act: Activation, what: string): void {
  needDims(what, { n: args.n });
  needElems(what, 'x', args.x, args.n, ['f32']);
  needElems(what, 'y', args.y, args.n, ['f32']);
  noAlias(what, args.y, { x: args.x });
  if (args.n === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, args.n);
  rec.dispatch(pipelineFor(gpu, 'act_fwd', act), [args.x, args.y], [gx, gy], params(args.n, stride, 0, 0));
}

function recordActBackward(gpu: Gpu, rec: Recorder, args: ActBackwardArgs, act: Activation, what: string): void {
  needDims(what, { n: args.n });
  needElems(what, 'dy', args.dy, args.n, ['f32']);
  needElems(what, 'x', args.x, args.n, ['f32']);
  needElems(what, 'dx', args.dx, args.n, ['f32']);
  noAlias(what, args.dx, { dy: args.dy, x: args.x });
  if (args.n === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, args.n);
  const u = params(args.n, stride, args.accumulate ? 1 : 0, 0);
  rec.dispatch(pipelineFor(gpu, 'act_bwd', act), [args.dy, args.x, args.dx], [gx, gy], u);
}

// ------------------------------------------------------------------ gated (SwiGLU / GeGLU)

/** Separate gate and up tensors, all f32 [n] (n = T·I). */
export interface SwiGluSplitArgs {
  g: Tensor;
  u: Tensor;
  h: Tensor; // output
  n: number;
  /** Default 'silu' (SwiGLU); 'gelu_tanh' for GeGLU. */
  act?: Activation;
}

/** One fused gate-up tensor gu f32 [rows, 2·cols]: gate = columns [0, cols), up = [cols, 2·cols). */
export interface SwiGluFusedArgs {
  gu: Tensor;
  h: Tensor; // f32 [rows, cols] (output)
  rows: number;
  cols: number;
  act?: Activation;
}

export type SwiGluArgs = SwiGluSplitArgs | SwiGluFusedArgs;

export interface SwiGluBackwardSplitArgs {
  dh: Tensor; // f32 [n]
  g: Tensor; // f32 [n]
  u: Tensor; // f32 [n]
  dg: Tensor; // f32 [n] (output)
  du: Tensor; // f32 [n] (output)
  n: number;
  act?: Activation;
}

export interface SwiGluBackwardFusedArgs {
  dh: Tensor; // f32 [rows, cols]
  gu: Tensor; // f32 [rows, 2·cols]
  dgu: Tensor; // f32 [rows, 2·cols] (output: d gate in [0, cols), d up in [cols, 2·cols))
  rows: number;
  cols: number;
  act?: Activation;
}

export type SwiGluBackwardArgs = SwiGluBackwardSplitArgs | SwiGluBackwardFusedArgs;

/** h = act(g)·u (act = silu unless given). */
export function recordSwiGlu(gpu: Gpu, rec: Recorder, args: SwiGluArgs): void {
  const what = 'recordSwiGlu';
  const act = args.act ?? 'silu';
  let n: number;
  let bindings: Tensor[];
  let shape: number[]; // I, gs, go, us, uo
  if ('gu' in args) {
    needDims(what, { rows: args.rows, cols: args.cols });
    n = args.rows * args.cols;
    needElems(what, 'gu', args.gu, 2 * n, ['f32']);
    needElems(what, 'h', args.h, n, ['f32']);
    noAlias(what, args.h, { gu: args.gu });
    bindings = [args.gu, args.gu, args.h];
    shape = [Math.max(1, args.cols), 2 * args.cols, 0, 2 * args.cols, args.cols];
  } else {
    needDims(what, { n: args.n });
    n = args.n;
    needElems(what, 'g', args.g, n, ['f32']);
    needElems(what, 'u', args.u, n, ['f32']);
    needElems(what, 'h', args.h, n, ['f32']);
    noAlias(what, args.h, { g: args.g, u: args.u });
    bindings = [args.g, args.u, args.h];
    shape = [Math.max(1, n), 0, 0, 0, 0];
  }
  if (n === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, n);
  rec.dispatch(pipelineFor(gpu, 'gated_fwd', act), bindings, [gx, gy], params(n, stride, ...shape, 0));
}

/** dg = dh·u·act'(g), du = dh·act(g) (into dgu's two column blocks for the fused layout). */
export function recordSwiGluBackward(gpu: Gpu, rec: Recorder, args: SwiGluBackwardArgs): void {
  const what = 'recordSwiGluBackward';
  const act = args.act ?? 'silu';
  if ('gu' in args) {
    needDims(what, { rows: args.rows, cols: args.cols });
    const n = args.rows * args.cols;
    needElems(what, 'dh', args.dh, n, ['f32']);
    needElems(what, 'gu', args.gu, 2 * n, ['f32']);
    needElems(what, 'dgu', args.dgu, 2 * n, ['f32']);
    noAlias(what, args.dgu, { dh: args.dh, gu: args.gu });
    if (n === 0) return;
    const [gx, gy, stride] = flatGrid(gpu, n);
    rec.dispatch(
      pipelineFor(gpu, 'gated_bwd_fused', act),
      [args.dh, args.gu, args.dgu],
      [gx, gy],
      params(n, stride, args.cols, 0),
    );
    return;
  }
  needDims(what, { n: args.n });
  for (const [k, t] of Object.entries({ dh: args.dh, g: args.g, u: args.u, dg: args.dg, du: args.du }))
    needElems(what, k, t, args.n, ['f32']);
  noAlias(what, args.dg, { dh: args.dh, g: args.g, u: args.u, du: args.du });
  noAlias(what, args.du, { dh: args.dh, g: args.g, u: args.u });
  if (args.n === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, args.n);
  rec.dispatch(
    pipelineFor(gpu, 'gated_bwd', act),
    [args.dh, args.g, args.u, args.dg, args.du],
    [gx, gy],
    params(args.n, stride, 0, 0),
  );
}
