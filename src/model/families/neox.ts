/**
 * Partial-rotary and fused-projection families:
 *   gpt_neox  Pythia: LayerNorm with bias; fused query_key_value laid out per head
 *             ([q_h | k_h | v_h] for each head h); RoPE on the first rotary_pct of each head
 *             (rotary_emb_base); exact (erf) GELU MLP (dense_h_to_4h, dense_4h_to_h);
 *             use_parallel_residual: x + attn(ln1(x)) + mlp(ln2(x)).
 *   stablelm  LayerNorm with bias, SwiGLU MLP, partial rotary (default 0.25), optional q/k/v bias,
 *             use_parallel_residual (one norm shared by attention and MLP).
 *   phi       Phi-1/1.5/2: parallel attention and MLP on one LayerNorm, partial rotary (default 0.5),
 *             biases everywhere, `dense` output, fc1/fc2 GELU-tanh MLP, an LM head with a bias,
 *             optional per-head LayerNorm on q and k (qk_layernorm).
 *   phi3      Phi-3/3.5/4-mini: fused qkv_proj ([q | k | v]) and gate_up_proj (gate half first),
 *             longrope with short factors (positions capped at original_max_position_embeddings,
 *             where transformers switches to the long ones), partial rotary (Phi-4-mini 0.75), a
 *             sliding_window on every layer when set.
 */
import type { ModelConfig } from '../config-types';
import { type Reader, activationOf, decoderConfig, headsOf } from '../config-reader';
import { ropeOf } from '../config-rope';
import type { Layout } from '../layout';
import { H, I, KVW, QKVW, QW, linearSpec, GATED_MLP, LLAMA_ATTENTION } from './common';

function parseNeox(r: Reader): ModelConfig {
  const hiddenSize = r.int('hidden_size');
  const heads = headsOf(r, hiddenSize, { kvHeads: null, headDim: false });
  const maxPositions = r.int('max_position_embeddings', 2048);
  const a = r.bool('attention_bias', true);
  const parallel = r.bool('use_parallel_residual', true);
  return decoderConfig(r, {
    family: 'gpt_neox',
    vocabSize: r.int('vocab_size'),
    hiddenSize,
    numLayers: r.int('num_hidden_layers'),
    ...heads,
    intermediateSize: r.int('intermediate_size'),
    maxPositions,
    norm: { kind: 'layer', eps: r.num('layer_norm_eps', 1e-5), bias: true },
    block: { parallel },
    rope: ropeOf(r, {
      headDim: heads.headDim,
      maxPositions,
      thetaKeys: ['rotary_emb_base', 'rope_theta'],
      partial: 0.25,
      partialKeys: ['rotary_pct'],
    }),
    mlp: { gated: false, act: activationOf(r, 'hidden_act', 'gelu') },
    bias: { qkv: a, o: a, mlp: true },
    tieWordEmbeddings: r.bool('tie_word_embeddings', false),
  });
}

function parseStableLm(r: Reader): ModelConfig {
  const hiddenSize = r.int('hidden_size');
  const heads = headsOf(r, hiddenSize, { headDim: false });
  const maxPositions = r.int('max_position_embeddings', 4096);
  if (r.bool('qk_layernorm', false))
    r.refuse(
      'qk_layernorm',
      true,
      "StableLM 2 12B's per-head q/k LayerNorm is not implemented; StableLM 2 1.6B and 3B work",
    );
  const parallel = r.bool('use_parallel_residual', false);
  return decoderConfig(r, {
    family: 'stablelm',
    vocabSize: r.int('vocab_size'),
    hiddenSize,
    numLayers: r.int('num_hidden_layers'),
    ...heads,
    intermediateSize: r.int('intermediate_size'),
    maxPositions,
    norm: { kind: 'layer', eps: r.num('layer_norm_eps', 1e-5), bias: true },
    block: parallel ? { parallel, mlpNorm: 'shared' } : {},
    rope: ropeOf(r, { headDim: heads.headDim, maxPositions, partial: 0.25 }),
    mlp: { gated: true, act: activationOf(r, 'hidden_act', 'silu') },
    bias: { qkv: r.bool('use_qkv_bias', false), o: false, mlp: false },
    tieWordEmbeddings: r.bool('tie_word_embeddings', false),
  });
}

function parsePhi(r: Reader): ModelConfig {
  const hiddenSize = r.int('hidden_size');
  const heads = headsOf(r, hiddenSize, { headDim: false });
  const maxPositions = r.int('max_position_embeddings', 2048);
  const eps = r.num('layer_norm_eps', 1e-5);
  return decoderConfig(r, {
    family: 'phi',
    vocabSize: r.int('vocab_size'),
    hiddenSize,
    numLayers: r.int('num_hidden_layers'),
    ...heads,
    intermediateSize: r.int('intermediate_size'),
    maxPositions,
    norm: { kind: 'layer', eps, bias: true },
    block: { parallel: true, mlpNorm: 'shared' },
    attention: {
      qkNorm: r.bool('qk_layernorm', false)
        ? { kind: 'layer', over: 'head', perHeadWeights: false, weightOffset: 0, bias: true, eps }
        : null,
    },
    rope: ropeOf(r, { headDim: heads.headDim, maxPositions, partial: 0.5 }),
    mlp: { gated: false, act: activationOf(r, 'hidden_act', 'gelu_new') },
    bias: { qkv: true, o: true, mlp: true },
    lmHeadBias: true,
    finalNorm: true,
    tieWordEmbeddings: r.bool('tie_word_embeddings', false),
  });
}

