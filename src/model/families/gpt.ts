/**
 * GPT-2 and its relatives: LayerNorm with bias, learned absolute positions (except GPT-J), keys
 * under "transformer." (GPT-2 checkpoints may lack the prefix), tied head (except GPT-J).
 *   gpt2         Conv1D weights ([in, out], PEFT's fan_in_fan_out) with biases; fused c_attn =
 *                [q | k | v]; scale_attn_weights false removes the 1/sqrt(head_dim) scale.
 *   gpt_bigcode  nn.Linear; multi_query (default): one key/value head, c_attn = [q | k | v]; without
 *                it c_attn is laid out per head ([q_h | k_h | v_h] for each head h).
 *   gpt_neo      q/k/v without bias; "local" layers (attention_types) see a window of window_size
 *                keys; no score scaling at all.
 *   gptj         parallel block on one ln_1; rotary on the first rotary_dim dims of each head with
 *                interleaved pairs (rotate_every_two), no learned positions; untied head with a bias.
 */
import type { ModelConfig } from '../config-types';
import { type Reader, activationOf, decoderConfig, headsOf } from '../config-reader';
import { ropeOf } from '../config-rope';
import type { Layout } from '../layout';
import { H, I, QKVW, QW, linearSpec } from './common';

/** n_inner: null means 4 * hidden. */
function inner(r: Reader, key: string, hidden: number): number {
  return r.has(key) ? r.int(key) : 4 * hidden;
}

const GPT2_ACTS = ['gelu_tanh', 'gelu', 'relu', 'silu'] as const;

function parseGpt2(r: Reader): ModelConfig {
  const hiddenSize = r.int('n_embd', undefined, ['hidden_size']);
  const heads = headsOf(r, hiddenSize, { heads: ['n_head', 'num_attention_heads'], kvHeads: null, headDim: false });
  if (r.bool('scale_attn_by_inverse_layer_idx', false)) r.refuse('scale_attn_by_inverse_layer_idx', true, 'only false');
  return decoderConfig(r, {
    family: 'gpt2',
    vocabSize: r.int('vocab_size'),
    hiddenSize,
    numLayers: r.int('n_layer', undefined, ['num_hidden_layers']),
    ...heads,
    intermediateSize: inner(r, 'n_inner', hiddenSize),
    maxPositions: r.int('n_positions', 1024, ['max_position_embeddings', 'n_ctx']),
    maxPositionsKey: 'n_positions',
    norm: { kind: 'layer', eps: r.num('layer_norm_epsilon', 1e-5), bias: true },
    attention: { scale: r.bool('scale_attn_weights', true) ? heads.headDim ** -0.5 : 1 },
    rope: null,
    mlp: { gated: false, act: activationOf(r, 'activation_function', 'gelu_new', [...GPT2_ACTS]) },
    learnedPositions: { offset: 0 },
    bias: { qkv: true, o: true, mlp: true },
    tieWordEmbeddings: r.bool('tie_word_embeddings', true),
  });
}

function parseBigCode(r: Reader): ModelConfig {
  const hiddenSize = r.int('n_embd', undefined, ['hidden_size']);
  const mq = r.bool('multi_query', true);
  const numHeads = r.int('n_head', undefined, ['num_attention_heads']);
  if (hiddenSize % numHeads !== 0) r.reject(`"n_embd" (${hiddenSize}) is not a multiple of "n_head" (${numHeads}).`);
  if (r.bool('add_cross_attention', false)) r.refuse('add_cross_attention', true, 'decoder-only models');
  return decoderConfig(r, {
    family: 'gpt_bigcode',
    vocabSize: r.int('vocab_size'),
    hiddenSize,
    numLayers: r.int('n_layer', undefined, ['num_hidden_layers']),
    numHeads,
    numKvHeads: mq ? 1 : numHeads,
    headDim: hiddenSize / numHeads,
    intermediateSize: inner(r, 'n_inner', hiddenSize),
    maxPositions: r.int('n_positions', 1024, ['max_position_embeddings']),
    maxPositionsKey: 'n_positions',
    norm: { kind: 'layer', eps: r.num('layer_norm_epsilon', 1e-5), bias: true },
    attention: { scale: r.bool('scale_attn_weights', true) ? (hiddenSize / numHeads) ** -0.5 : 1 },
    rope: null,
    mlp: { gated: false, act: activationOf(r, 'activation_function', 'gelu_pytorch_tanh', [...GPT2_ACTS]) },
    learnedPositions: { offset: 0 },
    bias: { qkv: true, o: true, mlp: true },
    tieWordEmbeddings: r.bool('tie_word_embeddings', true),
  });
}

/** GPT-Neo's attention_layers: the config's list, or attention_types [[["global","local"], 12]] expanded. */
function neoLayers(r: Reader, numLayers: number): boolean[] {
  let list = r.strings('attention_layers');
  if (!list) {
    const t = r.raw.attention_types ?? [[['global', 'local'], 12]];
    const bad = () =>
      r.reject(`"attention_types" must look like [[["global", "local"], 12]], got ${JSON.stringify(t)}.`);
    if (!Array.isArray(t)) bad();
    list = [];
    for (const item of t as unknown[]) {
      if (!Array.isArray(item) || !Array.isArray(item[0]) || typeof item[1] !== 'number') bad();
      const [kinds, n] = item as [string[], number];
      for (let k = 0; k < n; k++) list.push(...kinds);
    }
  }
  if (list.length !== numLayers)
    r.reject(`"attention_layers" (from attention_types) has ${list.length} entries for ${numLayers} layers.`);
  return list.map((x) => {
    if (x !== 'global' && x !== 'local')
      r.reject(`attention layer types must be "global" or "local", got ${JSON.stringify(x)}.`);
    return x === 'local';
  });
}

