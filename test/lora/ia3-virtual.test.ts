/**
 * The (IA)³, prompt-tuning and prefix-tuning adapter files (src/lora/ia3.ts, src/lora/virtual.ts):
 * PEFT 0.21's config fields and tensor names and shapes, round trips, and the errors for files
 * that do not fit the model. (Loading in PEFT itself: test/python/peft-methods.py-test.ts.)
 */
import { describe, expect, it } from 'vitest';
import { exportIa3, ia3ConfigFromSettings, ia3Key, importIa3, initIa3, isFeedforward } from '../../src/lora/ia3';
import { PeftError } from '../../src/lora/peft';
import {
  type PrefixTuningConfig,
  exportVirtual,
  importVirtual,
  standardNormal,
  textInit,
  virtualShape,
} from '../../src/lora/virtual';
import { parseSafetensors } from '../../src/model/safetensors';
import { gpt2Modules, llamaModules } from './fixtures';

describe('(IA)³ files', () => {
  it("PEFT's llama defaults: k/v scale outputs, down_proj its input; config and keys as PEFT 0.21 saves them", () => {
    const modules = llamaModules(2);
    const cfg = ia3ConfigFromSettings({ target_modules: [], feedforward_modules: [] }, 'llama');
    const vectors = initIa3(cfg, modules);
    expect(vectors.map((v) => v.path.split('.').slice(-1)[0])).toEqual([
      'k_proj',
      'v_proj',
      'down_proj',
      'k_proj',
      'v_proj',
      'down_proj',
    ]);
    const down = modules.find((m) => m.name === 'down_proj')!;
    const k = modules.find((m) => m.name === 'k_proj')!;
    expect(vectors[2]!.input).toBe(true);
    expect(vectors[2]!.l.length).toBe(down.inF);
    expect(vectors[0]!.l.length).toBe(k.outF);
    expect(vectors.every((v) => v.l.every((x) => x === 1))).toBe(true);
    vectors[0]!.l[3] = 0.5;
    const files = exportIa3({ config: cfg, baseModel: 'tiny', vectors, fanInFanOut: false });
    expect(JSON.parse(files.adapterConfig)).toEqual({
      auto_mapping: null,
      base_model_name_or_path: 'tiny',
      exclude_modules: null,
      fan_in_fan_out: false,
      feedforward_modules: ['down_proj'],
      inference_mode: true,
      init_ia3_weights: true,
      modules_to_save: null,
      peft_type: 'IA3',
      peft_version: '0.21.0',
      revision: null,
      target_modules: ['down_proj', 'k_proj', 'v_proj'],
      task_type: 'CAUSAL_LM',
    });
    const st = parseSafetensors(files.adapterModel);
    expect(st.metadata).toEqual({ format: 'pt' });
    expect(st.tensors.get(ia3Key(down.path))!.shape).toEqual([1, down.inF]);
    expect(st.tensors.get(ia3Key(k.path))!.shape).toEqual([k.outF, 1]);
    const back = importIa3(files, modules);
    expect(back.vectors).toEqual(vectors);
    expect(back.config.feedforward_modules).toEqual(['down_proj']);
  });

  it('gpt2: c_attn (fused q/k/v, Conv1D) scales its 3·hidden outputs, mlp.c_proj its input; fan_in_fan_out', () => {
    const modules = gpt2Modules(1);
    const cfg = ia3ConfigFromSettings({ target_modules: [], feedforward_modules: [] }, 'gpt2', { fanInFanOut: true });
    const vectors = initIa3(cfg, modules);
    expect(vectors.map((v) => [v.path, v.input])).toEqual([
      ['transformer.h.0.attn.c_attn', false],
      ['transformer.h.0.mlp.c_proj', true],
    ]);
    // attn.c_proj is not a target: 'mlp.c_proj' matches by path suffix
    expect(isFeedforward(cfg, 'transformer.h.0.attn.c_proj')).toBe(false);
    const files = exportIa3({ config: cfg, baseModel: 'gpt2', vectors, fanInFanOut: true });
    expect(JSON.parse(files.adapterConfig).fan_in_fan_out).toBe(true);
  });

  it('refuses feed-forward modules outside the targets, a model type without defaults, and a vector of the wrong shape', () => {
    expect(() =>
      ia3ConfigFromSettings({ target_modules: ['k_proj'], feedforward_modules: ['down_proj'] }, 'llama'),
    ).toThrow(/subset/);
    expect(() => ia3ConfigFromSettings({ target_modules: [], feedforward_modules: [] }, 'olmo2')).toThrow(/no default/);
    const modules = llamaModules(1);
    const cfg = ia3ConfigFromSettings({ target_modules: [], feedforward_modules: [] }, 'llama');
    const files = exportIa3({ config: cfg, baseModel: 'x', vectors: initIa3(cfg, modules), fanInFanOut: false });
    // the same file read as if down_proj were not feed-forward: its [1, in] vector no longer fits
    const other = files.adapterConfig.replace(
      '"feedforward_modules": [\n    "down_proj"\n  ]',
      '"feedforward_modules": []',
    );
    expect(other).not.toBe(files.adapterConfig);
    expect(() => importIa3({ ...files, adapterConfig: other }, modules)).toThrow(/should be \[\d+, 1\]/);
  });
});

