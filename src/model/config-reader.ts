/**
 * Typed reading of config.json keys (errors name the file and the key), and the parts every family
 * parser shares: token ids and dtype, head sizes, layer types, and `decoderConfig`, which fills a
 * ModelConfig from a family's settings with the defaults of a plain pre-norm decoder. RoPE
 * parameters are read by config-rope.ts.
 */

import type {
  Activation,
  AttentionConfig,
  BlockConfig,
  LayerConfig,
  ModelConfig,
  NormConfig,
  RopeConfig,
} from './config-types';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export type Raw = Record<string, unknown>;

/**
 * Upper bounds on config sizes, each well above every published model (the largest have ~130
 * layers, hidden 16-25k, vocabularies of ~260k and contexts of ~10M), and small enough that the
 * tensor list, the cost estimate and the shape checks stay instant.
 */
const MAX_DIM: Record<string, number> = {
  num_hidden_layers: 1024,
  n_layer: 1024,
  num_layers: 1024,
  hidden_size: 1 << 17,
  n_embd: 1 << 17,
  n_embed: 1 << 17,
  word_embed_proj_dim: 1 << 17,
  num_attention_heads: 4096,
  n_head: 4096,
  num_heads: 4096,
  num_key_value_heads: 4096,
  num_kv_heads: 4096,
  head_dim: 8192,
  rotary_dim: 8192,
  intermediate_size: 1 << 20,
  n_inner: 1 << 20,
  ffn_dim: 1 << 20,
  ffn_hidden_size: 1 << 20,
  vocab_size: 1 << 23,
  max_position_embeddings: 1 << 26,
  original_max_position_embeddings: 1 << 26,
  n_positions: 1 << 26,
  n_ctx: 1 << 26,
  seq_length: 1 << 26,
  sliding_window: 1 << 26,
  window_size: 1 << 26,
};

/** Typed access to config keys with errors that name the key and the file. */
export class Reader {
  constructor(
    readonly raw: Raw,
    readonly file: string,
    readonly modelType: string,
    /** Prefix of key names in messages ("text_config." for a nested config). */
    readonly scope = '',
  ) {}

  private fail(msg: string): never {
    throw new ConfigError(`${this.file}: ${msg}`);
  }

  /** A reader of the object under `key` (e.g. gemma3's text_config); errors say "key.x". */
  nested(key: string): Reader {
    const v = this.raw[key];
    if (!v || typeof v !== 'object' || Array.isArray(v))
      this.fail(`"${this.scope}${key}" must be an object, got ${JSON.stringify(v)}.`);
    return new Reader(v as Raw, this.file, this.modelType, `${this.scope}${key}.`);
  }

  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }

  /**
   * A positive integer; required unless a default is given. Aliases are tried after `key`. Sizes
   * are bounded (MAX_DIM) before anything is computed or allocated from them, so a hostile config
   * fails here at once instead of after minutes and gigabytes.
   */
  int(key: string, def?: number, aliases: string[] = []): number {
    for (const k of [key, ...aliases]) {
      const v = this.raw[k];
      if (v === undefined || v === null) continue;
      if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
        this.fail(`"${this.scope}${k}" must be a positive integer, got ${JSON.stringify(v)}.`);
      }
      const max = MAX_DIM[k] ?? MAX_DIM[key];
      if (max !== undefined && v > max) {
        this.fail(
          `"${this.scope}${k}" is ${v}, more than any model Tabtune can run (at most ${max}); the file is damaged or not a real model's config.`,
        );
      }
      return v;
    }
    if (def === undefined) this.fail(`missing required key "${this.scope}${key}" (model_type "${this.modelType}").`);
    return def;
  }

  /** A positive number from `obj` (default: this config); `label` names it in errors. */
  num(key: string, def: number, obj: Raw = this.raw, label = `${this.scope}${key}`): number {
    const v = obj[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
      this.fail(`"${label}" must be a positive number, got ${JSON.stringify(v)}.`);
    return v;
  }

  /** A positive number or null (an absent key gives `def`). */
  numOrNull(key: string, def: number | null): number | null {
    if (!(key in this.raw)) return def;
    return this.raw[key] === null ? null : this.num(key, 1);
  }

  bool(key: string, def: boolean): boolean {
    const v = this.raw[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'boolean') this.fail(`"${this.scope}${key}" must be true or false, got ${JSON.stringify(v)}.`);
    return v;
  }

  str(key: string, def: string): string {
    const v = this.raw[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'string') this.fail(`"${this.scope}${key}" must be a string, got ${JSON.stringify(v)}.`);
    return v;
  }

  /** A list of strings (null / absent: null). */
  strings(key: string): string[] | null {
    const v = this.raw[key];
    if (v === undefined || v === null) return null;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string'))
      this.fail(`"${this.scope}${key}" must be a list of strings, got ${JSON.stringify(v)}.`);
    return v as string[];
  }

  /** A token id: a non-negative integer or null. */
  tokenId(key: string): number | null {
    const v = this.raw[key];
    if (v === undefined || v === null) return null;
    if (Array.isArray(v)) {
      const first = v[0];
      return typeof first === 'number' && Number.isInteger(first) && first >= 0 ? first : null;
    }
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
      this.fail(`"${this.scope}${key}" must be a token id, got ${JSON.stringify(v)}.`);
    return v;
  }

  tokenIds(key: string): number[] {
    const v = this.raw[key];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    for (const x of list) {
      if (typeof x !== 'number' || !Number.isInteger(x) || x < 0)
        this.fail(`"${this.scope}${key}" must be a token id or a list of them, got ${JSON.stringify(v)}.`);
    }
    return [...new Set(list as number[])];
  }

  reject(msg: string): never {
    return this.fail(msg);
  }

  /** Refuses a setting no supported checkpoint uses, naming the key, the value and what is supported. */
  refuse(key: string, got: unknown, supported: string): never {
    return this.fail(
      `"${this.scope}${key}": ${JSON.stringify(got)} is not supported for model_type "${this.modelType}" (${supported}).`,
    );
  }
}

