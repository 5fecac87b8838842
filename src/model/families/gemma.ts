/**
 * Gemma, Gemma 2 and Gemma 3 (text), as transformers' modeling_gemma*.py compute them:
 *   all      RMSNorm scaling by (1 + w); the embedding multiplied by sqrt(hidden) rounded to the
 *            weights' dtype; GeGLU MLP (GELU-tanh; Gemma's legacy hidden_act "gelu" means the tanh
 *            form); head_dim independent of hidden_size (256 by default); tied head.
 *   gemma2   norms before and after attention and MLP (pre/post_feedforward_layernorm); attention
 *            score scale query_pre_attn_scalar^-0.5 and soft-capping (attn_logit_softcapping), final
 *            logits soft-capped (final_logit_softcapping); sliding-window layers alternate (layer_types).
 *   gemma3_text  gemma2's layer plus a per-head RMSNorm (1 + w) on q and k; local (sliding) layers
 *            use their own RoPE base (rope_local_base_freq or rope_parameters.sliding_attention),
 *            every sliding_window_pattern-th layer (default 6) is global; no soft-capping by default.
 *   gemma3   the multimodal checkpoint: its text_config is a gemma3_text model whose weights sit
 *            under "model.language_model." (or "language_model.model." in older files); the vision
 *            tower is not used. Gemma3ForConditionalGeneration applies no final soft-capping.
 */
import type { LayerConfig, ModelConfig } from '../config-types';
import { type Reader, activationOf, decoderConfig, headsOf, layerTypesOf } from '../config-reader';
import { ropeOf } from '../config-rope';
import type { Layout } from '../layout';
import { GATED_MLP, LLAMA_ATTENTION } from './common';

type Version = 1 | 2 | 3;

function parseGemma(r: Reader, version: Version, top: Reader = r, multimodal = false): ModelConfig {
  const hiddenSize = r.int('hidden_size');
  const heads = headsOf(r, hiddenSize, { headDimDefault: 256 });
  const numLayers = r.int('num_hidden_layers');
  const maxPositions = r.int('max_position_embeddings', version === 3 ? 131072 : 8192);
  const eps = r.num('rms_norm_eps', 1e-6);
  // Gemma's config turns the legacy "gelu" into the tanh approximation; Gemma 2/3 read hidden_activation.
  const actKey = version === 1 ? 'hidden_act' : 'hidden_activation';
  const act =
    version === 1 && r.str(actKey, '') === 'gelu' ? 'gelu_tanh' : activationOf(r, actKey, 'gelu_pytorch_tanh');
  if (r.bool('use_bidirectional_attention', false))
    r.refuse('use_bidirectional_attention', true, 'only causal attention');
  const a = r.bool('attention_bias', false);
  let layers: ((i: number, l: LayerConfig) => LayerConfig) | undefined;
  const rope = ropeOf(r, {
    headDim: heads.headDim,
    maxPositions,
    theta: version === 3 ? 1e6 : 10000,
    nestedKey: version === 3 ? 'full_attention' : undefined,
  });
  if (version >= 2) {
    // sliding_window: null makes the "sliding" layers attend fully
    const window = !('sliding_window' in r.raw) ? 4096 : r.has('sliding_window') ? r.int('sliding_window') : null;
    const pattern = version === 3 ? r.int('sliding_window_pattern', 6) : 2;
    const sliding = layerTypesOf(r, numLayers, (i) => (i + 1) % pattern !== 0);
    let local = rope;
    if (version === 3) {
      local = ropeOf(r, {
        headDim: heads.headDim,
        maxPositions,
        theta: 10000,
        thetaKeys: ['rope_local_base_freq'],
        nestedKey: 'sliding_attention',
        scalingKey: null,
      });
    }
    layers = (i) => ({ window: sliding[i] ? window : null, rope: sliding[i] ? local : rope });
  }
  const softcapDefault = version === 2;
  const gemma2 = version >= 2;
  return decoderConfig(
    r,
    {
      family: version === 1 ? 'gemma' : 'gemma2',
      vocabSize: r.int('vocab_size', version === 3 ? 262208 : undefined),
      hiddenSize,
      numLayers,
      ...heads,
      intermediateSize: r.int('intermediate_size'),
      maxPositions,
      norm: { eps, weightOffset: 1 },
      block: gemma2 ? { attnOutNorm: true, mlpOutNorm: true } : {},
      attention: {
        scale: gemma2 ? r.num('query_pre_attn_scalar', 256) ** -0.5 : heads.headDim ** -0.5,
        softcap: gemma2 ? r.numOrNull('attn_logit_softcapping', softcapDefault ? 50 : null) : null,
        qkNorm:
          version === 3
            ? { kind: 'rms', over: 'head', perHeadWeights: false, weightOffset: 1, bias: false, eps }
            : null,
      },
      rope,
      layers,
      mlp: { gated: true, act },
      embedScale: Math.fround(Math.sqrt(hiddenSize)),
      embedScaleInWeightDtype: true,
      bias: { qkv: a, o: a },
      logits: {
        softcap: gemma2 && !multimodal ? r.numOrNull('final_logit_softcapping', softcapDefault ? 30 : null) : null,
      },
      tieWordEmbeddings: top.bool('tie_word_embeddings', r.bool('tie_word_embeddings', true)),
    },
    top,
  );
}

export const GEMMA_CONFIGS: Record<string, (r: Reader) => ModelConfig> = {
  gemma: (r) => parseGemma(r, 1),
  gemma2: (r) => parseGemma(r, 2),
  gemma3_text: (r) => parseGemma(r, 3),
  gemma3: (r) => {
    const c = parseGemma(r.nested('text_config'), 3, r, true);
    return { ...c, family: 'gemma3' };
  },
};

const linears = [...LLAMA_ATTENTION, ...GATED_MLP];

const gemma2Layout = (prefixes: string[], modulePrefix: string): Layout => ({
  prefixes,
  modulePrefix,
  embed: 'embed_tokens',
  finalNorm: 'norm',
  lmHead: ['lm_head.weight', 'language_model.lm_head.weight'],
  layer: 'layers.{i}',
  norms: {
    attn: 'input_layernorm',
    attnOut: 'post_attention_layernorm',
    mlp: 'pre_feedforward_layernorm',
    mlpOut: 'post_feedforward_layernorm',
    q: 'self_attn.q_norm',
    k: 'self_attn.k_norm',
  },
  linears,
});

export const GEMMA_LAYOUTS: Record<string, (c: ModelConfig) => Layout> = {
  gemma: () => ({
    prefixes: ['model.', ''],
    modulePrefix: 'model.',
    embed: 'embed_tokens',
    finalNorm: 'norm',
    lmHead: ['lm_head.weight'],
    layer: 'layers.{i}',
    norms: { attn: 'input_layernorm', mlp: 'post_attention_layernorm' },
    linears,
  }),
  gemma2: () => gemma2Layout(['model.', ''], 'model.'),
  gemma3: () => ({
    ...gemma2Layout(['model.language_model.', 'language_model.model.'], 'model.language_model.'),
    unusedModules: ['model.vision_tower.', 'model.multi_modal_projector.'],
  }),
};
