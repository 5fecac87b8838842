/**
 * A family's weight layout as data (src/model/families/*.ts write one per family; registry.ts
 * resolves it against a checkpoint): where the embedding, norms and per-layer tensors are, and
 * each linear module's role, shape and bias flag as functions of the ModelConfig.
 */

import type { ModelConfig } from './config-types';

export type LinearRole =
  | 'q'
  | 'k'
  | 'v'
  | 'o'
  | 'qkv'
  | 'gate'
  | 'up'
  | 'gate_up'
  | 'down'
  | 'fc_in'
  | 'fc_out'
  | 'project_in'
  | 'project_out'
  | 'router';

export type Dim = (c: ModelConfig) => number;

export interface LinearSpec {
  /** Path below the layer (or below the prefix for `top`), e.g. 'self_attn.q_proj'. */
  sub: string;
  role: LinearRole;
  inF: Dim;
  outF: Dim;
  bias: (c: ModelConfig) => boolean;
  /** Mixture of experts: the module's expert (see LinearModule.expert). */
  expert?: number;
}

/** Where a family's tensors are. Norm names are without ".weight" / ".bias". */
export interface Layout {
  /** Key prefixes a checkpoint may use, most usual first. */
  prefixes: string[];
  /** Prefix of module paths in the *ForCausalLM model (PEFT names). */
  modulePrefix: string;
  /** Relative to the prefix (".weight" appended). */
  embed: string;
  posEmbed?: string;
  embedNorm?: string;
  finalNorm?: string;
  /** Absolute keys of an untied LM head, the usual one first (".weight" included). */
  lmHead: string[];
  /** Layer scope below the prefix; '{i}' is the layer index. */
  layer: string;
  /** Norm names relative to the layer, for the norms the config's flags ask for. */
  norms: { attn?: string; mlp?: string; attnOut?: string; mlpOut?: string; q?: string; k?: string };
  linears: LinearSpec[];
  /** Linear modules relative to the prefix, outside the layers (present when their `bias`... see OPT). */
  top?: (c: ModelConfig) => LinearSpec[];
  /** Conv1D weights ([in, out]). */
  transposed?: boolean;
  /** Groups of a fused q/k/v projection (see LinearModule.qkvGroups); default 1. */
  qkvGroups?: (c: ModelConfig) => number;
  /** Module path prefixes of checkpoint parts Tabtune does not run (Gemma 3's vision tower). */
  unusedModules?: string[];
}
