import { describe, expect, it } from 'vitest';
import type { LoraConfig } from '../../src/lora/config';
import { loraScale } from '../../src/lora/config';
import { Rng, initLoraModules } from '../../src/lora/init';
import { mergeLora } from '../../src/lora/merge';
import { PeftError, type PeftModuleArrays, exportPeft, peftKey } from '../../src/lora/peft';
import { importPeft } from '../../src/lora/peft-import';
import { pythonFloatRepr, pythonJsonDumps } from '../../src/lora/python-json';
import { resolveTargets } from '../../src/lora/targets';
import { parseSafetensors, parseSafetensorsHeader, tensorToF32, writeSafetensors } from '../../src/model/safetensors';
import { type FixtureModule, gpt2Modules, llamaModules } from './fixtures';

const cfg: LoraConfig = {
  r: 8,
  lora_alpha: 16,
  lora_dropout: 0.05,
  target_modules: ['v_proj', 'q_proj'],
  use_rslora: false,
  bias: 'none',
  fan_in_fan_out: false,
  init_lora_weights: true,
};

/** Trained-looking weights (B nonzero) for the targeted modules. */
function weights(c: LoraConfig, modules: FixtureModule[], seed = 1): PeftModuleArrays[] {
  const rng = new Rng(seed);
  return initLoraModules(c, resolveTargets(c, modules), seed).map((m) => {
    for (let i = 0; i < m.b.length; i++) m.b[i] = rng.uniform(-0.1, 0.1);
    return m;
  });
}

function llamaExport(c = cfg) {
  const modules = weights(c, llamaModules(2));
  return {
    modules,
    files: exportPeft({ config: c, baseModel: 'TinyLlama/TinyLlama-1.1B-Chat-v1.0', modules, fanInFanOut: false }),
  };
}

/** What PEFT 0.20 writes for `cfg` (typed by hand from peft's LoraConfig dataclass). */
const GOLDEN_CONFIG = `{
  "alora_invocation_tokens": null,
  "alpha_pattern": {},
  "arrow_config": null,
  "auto_mapping": null,
  "base_model_name_or_path": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
  "bias": "none",
  "corda_config": null,
  "ensure_weight_tying": false,
  "eva_config": null,
  "exclude_modules": null,
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_lora_weights": true,
  "layer_replication": null,
  "layers_pattern": null,
  "layers_to_transform": null,
  "loftq_config": {},
  "lora_alpha": 16,
  "lora_bias": false,
  "lora_dropout": 0.05,
  "lora_ga_config": null,
  "megatron_config": null,
  "megatron_core": "megatron.core",
  "modules_to_save": null,
  "monteclora_config": null,
  "peft_type": "LORA",
  "peft_version": "0.20.0",
  "qalora_group_size": 16,
  "r": 8,
  "rank_pattern": {},
  "revision": null,
  "target_modules": [
    "q_proj",
    "v_proj"
  ],
  "target_parameters": null,
  "task_type": "CAUSAL_LM",
  "trainable_token_indices": null,
  "use_bdlora": null,
  "use_dora": false,
  "use_qalora": false,
  "use_rslora": false,
  "velora_config": null
}`;

describe('Python-compatible JSON', () => {
  it('formats floats like repr()', () => {
    expect(pythonFloatRepr(0)).toBe('0.0');
    expect(pythonFloatRepr(0.05)).toBe('0.05');
    expect(pythonFloatRepr(1)).toBe('1.0');
    expect(pythonFloatRepr(16)).toBe('16.0');
    expect(pythonFloatRepr(0.0001)).toBe('0.0001');
    expect(pythonFloatRepr(0.00001)).toBe('1e-05');
    expect(pythonFloatRepr(1.5e-7)).toBe('1.5e-07');
    expect(pythonFloatRepr(1e16)).toBe('1e+16');
    expect(pythonFloatRepr(123456789012345.6)).toBe('123456789012345.6');
    expect(pythonFloatRepr(-2.5)).toBe('-2.5');
  });

  it('sorts keys at every level, indents by 2, escapes non-ASCII', () => {
    expect(pythonJsonDumps({ b: [1, { d: 1, c: 'é' }], a: {}, e: [] })).toBe(
      '{\n  "a": {},\n  "b": [\n    1,\n    {\n      "c": "\\u00e9",\n      "d": 1\n    }\n  ],\n  "e": []\n}',
    );
    expect(pythonJsonDumps('a\u007f😀\n')).toBe('"a\\u007f\\ud83d\\ude00\\n"');
  });
});

