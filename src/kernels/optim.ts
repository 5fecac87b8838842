/**
 * Optimizer steps on f32 parameters (the LoRA A / B matrices), see shaders/optim.wgsl:
 * AdamW exactly like torch.optim.AdamW and plain SGD like torch.optim.SGD (no momentum), with
 * torch clip_grad_norm_ semantics done on the GPU:
 *
 *   recordSumSquares(gpu, rec, {tensors: grads, out: normSq, ws})   // Σ g² of the raw gradients
 *   recordAdamW(gpu, rec, {..., normSq, maxNorm, gradScale})         // for every parameter tensor
 *
 * The effective gradient is g = grad·gradScale·min(1, maxNorm / (‖grad‖·|gradScale| + 1e-6)):
 * normSq holds the squares of the RAW gradients (before gradScale), and the optimizer scales the
 * norm by |gradScale|, so token-count normalisation and clipping compose like
 * `loss / count; backward; clip_grad_norm_; step` in torch.
 *
 * Scalars (lr, betas, eps, weight decay, bias corrections for the step t) are uniforms recorded
 * with the dispatch, so the step's values can change every step without recompiling.
 * A non-finite normSq gives undefined (not NaN-propagating) clip coefficients: check the loss.
 */
import code from '../../shaders/optim.wgsl?raw';
import { type Gpu, type Recorder, params } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { flatGrid, needDims, needElems, noAlias, variantPipeline } from './common';

export interface ClipArgs {
  /** f32 [1]: Σ of squared raw gradients of ALL trainable tensors (recordSumSquares). Clipping is
   * active when this and maxNorm > 0 are given. */
  normSq?: Tensor;
  /** Global-norm clip threshold (torch clip_grad_norm_ max_norm); <= 0 or omitted: no clipping. */
  maxNorm?: number;
  /** Multiplies the gradient before clipping and the step (default 1), e.g. 1 / counted tokens. */
  gradScale?: number;
}

export interface AdamWArgs extends ClipArgs {
  param: Tensor; // f32 [n] (updated)
  grad: Tensor; // f32 [n]
  m: Tensor; // f32 [n] first moment (updated; zeros before step 1)
  v: Tensor; // f32 [n] second moment (updated; zeros before step 1)
  n: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count t (bias corrections 1 - beta^t). */
  step: number;
}

export interface SgdArgs extends ClipArgs {
  param: Tensor; // f32 [n] (updated)
  grad: Tensor; // f32 [n]
  n: number;
  lr: number;
  /** L2 weight decay added to the gradient (torch SGD), default 0. */
  weightDecay?: number;
}

function clipPrelude(binding: number, clip: boolean): string[] {
  if (!clip) return ['fn clip_coef() -> f32 { return 1.0; }'];
  return [
    `@group(0) @binding(${binding}) var<storage, read> normSq: array<f32>;`,
    'fn clip_coef() -> f32 {',
    '  let norm = sqrt(normSq[0]) * abs(p.gradScale);',
    '  return min(1.0, p.maxNorm / (norm + 1e-6));',
    '}',
  ];
}

function clipping(what: string, args: ClipArgs, others: Record<string, Tensor>): Tensor | null {
  if (!(args.maxNorm !== undefined && args.maxNorm > 0)) return null;
  if (!args.normSq) throw new GpuError(`${what}: maxNorm ${args.maxNorm} needs normSq (from recordSumSquares).`);
  needElems(what, 'normSq', args.normSq, 1, ['f32']);
  for (const [k, t] of Object.entries(others)) {
    if (k !== 'grad') noAlias(what, t, { normSq: args.normSq });
  }
  return args.normSq;
}

/** One torch.optim.AdamW step (decoupled weight decay, bias-corrected) with optional clipping. */
export function recordAdamW(gpu: Gpu, rec: Recorder, args: AdamWArgs): void {
  const what = 'recordAdamW';
  needDims(what, { n: args.n });
  if (!Number.isInteger(args.step) || args.step < 1)
    throw new GpuError(`${what}: step must be an integer >= 1, got ${args.step}.`);
  const named = { param: args.param, grad: args.grad, m: args.m, v: args.v };
  for (const [k, t] of Object.entries(named)) needElems(what, k, t, args.n, ['f32']);
  noAlias(what, args.param, { grad: args.grad, m: args.m, v: args.v });
  noAlias(what, args.m, { grad: args.grad, v: args.v });
  noAlias(what, args.v, { grad: args.grad });
  const normSq = clipping(what, args, named);
  if (args.n === 0) return;
  const bc1 = 1 - args.beta1 ** args.step;
  const bc2 = 1 - args.beta2 ** args.step;
  const kernel = normSq ? 'adamw_clip' : 'adamw';
  const pipe = variantPipeline(gpu, kernel, () => ({
    source: code,
    kernel: 'adamw',
    prelude: clipPrelude(5, !!normSq),
  }));
  const [gx, gy, stride] = flatGrid(gpu, args.n);
  const u = params(
    args.n,
    stride,
    { f: 1 - args.lr * args.weightDecay },
    { f: 1 - args.beta1 },
    { f: args.beta2 },
    { f: 1 - args.beta2 },
    { f: args.lr / bc1 },
    { f: Math.sqrt(bc2) },
    { f: args.eps },
    { f: args.gradScale ?? 1 },
    { f: args.maxNorm ?? 0 },
    0,
  );
  const bindings = [args.param, args.grad, args.m, args.v];
  if (normSq) bindings.push(normSq);
  rec.dispatch(pipe, bindings, [gx, gy], u);
}

/** One torch.optim.SGD step (no momentum; weight decay added to the gradient) with optional clipping. */
export function recordSgd(gpu: Gpu, rec: Recorder, args: SgdArgs): void {
  const what = 'recordSgd';
  needDims(what, { n: args.n });
  const named = { param: args.param, grad: args.grad };
  for (const [k, t] of Object.entries(named)) needElems(what, k, t, args.n, ['f32']);
  noAlias(what, args.param, { grad: args.grad });
  const normSq = clipping(what, args, named);
  if (args.n === 0) return;
  const kernel = normSq ? 'sgd_clip' : 'sgd';
  const pipe = variantPipeline(gpu, kernel, () => ({ source: code, kernel: 'sgd', prelude: clipPrelude(3, !!normSq) }));
  const [gx, gy, stride] = flatGrid(gpu, args.n);
  const u = params(
    args.n,
    stride,
    { f: args.lr },
    { f: args.weightDecay ?? 0 },
    { f: args.gradScale ?? 1 },
    { f: args.maxNorm ?? 0 },
    0,
    0,
  );
  const bindings = [args.param, args.grad];
  if (normSq) bindings.push(normSq);
  rec.dispatch(pipe, bindings, [gx, gy], u);
}
