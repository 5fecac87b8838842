import { describe, expect, it } from 'vitest';
import { ConfigError, SUPPORTED_MODEL_TYPES, parseConfig } from '../../src/model/config';
import { alibiSlopes } from '../../src/reference/alibi';
import { makeTinyModel, type TinyModelType } from '../fixtures/tiny-model';

/** The tiny model's config.json with keys replaced (the weights are irrelevant here). */
const configOf = (modelType: TinyModelType, overrides: Record<string, unknown> = {}) => ({
  ...makeTinyModel({ modelType }).config,
  ...overrides,
});

const without = (obj: Record<string, unknown>, key: string) => {
  const o = { ...obj };
  delete o[key];
  return o;
};

const rope = (theta: number, rotaryDim: number, more: Record<string, unknown> = {}) => ({
  theta,
  rotaryDim,
  interleaved: false,
  attentionScaling: 1,
  ...more,
});

const PRE_NORM = {
  attnNorm: true,
  mlpNorm: 'own',
  attnOutNorm: false,
  mlpOutNorm: false,
  normAfterResidual: false,
  parallel: false,
  residualScale: 1,
};

describe('parseConfig', () => {
  it('llama: GQA, implicit head_dim, RoPE, tied, no biases', () => {
    const c = parseConfig(configOf('llama'));
    expect(c).toMatchObject({
      modelType: 'llama',
      family: 'llama',
      vocabSize: 320,
      hiddenSize: 24,
      numLayers: 2,
      numHeads: 3,
      numKvHeads: 1,
      headDim: 8,
      intermediateSize: 44,
      maxPositions: 128,
      maxPositionsKey: 'max_position_embeddings',
      norm: { kind: 'rms', eps: 1e-5, weightOffset: 0, bias: false },
      block: PRE_NORM,
      attention: { scale: 8 ** -0.5, softcap: null, alibi: null, qkNorm: null },
      mlp: { gated: true, act: 'silu' },
      learnedPositions: null,
      embedScale: 1,
      embedNorm: false,
      finalNorm: true,
      embedDim: 24,
      bias: { qkv: false, o: false, mlp: false },
      lmHeadBias: false,
      logits: { scale: 1, softcap: null },
      tieWordEmbeddings: true,
      bosTokenId: 296,
      eosTokenIds: [298],
      padTokenId: null,
      torchDtype: 'float32',
    });
    expect(c.layers).toEqual([
      { window: null, rope: rope(10000, 8) },
      { window: null, rope: rope(10000, 8) },
    ]);
    expect(c.raw.architectures).toEqual(['LlamaForCausalLM']);
  });

  it('llama defaults: kv heads = heads, untied, eps 1e-6, theta 1e4, 2048 positions', () => {
    const raw = configOf('llama');
    for (const k of [
      'num_key_value_heads',
      'tie_word_embeddings',
      'rms_norm_eps',
      'rope_theta',
      'max_position_embeddings',
      'hidden_act',
    ])
      delete raw[k];
    const c = parseConfig(raw);
    expect(c.numKvHeads).toBe(3);
    expect(c.tieWordEmbeddings).toBe(false);
    expect(c.norm.eps).toBe(1e-6);
    expect(c.layers[0]!.rope).toEqual(rope(10000, 8));
    expect(c.maxPositions).toBe(2048);
    expect(c.mlp.act).toBe('silu');
  });

  it('llama: attention_bias and mlp_bias flags, explicit head_dim', () => {
    const c = parseConfig(configOf('llama', { attention_bias: true, mlp_bias: true, head_dim: 16 }));
    expect(c.bias).toEqual({ qkv: true, o: true, mlp: true });
    expect(c.headDim).toBe(16);
    expect(c.layers[0]!.rope!.rotaryDim).toBe(16);
  });

  it('llama: rejects a non-silu hidden_act and a partial rotary factor, naming the key', () => {
    expect(() => parseConfig(configOf('llama', { hidden_act: 'gelu' }))).toThrow(
      /config\.json: "hidden_act" is "gelu".*"silu"/,
    );
    expect(() => parseConfig(configOf('llama', { partial_rotary_factor: 0.5 }))).toThrow(/"partial_rotary_factor"/);
  });

  it('mistral: explicit head_dim, sliding window on every layer, untied, no bias flags', () => {
    const c = parseConfig(configOf('mistral'));
    expect(c).toMatchObject({ hiddenSize: 36, headDim: 12, numHeads: 3, numKvHeads: 1, tieWordEmbeddings: false });
    expect(c.layers.map((l) => l.window)).toEqual([null, null]);
    expect(c.layers[0]!.rope).toEqual(rope(1e6, 12));
    expect(parseConfig(configOf('mistral', { sliding_window: 4096 })).layers.map((l) => l.window)).toEqual([
      4096, 4096,
    ]);
    expect(parseConfig(configOf('mistral', { attention_bias: true })).bias.qkv).toBe(false);
  });

  it('mixtral: experts and top-k, Mistral attention, defaults; router noise and the router loss refused', () => {
    const c = parseConfig(configOf('mixtral', { sliding_window: 7 }));
    expect(c).toMatchObject({ family: 'mixtral', moe: { numExperts: 4, topK: 2 }, intermediateSize: 20 });
    expect(c.layers.map((l) => l.window)).toEqual([7, 7]);
    const d = parseConfig(
      without(without(without(configOf('mixtral'), 'num_local_experts'), 'num_experts_per_tok'), 'rope_theta'),
    );
    expect(d.moe).toEqual({ numExperts: 8, topK: 2 });
    expect(d.layers[0]!.rope!.theta).toBe(1e6);
    expect(parseConfig(configOf('llama')).moe).toBeNull();
    expect(() => parseConfig(configOf('mixtral', { num_experts_per_tok: 5 }))).toThrow(
      /"num_experts_per_tok" must be between 1 and num_local_experts \(4\), got 5/,
    );
    expect(() => parseConfig(configOf('mixtral', { router_jitter_noise: 0.01 }))).toThrow(
      /"router_jitter_noise": 0.01 is not supported for model_type "mixtral" \(only 0/,
    );
    expect(() => parseConfig(configOf('mixtral', { output_router_logits: true }))).toThrow(
      /"output_router_logits".*load-balancing loss/,
    );
  });

  it('qwen2: q/k/v bias without o bias; windows from use_sliding_window + max_window_layers or layer_types', () => {
    const c = parseConfig(configOf('qwen2'));
    expect(c.bias).toEqual({ qkv: true, o: false, mlp: false });
    expect(c.attention.qkNorm).toBeNull();
    expect(c.layers.map((l) => l.window)).toEqual([null, null]);
    const w = parseConfig(configOf('qwen2', { use_sliding_window: true, sliding_window: 64, max_window_layers: 1 }));
    expect(w.layers.map((l) => l.window)).toEqual([null, 64]);
    const t = parseConfig(
      configOf('qwen2', {
        use_sliding_window: true,
        sliding_window: 8,
        layer_types: ['sliding_attention', 'full_attention'],
      }),
    );
    expect(t.layers.map((l) => l.window)).toEqual([8, null]);
  });

  it('qwen3: per-head RMS q/k norm, head_dim, rope_parameters, dtype key; head_dim 128 by default', () => {
    const c = parseConfig(configOf('qwen3'));
    expect(c).toMatchObject({ hiddenSize: 40, numHeads: 3, headDim: 8, torchDtype: 'float32' });
    expect(c.attention.qkNorm).toEqual({
      kind: 'rms',
      over: 'head',
      perHeadWeights: false,
      weightOffset: 0,
      bias: false,
      eps: 1e-6,
    });
    expect(c.bias).toEqual({ qkv: false, o: false, mlp: false });
    expect(c.layers[0]!.rope).toEqual(rope(1e6, 8));
    expect(parseConfig(configOf('qwen3', { attention_bias: true })).bias).toEqual({ qkv: true, o: true, mlp: false });
    expect(parseConfig(without(configOf('qwen3'), 'head_dim')).headDim).toBe(128);
  });

  it('gpt2: n_* keys, n_inner null = 4*n_embd, tanh GELU, learned positions, Conv1D family, tied', () => {
    const c = parseConfig(configOf('gpt2'));
    expect(c).toMatchObject({
      family: 'gpt2',
      hiddenSize: 36,
      numHeads: 3,
      numKvHeads: 3,
      headDim: 12,
      intermediateSize: 144,
      maxPositions: 64,
      maxPositionsKey: 'n_positions',
      norm: { kind: 'layer', eps: 1e-5, bias: true, weightOffset: 0 },
      mlp: { gated: false, act: 'gelu_tanh' },
      learnedPositions: { offset: 0 },
      bias: { qkv: true, o: true, mlp: true },
      tieWordEmbeddings: true,
      eosTokenIds: [296],
    });
    expect(c.layers[0]!.rope).toBeNull();
    expect(parseConfig(configOf('gpt2', { n_inner: 100 })).intermediateSize).toBe(100);
    expect(parseConfig(configOf('gpt2', { activation_function: 'relu' })).mlp.act).toBe('relu');
    expect(parseConfig(configOf('gpt2', { scale_attn_weights: false })).attention.scale).toBe(1);
    expect(() => parseConfig(configOf('gpt2', { activation_function: 'quick_gelu' }))).toThrow(
      /"activation_function" is "quick_gelu"/,
    );
    expect(() => parseConfig(configOf('gpt2', { scale_attn_by_inverse_layer_idx: true }))).toThrow(
      /scale_attn_by_inverse_layer_idx/,
    );
  });

  it('rope scaling: default, linear, llama3 and (phi3) longrope; others rejected naming the key', () => {
    expect(parseConfig(configOf('llama', { rope_scaling: { rope_type: 'default' } })).layers[0]!.rope!.theta).toBe(
      10000,
    );
    expect(() => parseConfig(configOf('llama', { rope_scaling: { type: 'yarn', factor: 4 } }))).toThrow(
      /config\.json: "rope_scaling" asks for RoPE scaling type "yarn"/,
    );
    const l3 = parseConfig(
      configOf('llama', {
        rope_scaling: {
          rope_type: 'llama3',
          factor: 32,
          low_freq_factor: 1,
          high_freq_factor: 4,
          original_max_position_embeddings: 8192,
        },
      }),
    );
    expect(l3.layers[0]!.rope!.scaling).toEqual({
      type: 'llama3',
      factor: 32,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
    // without original_max_position_embeddings transformers takes max_position_embeddings
    const l3d = parseConfig(configOf('llama', { rope_scaling: { rope_type: 'llama3', factor: 8 } }));
    expect(l3d.layers[0]!.rope!.scaling).toMatchObject({ originalMaxPositionEmbeddings: 128 });
    expect(
      parseConfig(configOf('llama', { rope_scaling: { type: 'linear', factor: 2 } })).layers[0]!.rope!.scaling,
    ).toEqual({ type: 'linear', factor: 2 });
    expect(() => parseConfig(configOf('llama', { rope_scaling: { rope_type: 'dynamic', factor: 2 } }))).toThrow(
      /"rope_scaling".*"dynamic".*not support/,
    );
    expect(() =>
      parseConfig(configOf('qwen3', { rope_parameters: { rope_type: 'yarn', rope_theta: 1e6, factor: 4 } })),
    ).toThrow(/"rope_parameters" asks for RoPE scaling type "yarn"/);
    expect(parseConfig(configOf('llama', { rope_theta: 5e5 })).layers[0]!.rope!.theta).toBe(5e5);
    expect(
      parseConfig(configOf('llama', { rope_parameters: { rope_type: 'default', rope_theta: 123 } })).layers[0]!.rope!
        .theta,
    ).toBe(123);
  });

  it('unsupported model_type lists the supported ones; remote-code types name their successor', () => {
    expect(SUPPORTED_MODEL_TYPES).toEqual(
      expect.arrayContaining(['llama', 'gemma3', 'gemma3_text', 'phi3', 'gpt_neox', 'opt', 'bloom', 'falcon', 'gptj']),
    );
    expect(() => parseConfig({ ...configOf('llama'), model_type: 'mamba' })).toThrow(
      /config\.json: model_type "mamba" is not supported; supported model types: llama, mistral, .*, falcon\./,
    );
    expect(() => parseConfig({ ...configOf('llama'), model_type: 'qwen' })).toThrow(
      /model_type "qwen" needs trust_remote_code.*Qwen2 \/ Qwen2\.5 \/ Qwen3/,
    );
    for (const t of ['chatglm', 'baichuan', 'internlm', 'xverse'])
      expect(() => parseConfig({ ...configOf('llama'), model_type: t })).toThrow(
        /needs trust_remote_code.*(try|successor)/,
      );
    expect(() => parseConfig(without(configOf('llama'), 'model_type'))).toThrow(/missing required key "model_type"/);
  });

  it('missing required keys are named with the file', () => {
    for (const key of ['hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size', 'vocab_size']) {
      expect(() => parseConfig(without(configOf('qwen2'), key))).toThrow(
        `config.json: missing required key "${key}" (model_type "qwen2").`,
      );
    }
    expect(() => parseConfig(without(configOf('gpt2'), 'n_embd'), 'my/config.json')).toThrow(
      'my/config.json: missing required key "n_embd" (model_type "gpt2").',
    );
  });

  it('malformed values and inconsistent sizes', () => {
    expect(() => parseConfig(configOf('llama', { hidden_size: '24' }))).toThrow(
      /"hidden_size" must be a positive integer, got "24"/,
    );
    expect(() => parseConfig(configOf('llama', { num_key_value_heads: 2 }))).toThrow(
      /multiple of "num_key_value_heads"/,
    );
    expect(() => parseConfig(configOf('llama', { hidden_size: 25 }))).toThrow(
      /not a multiple of "num_attention_heads"/,
    );
    expect(() => parseConfig('{not json')).toThrow(ConfigError);
    expect(() => parseConfig([1, 2])).toThrow(/expected a JSON object/);
    expect(() => parseConfig(configOf('llama', { quantization_config: { quant_method: 'gptq' } }))).toThrow(
      /quantized.*gptq/,
    );
  });

  it('token ids: lists, null, bytes and string input', () => {
    const c = parseConfig(configOf('llama', { eos_token_id: [298, 296, 298], pad_token_id: 296, bos_token_id: null }));
    expect(c.eosTokenIds).toEqual([298, 296]);
    expect(c.padTokenId).toBe(296);
    expect(c.bosTokenId).toBeNull();
    expect(parseConfig(configOf('llama', { eos_token_id: null })).eosTokenIds).toEqual([]);
    const bytes = new TextEncoder().encode(JSON.stringify(configOf('gpt2')));
    expect(parseConfig(bytes).hiddenSize).toBe(36);
    expect(parseConfig(JSON.stringify(configOf('gpt2'))).hiddenSize).toBe(36);
  });
});

describe('parseConfig: the other families, as transformers reads their configs', () => {
  it('gemma: (1 + w) norms, sqrt(hidden) embedding scale in the weights dtype, GeGLU, head_dim 256 by default', () => {
    const c = parseConfig(configOf('gemma'));
    expect(c).toMatchObject({
      family: 'gemma',
      headDim: 10,
      norm: { kind: 'rms', weightOffset: 1 },
      mlp: { gated: true, act: 'gelu_tanh' },
      embedScale: Math.fround(Math.sqrt(24)),
      embedScaleInWeightDtype: true,
      attention: { scale: 10 ** -0.5, softcap: null },
      tieWordEmbeddings: true,
    });
    // the legacy hidden_act "gelu" means the tanh approximation for Gemma
    expect(parseConfig(configOf('gemma', { hidden_act: 'gelu' })).mlp.act).toBe('gelu_tanh');
    expect(parseConfig(without(configOf('gemma'), 'head_dim')).headDim).toBe(256);
  });

  it('gemma2: sandwich norms, query_pre_attn_scalar, soft-caps, alternating sliding windows', () => {
    const c = parseConfig(configOf('gemma2'));
    expect(c.block).toEqual({ ...PRE_NORM, attnOutNorm: true, mlpOutNorm: true });
    expect(c.attention).toMatchObject({ scale: 6 ** -0.5, softcap: 2.5 });
    expect(c.logits).toEqual({ scale: 1, softcap: 3.5 });
    expect(c.layers.map((l) => l.window)).toEqual([4, null]);
    const d = parseConfig(
      without(without(without(configOf('gemma2'), 'layer_types'), 'attn_logit_softcapping'), 'final_logit_softcapping'),
    );
    expect(d.attention.softcap).toBe(50);
    expect(d.logits.softcap).toBe(30);
    expect(d.layers.map((l) => l.window)).toEqual([4, null]); // (i + 1) % 2: even layers slide
    expect(parseConfig(configOf('gemma2', { attn_logit_softcapping: null })).attention.softcap).toBeNull();
  });

  it('gemma3_text: q/k norms (1 + w), local RoPE base on sliding layers, every 6th layer global by default', () => {
    const c = parseConfig(configOf('gemma3_text'));
    expect(c.attention.qkNorm).toMatchObject({ kind: 'rms', over: 'head', weightOffset: 1 });
    expect(c.layers.map((l) => [l.window, l.rope!.theta])).toEqual([
      [4, 100],
      [null, 10000],
    ]);
    const d = parseConfig(
      without(
        without(without(configOf('gemma3_text', { num_hidden_layers: 7 }), 'sliding_window_pattern'), 'rope_theta'),
        'rope_local_base_freq',
      ),
    );
    expect(d.layers.map((l) => l.window !== null)).toEqual([true, true, true, true, true, false, true]);
    expect(d.layers.map((l) => l.rope!.theta)).toEqual([1e4, 1e4, 1e4, 1e4, 1e4, 1e6, 1e4]);
    // new-style nested rope_parameters; linear scaling only on full-attention layers
    const n = parseConfig(
      configOf('gemma3_text', {
        rope_parameters: {
          full_attention: { rope_type: 'linear', factor: 8, rope_theta: 1e6 },
          sliding_attention: { rope_type: 'default', rope_theta: 1e4 },
        },
      }),
    );
    expect(n.layers[1]!.rope).toMatchObject({ theta: 1e6, scaling: { type: 'linear', factor: 8 } });
    expect(n.layers[0]!.rope!.scaling).toBeUndefined();
    expect(() => parseConfig(configOf('gemma3_text', { use_bidirectional_attention: true }))).toThrow(
      /use_bidirectional_attention/,
    );
  });

  it('gemma3: the text_config of a multimodal checkpoint, no final soft-cap', () => {
    const text = configOf('gemma3_text', { final_logit_softcapping: 30 });
    const c = parseConfig({
      model_type: 'gemma3',
      text_config: text,
      torch_dtype: 'bfloat16',
      tie_word_embeddings: true,
    });
    expect(c).toMatchObject({ modelType: 'gemma3', family: 'gemma3', hiddenSize: 24, torchDtype: 'bfloat16' });
    expect(c.logits.softcap).toBeNull();
    expect(() => parseConfig({ model_type: 'gemma3', text_config: { hidden_size: 8 } })).toThrow(
      /missing required key "text_config\.num_attention_heads"/,
    );
  });

  it('phi3: longrope short factors and attention factor, partial rotary, positions capped, window on every layer', () => {
    const c = parseConfig(configOf('phi3'));
    const r = c.layers[0]!.rope!;
    expect(r.rotaryDim).toBe(4);
    expect(r.scaling).toEqual({
      type: 'longrope',
      shortFactor: [1, 1.5],
      longFactor: [2, 3],
      originalMaxPositionEmbeddings: 64,
    });
    expect(r.attentionScaling).toBeCloseTo(Math.sqrt(1 + Math.log(128 / 64) / Math.log(64)), 12);
    expect(c).toMatchObject({ maxPositions: 64, maxPositionsKey: 'original_max_position_embeddings' });
    expect(c.layers.map((l) => l.window)).toEqual([6, 6]);
    expect(() =>
      parseConfig(configOf('phi3', { rope_scaling: { type: 'longrope', short_factor: [1], long_factor: [1, 2] } })),
    ).toThrow(/short_factor" must have 2 values/);
    expect(parseConfig(configOf('phi3', { rope_scaling: null })).maxPositions).toBe(128);
  });

  it('phi: parallel block on one LayerNorm, partial rotary 0.5, LM head bias, optional q/k LayerNorm', () => {
    const c = parseConfig(configOf('phi'));
    expect(c.block).toEqual({ ...PRE_NORM, parallel: true, mlpNorm: 'shared' });
    expect(c).toMatchObject({
      lmHeadBias: true,
      mlp: { gated: false, act: 'gelu_tanh' },
      norm: { kind: 'layer', bias: true },
    });
    expect(c.layers[0]!.rope!.rotaryDim).toBe(4);
    expect(parseConfig(configOf('phi', { qk_layernorm: true })).attention.qkNorm).toMatchObject({
      kind: 'layer',
      over: 'head',
      bias: true,
    });
  });

  it('gpt_neox: rotary_pct, rotary_emb_base, exact GELU, parallel residual on two norms', () => {
    const c = parseConfig(configOf('gpt_neox'));
    expect(c.layers[0]!.rope).toEqual(rope(10000, 4));
    expect(c.block).toEqual({ ...PRE_NORM, parallel: true });
    expect(c.mlp).toEqual({ gated: false, act: 'gelu' });
    expect(parseConfig(configOf('gpt_neox', { use_parallel_residual: false })).block.parallel).toBe(false);
    expect(parseConfig(without(configOf('gpt_neox'), 'rotary_pct')).layers[0]!.rope!.rotaryDim).toBe(2);
  });

  it('opt: offset positions, ReLU, pre/post-norm forms, project_in/out width', () => {
    const c = parseConfig(configOf('opt'));
    expect(c).toMatchObject({
      learnedPositions: { offset: 2 },
      mlp: { gated: false, act: 'relu' },
      finalNorm: true,
      embedDim: 24,
    });
    const post = parseConfig(configOf('opt', { do_layer_norm_before: false, word_embed_proj_dim: 16 }));
    expect(post.block.normAfterResidual).toBe(true);
    expect(post.finalNorm).toBe(false);
    expect(post.embedDim).toBe(16);
  });

  it('stablelm: LayerNorm, partial rotary, q/k/v bias, parallel residual; per-head q/k norm refused', () => {
    const c = parseConfig(configOf('stablelm'));
    expect(c.layers[0]!.rope!.rotaryDim).toBe(2);
    expect(c.bias).toEqual({ qkv: true, o: false, mlp: false });
    expect(parseConfig(configOf('stablelm', { use_parallel_residual: true })).block).toMatchObject({
      parallel: true,
      mlpNorm: 'shared',
    });
    expect(() => parseConfig(configOf('stablelm', { qk_layernorm: true }))).toThrow(
      /"qk_layernorm": true is not supported/,
    );
  });

  it('olmo2, granite, smollm3: post-norms and whole q/k norms; multipliers; NoPE layers', () => {
    const o = parseConfig(configOf('olmo2'));
    expect(o.block).toMatchObject({ attnNorm: false, mlpNorm: 'none', attnOutNorm: true, mlpOutNorm: true });
    expect(o.attention.qkNorm).toMatchObject({ kind: 'rms', over: 'all' });
    const g = parseConfig(configOf('granite'));
    expect(g).toMatchObject({
      embedScale: 3,
      block: { residualScale: 0.5 },
      attention: { scale: 0.3 },
      logits: { scale: 0.4 },
    });
    const s = parseConfig(configOf('smollm3'));
    expect(s.layers.map((l) => [l.window, l.rope !== null])).toEqual([
      [null, true],
      [4, false],
    ]);
    expect(parseConfig(configOf('smollm3', { use_sliding_window: false })).layers[1]!.window).toBeNull();
  });

  it('bloom and falcon: ALiBi slopes, embedding norm, the three falcon forms', () => {
    const b = parseConfig(configOf('bloom'));
    expect(b).toMatchObject({ embedNorm: true, numKvHeads: 3, mlp: { gated: false, act: 'gelu_tanh' } });
    expect(b.attention.alibi).toEqual({ slopes: alibiSlopes(3), bf16: false, mul: 1 });
    expect(b.layers[0]!.rope).toBeNull();
    const f7 = parseConfig(configOf('falcon'));
    expect(f7).toMatchObject({ numKvHeads: 1, block: { parallel: true, mlpNorm: 'shared' }, mlp: { act: 'gelu' } });
    const fNew = parseConfig(
      configOf('falcon', { new_decoder_architecture: true, num_attention_heads: 4, num_kv_heads: 2 }),
    );
    expect(fNew).toMatchObject({ numKvHeads: 2, block: { parallel: true, mlpNorm: 'own' } });
    const fRw = parseConfig(configOf('falcon', { alibi: true, multi_query: false, parallel_attn: false, bias: true }));
    expect(fRw).toMatchObject({ numKvHeads: 3, block: { parallel: false, mlpNorm: 'own' }, bias: { qkv: true } });
    expect(fRw.attention.alibi).toEqual({ slopes: alibiSlopes(3), bf16: true, mul: 1 / Math.sqrt(8) });
  });

  it('gpt_bigcode, gptj, gpt_neo', () => {
    expect(parseConfig(configOf('gpt_bigcode'))).toMatchObject({ numKvHeads: 1, maxPositions: 64 });
    expect(parseConfig(configOf('gpt_bigcode', { multi_query: false })).numKvHeads).toBe(3);
    const j = parseConfig(configOf('gptj'));
    expect(j.layers[0]!.rope).toEqual({ ...rope(10000, 4), interleaved: true });
    expect(j).toMatchObject({ lmHeadBias: true, learnedPositions: null, block: { parallel: true, mlpNorm: 'shared' } });
    const n = parseConfig(configOf('gpt_neo'));
    expect(n.attention.scale).toBe(1);
    expect(n.layers.map((l) => l.window)).toEqual([null, 4]);
    expect(() => parseConfig(configOf('gpt_neo', { attention_types: [[['global', 'local'], 2]] }))).toThrow(
      /"attention_layers" \(from attention_types\) has 4 entries for 2 layers/,
    );
  });
});
