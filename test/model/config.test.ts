import { describe, expect, it } from 'vitest';
import { ConfigError, SUPPORTED_MODEL_TYPES, parseConfig } from '../../src/model/config';
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

describe('parseConfig', () => {
  it('llama: GQA, implicit head_dim, RoPE, tied, no biases', () => {
    const c = parseConfig(configOf('llama'));
    expect(c).toMatchObject({
      modelType: 'llama',
      arch: 'llama',
      vocabSize: 320,
      hiddenSize: 24,
      numLayers: 2,
      numHeads: 3,
      numKvHeads: 1,
      headDim: 8,
      intermediateSize: 44,
      maxPositions: 128,
      norm: 'rms',
      normEps: 1e-5,
      rope: { theta: 10000, rotaryDim: 8 },
      act: 'silu',
      qkvBias: false,
      oBias: false,
      mlpBias: false,
      qkNorm: false,
      tieWordEmbeddings: true,
      bosTokenId: 296,
      eosTokenIds: [298],
      padTokenId: null,
      torchDtype: 'float32',
      slidingWindow: null,
    });
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
    expect(c.normEps).toBe(1e-6);
    expect(c.rope).toEqual({ theta: 10000, rotaryDim: 8 });
    expect(c.maxPositions).toBe(2048);
    expect(c.act).toBe('silu');
  });

  it('llama: attention_bias and mlp_bias flags, explicit head_dim', () => {
    const c = parseConfig(configOf('llama', { attention_bias: true, mlp_bias: true, head_dim: 16 }));
    expect([c.qkvBias, c.oBias, c.mlpBias]).toEqual([true, true, true]);
    expect(c.headDim).toBe(16);
    expect(c.rope!.rotaryDim).toBe(16);
  });

  it('llama: rejects a non-silu hidden_act naming the key', () => {
    expect(() => parseConfig(configOf('llama', { hidden_act: 'gelu' }))).toThrow(
      /config\.json: "hidden_act" is "gelu".*silu/,
    );
  });

  it('mistral: explicit head_dim, sliding window, untied', () => {
    const c = parseConfig(configOf('mistral'));
    expect(c).toMatchObject({
      arch: 'llama',
      hiddenSize: 36,
      headDim: 12,
      numHeads: 3,
      numKvHeads: 1,
      tieWordEmbeddings: false,
      slidingWindow: null,
    });
    expect(c.rope).toEqual({ theta: 1e6, rotaryDim: 12 });
    expect(parseConfig(configOf('mistral', { sliding_window: 4096 })).slidingWindow).toBe(4096);
    // mistral has no bias flags even if a config carries attention_bias
    expect(parseConfig(configOf('mistral', { attention_bias: true })).qkvBias).toBe(false);
  });

  it('qwen2: q/k/v bias without o bias; window only with use_sliding_window', () => {
    const c = parseConfig(configOf('qwen2'));
    expect([c.qkvBias, c.oBias, c.mlpBias, c.qkNorm]).toEqual([true, false, false, false]);
    expect(c.slidingWindow).toBeNull();
    expect(c.tieWordEmbeddings).toBe(true);
    expect(parseConfig(configOf('qwen2', { use_sliding_window: true, sliding_window: 64 })).slidingWindow).toBe(64);
  });

  it('qwen3: qk norm, head_dim != hidden/heads, rope_parameters, dtype key', () => {
    const c = parseConfig(configOf('qwen3'));
    expect(c).toMatchObject({
      qkNorm: true,
      hiddenSize: 40,
      numHeads: 3,
      headDim: 8,
      qkvBias: false,
      oBias: false,
      torchDtype: 'float32',
    });
    expect(c.rope).toEqual({ theta: 1e6, rotaryDim: 8 });
    const b = parseConfig(configOf('qwen3', { attention_bias: true }));
    expect([b.qkvBias, b.oBias]).toEqual([true, true]);
  });

  it('gpt2: n_* keys, n_inner null = 4*n_embd, tanh GELU, learned positions, tied', () => {
    const c = parseConfig(configOf('gpt2'));
    expect(c).toMatchObject({
      modelType: 'gpt2',
      arch: 'gpt2',
      vocabSize: 320,
      hiddenSize: 36,
      numLayers: 2,
      numHeads: 3,
      numKvHeads: 3,
      headDim: 12,
      intermediateSize: 144,
      maxPositions: 64,
      norm: 'layer',
      normEps: 1e-5,
      rope: null,
      act: 'gelu_tanh',
      qkvBias: true,
      oBias: true,
      mlpBias: true,
      tieWordEmbeddings: true,
      bosTokenId: 296,
      eosTokenIds: [296],
    });
    expect(parseConfig(configOf('gpt2', { n_inner: 100 })).intermediateSize).toBe(100);
    expect(parseConfig(configOf('gpt2', { activation_function: 'gelu_pytorch_tanh' })).act).toBe('gelu_tanh');
    expect(() => parseConfig(configOf('gpt2', { activation_function: 'relu' }))).toThrow(
      /"activation_function" is "relu"/,
    );
    expect(() => parseConfig(configOf('gpt2', { scale_attn_by_inverse_layer_idx: true }))).toThrow(
      /scale_attn_by_inverse_layer_idx/,
    );
  });

  it('rope_scaling: null, default, linear and llama3 accepted, others rejected naming the key', () => {
    expect(parseConfig(configOf('llama', { rope_scaling: { rope_type: 'default' } })).rope!.theta).toBe(10000);
    expect(parseConfig(configOf('llama', { rope_scaling: { type: 'default' } })).rope!.theta).toBe(10000);
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
    expect(l3.rope!.scaling).toEqual({
      type: 'llama3',
      factor: 32,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
    expect(parseConfig(configOf('llama', { rope_scaling: { type: 'linear', factor: 2 } })).rope!.scaling).toEqual({
      type: 'linear',
      factor: 2,
    });
    expect(() => parseConfig(configOf('llama', { rope_scaling: { rope_type: 'dynamic', factor: 2 } }))).toThrow(
      /"rope_scaling".*"dynamic".*not support/,
    );
    expect(() =>
      parseConfig(configOf('qwen3', { rope_parameters: { rope_type: 'yarn', rope_theta: 1e6, factor: 4 } })),
    ).toThrow(/"rope_parameters" asks for RoPE scaling type "yarn"/);
    // rope_parameters.rope_theta wins over a default, rope_theta key also read
    expect(parseConfig(configOf('llama', { rope_theta: 5e5 })).rope!.theta).toBe(5e5);
    expect(
      parseConfig(configOf('llama', { rope_parameters: { rope_type: 'default', rope_theta: 123 } })).rope!.theta,
    ).toBe(123);
  });

  it('unsupported model_type lists the supported ones', () => {
    expect(SUPPORTED_MODEL_TYPES).toEqual(['llama', 'mistral', 'qwen2', 'qwen3', 'gpt2']);
    expect(() => parseConfig({ ...configOf('llama'), model_type: 'phi3' })).toThrow(
      'config.json: model_type "phi3" is not supported; supported model types: llama, mistral, qwen2, qwen3, gpt2.',
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
