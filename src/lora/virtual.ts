/**
 * Prompt tuning and prefix tuning adapters as PEFT 0.21 makes them (PromptTuningConfig /
 * PrefixTuningConfig, peft/tuners/prompt_tuning and prefix_tuning). Both learn one table of
 * `num_virtual_tokens` rows that the runner puts at the head of every sequence
 * (src/model/runner-virtual.ts):
 *   prompt tuning  [P, token_dim = hidden_size]       embeddings prepended to inputs_embeds
 *   prefix tuning  [P, num_layers·2·token_dim]        per layer, keys then values of the prefix;
 *                                                      token_dim = num_key_value_heads·head_dim
 * adapter_model.safetensors holds the table as `prompt_embeddings` (F32, metadata {"format":"pt"}).
 * With `prefix_projection` PEFT trains an embedding [P, token_dim] and an MLP
 * (token_dim -> encoder_hidden_size -> tanh -> num_layers·2·token_dim) but saves only the MLP's
 * output: the table above. A saved adapter is therefore the same table either way; PEFT refuses to
 * continue training a projected one from its file, and so does Tabtune.
 *
 * Initialisation as PEFT: RANDOM prompt and prefix tables are nn.Embedding's N(0, 1); TEXT takes the
 * word embeddings of `prompt_tuning_init_text`'s tokens (the tokenizer's special tokens included),
 * cut or repeated to P.
 */

import { mulberry32 } from '../reference/check';
import { parseSafetensors, SafetensorsError, tensorToF32, writeSafetensors } from '../model/safetensors';
import { ADAPTER_CONFIG_NAME, ADAPTER_MODEL_NAME, PeftError, type PeftFiles } from './peft';
import { boolField, parseConfigJson } from './peft-config-fields';
import { pythonJsonDumps } from './python-json';

export type VirtualKind = 'prompt' | 'prefix';

/** What PEFT reads off the model's config for these methods (the fields it saves). */
export interface VirtualShape {
  num_layers: number;
  token_dim: number;
  num_attention_heads: number;
}

/** PEFT requires num_virtual_tokens; Tabtune's default when the settings leave it out. */
export const DEFAULT_VIRTUAL_TOKENS = 20;

export interface PromptTuningConfig extends VirtualShape {
  num_virtual_tokens: number;
  prompt_tuning_init: 'RANDOM' | 'TEXT';
  prompt_tuning_init_text: string | null;
  tokenizer_name_or_path: string | null;
}

export interface PrefixTuningConfig extends VirtualShape {
  num_virtual_tokens: number;
  prefix_projection: boolean;
  encoder_hidden_size: number;
}

/** The model facts these configs need (src/model/config.ts ModelConfig has them all). */
export interface VirtualModel {
  modelType: string;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  embedDim: number;
  raw: Record<string, unknown>;
}

const num = (raw: Record<string, unknown>, key: string): number | null =>
  typeof raw[key] === 'number' ? (raw[key] as number) : null;

/**
 * PEFT's `_prepare_prompt_learning_config` on this model: num_layers, token_dim, num_attention_heads
 * (for prefix tuning the key/value heads when the config names num_key_value_heads). Throws where
 * PEFT's prefix would not fit the model's attention (transformers then rejects the cache) or where
 * PEFT's prompt would not fit the embeddings (OPT's project_in), naming the reason.
 */
export function virtualShape(kind: VirtualKind, m: VirtualModel): VirtualShape {
  if (kind === 'prompt') {
    if (m.embedDim !== m.hiddenSize) {
      throw new PeftError(
        `Prompt tuning needs token embeddings as wide as the hidden size; this ${m.modelType} embeds in ${m.embedDim} and ` +
          `projects to ${m.hiddenSize} (PEFT would prepend ${m.hiddenSize}-wide prompts to ${m.embedDim}-wide embeddings). Use LoRA or IA³.`,
      );
    }
    return { num_layers: m.numLayers, token_dim: m.hiddenSize, num_attention_heads: m.numHeads };
  }
  const kv = num(m.raw, 'num_key_value_heads');
  const headDim = num(m.raw, 'head_dim') ?? m.hiddenSize / m.numHeads;
  const heads = kv ?? m.numHeads;
  const tokenDim = kv !== null ? headDim * kv : m.hiddenSize;
  if (heads !== m.numKvHeads || tokenDim !== m.numKvHeads * m.headDim) {
    throw new PeftError(
      `PEFT's prefix tuning builds ${heads} key/value heads of ${tokenDim / heads} for model_type "${m.modelType}", whose ` +
        `attention has ${m.numKvHeads} of ${m.headDim} (its config has no num_key_value_heads); transformers rejects such a ` +
        'prefix, so Tabtune does not train one. Use prompt tuning, LoRA or IA³ for this model.',
    );
  }
  return { num_layers: m.numLayers, token_dim: tokenDim, num_attention_heads: heads };
}

