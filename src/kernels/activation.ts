/**
 * Activations (see shaders/activation.wgsl): SiLU, GELU-tanh (GPT-2's gelu_new), exact GELU and
 * ReLU forward and backward, and the gated MLP product h = act(g)·u (SwiGLU; GeGLU with act 'gelu_tanh') with its
 * backward, for separate g / u tensors or one fused [rows, 2I] gate-up tensor (gate columns first).
 * All tensors f32; outputs must not share a buffer with inputs.
 */
import code from '../../shaders/activation.wgsl?raw';
import { type Gpu, type Recorder, params } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { flatGrid, needDims, needElems, noAlias, variantPipeline } from './common';

export type Activation = 'silu' | 'gelu_tanh' | 'gelu' | 'relu';

const ACT_ID: Record<Activation, number> = { silu: 0, gelu_tanh: 1, gelu: 2, relu: 3 };

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
export function recordActivation(gpu: Gpu, rec: Recorder, a: ActArgs & { act: Activation }): void {
  recordAct(gpu, rec, a, a.act, `record activation ${a.act}`);
}

/** dx (+)= dy·act'(x). */
export function recordActivationBackward(gpu: Gpu, rec: Recorder, a: ActBackwardArgs & { act: Activation }): void {
  recordActBackward(gpu, rec, a, a.act, `record activation ${a.act} backward`);
}

function recordAct(gpu: Gpu, rec: Recorder, a: ActArgs, act: Activation, what: string): void {
  needDims(what, { n: a.n });
  needElems(what, 'x', a.x, a.n, ['f32']);
  needElems(what, 'y', a.y, a.n, ['f32']);
  noAlias(what, a.y, { x: a.x });
  if (a.n === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, a.n);
  rec.dispatch(pipelineFor(gpu, 'act_fwd', act), [a.x, a.y], [gx, gy], params(a.n, stride, 0, 0));
}

function recordActBackward(gpu: Gpu, rec: Recorder, a: ActBackwardArgs, act: Activation, what: string): void {
  needDims(what, { n: a.n });
  needElems(what, 'dy', a.dy, a.n, ['f32']);
  needElems(what, 'x', a.x, a.n, ['f32']);
  needElems(what, 'dx', a.dx, a.n, ['f32']);
  noAlias(what, a.dx, { dy: a.dy, x: a.x });
  if (a.n === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, a.n);
  const u = params(a.n, stride, a.accumulate ? 1 : 0, 0);
  rec.dispatch(pipelineFor(gpu, 'act_bwd', act), [a.dy, a.x, a.dx], [gx, gy], u);
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
export function recordSwiGlu(gpu: Gpu, rec: Recorder, a: SwiGluArgs): void {
  const what = 'recordSwiGlu';
  const act = a.act ?? 'silu';
  let n: number;
  let bindings: Tensor[];
  let shape: number[]; // I, gs, go, us, uo
  if ('gu' in a) {
    needDims(what, { rows: a.rows, cols: a.cols });
    n = a.rows * a.cols;
    needElems(what, 'gu', a.gu, 2 * n, ['f32']);
    needElems(what, 'h', a.h, n, ['f32']);
    noAlias(what, a.h, { gu: a.gu });
    bindings = [a.gu, a.gu, a.h];
    shape = [Math.max(1, a.cols), 2 * a.cols, 0, 2 * a.cols, a.cols];
  } else {
    needDims(what, { n: a.n });
    n = a.n;
    needElems(what, 'g', a.g, n, ['f32']);
    needElems(what, 'u', a.u, n, ['f32']);
    needElems(what, 'h', a.h, n, ['f32']);
    noAlias(what, a.h, { g: a.g, u: a.u });
    bindings = [a.g, a.u, a.h];
    shape = [Math.max(1, n), 0, 0, 0, 0];
  }
  if (n === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, n);
  rec.dispatch(pipelineFor(gpu, 'gated_fwd', act), bindings, [gx, gy], params(n, stride, ...shape, 0));
}

/** dg = dh·u·act'(g), du = dh·act(g) (into dgu's two column blocks for the fused layout). */
export function recordSwiGluBackward(gpu: Gpu, rec: Recorder, a: SwiGluBackwardArgs): void {
  const what = 'recordSwiGluBackward';
  const act = a.act ?? 'silu';
  if ('gu' in a) {
    needDims(what, { rows: a.rows, cols: a.cols });
    const n = a.rows * a.cols;
    needElems(what, 'dh', a.dh, n, ['f32']);
    needElems(what, 'gu', a.gu, 2 * n, ['f32']);
    needElems(what, 'dgu', a.dgu, 2 * n, ['f32']);
    noAlias(what, a.dgu, { dh: a.dh, gu: a.gu });
    if (n === 0) return;
    const [gx, gy, stride] = flatGrid(gpu, n);
    rec.dispatch(pipelineFor(gpu, 'gated_bwd_fused', act), [a.dh, a.gu, a.dgu], [gx, gy], params(n, stride, a.cols, 0));
    return;
  }
  needDims(what, { n: a.n });
  for (const [k, t] of Object.entries({ dh: a.dh, g: a.g, u: a.u, dg: a.dg, du: a.du }))
    needElems(what, k, t, a.n, ['f32']);
  noAlias(what, a.dg, { dh: a.dh, g: a.g, u: a.u, du: a.du });
  noAlias(what, a.du, { dh: a.dh, g: a.g, u: a.u });
  if (a.n === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, a.n);
  rec.dispatch(pipelineFor(gpu, 'gated_bwd', act), [a.dh, a.g, a.u, a.dg, a.du], [gx, gy], params(a.n, stride, 0, 0));
}
