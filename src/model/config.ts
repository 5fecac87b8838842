/**
 * config.json of a Hugging Face causal LM -> one normalised ModelConfig: the sizes, plus feature
 * flags that say how the layers compute (norm kind and placement, fused projections, rotary form,
 * positions, ALiBi, parallel blocks, soft-capping, multipliers, sliding windows, q/k norms). The
 * runner (src/model/runner*.ts) and the float64 reference (src/reference/model.ts) read only these
 * flags; nothing outside src/model/families/ branches on a model_type.
 *
 * What each model_type sets, with transformers' semantics and defaults, is in
 * src/model/families/*.ts (one file per group of related families); parseConfig dispatches there.
 * Checkpoints that need trust_remote_code (their modeling code is not in transformers) are refused
 * with the natively supported successor named.
 */

import type { RopeScaling } from '../numerics/rope';
import { FAMILY_CONFIGS } from './families';
import { ConfigError, type Raw, Reader } from './config-reader';

export { ConfigError } from './config-reader';

export type NormKind = 'rms' | 'layer';
/** MLP activations: SiLU, GELU with the tanh approximation, exact (erf) GELU, ReLU. */
export type Activation = 'silu' | 'gelu_tanh' | 'gelu' | 'relu';

export interface NormConfig {
  kind: NormKind;
  eps: number;
  /** Added to every norm weight: 1 for Gemma's (1 + w), else 0. */
  weightOffset: number;
  /** LayerNorm only: the norms have a bias. */
  bias: boolean;
}

export interface RopeConfig {
  theta: number;
  /** inv_freq adjustment (src/numerics/rope.ts ropeInvFreq): linear, llama3, longrope. */
  scaling?: RopeScaling;
  /** Leading dimensions of each head that are rotated (partial rotary: rotary_pct, rotary_dim...). */
  rotaryDim: number;
  /** GPT-J: rotate pairs (2i, 2i+1) ("rotate_every_two") instead of (i, i + rotaryDim/2). */
  interleaved: boolean;
  /** Multiplies cos and sin (longrope's attention factor); 1 otherwise. */
  attentionScaling: number;
}

/** What differs from layer to layer. */
export interface LayerConfig {
  /** Sliding window: the query at position p sees keys p - window < k <= p. null = every earlier key. */
  window: number | null;
  /** This layer's RoPE; null when it has none (learned positions, ALiBi, SmolLM3's NoPE layers). */
  rope: RopeConfig | null;
}

/**
 * Where the norms and residual adds sit in a layer. The usual pre-norm layer is
 *   x = x + attn(norm_attn(x));  x = x + mlp(norm_mlp(x))
 * and each flag moves or adds one piece (see runner-forward.ts for the general form).
 */
export interface BlockConfig {
  /** A norm on the layer input before attention (input_layernorm, ln_1). False: OLMo 2, post-norm OPT. */
  attnNorm: boolean;
  /**
   * The MLP's input norm: 'own' weights (post_attention_layernorm, ln_2), 'shared' = the attention
   * norm's output (parallel blocks with one norm: GPT-J, Phi, Falcon-7B), or 'none' (OLMo 2).
   */
  mlpNorm: 'own' | 'shared' | 'none';
  /** A norm on the attention output before its residual add (Gemma 2/3, OLMo 2). */
  attnOutNorm: boolean;
  /** A norm on the MLP output before its residual add (Gemma 2/3, OLMo 2). */
  mlpOutNorm: boolean;
  /** OPT with do_layer_norm_before false: the attention and MLP norms follow each residual add. */
  normAfterResidual: boolean;
  /** Attention and MLP both read the layer input; out = x + attn + mlp (GPT-J, NeoX, Phi, Falcon). */
  parallel: boolean;
  /** Multiplies each sublayer's output before its residual add (Granite residual_multiplier). */
  residualScale: number;
}

export interface AlibiConfig {
  /** Per-head slopes (float32 values, as transformers' build_alibi_tensor computes them). */
  slopes: number[];
  /** Falcon: the slope and the product slope·position are rounded to bfloat16. */
  bf16: boolean;
  /** Multiplies the bias after rounding (Falcon: 1/sqrt(head_dim); BLOOM: 1). */
  mul: number;
}