// ------------------------------------------------------------------------------- shared parts

/** bos / eos / pad token ids and the weights' dtype (from `top`, the outer config for nested ones). */
function commonFields(r: Reader, top: Reader = r) {
  const dt = top.raw.torch_dtype ?? top.raw.dtype ?? r.raw.torch_dtype ?? r.raw.dtype;
  const pick = (k: string) => (r.has(k) ? r.tokenId(k) : top.tokenId(k));
  const eos = r.has('eos_token_id') ? r.tokenIds('eos_token_id') : top.tokenIds('eos_token_id');
  return {
    bosTokenId: pick('bos_token_id'),
    eosTokenIds: eos,
    padTokenId: pick('pad_token_id'),
    torchDtype: typeof dt === 'string' ? dt : null,
    // (a bitsandbytes checkpoint's is read by parseConfig for every family)
    quantization: null,
  };
}

/** transformers' ACT2FN names -> the activation Tabtune computes. */
const ACTIVATIONS: Record<string, Activation> = {
  silu: 'silu',
  swish: 'silu',
  gelu_new: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu_fast: 'gelu_tanh',
  gelu: 'gelu',
  relu: 'relu',
};

/** The activation named by `key` (default `def`), from transformers' ACT2FN names. */
export function activationOf(r: Reader, key: string, def: string, allowed?: Activation[]): Activation {
  const name = r.str(key, def);
  const act = ACTIVATIONS[name];
  if (!act || (allowed && !allowed.includes(act))) {
    const ok = Object.keys(ACTIVATIONS).filter((k) => !allowed || allowed.includes(ACTIVATIONS[k]!));
    r.reject(
      `"${r.scope}${key}" is "${name}", but model_type "${r.modelType}" is supported only with ${ok.map((k) => `"${k}"`).join(', ')}.`,
    );
  }
  return act;
}

/** Heads and head size: num_attention_heads, num_key_value_heads (default heads), head_dim (default hidden / heads). */
export function headsOf(
  r: Reader,
  hidden: number,
  keys: { heads?: string[]; kvHeads?: string[] | null; headDim?: boolean; headDimDefault?: number } = {},
): { numHeads: number; numKvHeads: number; headDim: number } {
  const [hk, ...hAlias] = keys.heads ?? ['num_attention_heads'];
  const numHeads = r.int(hk!, undefined, hAlias);
  let numKvHeads = numHeads;
  if (keys.kvHeads !== null) {
    const [kk, ...kAlias] = keys.kvHeads ?? ['num_key_value_heads'];
    numKvHeads = r.int(kk!, numHeads, kAlias);
  }
  if (numHeads % numKvHeads !== 0) {
    r.reject(`"num_attention_heads" (${numHeads}) must be a multiple of "num_key_value_heads" (${numKvHeads}).`);
  }
  if ((keys.headDim ?? true) && r.has('head_dim')) return { numHeads, numKvHeads, headDim: r.int('head_dim') };
  if (keys.headDimDefault) return { numHeads, numKvHeads, headDim: keys.headDimDefault };
  if (hidden % numHeads !== 0) {
    r.reject(
      `the hidden size (${hidden}) is not a multiple of "${r.scope}${hk}" (${numHeads})${(keys.headDim ?? true) ? ' and there is no "head_dim"' : ''}.`,
    );
  }
  return { numHeads, numKvHeads, headDim: hidden / numHeads };
}

