/**
 * Greedy token pick on the GPU (see shaders/argmax.wgsl): the first argmax of a row of logits and
 * its first non-finite entry, into a u32 [4] `pick` buffer. Generation records it after the LM head
 * so a greedy step needs no logits readback and the next step can embed the chosen id straight from
 * the GPU (src/generate/generator.ts).
 */
import code from '../../shaders/argmax.wgsl?raw';
import { type Gpu, type Recorder, params } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { needDims, needElems, variantPipeline } from './common';

/** pick[1] when every logit is finite. */
export const NO_NON_FINITE = 0xffffffff;

export interface ArgmaxArgs {
  /** f32 [>= n] */
  logits: Tensor;
  /** Candidates: the first n logits. */
  n: number;
  /** u32 [4]: argmax, first non-finite index (NO_NON_FINITE: none), that logit's f32 bits, 0. */
  pick: Tensor;
}

export function recordArgmax(gpu: Gpu, rec: Recorder, args: ArgmaxArgs): void {
  const what = 'recordArgmax';
  needDims(what, { n: args.n });
  if (args.n === 0) throw new GpuError(`${what}: n must be at least 1 (there is no token to pick from no logits).`);
  needElems(what, 'logits', args.logits, args.n, ['f32']);
  needElems(what, 'pick', args.pick, 4, ['u32']);
  const pipe = variantPipeline(gpu, 'argmax', () => code);
  rec.dispatch(pipe, [args.logits, args.pick], [1], params(args.n));
}