/** Values per virtual token in the saved table. */
export function virtualWidth(kind: VirtualKind, s: VirtualShape): number {
  return kind === 'prompt' ? s.token_dim : s.num_layers * 2 * s.token_dim;
}

/** N(0, 1) values, as torch.nn.Embedding initialises (Box-Muller on a seeded generator). */
export function standardNormal(n: number, seed: number): Float32Array {
  const r = mulberry32(seed >>> 0);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(r(), 1e-12);
    const v = r();
    const mag = Math.sqrt(-2 * Math.log(u));
    out[i] = mag * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = mag * Math.sin(2 * Math.PI * v);
  }
  return out;
}

/**
 * PEFT's TEXT init: the rows of `embeddings` [vocab, width] for `ids` (the tokenized init text),
 * cut to P or repeated until P.
 */
export function textInit(
  ids: readonly number[],
  P: number,
  embeddings: ArrayLike<number>,
  width: number,
): Float32Array {
  if (ids.length === 0)
    throw new PeftError('prompt_tuning_init_text gives no tokens; give some text or use random init.');
  const out = new Float32Array(P * width);
  for (let p = 0; p < P; p++) {
    const id = ids[p % ids.length]!;
    for (let j = 0; j < width; j++) out[p * width + j] = embeddings[id * width + j]!;
  }
  return out;
}

function baseFields(kind: VirtualKind, baseModel: string, s: VirtualShape, P: number) {
  return {
    task_type: 'CAUSAL_LM',
    peft_type: kind === 'prompt' ? 'PROMPT_TUNING' : 'PREFIX_TUNING',
    auto_mapping: null,
    peft_version: '0.21.0',
    base_model_name_or_path: baseModel,
    revision: null,
    inference_mode: true,
    num_virtual_tokens: P,
    token_dim: s.token_dim,
    num_transformer_submodules: 1,
    num_attention_heads: s.num_attention_heads,
    num_layers: s.num_layers,
    modules_to_save: null,
  };
}

/** adapter_config.json and adapter_model.safetensors of a prompt- or prefix-tuning adapter, as PEFT 0.21 writes them. */
export function exportVirtual(input: {
  config: PromptTuningConfig | PrefixTuningConfig;
  kind: VirtualKind;
  baseModel: string;
  /** The saved table [P, width] (for a projected prefix, the MLP's output). */
  table: Float32Array;
}): PeftFiles {
  const c = input.config;
  const P = c.num_virtual_tokens;
  const width = virtualWidth(input.kind, c);
  if (input.table.length !== P * width) {
    throw new PeftError(`The ${input.kind} table should be [${P}, ${width}], got ${input.table.length} values.`);
  }
  const extra =
    input.kind === 'prompt'
      ? {
          prompt_tuning_init: (c as PromptTuningConfig).prompt_tuning_init,
          prompt_tuning_init_text: (c as PromptTuningConfig).prompt_tuning_init_text,
          tokenizer_name_or_path: (c as PromptTuningConfig).tokenizer_name_or_path,
          tokenizer_kwargs: null,
        }
      : {
          encoder_hidden_size: (c as PrefixTuningConfig).encoder_hidden_size,
          prefix_projection: (c as PrefixTuningConfig).prefix_projection,
          init_weights: null,
        };
  const config = { ...baseFields(input.kind, input.baseModel, c, P), ...extra };
  const model = writeSafetensors([{ name: 'prompt_embeddings', dtype: 'F32', shape: [P, width], data: input.table }], {
    format: 'pt',
  });
  return { adapterConfig: pythonJsonDumps(config), adapterModel: model };
}