export interface QkNormConfig {
  kind: NormKind;
  /** 'head': one norm per head vector (Qwen3, Gemma 3, StableLM); 'all': over the whole projection (OLMo 2). */
  over: 'head' | 'all';
  /** StableLM: a separate weight for every head (norms.{h}.weight). */
  perHeadWeights: boolean;
  weightOffset: number;
  bias: boolean;
  eps: number;
}

export interface AttentionConfig {
  /** Multiplies q·k: 1/sqrt(head_dim) usually; Gemma 2/3 query_pre_attn_scalar^-0.5; Granite attention_multiplier; 1 for GPT-Neo. */
  scale: number;
  /** Gemma 2 attn_logit_softcapping: score = cap·tanh(score / cap) before the mask. */
  softcap: number | null;
  /** ALiBi bias (BLOOM, Falcon with alibi: true): score += slope[h]·(key position)·mul. */
  alibi: AlibiConfig | null;
  /** q/k norm before RoPE. */
  qkNorm: QkNormConfig | null;
}

export interface MlpConfig {
  /** act(gate)·up (gate_proj/up_proj, or one fused gate_up_proj with the gate half first) vs act(fc_in). */
  gated: boolean;
  act: Activation;
}

/**
 * A sparse mixture-of-experts MLP (Mixtral): a router (a linear [experts, H]) scores each token,
 * softmax over the experts, the top-k probabilities renormalised to sum to 1 weight the gated MLPs
 * of those k experts, and their outputs are summed (transformers' MixtralSparseMoeBlock).
 */
export interface MoeConfig {
  numExperts: number;
  /** Experts per token (num_experts_per_tok). */
  topK: number;
}

export interface ModelConfig {
  modelType: string;
  /** The registry's weight layout for this model_type (src/model/families). */
  family: string;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  /** Positions the model handles (max_position_embeddings, n_positions...). */
  maxPositions: number;
  /** The config key that states maxPositions, for messages. */
  maxPositionsKey: string;
  norm: NormConfig;
  block: BlockConfig;
  attention: AttentionConfig;
  /** One entry per layer. */
  layers: LayerConfig[];
  mlp: MlpConfig;
  /** Mixture of experts in place of the dense MLP (intermediateSize is each expert's width); null: dense. */
  moe: MoeConfig | null;
  /** Learned absolute position embeddings (GPT-2, OPT, GPT-Neo, GPTBigCode); `offset` is added to each position (OPT: 2). */
  learnedPositions: { offset: number } | null;
  /** Multiplies the token embedding: Gemma sqrt(hidden), Granite embedding_multiplier. */
  embedScale: number;
  /** Gemma: embedScale is rounded to the embedding weights' dtype (bf16 / f16) when they load. */
  embedScaleInWeightDtype: boolean;
  /** BLOOM: a LayerNorm on the embeddings (word_embeddings_layernorm). */
  embedNorm: boolean;
  /** A norm after the last layer (false only for post-norm OPT). */
  finalNorm: boolean;
  /** Width of the token embedding and LM head; differs from hiddenSize only with OPT's project_in/out. */
  embedDim: number;
  bias: { qkv: boolean; o: boolean; mlp: boolean };
  /** The LM head has a bias (Phi, GPT-J). */
  lmHeadBias: boolean;
  /** logits = softcap(scale · (h·Wᵀ + b)): Granite scale 1/logits_scaling, Gemma 2 final_logit_softcapping. */
  logits: { scale: number; softcap: number | null };
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
  /** torch_dtype (or `dtype` in newer configs): 'float32' | 'float16' | 'bfloat16' | ... */
  torchDtype: string | null;
  /**
   * A bitsandbytes 4-bit NF4 checkpoint ("...-bnb-4bit", `quantization_config` with quant_method
   * "bitsandbytes" and load_in_4bit): its linear weights are stored quantized (src/model/bnb.ts).
   * null for an unquantized checkpoint.
   */
  quantization: CheckpointQuantization | null;
  raw: Record<string, unknown>;
}

export interface CheckpointQuantization {
  method: 'bnb-nf4';
  /** bnb_4bit_use_double_quant: the absmax values are themselves stored in 8 bits. */
  doubleQuant: boolean;
}

/**
 * `quantization_config` as transformers' BitsAndBytesConfig writes it: bitsandbytes 4-bit NF4 is
 * read as stored; any other quantization is refused with what to use instead.
 */