describe('exportPeft', () => {
  it("writes adapter_config.json exactly as PEFT 0.20's save_pretrained", () => {
    const { files } = llamaExport();
    expect(files.adapterConfig).toBe(GOLDEN_CONFIG);
    const json = JSON.parse(files.adapterConfig);
    expect(Object.keys(json)).toEqual([...Object.keys(json)].sort());
  });

  it('writes dropout 0 as 0.0, a regex as a string, all-linear as the sorted module paths', () => {
    const c0 = { ...cfg, lora_dropout: 0, target_modules: '.*\\.(q|v)_proj' };
    const { files } = llamaExport(c0);
    expect(files.adapterConfig).toContain('"lora_dropout": 0.0,');
    expect(JSON.parse(files.adapterConfig).target_modules).toBe('.*\\.(q|v)_proj');
    const all = llamaExport({
      ...cfg,
      target_modules: 'all-linear',
      use_rslora: true,
      init_lora_weights: 'gaussian',
      rank_pattern: { o_proj: 4 },
    });
    const j = JSON.parse(all.files.adapterConfig);
    expect(j.target_modules).toHaveLength(14);
    expect(j.target_modules[0]).toBe('model.layers.0.mlp.down_proj');
    expect(j.target_modules).toEqual([...j.target_modules].sort());
    expect(j).toMatchObject({ use_rslora: true, init_lora_weights: 'gaussian', rank_pattern: { o_proj: 4 } });
  });

  it('llama: exact keys, shapes, F32, metadata {"format":"pt"}, name order', () => {
    const { files, modules } = llamaExport();
    const { entries, metadata } = parseSafetensorsHeader(files.adapterModel);
    expect(metadata).toEqual({ format: 'pt' });
    expect([...entries.keys()]).toEqual([
      'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight',
      'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight',
      'base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight',
      'base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight',
      'base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight',
      'base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight',
      'base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight',
      'base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight',
    ]);
    const e = (k: string) => entries.get(k)!;
    expect(e('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')).toMatchObject({
      dtype: 'F32',
      shape: [8, 64],
    });
    expect(e('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight')).toMatchObject({
      dtype: 'F32',
      shape: [64, 8],
    });
    expect(e('base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight')).toMatchObject({
      dtype: 'F32',
      shape: [8, 64],
    });
    expect(e('base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight')).toMatchObject({
      dtype: 'F32',
      shape: [32, 8],
    });
    // The header is safetensors' own serialisation: metadata first, compact JSON, space padding.
    const n = Number(new DataView(files.adapterModel.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const header = new TextDecoder().decode(files.adapterModel.subarray(8, 8 + n));
    expect(
      header.startsWith(
        '{"__metadata__":{"format":"pt"},"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight":{"dtype":"F32","shape":[8,64],"data_offsets":[0,2048]},',
      ),
    ).toBe(true);
    expect(header.trimEnd().endsWith('}}')).toBe(true);
    // Data equal to the input.
    const file = parseSafetensors(files.adapterModel);
    expect(tensorToF32(file.tensors.get(peftKey(modules[1]!.path, 'B'))!)).toEqual(modules[1]!.b);
  });

  it('gpt2 Conv1D: transformer.h.* keys, A [r, in], B [out, r], fan_in_fan_out true', () => {
    const c = { ...cfg, target_modules: ['c_attn'] };
    const modules = weights(c, gpt2Modules(2));
    const files = exportPeft({ config: c, baseModel: 'openai-community/gpt2', modules, fanInFanOut: true });
    const { entries } = parseSafetensorsHeader(files.adapterModel);
    expect([...entries].map(([k, v]) => [k, v.shape])).toEqual([
      ['base_model.model.transformer.h.0.attn.c_attn.lora_A.weight', [8, 32]],
      ['base_model.model.transformer.h.0.attn.c_attn.lora_B.weight', [96, 8]],
      ['base_model.model.transformer.h.1.attn.c_attn.lora_A.weight', [8, 32]],
      ['base_model.model.transformer.h.1.attn.c_attn.lora_B.weight', [96, 8]],
    ]);
    expect(JSON.parse(files.adapterConfig)).toMatchObject({
      fan_in_fan_out: true,
      target_modules: ['c_attn'],
      base_model_name_or_path: 'openai-community/gpt2',
    });
  });

  it('rejects wrongly sized arrays', () => {
    const modules = weights(cfg, llamaModules(1));
    modules[0]!.b = new Float32Array(3);
    expect(() => exportPeft({ config: cfg, baseModel: 'x', modules, fanInFanOut: false })).toThrow(
      /lora_B should be \[64, 8\] \(512 values\), got 3 values/,
    );
  });
});

describe('importPeft', () => {
  it("DoRA: the magnitude round-trips under PEFT 0.21's key, also read with an adapter name", () => {
    const dora = { ...cfg, use_dora: true };
    const modules = weights(dora, llamaModules(1)).map((m) => ({
      ...m,
      m: Float32Array.from({ length: m.outF }, (_, o) => 1 + o / 10),
    }));
    const files = exportPeft({ config: dora, baseModel: 'x', modules, fanInFanOut: false });
    const file = parseSafetensors(files.adapterModel, 'x');
    const key = 'base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector';
    expect(peftKey('model.layers.0.self_attn.q_proj', 'M')).toBe(key);
    expect(file.tensors.get(key)?.shape).toEqual([64]);
    expect(JSON.parse(files.adapterConfig).use_dora).toBe(true);
    const got = importPeft(files, llamaModules(1));
    expect(got.config.use_dora).toBe(true);
    got.modules.forEach((m, i) => expect(m.m).toEqual(modules[i]!.m));
    // Older PEFT / hand-made files: lora_magnitude_vector.default.weight.
    const renamed = writeSafetensors(
      [...file.tensors].map(([name, t]) => ({
        name: name.replace(/\.lora_magnitude_vector$/, '.lora_magnitude_vector.default.weight'),
        dtype: 'F32' as const,
        shape: t.shape,
        data: tensorToF32(t),
      })),
      { format: 'pt' },
    );
    const again = importPeft({ adapterConfig: files.adapterConfig, adapterModel: renamed }, llamaModules(1));
    expect(again.modules[0]!.m).toEqual(modules[0]!.m);
    expect(() => exportPeft({ config: cfg, baseModel: 'x', modules, fanInFanOut: false })).toThrow(
      /has a DoRA magnitude but the config says use_dora false/,
    );
  });

  it('round-trips export exactly', () => {
    const { files, modules } = llamaExport({
      ...cfg,
      rank_pattern: { v_proj: 4 },
      alpha_pattern: { v_proj: 8 },
      use_rslora: true,
    });
    const got = importPeft(files, llamaModules(2), { baseModel: 'TinyLlama/TinyLlama-1.1B-Chat-v1.0' });
    expect(got.warnings).toEqual([]);
    expect(got.baseModel).toBe('TinyLlama/TinyLlama-1.1B-Chat-v1.0');
    expect(got.config).toEqual({
      ...cfg,
      target_modules: ['q_proj', 'v_proj'],
      exclude_modules: null,
      rank_pattern: { v_proj: 4 },
      alpha_pattern: { v_proj: 8 },
      use_rslora: true,
      use_dora: false,
    });
    expect(got.modules.map((m) => [m.path, m.r, m.inF, m.outF])).toEqual(
      modules.map((m) => [m.path, m.r, m.inF, m.outF]),
    );
    got.modules.forEach((m, i) => {
      expect(m.a).toEqual(modules[i]!.a);
      expect(m.b).toEqual(modules[i]!.b);
    });
    expect(loraScale(got.config, got.modules[1]!)).toBe(8 / 2);
    // Export of the import is byte-identical.
    const again = exportPeft({
      config: got.config,
      baseModel: got.baseModel!,
      modules: got.modules,
      fanInFanOut: false,
    });
    expect(again.adapterConfig).toBe(files.adapterConfig);
    expect(again.adapterModel).toEqual(files.adapterModel);
  });

  it('round-trips GPT-2 Conv1D modules', () => {
    const c = { ...cfg, target_modules: 'all-linear', fan_in_fan_out: true };
    const modules = weights(c, gpt2Modules(1));
    const files = exportPeft({ config: c, baseModel: 'gpt2', modules, fanInFanOut: true });
    const got = importPeft(
      { adapterConfig: new TextEncoder().encode(files.adapterConfig), adapterModel: files.adapterModel },
      gpt2Modules(1),
    );
    expect(got.warnings).toEqual([]);
    expect(got.modules.map((m) => m.path)).toEqual(modules.map((m) => m.path));
    expect(got.modules[3]!.a).toEqual(modules[3]!.a);
    expect(got.config.fan_in_fan_out).toBe(true);
  });

  it("reads '.default' adapter-name keys and F16/BF16 tensors", () => {
    const a = new Uint16Array(8 * 64).fill(0x3c00); // f16 1.0
    const b = new Uint16Array(64 * 8).fill(0x3f80); // bf16 1.0
    const model = writeSafetensors([
      {
        name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight',
        dtype: 'F16',
        shape: [8, 64],
        data: a,
      },
      {
        name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight',
        dtype: 'BF16',
        shape: [64, 8],
        data: b,
      },
    ]);
    const got = importPeft(
      {
        adapterConfig: JSON.stringify({ peft_type: 'LORA', r: 8, lora_alpha: 16, target_modules: ['q_proj'] }),
        adapterModel: model,
      },
      llamaModules(1),
    );
    expect(got.modules).toHaveLength(1);
    expect(got.modules[0]!.a.every((x) => x === 1)).toBe(true);
    expect(got.modules[0]!.b.every((x) => x === 1)).toBe(true);
  });

  const oneModule = (r = 8, inF = 64, outF = 64, path = 'model.layers.0.self_attn.q_proj') =>
    writeSafetensors(
      [
        {
          name: `base_model.model.${path}.lora_A.weight`,
          dtype: 'F32',
          shape: [r, inF],
          data: new Float32Array(r * inF),
        },
        {
          name: `base_model.model.${path}.lora_B.weight`,
          dtype: 'F32',
          shape: [outF, r],
          data: new Float32Array(outF * r),
        },
      ],
      { format: 'pt' },
    );
  const conf = (o: Record<string, unknown> = {}) =>
    JSON.stringify({
      peft_type: 'LORA',
      r: 8,
      lora_alpha: 16,
      target_modules: ['q_proj'],
      base_model_name_or_path: 'Qwen/Qwen2.5-7B',
      ...o,
    });

  it('errors on a missing lora_B', () => {
    const model = writeSafetensors([
      {
        name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight',
        dtype: 'F32',
        shape: [8, 64],
        data: new Float32Array(512),
      },
    ]);
    expect(() => importPeft({ adapterConfig: conf(), adapterModel: model }, llamaModules(1))).toThrow(
      'adapter_model.safetensors has "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" but no lora_B for module "model.layers.0.self_attn.q_proj" (expected "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight").',
    );
  });

  it('errors on a module the model does not have, suggesting another base model', () => {
    const model = oneModule(8, 64, 64, 'model.layers.5.self_attn.q_proj');
    expect(() => importPeft({ adapterConfig: conf(), adapterModel: model }, llamaModules(2))).toThrow(
      /has "base_model\.model\.model\.layers\.5\.self_attn\.q_proj\.lora_A\.weight", but this model has no linear module "model\.layers\.5\.self_attn\.q_proj".*probably trained for another base model \(adapter_config\.json says "Qwen\/Qwen2\.5-7B"\)/,
    );
  });

  it('skips (with a warning) adapted modules of checkpoint parts the model does not run', () => {
    // a PEFT all-linear adapter on Gemma 3's multimodal checkpoint also adapts its vision tower
    const vision = parseSafetensors(
      oneModule(8, 16, 16, 'model.vision_tower.vision_model.encoder.layers.0.mlp.fc1'),
      'x',
    ).tensors;
    const text = parseSafetensors(oneModule(8, 64, 64), 'x').tensors;
    const both = writeSafetensors(
      [...vision, ...text].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: t.data })),
      { format: 'pt' },
    );
    const r = importPeft({ adapterConfig: conf(), adapterModel: both }, llamaModules(1), {
      unusedModules: ['model.vision_tower.'],
    });
    expect(r.modules.map((m) => m.path)).toEqual(['model.layers.0.self_attn.q_proj']);
    expect(r.warnings.join(' ')).toMatch(
      /1 adapted module\(s\) belong to parts of the checkpoint Tabtune does not run \(e\.g\. "model\.vision_tower\./,
    );
    expect(() => importPeft({ adapterConfig: conf(), adapterModel: both }, llamaModules(1))).toThrow(
      /no linear module "model\.vision_tower/,
    );
  });

  it('errors on a shape mismatch naming key, expected and got', () => {
    const model = oneModule(8, 128, 64);
    expect(() => importPeft({ adapterConfig: conf(), adapterModel: model }, llamaModules(1))).toThrow(
      /"base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight" should have shape \[8, 64\] \(r = 8 .*in_features 64.*\), got \[8, 128\]/,
    );
    expect(() => importPeft({ adapterConfig: conf({ r: 4 }), adapterModel: oneModule(8) }, llamaModules(1))).toThrow(
      /should have shape \[4, 64\].*got \[8, 64\]/,
    );
  });

  it('warns with PEFT defaults when r / lora_alpha are missing', () => {
    const got = importPeft(
      { adapterConfig: JSON.stringify({ peft_type: 'LORA', target_modules: ['q_proj'] }), adapterModel: oneModule(8) },
      llamaModules(1),
    );
    expect(got.config.r).toBe(8);
    expect(got.config.lora_alpha).toBe(8);
    expect(got.warnings.join('\n')).toMatch(/no "r"; using PEFT's default r = 8/);
    expect(got.warnings.join('\n')).toMatch(/no "lora_alpha"; using PEFT's default lora_alpha = 8/);
  });

  it('refuses methods not implemented yet by name, and a magnitude vector without use_dora', () => {
    expect(() =>
      importPeft({ adapterConfig: conf({ use_dora: true }), adapterModel: oneModule() }, llamaModules(1)),
    ).toThrow(
      'adapter_model.safetensors has no DoRA magnitude for module "model.layers.0.self_attn.q_proj" (expected "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"), but adapter_config.json says use_dora: true.',
    );
    const dora = writeSafetensors([
      {
        name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector',
        dtype: 'F32',
        shape: [64],
        data: new Float32Array(64),
      },
    ]);
    expect(() => importPeft({ adapterConfig: conf(), adapterModel: dora }, llamaModules(1))).toThrow(
      /lora_magnitude_vector", a DoRA magnitude vector, but adapter_config\.json does not say use_dora: true/,
    );
    for (const [type, label] of [
      ['IA3', 'IA³'],
      ['PROMPT_TUNING', 'Prompt tuning'],
      ['PREFIX_TUNING', 'Prefix tuning'],
    ] as const) {
      expect(() =>
        importPeft({ adapterConfig: JSON.stringify({ peft_type: type }), adapterModel: oneModule() }, llamaModules(1)),
      ).toThrow(`adapter_config.json: a ${label} adapter (peft_type "${type}") has no LoRA weights`);
    }
    expect(() =>
      importPeft({ adapterConfig: JSON.stringify({ peft_type: 'BOFT' }), adapterModel: oneModule() }, llamaModules(1)),
    ).toThrow(
      'adapter_config.json: peft_type "BOFT" is not a method Tabtune knows; it reads LORA, IA3, PROMPT_TUNING, PREFIX_TUNING adapters.',
    );
    expect(() => importPeft({ adapterConfig: '{not json', adapterModel: oneModule() }, llamaModules(1))).toThrow(
      /adapter_config\.json is not valid JSON/,
    );
    expect(() => importPeft({ adapterConfig: conf(), adapterModel: new Uint8Array(4) }, llamaModules(1))).toThrow(
      PeftError,
    );
  });

  it('warns about ignored tensors, other base models and unsupported extras', () => {
    const model = writeSafetensors([
      {
        name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight',
        dtype: 'F32',
        shape: [8, 64],
        data: new Float32Array(512),
      },
      {
        name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight',
        dtype: 'F32',
        shape: [64, 8],
        data: new Float32Array(512),
      },
      { name: 'base_model.model.lm_head.weight', dtype: 'F32', shape: [2, 2], data: new Float32Array(4) },
    ]);
    const got = importPeft(
      { adapterConfig: conf({ modules_to_save: ['lm_head'], init_lora_weights: 'pissa' }), adapterModel: model },
      llamaModules(1),
      { baseModel: 'TinyLlama/TinyLlama-1.1B' },
    );
    const w = got.warnings.join('\n');
    expect(w).toMatch(/trained on "Qwen\/Qwen2\.5-7B"; it is being loaded onto "TinyLlama\/TinyLlama-1\.1B"/);
    expect(w).toMatch(/1 tensor\(s\).*not LoRA A\/B weights and were ignored: base_model\.model\.lm_head\.weight/);
    expect(w).toMatch(/modules_to_save/);
    expect(w).toMatch(/"pissa" changes the base weights/);
  });

  it('warns about targeted modules without weights (PEFT leaves them at zero)', () => {
    const got = importPeft(
      { adapterConfig: conf({ target_modules: ['q_proj', 'v_proj'] }), adapterModel: oneModule() },
      llamaModules(1),
    );
    expect(got.modules).toHaveLength(1);
    expect(got.warnings).toEqual([
      '1 module(s) matched by target_modules have no weights in adapter_model.safetensors (e.g. "model.layers.0.self_attn.v_proj"); PEFT leaves them at zero, so they have no effect.',
    ]);
  });

  it('maps GPT-2 keys saved without the transformer. prefix', () => {
    const model = oneModule(8, 32, 96, 'h.0.attn.c_attn');
    const got = importPeft(
      { adapterConfig: conf({ target_modules: ['c_attn'], fan_in_fan_out: true }), adapterModel: model },
      gpt2Modules(1),
    );
    expect(got.modules.map((m) => m.path)).toEqual(['transformer.h.0.attn.c_attn']);
    expect(got.warnings.join('\n')).toMatch(/h\.0\.attn\.c_attn -> transformer\.h\.0\.attn\.c_attn/);
  });
});

describe('mergeLora', () => {
  it('W += scale · B·A, transposed for Conv1D', () => {
    const inF = 5;
    const outF = 3;
    const r = 2;
    const rng = new Rng(9);
    const a = Float32Array.from({ length: r * inF }, () => rng.uniform(-1, 1));
    const b = Float32Array.from({ length: outF * r }, () => rng.uniform(-1, 1));
    const w = Float32Array.from({ length: outF * inF }, () => rng.uniform(-1, 1));
    const wT = new Float32Array(inF * outF);
    for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) wT[i * outF + o] = w[o * inF + i]!;
    const before = Float32Array.from(w);
    mergeLora(w, false, a, b, r, 0.5, inF, outF);
    mergeLora(wT, true, a, b, r, 0.5, inF, outF);
    for (let o = 0; o < outF; o++) {
      for (let i = 0; i < inF; i++) {
        let d = 0;
        for (let k = 0; k < r; k++) d += b[o * r + k]! * a[k * inF + i]!;
        expect(w[o * inF + i]).toBeCloseTo(before[o * inF + i]! + 0.5 * d, 6);
        expect(wT[i * outF + o]).toBe(w[o * inF + i]);
      }
    }
    expect(() => mergeLora(w, false, a, b, 3, 1, inF, outF)).toThrow(/A has 10 values, expected \[3, 5\]/);
  });
});
