/**
 * config.json of a Hugging Face causal LM -> one normalised ModelConfig.
 *
 * Supported model_types and what differs between them (as transformers implements them):
 *   llama    SmolLM/SmolLM2/TinyLlama. attention_bias (q/k/v/o) and mlp_bias flags, default off.
 *   mistral  like llama without bias flags; may declare a sliding window.
 *   qwen2    q/k/v have biases, o_proj has none (hard-coded in transformers).
 *   qwen3    per-head RMSNorm on q and k before RoPE; explicit head_dim; attention_bias for q/k/v/o.
 *   gpt2     LayerNorm, learned positions, fused c_attn, tanh GELU, Conv1D weights, tied head.
 * Defaults for absent keys follow the transformers config classes, except num_key_value_heads, which
 * defaults to num_attention_heads for every type (mistral/qwen classes default to values of 7B models).
 */

import type { RopeScaling } from '../reference/rope';

export type Arch = 'llama' | 'gpt2';

export interface RopeConfig {
  theta: number;
  /** rope_scaling "linear" or "llama3" (frequencies from ropeInvFreq in src/reference/rope.ts). */
  scaling?: RopeScaling;
  /** Leading dimensions of each head that are rotated (= headDim for every supported model). */
  rotaryDim: number;
}

export interface ModelConfig {
  modelType: string;
  arch: Arch;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  maxPositions: number;
  norm: 'rms' | 'layer';
  normEps: number;
  /** null = learned absolute positions (gpt2). */
  rope: RopeConfig | null;
  act: 'silu' | 'gelu_tanh';
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  /** qwen3: per-head RMSNorm on q and k before RoPE. */
  qkNorm: boolean;
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
  /** torch_dtype (or `dtype` in newer configs): 'float32' | 'float16' | 'bfloat16' | ... */
  torchDtype: string | null;
  /**
   * Attention window of sliding-window models (mistral; qwen2/qwen3 with use_sliding_window), null
   * when attention is full. The engine attends fully, which is exact for sequences up to this length.
   */
  slidingWindow: number | null;
  raw: Record<string, unknown>;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Raw = Record<string, unknown>;

/**
 * Upper bounds on config sizes, each well above every published model (the largest have ~130
 * layers, hidden 16-25k, vocabularies of ~260k and contexts of ~10M), and small enough that the
 * tensor list, the cost estimate and the shape checks stay instant.
 */
const MAX_DIM: Record<string, number> = {
  num_hidden_layers: 1024,
  n_layer: 1024,
  hidden_size: 1 << 17,
  n_embd: 1 << 17,
  num_attention_heads: 4096,
  n_head: 4096,
  num_key_value_heads: 4096,
  head_dim: 8192,
  intermediate_size: 1 << 20,
  n_inner: 1 << 20,
  vocab_size: 1 << 23,
  max_position_embeddings: 1 << 26,
  n_positions: 1 << 26,
  n_ctx: 1 << 26,
  sliding_window: 1 << 26,
};

/** Typed access to config keys with errors that name the key and the file. */
class Reader {
  constructor(
    readonly raw: Raw,
    readonly file: string,
    readonly modelType: string,
  ) {}

  private fail(msg: string): never {
    throw new ConfigError(`${this.file}: ${msg}`);
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
        this.fail(`"${k}" must be a positive integer, got ${JSON.stringify(v)}.`);
      }
      const max = MAX_DIM[k] ?? MAX_DIM[key];
      if (max !== undefined && v > max) {
        this.fail(
          `"${k}" is ${v}, more than any model Tabtune can run (at most ${max}); the file is damaged or not a real model's config.`,
        );
      }
      return v;
    }
    if (def === undefined) this.fail(`missing required key "${key}" (model_type "${this.modelType}").`);
    return def;
  }

  num(key: string, def: number, obj: Raw = this.raw, label = key): number {
    const v = obj[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
      this.fail(`"${label}" must be a positive number, got ${JSON.stringify(v)}.`);
    return v;
  }

  bool(key: string, def: boolean): boolean {
    const v = this.raw[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'boolean') this.fail(`"${key}" must be true or false, got ${JSON.stringify(v)}.`);
    return v;
  }

  str(key: string, def: string): string {
    const v = this.raw[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'string') this.fail(`"${key}" must be a string, got ${JSON.stringify(v)}.`);
    return v;
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
      this.fail(`"${key}" must be a token id, got ${JSON.stringify(v)}.`);
    return v;
  }

  tokenIds(key: string): number[] {
    const v = this.raw[key];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    for (const x of list) {
      if (typeof x !== 'number' || !Number.isInteger(x) || x < 0)
        this.fail(`"${key}" must be a token id or a list of them, got ${JSON.stringify(v)}.`);
    }
    return [...new Set(list as number[])];
  }

  reject(msg: string): never {
    return this.fail(msg);
  }
}