function checkpointQuantization(r: Reader): CheckpointQuantization | null {
  const q = r.raw.quantization_config;
  if (q === undefined || q === null) return null;
  const unquantized =
    'use the unquantized (F32/F16/BF16) model instead, with --quantize nf4 (CLI) or "4-bit NF4" (app) to quantize it at load';
  if (typeof q !== 'object' || Array.isArray(q))
    r.reject(`"quantization_config" must be an object, got ${JSON.stringify(q)}.`);
  const c = q as Raw;
  const method = c.quant_method;
  if (method !== 'bitsandbytes') {
    r.reject(
      `this is a quantized checkpoint ("quantization_config"${typeof method === 'string' ? `, quant_method "${method}"` : ''}); ` +
        `Tabtune reads bitsandbytes 4-bit NF4 checkpoints and unquantized weights only: ${unquantized}.`,
    );
  }
  const flag = (k: string) => c[k] === true || c[`_${k}`] === true;
  if (!flag('load_in_4bit')) {
    r.reject(
      `quantization_config: a bitsandbytes ${flag('load_in_8bit') ? '8-bit (LLM.int8)' : 'checkpoint without load_in_4bit'} ` +
        `is not supported; Tabtune reads 4-bit NF4 ones: ${unquantized}.`,
    );
  }
  const type = c.bnb_4bit_quant_type ?? 'fp4';
  if (type !== 'nf4') {
    r.reject(
      `quantization_config: bnb_4bit_quant_type "${String(type)}" is not supported; Tabtune reads NF4 only: ${unquantized}.`,
    );
  }
  return { method: 'bnb-nf4', doubleQuant: c.bnb_4bit_use_double_quant === true };
}

/** Every model_type this module understands. */
export const SUPPORTED_MODEL_TYPES: readonly string[] = Object.keys(FAMILY_CONFIGS);

/**
 * model_types whose modeling code lives only in the checkpoint (trust_remote_code): refused, with
 * the natively supported model that succeeded them.
 */
const REMOTE_CODE_ONLY: Record<string, string> = {
  chatglm: 'GLM-4 (e.g. THUDM/glm-4-9b-chat-hf) is not supported either; try Qwen3 or Llama 3.2 instead',
  baichuan: 'Baichuan has no native successor in transformers; try Qwen3 (e.g. Qwen/Qwen3-0.6B) instead',
  internlm: 'InternLM 2.5 and 3 ship as remote code too; try Qwen3 (e.g. Qwen/Qwen3-0.6B) instead',
  internlm2: 'InternLM 2.5 and 3 ship as remote code too; try Qwen3 (e.g. Qwen/Qwen3-0.6B) instead',
  qwen: 'its native successors are Qwen2 / Qwen2.5 / Qwen3 (model_type "qwen2" or "qwen3", e.g. Qwen/Qwen2.5-0.5B)',
  xverse: 'XVERSE has no native successor in transformers; try Qwen3 or Llama 3.2 instead',
};

/**
 * The model's position limit as config.json states it, for messages: "n_positions = 1024 in
 * config.json" for GPT-2, "max_position_embeddings = 8192 in config.json" for most others.
 */
export function positionLimitText(c: Pick<ModelConfig, 'maxPositionsKey' | 'maxPositions'>): string {
  return `${c.maxPositionsKey} = ${c.maxPositions} in config.json`;
}

export function isSupportedModelType(t: string): boolean {
  return Object.prototype.hasOwnProperty.call(FAMILY_CONFIGS, t);
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
  const remote = REMOTE_CODE_ONLY[modelType.toLowerCase()];
  if (remote) {
    throw new ConfigError(
      `${fileName}: model_type "${modelType}" needs trust_remote_code (its modeling code is not part of transformers), ` +
        `so Tabtune cannot reproduce it; ${remote}.`,
    );
  }
  if (!isSupportedModelType(modelType)) {
    throw new ConfigError(
      `${fileName}: model_type "${modelType}" is not supported; supported model types: ${SUPPORTED_MODEL_TYPES.join(', ')}.`,
    );
  }
  const r = new Reader(obj, fileName, modelType);
  const quantization = checkpointQuantization(r);
  return { ...FAMILY_CONFIGS[modelType]!(r), quantization };
}
