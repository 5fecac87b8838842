/**
 * Llama-like decoders: RMSNorm, RoPE, separate q/k/v/o projections and a SwiGLU MLP
 * (gate_proj, up_proj, down_proj), keys under "model.". What each model_type changes:
 *   llama    attention_bias (q/k/v/o) and mlp_bias flags.
 *   mistral  no bias flags; sliding_window (when set) on every layer.
 *   qwen2    q/k/v biases, none on o_proj; sliding windows from layer_types, or on layers
 *            >= max_window_layers when use_sliding_window.
 *   qwen3    per-head RMSNorm on q and k before RoPE; attention_bias on q/k/v/o; head_dim 128 by default.
 *   smollm3  no RoPE on every no_rope_layer_interval-th layer (no_rope_layers); windows only on NoPE layers.
 *   granite  embedding_multiplier, residual_multiplier, attention_multiplier (the score scale), logits / logits_scaling.
 *   olmo2    no pre-norms: RMSNorm on the attention and MLP outputs before each residual add; q/k
 *            RMSNorm over the whole projection (not per head).
 *   mixtral  Mistral's attention with a sparse mixture of experts for the MLP: a router
 *            (block_sparse_moe.gate) and num_local_experts gated MLPs (experts.{e}.w1 gate, w3 up,
 *            w2 down), num_experts_per_tok of them per token (config.moe, runner-moe.ts).
 */
import type { ModelConfig } from '../config-types';
import { type DecoderSpec, type Reader, activationOf, decoderConfig, headsOf, layerTypesOf } from '../config-reader';
import { ropeOf } from '../config-rope';
import type { Layout } from '../layout';
import { H, I, linearSpec, GATED_MLP, LLAMA_ATTENTION } from './common';

interface Flavour {
  /** max_position_embeddings default of the config class. */
  maxPositions: number;
  theta?: number;
  eps?: number;
  tie?: boolean;
  headDim?: number;
  extra: (r: Reader, s: DecoderSpec) => Partial<DecoderSpec>;
}

/** Sliding windows from layer_types, or on layers >= max_window_layers when use_sliding_window (Qwen2/3). */
function qwenWindows(r: Reader, s: DecoderSpec): Partial<DecoderSpec> {
  const w = r.bool('use_sliding_window', false) && r.has('sliding_window') ? r.int('sliding_window') : null;
  const maxWindowLayers = r.int('max_window_layers', 28);
  const sliding = layerTypesOf(r, s.numLayers, (i) => w !== null && i >= maxWindowLayers);
  if (sliding.some((x) => x) && w === null)
    r.reject(
      `"layer_types" asks for sliding-window layers but "sliding_window" is not set (or use_sliding_window is false).`,
    );
  return { layers: (i, l) => ({ ...l, window: sliding[i] ? w : null }) };
}

const attnBias = (r: Reader) => {
  const a = r.bool('attention_bias', false);
  return { qkv: a, o: a };
};

const FLAVOURS: Record<string, Flavour> = {
  llama: {
    maxPositions: 2048,
    extra: (r) => ({ bias: { ...attnBias(r), mlp: r.bool('mlp_bias', false) } }),
  },
  mistral: { maxPositions: 4096 * 32, extra: mistralWindow },
  mixtral: {
    maxPositions: 4096 * 32,
    theta: 1e6,
    eps: 1e-5,
    extra: (r) => {
      const numExperts = r.int('num_local_experts', 8);
      const topK = r.int('num_experts_per_tok', 2);
      if (numExperts < 1) r.reject(`"num_local_experts" must be at least 1, got ${numExperts}.`);
      if (topK < 1 || topK > numExperts)
        r.reject(`"num_experts_per_tok" must be between 1 and num_local_experts (${numExperts}), got ${topK}.`);
      // Training-time extras of transformers' Mixtral that Tabtune does not reproduce.
      const jitter = r.raw.router_jitter_noise ?? 0;
      if (jitter !== 0)
        r.refuse('router_jitter_noise', jitter, 'only 0: set it to 0.0 in config.json to train without router noise');
      if (r.bool('output_router_logits', false))
        r.refuse(
          'output_router_logits',
          true,
          'only false: Tabtune does not add the router load-balancing loss; set it to false in config.json',
        );
      return { family: 'mixtral', moe: { numExperts, topK }, ...mistralWindow(r) };
    },
  },
  qwen2: { maxPositions: 32768, extra: (r, s) => ({ bias: { qkv: true, o: false }, ...qwenWindows(r, s) }) },
  qwen3: {
    maxPositions: 32768,
    headDim: 128,
    extra: (r, s) => ({
      bias: attnBias(r),
      attention: {
        qkNorm: {
          kind: 'rms',
          over: 'head',
          perHeadWeights: false,
          weightOffset: 0,
          bias: false,
          eps: r.num('rms_norm_eps', 1e-6),
        },
      },
      ...qwenWindows(r, s),
    }),
  },
  smollm3: {
    maxPositions: 32768,
    theta: 2e6,
    tie: true,
    extra: (r, s) => {
      const interval = r.int('no_rope_layer_interval', 4);
      const v = r.raw.no_rope_layers;
      let useRope: boolean[];
      if (v === undefined || v === null)
        useRope = Array.from({ length: s.numLayers }, (_, i) => (i + 1) % interval !== 0);
      else {
        if (!Array.isArray(v) || v.length !== s.numLayers || v.some((x) => x !== 0 && x !== 1))
          r.reject(
            `"no_rope_layers" must list 0 or 1 for each of the ${s.numLayers} layers, got ${JSON.stringify(v)}.`,
          );
        useRope = (v as number[]).map((x) => x === 1);
      }
      const w = r.bool('use_sliding_window', false) && r.has('sliding_window') ? r.int('sliding_window') : null;
      const sliding = layerTypesOf(r, s.numLayers, (i) => w !== null && !useRope[i]);
      return {
        bias: { ...attnBias(r), mlp: r.bool('mlp_bias', false) },
        // transformers applies a layer's window only when use_sliding_window is set
        layers: (i, l) => ({ window: sliding[i] && w !== null ? w : null, rope: useRope[i] ? l.rope : null }),
      };
    },
  },
  granite: {
    maxPositions: 2048,
    extra: (r) => ({
      bias: { ...attnBias(r), mlp: r.bool('mlp_bias', false) },
      embedScale: r.num('embedding_multiplier', 1),
      block: { residualScale: r.num('residual_multiplier', 1) },
      attention: { scale: r.num('attention_multiplier', 1) },
      logits: { scale: 1 / r.num('logits_scaling', 1) },
    }),
  },
  olmo2: {
    maxPositions: 2048,
    eps: 1e-5,
    extra: (r) => ({
      bias: attnBias(r),
      block: { attnNorm: false, mlpNorm: 'none', attnOutNorm: true, mlpOutNorm: true },
      attention: {
        qkNorm: {
          kind: 'rms',
          over: 'all',
          perHeadWeights: false,
          weightOffset: 0,
          bias: false,
          eps: r.num('rms_norm_eps', 1e-5),
        },
      },
    }),
  },
};