function parsePhi3(r: Reader): ModelConfig {
  const hiddenSize = r.int('hidden_size');
  const heads = headsOf(r, hiddenSize);
  let maxPositions = r.int('max_position_embeddings', 4096);
  const rope = ropeOf(r, { headDim: heads.headDim, maxPositions, phi3: true });
  let maxPositionsKey = 'max_position_embeddings';
  if (rope.scaling?.type === 'longrope' && rope.scaling.originalMaxPositionEmbeddings < maxPositions) {
    // Past this length transformers switches to the long factors (and re-rotates the cache);
    // Tabtune keeps to the short ones, so it stops there.
    maxPositions = rope.scaling.originalMaxPositionEmbeddings;
    maxPositionsKey = 'original_max_position_embeddings';
  }
  const window = r.has('sliding_window') ? r.int('sliding_window') : null;
  return decoderConfig(r, {
    family: 'phi3',
    vocabSize: r.int('vocab_size'),
    hiddenSize,
    numLayers: r.int('num_hidden_layers'),
    ...heads,
    intermediateSize: r.int('intermediate_size'),
    maxPositions,
    maxPositionsKey,
    norm: { eps: r.num('rms_norm_eps', 1e-5) },
    rope,
    layers: (_, l) => ({ ...l, window }),
    mlp: { gated: true, act: activationOf(r, 'hidden_act', 'silu') },
    tieWordEmbeddings: r.bool('tie_word_embeddings', false),
  });
}

export const NEOX_CONFIGS: Record<string, (r: Reader) => ModelConfig> = {
  gpt_neox: parseNeox,
  stablelm: parseStableLm,
  phi: parsePhi,
  phi3: parsePhi3,
};

const model = { prefixes: ['model.', ''], modulePrefix: 'model.', embed: 'embed_tokens', layer: 'layers.{i}' };

export const NEOX_LAYOUTS: Record<string, (c: ModelConfig) => Layout> = {
  gpt_neox: () => ({
    prefixes: ['gpt_neox.', ''],
    modulePrefix: 'gpt_neox.',
    embed: 'embed_in',
    finalNorm: 'final_layer_norm',
    lmHead: ['lm_head.weight', 'embed_out.weight'],
    layer: 'layers.{i}',
    norms: { attn: 'input_layernorm', mlp: 'post_attention_layernorm' },
    qkvGroups: (c) => c.numKvHeads,
    linears: [
      linearSpec('attention.query_key_value', 'qkv', H, QKVW, 'qkv'),
      linearSpec('attention.dense', 'o', QW, H, 'o'),
      linearSpec('mlp.dense_h_to_4h', 'fc_in', H, I, 'mlp'),
      linearSpec('mlp.dense_4h_to_h', 'fc_out', I, H, 'mlp'),
    ],
  }),
  stablelm: () => ({
    ...model,
    finalNorm: 'norm',
    lmHead: ['lm_head.weight'],
    norms: { attn: 'input_layernorm', mlp: 'post_attention_layernorm' },
    linears: [...LLAMA_ATTENTION, ...GATED_MLP],
  }),
  phi: () => ({
    ...model,
    finalNorm: 'final_layernorm',
    lmHead: ['lm_head.weight'],
    norms: { attn: 'input_layernorm', q: 'self_attn.q_layernorm', k: 'self_attn.k_layernorm' },
    linears: [
      linearSpec('self_attn.q_proj', 'q', H, QW, 'qkv'),
      linearSpec('self_attn.k_proj', 'k', H, KVW, 'qkv'),
      linearSpec('self_attn.v_proj', 'v', H, KVW, 'qkv'),
      linearSpec('self_attn.dense', 'o', QW, H, 'o'),
      linearSpec('mlp.fc1', 'fc_in', H, I, 'mlp'),
      linearSpec('mlp.fc2', 'fc_out', I, H, 'mlp'),
    ],
  }),
  phi3: () => ({
    ...model,
    finalNorm: 'norm',
    lmHead: ['lm_head.weight'],
    norms: { attn: 'input_layernorm', mlp: 'post_attention_layernorm' },
    linears: [
      linearSpec('self_attn.qkv_proj', 'qkv', H, QKVW, 'qkv'),
      linearSpec('self_attn.o_proj', 'o', QW, H, 'o'),
      linearSpec('mlp.gate_up_proj', 'gate_up', H, (c) => 2 * c.intermediateSize, 'mlp'),
      linearSpec('mlp.down_proj', 'down', I, H, 'mlp'),
    ],
  }),
};