/** layer_types (or the family's rule when absent): 'sliding_attention' | 'full_attention' per layer. */
export function layerTypesOf(r: Reader, numLayers: number, rule: (i: number) => boolean): boolean[] {
  const t = r.strings('layer_types');
  if (!t) return Array.from({ length: numLayers }, (_, i) => rule(i));
  if (t.length !== numLayers) r.reject(`"${r.scope}layer_types" has ${t.length} entries for ${numLayers} layers.`);
  return t.map((x) => {
    if (x !== 'sliding_attention' && x !== 'full_attention')
      r.reject(
        `"${r.scope}layer_types" entries must be "sliding_attention" or "full_attention", got ${JSON.stringify(x)}.`,
      );
    return x === 'sliding_attention';
  });
}

export const PRE_NORM: BlockConfig = {
  attnNorm: true,
  mlpNorm: 'own',
  attnOutNorm: false,
  mlpOutNorm: false,
  normAfterResidual: false,
  parallel: false,
  residualScale: 1,
};

/** A family's settings; everything not given takes the plain pre-norm decoder's value. */
export interface DecoderSpec extends Pick<
  ModelConfig,
  | 'family'
  | 'vocabSize'
  | 'hiddenSize'
  | 'numLayers'
  | 'numHeads'
  | 'numKvHeads'
  | 'headDim'
  | 'intermediateSize'
  | 'maxPositions'
> {
  maxPositionsKey?: string;
  /** Default: RMSNorm, eps 1e-6. */
  norm?: Partial<NormConfig>;
  block?: Partial<BlockConfig>;
  attention?: Partial<AttentionConfig>;
  /** The RoPE of every layer (null: none); per-layer differences through `layers`. */
  rope: RopeConfig | null;
  /** Per-layer overrides (windows, RoPE) of the default {window: null, rope}. */
  layers?: (i: number, base: LayerConfig) => LayerConfig;
  mlp?: { gated?: boolean; act?: Activation };
  moe?: ModelConfig['moe'];
  learnedPositions?: { offset: number } | null;
  embedScale?: number;
  embedScaleInWeightDtype?: boolean;
  embedNorm?: boolean;
  finalNorm?: boolean;
  embedDim?: number;
  bias?: Partial<ModelConfig['bias']>;
  lmHeadBias?: boolean;
  logits?: Partial<ModelConfig['logits']>;
  tieWordEmbeddings: boolean;
}

/** A full ModelConfig from a family's settings (see DecoderSpec) and the config's token ids and dtype. */
export function decoderConfig(r: Reader, s: DecoderSpec, top: Reader = r): ModelConfig {
  const base: LayerConfig = { window: null, rope: s.rope };
  return {
    modelType: top.modelType,
    family: s.family,
    vocabSize: s.vocabSize,
    hiddenSize: s.hiddenSize,
    numLayers: s.numLayers,
    numHeads: s.numHeads,
    numKvHeads: s.numKvHeads,
    headDim: s.headDim,
    intermediateSize: s.intermediateSize,
    maxPositions: s.maxPositions,
    maxPositionsKey: s.maxPositionsKey ?? 'max_position_embeddings',
    norm: { kind: 'rms', eps: 1e-6, weightOffset: 0, bias: false, ...s.norm },
    block: { ...PRE_NORM, ...s.block },
    attention: { scale: 1 / Math.sqrt(s.headDim), softcap: null, alibi: null, qkNorm: null, ...s.attention },
    layers: Array.from({ length: s.numLayers }, (_, i) => (s.layers ? s.layers(i, { ...base }) : { ...base })),
    mlp: { gated: true, act: 'silu', ...s.mlp },
    moe: s.moe ?? null,
    learnedPositions: s.learnedPositions ?? null,
    embedScale: s.embedScale ?? 1,
    embedScaleInWeightDtype: s.embedScaleInWeightDtype ?? false,
    embedNorm: s.embedNorm ?? false,
    finalNorm: s.finalNorm ?? true,
    embedDim: s.embedDim ?? s.hiddenSize,
    bias: { qkv: false, o: false, mlp: false, ...s.bias },
    lmHeadBias: s.lmHeadBias ?? false,
    logits: { scale: 1, softcap: null, ...s.logits },
    tieWordEmbeddings: s.tieWordEmbeddings,
    ...commonFields(r, top),
    raw: top.raw,
  };
}