function parseGptNeo(r: Reader): ModelConfig {
  const hiddenSize = r.int('hidden_size');
  const heads = headsOf(r, hiddenSize, { heads: ['num_heads', 'num_attention_heads'], kvHeads: null, headDim: false });
  const numLayers = r.int('num_layers', undefined, ['num_hidden_layers']);
  const local = neoLayers(r, numLayers);
  const window = r.int('window_size', 256);
  return decoderConfig(r, {
    family: 'gpt_neo',
    vocabSize: r.int('vocab_size'),
    hiddenSize,
    numLayers,
    ...heads,
    intermediateSize: inner(r, 'intermediate_size', hiddenSize),
    maxPositions: r.int('max_position_embeddings', 2048),
    norm: { kind: 'layer', eps: r.num('layer_norm_epsilon', 1e-5), bias: true },
    attention: { scale: 1 },
    rope: null,
    layers: (i, l) => ({ ...l, window: local[i] ? window : null }),
    mlp: { gated: false, act: activationOf(r, 'activation_function', 'gelu_new', [...GPT2_ACTS]) },
    learnedPositions: { offset: 0 },
    bias: { qkv: false, o: true, mlp: true },
    tieWordEmbeddings: r.bool('tie_word_embeddings', true),
  });
}

function parseGptj(r: Reader): ModelConfig {
  const hiddenSize = r.int('n_embd', undefined, ['hidden_size']);
  const heads = headsOf(r, hiddenSize, { heads: ['n_head', 'num_attention_heads'], kvHeads: null, headDim: false });
  const maxPositions = r.int('n_positions', 2048, ['max_position_embeddings']);
  const rotaryDim = 'rotary_dim' in r.raw && r.raw.rotary_dim === null ? heads.headDim : r.int('rotary_dim', 64);
  return decoderConfig(r, {
    family: 'gptj',
    vocabSize: r.int('vocab_size'),
    hiddenSize,
    numLayers: r.int('n_layer', undefined, ['num_hidden_layers']),
    ...heads,
    intermediateSize: inner(r, 'n_inner', hiddenSize),
    maxPositions,
    maxPositionsKey: 'n_positions',
    norm: { kind: 'layer', eps: r.num('layer_norm_epsilon', 1e-5), bias: true },
    block: { parallel: true, mlpNorm: 'shared' },
    rope: ropeOf(r, {
      headDim: heads.headDim,
      maxPositions,
      rotaryDim,
      interleaved: true,
      thetaKeys: [],
      scalingKey: null,
    }),
    mlp: { gated: false, act: activationOf(r, 'activation_function', 'gelu_new', [...GPT2_ACTS]) },
    bias: { qkv: false, o: false, mlp: true },
    lmHeadBias: true,
    tieWordEmbeddings: r.bool('tie_word_embeddings', false),
  });
}

export const GPT_CONFIGS: Record<string, (r: Reader) => ModelConfig> = {
  gpt2: parseGpt2,
  gpt_bigcode: parseBigCode,
  gpt_neo: parseGptNeo,
  gptj: parseGptj,
};

const base = {
  prefixes: ['transformer.', ''],
  modulePrefix: 'transformer.',
  embed: 'wte',
  posEmbed: 'wpe',
  finalNorm: 'ln_f',
  lmHead: ['lm_head.weight'],
  layer: 'h.{i}',
  norms: { attn: 'ln_1', mlp: 'ln_2' },
};

export const GPT_LAYOUTS: Record<string, (c: ModelConfig) => Layout> = {
  gpt2: () => ({
    ...base,
    transposed: true,
    linears: [
      linearSpec('attn.c_attn', 'qkv', H, QKVW, 'qkv'),
      linearSpec('attn.c_proj', 'o', QW, H, 'o'),
      linearSpec('mlp.c_fc', 'fc_in', H, I, 'mlp'),
      linearSpec('mlp.c_proj', 'fc_out', I, H, 'mlp'),
    ],
  }),
  gpt_bigcode: () => ({
    ...base,
    // multi_query: [q | k | v] (one KV head); otherwise per head
    qkvGroups: (c) => c.numKvHeads,
    linears: [
      linearSpec('attn.c_attn', 'qkv', H, QKVW, 'qkv'),
      linearSpec('attn.c_proj', 'o', QW, H, 'o'),
      linearSpec('mlp.c_fc', 'fc_in', H, I, 'mlp'),
      linearSpec('mlp.c_proj', 'fc_out', I, H, 'mlp'),
    ],
  }),
  gpt_neo: () => ({
    ...base,
    linears: [
      linearSpec('attn.attention.q_proj', 'q', H, QW, 'qkv'),
      linearSpec('attn.attention.k_proj', 'k', H, QW, 'qkv'),
      linearSpec('attn.attention.v_proj', 'v', H, QW, 'qkv'),
      linearSpec('attn.attention.out_proj', 'o', QW, H, 'o'),
      linearSpec('mlp.c_fc', 'fc_in', H, I, 'mlp'),
      linearSpec('mlp.c_proj', 'fc_out', I, H, 'mlp'),
    ],
  }),
  gptj: () => ({
    ...base,
    posEmbed: undefined,
    norms: { attn: 'ln_1' },
    linears: [
      linearSpec('attn.q_proj', 'q', H, QW, 'qkv'),
      linearSpec('attn.k_proj', 'k', H, QW, 'qkv'),
      linearSpec('attn.v_proj', 'v', H, QW, 'qkv'),
      linearSpec('attn.out_proj', 'o', QW, H, 'o'),
      linearSpec('mlp.fc_in', 'fc_in', H, I, 'mlp'),
      linearSpec('mlp.fc_out', 'fc_out', I, H, 'mlp'),
    ],
  }),
};
