/**
 * LayerNorm families with their own block forms:
 *   opt     learned positions with an offset of 2 (embed_positions has max_position_embeddings + 2
 *           rows), ReLU fc1/fc2 MLP, q/k/v/out_proj with biases (enable_bias); do_layer_norm_before
 *           false (OPT-350m) puts the norms after the residual adds and drops the final norm; a
 *           word_embed_proj_dim other than hidden_size adds project_in / project_out (no bias).
 *   bloom   ALiBi instead of positions, word_embeddings_layernorm on the embeddings, fused
 *           query_key_value laid out per head, GELU-tanh MLP, biases everywhere.
 *   falcon  query_key_value layout and norms per form: new_decoder_architecture (Falcon-40B/180B/
 *           11B) groups [g query heads | k | v] per KV head with ln_attn / ln_mlp; the classic
 *           multi-query form (Falcon-7B) is [q | k | v] with one KV head; otherwise (Falcon-RW) per
 *           head. parallel_attn: attention and MLP on one input_layernorm (or ln_attn / ln_mlp);
 *           alibi: ALiBi with slopes and products rounded to bfloat16, no RoPE, added once to the
 *           scaled scores as transformers' default (SDPA) path does (its 5.x eager path adds it twice:
 *           see scripts/peft_interop.py). Exact GELU by default.
 */
import type { ModelConfig } from '../config-types';
import { type Reader, activationOf, decoderConfig, headsOf } from '../config-reader';
import { ropeOf } from '../config-rope';
import { alibiSlopes } from '../../reference/alibi';
import type { Layout } from '../layout';
import { H, I, QKVW, QW, linearSpec } from './common';

function parseOpt(r: Reader): ModelConfig {
  const hiddenSize = r.int('hidden_size');
  const heads = headsOf(r, hiddenSize, { kvHeads: null, headDim: false });
  const pre = r.bool('do_layer_norm_before', true);
  if (!r.bool('layer_norm_elementwise_affine', true))
    r.refuse('layer_norm_elementwise_affine', false, 'only LayerNorms with weights');
  const b = r.bool('enable_bias', true);
  return decoderConfig(r, {
    family: 'opt',
    vocabSize: r.int('vocab_size'),
    hiddenSize,
    numLayers: r.int('num_hidden_layers'),
    ...heads,
    intermediateSize: r.int('ffn_dim'),
    maxPositions: r.int('max_position_embeddings', 2048),
    norm: { kind: 'layer', eps: 1e-5, bias: true },
    block: { normAfterResidual: !pre },
    rope: null,
    mlp: { gated: false, act: activationOf(r, 'activation_function', 'relu') },
    learnedPositions: { offset: 2 },
    finalNorm: pre && !r.bool('_remove_final_layer_norm', false),
    embedDim: r.int('word_embed_proj_dim', hiddenSize),
    bias: { qkv: b, o: b, mlp: b },
    tieWordEmbeddings: r.bool('tie_word_embeddings', true),
  });
}

function parseBloom(r: Reader): ModelConfig {
  const hiddenSize = r.int('hidden_size', undefined, ['n_embed']);
  const heads = headsOf(r, hiddenSize, { heads: ['n_head', 'num_attention_heads'], kvHeads: null, headDim: false });
  if (r.bool('apply_residual_connection_post_layernorm', false))
    r.refuse('apply_residual_connection_post_layernorm', true, 'only false, as in every published BLOOM');
  return decoderConfig(r, {
    family: 'bloom',
    vocabSize: r.int('vocab_size'),
    hiddenSize,
    numLayers: r.int('n_layer', undefined, ['num_hidden_layers']),
    ...heads,
    intermediateSize: 4 * hiddenSize,
    // ALiBi has no position table; seq_length is the training length BLOOM configs state.
    maxPositions: r.int('seq_length', 2048, ['max_position_embeddings']),
    maxPositionsKey: 'seq_length',
    norm: { kind: 'layer', eps: r.num('layer_norm_epsilon', 1e-5), bias: true },
    attention: { alibi: { slopes: alibiSlopes(heads.numHeads), bf16: false, mul: 1 } },
    rope: null,
    mlp: { gated: false, act: 'gelu_tanh' },
    embedNorm: true,
    bias: { qkv: true, o: true, mlp: true },
    tieWordEmbeddings: r.bool('tie_word_embeddings', true),
  });
}