interface Common {
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
  torchDtype: string | null;
}

function commonFields(r: Reader): Common {
  const dt = r.raw.torch_dtype ?? r.raw.dtype;
  return {
    bosTokenId: r.tokenId('bos_token_id'),
    eosTokenIds: r.tokenIds('eos_token_id'),
    padTokenId: r.tokenId('pad_token_id'),
    torchDtype: typeof dt === 'string' ? dt : null,
  };
}

/**
 * RoPE theta from rope_theta or (newer configs) rope_parameters.rope_theta, and the scaling of
 * rope_scaling / rope_parameters: "linear" and "llama3" (Llama 3.x) are supported, others rejected.
 */
function ropeOf(r: Reader, headDim: number, defTheta: number): RopeConfig {
  const params = r.raw.rope_parameters;
  let theta = defTheta;
  let scaling: RopeScaling | undefined;
  if (r.has('rope_theta')) theta = r.num('rope_theta', defTheta);
  const checkScaling = (obj: unknown, key: string): void => {
    if (obj === undefined || obj === null) return;
    if (typeof obj !== 'object' || Array.isArray(obj))
      r.reject(`"${key}" must be an object or null, got ${JSON.stringify(obj)}.`);
    const o = obj as Raw;
    const type = o.rope_type ?? o.type;
    if (type === undefined || type === null || type === 'default') return;
    if (type === 'linear') {
      scaling = { type: 'linear', factor: r.num('factor', 1, o, `${key}.factor`) };
      return;
    }
    if (type === 'llama3') {
      scaling = {
        type: 'llama3',
        factor: r.num('factor', 8, o, `${key}.factor`),
        lowFreqFactor: r.num('low_freq_factor', 1, o, `${key}.low_freq_factor`),
        highFreqFactor: r.num('high_freq_factor', 4, o, `${key}.high_freq_factor`),
        originalMaxPositionEmbeddings: r.num(
          'original_max_position_embeddings',
          8192,
          o,
          `${key}.original_max_position_embeddings`,
        ),
      };
      return;
    }
    r.reject(
      `"${key}" asks for RoPE scaling type ${JSON.stringify(type)}, which Tabtune does not support ` +
        `(supported: none/"default", "linear", "llama3").`,
    );
  };
  if (params !== undefined && params !== null) {
    if (typeof params !== 'object' || Array.isArray(params))
      r.reject(`"rope_parameters" must be an object, got ${JSON.stringify(params)}.`);
    const p = params as Raw;
    if (p.rope_theta !== undefined && p.rope_theta !== null)
      theta = r.num('rope_theta', defTheta, p, 'rope_parameters.rope_theta');
    checkScaling(p, 'rope_parameters');
    if (p.partial_rotary_factor !== undefined && p.partial_rotary_factor !== null && p.partial_rotary_factor !== 1) {
      r.reject(
        `"rope_parameters.partial_rotary_factor" ${JSON.stringify(p.partial_rotary_factor)} is not supported for model_type "${r.modelType}" (only 1).`,
      );
    }
  }
  checkScaling(r.raw.rope_scaling, 'rope_scaling');
  const prf = r.raw.partial_rotary_factor;
  if (prf !== undefined && prf !== null && prf !== 1) {
    r.reject(
      `"partial_rotary_factor" ${JSON.stringify(prf)} is not supported for model_type "${r.modelType}" (only 1).`,
    );
  }
  return scaling ? { theta, rotaryDim: headDim, scaling } : { theta, rotaryDim: headDim };
}

