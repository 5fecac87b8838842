/** Shapes of linear modules as functions of the config, shared by the families' weight layouts. */
import type { ModelConfig } from '../config';
import type { LinearRole, LinearSpec } from '../registry';

type Dim = (c: ModelConfig) => number;

export const H: Dim = (c) => c.hiddenSize;
export const QW: Dim = (c) => c.numHeads * c.headDim;
export const KVW: Dim = (c) => c.numKvHeads * c.headDim;
export const I: Dim = (c) => c.intermediateSize;
/** A fused q/k/v projection's width. */
export const QKVW: Dim = (c) => QW(c) + 2 * KVW(c);

/**
 * One linear module: its path below the layer, role, shape, and whether it has a bias (one of the
 * config's bias groups, or always / never).
 */
export function linearSpec(
  sub: string,
  role: LinearRole,
  inF: Dim,
  outF: Dim,
  bias: keyof ModelConfig['bias'] | boolean,
): LinearSpec {
  return { sub, role, inF, outF, bias: typeof bias === 'boolean' ? () => bias : (c) => c.bias[bias] };
}