function positiveInt(cfg: Record<string, unknown>, field: string): number {
  const v = cfg[field];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new PeftError(`${ADAPTER_CONFIG_NAME}: ${field} should be a positive integer, got ${JSON.stringify(v)}.`);
  }
  return v;
}

/**
 * Reads PEFT prompt- or prefix-tuning files for this model: the config is checked against the
 * model's own shape (a prefix for another model's layers or heads is refused, naming both).
 */
export function importVirtual(
  files: { adapterConfig: string | Uint8Array; adapterModel: Uint8Array },
  model: VirtualModel,
): {
  kind: VirtualKind;
  config: PromptTuningConfig | PrefixTuningConfig;
  table: Float32Array;
  baseModel: string | null;
} {
  const raw = parseConfigJson(files.adapterConfig);
  const kind: VirtualKind | null =
    raw.peft_type === 'PROMPT_TUNING' ? 'prompt' : raw.peft_type === 'PREFIX_TUNING' ? 'prefix' : null;
  if (!kind) {
    throw new PeftError(
      `${ADAPTER_CONFIG_NAME} has peft_type ${JSON.stringify(raw.peft_type)}; expected "PROMPT_TUNING" or "PREFIX_TUNING".`,
    );
  }
  const P = positiveInt(raw, 'num_virtual_tokens');
  const own = virtualShape(kind, model);
  for (const f of ['num_layers', 'token_dim', 'num_attention_heads'] as const) {
    if (raw[f] != null && raw[f] !== own[f]) {
      throw new PeftError(
        `${ADAPTER_CONFIG_NAME}: ${f} is ${JSON.stringify(raw[f])}, but this model has ${own[f]}; the adapter was made for another base model.`,
      );
    }
  }
  if ((raw.num_transformer_submodules ?? 1) !== 1) {
    throw new PeftError(
      `${ADAPTER_CONFIG_NAME}: num_transformer_submodules should be 1 for a causal LM, got ${JSON.stringify(raw.num_transformer_submodules)}.`,
    );
  }
  let tensors;
  try {
    tensors = parseSafetensors(files.adapterModel, ADAPTER_MODEL_NAME).tensors;
  } catch (e) {
    if (e instanceof SafetensorsError) throw new PeftError(e.message);
    throw e;
  }
  const t = tensors.get('prompt_embeddings');
  const width = virtualWidth(kind, own);
  if (!t) {
    throw new PeftError(
      `${ADAPTER_MODEL_NAME} has no "prompt_embeddings" tensor (it has ${[...tensors.keys()].slice(0, 5).join(', ') || 'none'}).`,
    );
  }
  if (t.shape.length !== 2 || t.shape[0] !== P || t.shape[1] !== width) {
    throw new PeftError(
      `${ADAPTER_MODEL_NAME}: "prompt_embeddings" should be [${P}, ${width}], got [${t.shape.join(', ')}].`,
    );
  }
  const table = tensorToF32(t);
  if (!table.every(Number.isFinite))
    throw new PeftError(`${ADAPTER_MODEL_NAME}: "prompt_embeddings" holds a non-finite value.`);
  const baseModel = typeof raw.base_model_name_or_path === 'string' ? raw.base_model_name_or_path : null;
  const config: PromptTuningConfig | PrefixTuningConfig =
    kind === 'prompt'
      ? {
          ...own,
          num_virtual_tokens: P,
          prompt_tuning_init: raw.prompt_tuning_init === 'TEXT' ? 'TEXT' : 'RANDOM',
          prompt_tuning_init_text: typeof raw.prompt_tuning_init_text === 'string' ? raw.prompt_tuning_init_text : null,
          tokenizer_name_or_path: typeof raw.tokenizer_name_or_path === 'string' ? raw.tokenizer_name_or_path : null,
        }
      : {
          ...own,
          num_virtual_tokens: P,
          prefix_projection: boolField(raw, 'prefix_projection', false),
          encoder_hidden_size: typeof raw.encoder_hidden_size === 'number' ? raw.encoder_hidden_size : own.token_dim,
        };
  return { kind, config, table, baseModel };
}