interface LlamaFlavour {
  /** Default max_position_embeddings of the transformers config class. */
  maxPositions: number;
  bias: (r: Reader) => { qkv: boolean; o: boolean; mlp: boolean };
  qkNorm: boolean;
  slidingWindow: (r: Reader) => number | null;
}

const windowIfUsed = (r: Reader): number | null =>
  r.bool('use_sliding_window', false) && r.has('sliding_window') ? r.int('sliding_window') : null;

const LLAMA_FAMILY: Record<string, LlamaFlavour> = {
  llama: {
    maxPositions: 2048,
    bias: (r) => {
      const a = r.bool('attention_bias', false);
      return { qkv: a, o: a, mlp: r.bool('mlp_bias', false) };
    },
    qkNorm: false,
    slidingWindow: () => null,
  },
  mistral: {
    maxPositions: 4096 * 32,
    bias: () => ({ qkv: false, o: false, mlp: false }),
    qkNorm: false,
    slidingWindow: (r) => (r.has('sliding_window') ? r.int('sliding_window') : null),
  },
  qwen2: {
    maxPositions: 32768,
    bias: () => ({ qkv: true, o: false, mlp: false }),
    qkNorm: false,
    slidingWindow: windowIfUsed,
  },
  qwen3: {
    maxPositions: 32768,
    bias: (r) => {
      const a = r.bool('attention_bias', false);
      return { qkv: a, o: a, mlp: false };
    },
    qkNorm: true,
    slidingWindow: windowIfUsed,
  },
};

