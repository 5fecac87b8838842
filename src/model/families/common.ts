/** Shapes of linear modules as functions of the config, shared by the families' weight layouts. */
import type { ModelConfig } from '../config-types';
import type { Dim, LinearRole, LinearSpec } from '../layout';

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

/** Llama-style attention projections: separate q/k/v (grouped-query widths) and o_proj, biases as the config's qkv / o groups. */
export const LLAMA_ATTENTION: LinearSpec[] = [
  linearSpec('self_attn.q_proj', 'q', H, QW, 'qkv'),
  linearSpec('self_attn.k_proj', 'k', H, KVW, 'qkv'),
  linearSpec('self_attn.v_proj', 'v', H, KVW, 'qkv'),
  linearSpec('self_attn.o_proj', 'o', QW, H, 'o'),
];

/** The gated MLP's projections (gate_proj, up_proj, down_proj), biases as the config's mlp group. */
export const GATED_MLP: LinearSpec[] = [
  linearSpec('mlp.gate_proj', 'gate', H, I, 'mlp'),
  linearSpec('mlp.up_proj', 'up', H, I, 'mlp'),
  linearSpec('mlp.down_proj', 'down', I, H, 'mlp'),
];