/** Mistral's sliding window (when set) on every layer. */
function mistralWindow(r: Reader): Partial<DecoderSpec> {
  const w = r.has('sliding_window') ? r.int('sliding_window') : null;
  return { layers: (_, l) => ({ ...l, window: w }) };
}

function parseLlamaLike(r: Reader, f: Flavour): ModelConfig {
  const hiddenSize = r.int('hidden_size');
  const heads = headsOf(r, hiddenSize, { headDimDefault: f.headDim });
  activationOf(r, 'hidden_act', 'silu', ['silu']);
  const maxPositions = r.int('max_position_embeddings', f.maxPositions);
  const base: DecoderSpec = {
    family: 'llama',
    vocabSize: r.int('vocab_size'),
    hiddenSize,
    numLayers: r.int('num_hidden_layers'),
    ...heads,
    intermediateSize: r.int('intermediate_size'),
    maxPositions,
    norm: { eps: r.num('rms_norm_eps', f.eps ?? 1e-6) },
    rope: ropeOf(r, { headDim: heads.headDim, maxPositions, theta: f.theta }),
    tieWordEmbeddings: r.bool('tie_word_embeddings', f.tie ?? false),
  };
  if (base.rope!.rotaryDim !== heads.headDim)
    r.refuse('partial_rotary_factor', base.rope!.rotaryDim / heads.headDim, 'only 1');
  return decoderConfig(r, { ...base, ...f.extra(r, base) });
}

export const LLAMA_CONFIGS: Record<string, (r: Reader) => ModelConfig> = Object.fromEntries(
  Object.entries(FLAVOURS).map(([type, f]) => [type, (r: Reader) => parseLlamaLike(r, f)]),
);

export const LLAMA_LAYOUTS: Record<string, (c: ModelConfig) => Layout> = {
  llama: () => ({
    prefixes: ['model.', ''],
    modulePrefix: 'model.',
    embed: 'embed_tokens',
    finalNorm: 'norm',
    lmHead: ['lm_head.weight'],
    layer: 'layers.{i}',
    norms: {
      attn: 'input_layernorm',
      mlp: 'post_attention_layernorm',
      attnOut: 'post_attention_layernorm',
      mlpOut: 'post_feedforward_layernorm',
      q: 'self_attn.q_norm',
      k: 'self_attn.k_norm',
    },
    linears: [...LLAMA_ATTENTION, ...GATED_MLP],
  }),
  // Checkpoints keep transformers 4's per-expert modules (save_pretrained writes them back so);
  // module paths are those too, as PEFT adapters for Mixtral name them.
  mixtral: (c) => ({
    ...LLAMA_LAYOUTS.llama!(c),
    norms: { attn: 'input_layernorm', mlp: 'post_attention_layernorm' },
    linears: [
      ...LLAMA_ATTENTION,
      linearSpec('block_sparse_moe.gate', 'router', H, (x) => x.moe!.numExperts, false),
      ...Array.from({ length: c.moe!.numExperts }, (_, e) => [
        { ...linearSpec(`block_sparse_moe.experts.${e}.w1`, 'gate', H, I, false), expert: e },
        { ...linearSpec(`block_sparse_moe.experts.${e}.w2`, 'down', I, H, false), expert: e },
        { ...linearSpec(`block_sparse_moe.experts.${e}.w3`, 'up', H, I, false), expert: e },
      ]).flat(),
    ],
  }),
};