function parseLlamaFamily(r: Reader, flavour: LlamaFlavour): ModelConfig {
  const hiddenSize = r.int('hidden_size');
  const numHeads = r.int('num_attention_heads');
  const numKvHeads = r.int('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    r.reject(`"num_attention_heads" (${numHeads}) must be a multiple of "num_key_value_heads" (${numKvHeads}).`);
  }
  let headDim: number;
  if (r.has('head_dim')) headDim = r.int('head_dim');
  else {
    if (hiddenSize % numHeads !== 0) {
      r.reject(
        `"hidden_size" (${hiddenSize}) is not a multiple of "num_attention_heads" (${numHeads}) and there is no "head_dim".`,
      );
    }
    headDim = hiddenSize / numHeads;
  }
  if (headDim % 2 !== 0) r.reject(`head dimension ${headDim} must be even for RoPE.`);
  const act = r.str('hidden_act', 'silu');
  if (act !== 'silu' && act !== 'swish') {
    r.reject(`"hidden_act" is "${act}", but model_type "${r.modelType}" is supported only with "silu".`);
  }
  const bias = flavour.bias(r);
  return {
    modelType: r.modelType,
    arch: 'llama',
    vocabSize: r.int('vocab_size'),
    hiddenSize,
    numLayers: r.int('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize: r.int('intermediate_size'),
    maxPositions: r.int('max_position_embeddings', flavour.maxPositions),
    norm: 'rms',
    normEps: r.num('rms_norm_eps', 1e-6),
    rope: ropeOf(r, headDim, 10000),
    act: 'silu',
    qkvBias: bias.qkv,
    oBias: bias.o,
    mlpBias: bias.mlp,
    qkNorm: flavour.qkNorm,
    tieWordEmbeddings: r.bool('tie_word_embeddings', false),
    ...commonFields(r),
    slidingWindow: flavour.slidingWindow(r),
    raw: r.raw,
  };
}

/** activation_function values that are the tanh approximation of GELU. */
const GELU_TANH = new Set(['gelu_new', 'gelu_pytorch_tanh', 'gelu_fast']);

function parseGpt2(r: Reader): ModelConfig {
  const hiddenSize = r.int('n_embd', undefined, ['hidden_size']);
  const numHeads = r.int('n_head', undefined, ['num_attention_heads']);
  if (hiddenSize % numHeads !== 0) r.reject(`"n_embd" (${hiddenSize}) is not a multiple of "n_head" (${numHeads}).`);
  const act = r.str('activation_function', 'gelu_new');
  if (!GELU_TANH.has(act)) {
    r.reject(`"activation_function" is "${act}", but gpt2 is supported only with the tanh GELU ("gelu_new").`);
  }
  if (r.bool('scale_attn_by_inverse_layer_idx', false)) {
    r.reject(`"scale_attn_by_inverse_layer_idx": true is not supported.`);
  }
  if (!r.bool('scale_attn_weights', true)) r.reject(`"scale_attn_weights": false is not supported.`);
  const nInner = r.raw.n_inner;
  return {
    modelType: r.modelType,
    arch: 'gpt2',
    vocabSize: r.int('vocab_size'),
    hiddenSize,
    numLayers: r.int('n_layer', undefined, ['num_hidden_layers']),
    numHeads,
    numKvHeads: numHeads,
    headDim: hiddenSize / numHeads,
    intermediateSize: nInner === undefined || nInner === null ? 4 * hiddenSize : r.int('n_inner'),
    maxPositions: r.int('n_positions', 1024, ['max_position_embeddings', 'n_ctx']),
    norm: 'layer',
    normEps: r.num('layer_norm_epsilon', 1e-5),
    rope: null,
    act: 'gelu_tanh',
    qkvBias: true,
    oBias: true,
    mlpBias: true,
    qkNorm: false,
    tieWordEmbeddings: r.bool('tie_word_embeddings', true),
    ...commonFields(r),
    slidingWindow: null,
    raw: r.raw,
  };
}

/** Every model_type this module understands. */
export const SUPPORTED_MODEL_TYPES: readonly string[] = [...Object.keys(LLAMA_FAMILY), 'gpt2'];

/**
 * The model's position limit as config.json states it, for messages: "n_positions = 1024 in
 * config.json" for GPT-2, "max_position_embeddings = 8192 in config.json" for the others.
 */
export function positionLimitText(c: Pick<ModelConfig, 'arch' | 'maxPositions'>): string {
  return `${c.arch === 'gpt2' ? 'n_positions' : 'max_position_embeddings'} = ${c.maxPositions} in config.json`;
}

export function isSupportedModelType(t: string): boolean {
  return SUPPORTED_MODEL_TYPES.includes(t);
}

/**
 * Parses config.json (a JSON string, its bytes, or the parsed object) into a ModelConfig.
 * Throws ConfigError naming the file and key for anything missing, malformed or unsupported.
 */
export function parseConfig(json: unknown, fileName = 'config.json'): ModelConfig {
  let raw: unknown = json;
  if (json instanceof Uint8Array) raw = new TextDecoder().decode(json);
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch (e) {
      throw new ConfigError(`${fileName}: not valid JSON (${(e as Error).message}).`);
    }
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw))
    throw new ConfigError(`${fileName}: expected a JSON object.`);
  const obj = raw as Raw;
  const modelType = obj.model_type;
  if (typeof modelType !== 'string' || !modelType) {
    throw new ConfigError(
      `${fileName}: missing required key "model_type" (supported: ${SUPPORTED_MODEL_TYPES.join(', ')}).`,
    );
  }
  if (!isSupportedModelType(modelType)) {
    throw new ConfigError(
      `${fileName}: model_type "${modelType}" is not supported; supported model types: ${SUPPORTED_MODEL_TYPES.join(', ')}.`,
    );
  }
  if (obj.quantization_config !== undefined && obj.quantization_config !== null) {
    const q = obj.quantization_config as Raw;
    throw new ConfigError(
      `${fileName}: this is a quantized checkpoint ("quantization_config"${typeof q?.quant_method === 'string' ? `, quant_method "${q.quant_method}"` : ''}); ` +
        `Tabtune needs the unquantized F32/F16/BF16 weights.`,
    );
  }
  const r = new Reader(obj, fileName, modelType);
  const flavour = LLAMA_FAMILY[modelType];
  return flavour ? parseLlamaFamily(r, flavour) : parseGpt2(r);
}