const llamaShape = {
  modelType: 'llama',
  hiddenSize: 16,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 4,
  embedDim: 16,
  raw: { num_key_value_heads: 2 },
};

describe('prompt and prefix tuning files', () => {
  it('prefix tables are [P, layers·2·kv heads·head_dim] as PEFT computes for GQA; PEFT 0.21 config fields', () => {
    const s = virtualShape('prefix', llamaShape);
    expect(s).toEqual({ num_layers: 2, token_dim: 8, num_attention_heads: 2 });
    const config: PrefixTuningConfig = {
      ...s,
      num_virtual_tokens: 3,
      prefix_projection: false,
      encoder_hidden_size: 8,
    };
    const table = standardNormal(3 * 32, 1);
    const files = exportVirtual({ config, kind: 'prefix', baseModel: 'tiny', table });
    expect(JSON.parse(files.adapterConfig)).toEqual({
      auto_mapping: null,
      base_model_name_or_path: 'tiny',
      encoder_hidden_size: 8,
      inference_mode: true,
      init_weights: null,
      modules_to_save: null,
      num_attention_heads: 2,
      num_layers: 2,
      num_transformer_submodules: 1,
      num_virtual_tokens: 3,
      peft_type: 'PREFIX_TUNING',
      peft_version: '0.21.0',
      prefix_projection: false,
      revision: null,
      task_type: 'CAUSAL_LM',
      token_dim: 8,
    });
    expect(parseSafetensors(files.adapterModel).tensors.get('prompt_embeddings')!.shape).toEqual([3, 32]);
    const back = importVirtual(files, llamaShape);
    expect(back.kind).toBe('prefix');
    expect(back.table).toEqual(table);
    // a prefix for a model with other heads is refused by name
    expect(() => importVirtual(files, { ...llamaShape, numKvHeads: 4, raw: { num_key_value_heads: 4 } })).toThrow(
      /token_dim is 8, but this model has 16/,
    );
  });

  it('prompt tables are [P, hidden]; TEXT init repeats the text tokens; N(0, 1) random init', () => {
    const s = virtualShape('prompt', llamaShape);
    expect(s).toEqual({ num_layers: 2, token_dim: 16, num_attention_heads: 4 });
    const emb = Float32Array.from({ length: 5 * 2 }, (_, i) => i);
    expect([...textInit([3, 1], 3, emb, 2)]).toEqual([6, 7, 2, 3, 6, 7]);
    const r = standardNormal(20000, 3);
    const mean = r.reduce((a, b) => a + b, 0) / r.length;
    const variance = r.reduce((a, b) => a + (b - mean) ** 2, 0) / r.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(variance - 1)).toBeLessThan(0.05);
    const config = {
      ...s,
      num_virtual_tokens: 2,
      prompt_tuning_init: 'TEXT' as const,
      prompt_tuning_init_text: 'Classify:',
      tokenizer_name_or_path: 'tiny',
    };
    const files = exportVirtual({ config, kind: 'prompt', baseModel: 'tiny', table: r.slice(0, 32) });
    const cfg = JSON.parse(files.adapterConfig);
    expect(cfg.peft_type).toBe('PROMPT_TUNING');
    expect(cfg.prompt_tuning_init).toBe('TEXT');
    expect(cfg.tokenizer_kwargs).toBeNull();
    expect(importVirtual(files, llamaShape).config).toEqual(config);
  });

  it("refuses what PEFT cannot do: a prefix on MQA without num_key_value_heads, a prompt on OPT's project_in", () => {
    const falcon = { ...llamaShape, modelType: 'falcon', numKvHeads: 1, raw: {} };
    expect(() => virtualShape('prefix', falcon)).toThrow(PeftError);
    expect(() => virtualShape('prefix', falcon)).toThrow(/no num_key_value_heads/);
    expect(() => virtualShape('prompt', { ...llamaShape, modelType: 'opt', embedDim: 8 })).toThrow(/project/);
  });
});
