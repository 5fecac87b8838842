/**
 * The normalised ModelConfig and its parts: what config.ts (parseConfig) and the families' parsers
 * (src/model/families/*.ts) produce and everything below reads (runner, registry, reference).
 */

import type { RopeScaling } from '../numerics/rope';

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