function parseFalcon(r: Reader): ModelConfig {
  const hiddenSize = r.int('hidden_size', undefined, ['n_embed']);
  const numHeads = r.int('num_attention_heads', undefined, ['n_head']);
  if (hiddenSize % numHeads !== 0)
    r.reject(`"hidden_size" (${hiddenSize}) is not a multiple of "num_attention_heads" (${numHeads}).`);
  const headDim = hiddenSize / numHeads;
  const newArch = r.bool('new_decoder_architecture', false);
  const mq = r.bool('multi_query', true);
  const kv = r.int('num_kv_heads', numHeads);
  const numKvHeads = newArch ? kv : mq ? 1 : kv;
  if (numHeads % numKvHeads !== 0)
    r.reject(`"num_attention_heads" (${numHeads}) must be a multiple of "num_kv_heads" (${numKvHeads}).`);
  const parallelAttn = r.bool('parallel_attn', true);
  const lns = newArch ? r.int('num_ln_in_parallel_attn', 2) : 1;
  if (newArch && lns === 1 && !parallelAttn)
    r.refuse('parallel_attn', false, 'new_decoder_architecture needs parallel_attn or two norms');
  const parallel = newArch || parallelAttn;
  const maxPositions = r.int('max_position_embeddings', 2048);
  const alibi = r.bool('alibi', false);
  const b = r.bool('bias', false);
  return decoderConfig(r, {
    family: 'falcon',
    vocabSize: r.int('vocab_size'),
    hiddenSize,
    numLayers: r.int('num_hidden_layers', undefined, ['n_layer']),
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize: r.int('ffn_hidden_size', 4 * hiddenSize),
    maxPositions,
    norm: { kind: 'layer', eps: r.num('layer_norm_epsilon', 1e-5), bias: true },
    block: { parallel, mlpNorm: parallel && lns === 1 ? 'shared' : 'own' },
    attention: { alibi: alibi ? { slopes: alibiSlopes(numHeads), bf16: true, mul: 1 / Math.sqrt(headDim) } : null },
    rope: alibi ? null : ropeOf(r, { headDim, maxPositions }),
    mlp: { gated: false, act: activationOf(r, 'activation', 'gelu') },
    bias: { qkv: b, o: b, mlp: b },
    tieWordEmbeddings: r.bool('tie_word_embeddings', true),
  });
}

export const OPT_BLOOM_FALCON_CONFIGS: Record<string, (r: Reader) => ModelConfig> = {
  opt: parseOpt,
  bloom: parseBloom,
  falcon: parseFalcon,
};

const fused = [
  linearSpec('self_attention.query_key_value', 'qkv', H, QKVW, 'qkv'),
  linearSpec('self_attention.dense', 'o', QW, H, 'o'),
  linearSpec('mlp.dense_h_to_4h', 'fc_in', H, I, 'mlp'),
  linearSpec('mlp.dense_4h_to_h', 'fc_out', I, H, 'mlp'),
];

export const OPT_BLOOM_FALCON_LAYOUTS: Record<string, (c: ModelConfig) => Layout> = {
  opt: () => ({
    prefixes: ['model.decoder.', 'decoder.'],
    modulePrefix: 'model.decoder.',
    embed: 'embed_tokens',
    posEmbed: 'embed_positions',
    finalNorm: 'final_layer_norm',
    lmHead: ['lm_head.weight'],
    layer: 'layers.{i}',
    norms: { attn: 'self_attn_layer_norm', mlp: 'final_layer_norm' },
    top: (c) =>
      c.embedDim === c.hiddenSize
        ? []
        : [
            linearSpec('project_out', 'project_out', H, (x) => x.embedDim, false),
            linearSpec('project_in', 'project_in', (x) => x.embedDim, H, false),
          ],
    linears: [
      linearSpec('self_attn.q_proj', 'q', H, QW, 'qkv'),
      linearSpec('self_attn.k_proj', 'k', H, QW, 'qkv'),
      linearSpec('self_attn.v_proj', 'v', H, QW, 'qkv'),
      linearSpec('self_attn.out_proj', 'o', QW, H, 'o'),
      linearSpec('fc1', 'fc_in', H, I, 'mlp'),
      linearSpec('fc2', 'fc_out', I, H, 'mlp'),
    ],
  }),
  bloom: () => ({
    prefixes: ['transformer.', ''],
    modulePrefix: 'transformer.',
    embed: 'word_embeddings',
    embedNorm: 'word_embeddings_layernorm',
    finalNorm: 'ln_f',
    lmHead: ['lm_head.weight'],
    layer: 'h.{i}',
    norms: { attn: 'input_layernorm', mlp: 'post_attention_layernorm' },
    qkvGroups: (c) => c.numKvHeads,
    linears: fused,
  }),
  falcon: (c) => {
    const twoNorms = c.block.parallel && c.block.mlpNorm === 'own';
    return {
      prefixes: ['transformer.', ''],
      modulePrefix: 'transformer.',
      embed: 'word_embeddings',
      finalNorm: 'ln_f',
      lmHead: ['lm_head.weight'],
      layer: 'h.{i}',
      norms: twoNorms
        ? { attn: 'ln_attn', mlp: 'ln_mlp' }
        : { attn: 'input_layernorm', mlp: 'post_attention_layernorm' },
      // [q | k | v] when multi-query (one KV head); per KV head otherwise (per head when numKv = heads)
      qkvGroups: (x) => x.numKvHeads,
      linears: fused,
    };
  },
};
