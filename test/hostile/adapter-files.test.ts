// Hostile adapter files: catastrophic regular expressions in adapter_config.json (matched in linear
// time, or refused naming the field), zip bombs (declared sizes checked before inflating; only the
// entries an adapter needs are inflated), and adapters the browser renamed on download.
import { zipSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import { type LoraConfig, loraRank, validateLoraConfig } from '../../src/lora/config';
import { exportPeft } from '../../src/lora/peft';
import { importPeft } from '../../src/lora/peft-import';
import { resolveTargets } from '../../src/lora/targets';
import { collectPeftFiles, inspectPeft } from '../../src/store/peft-files';
import { llamaModules } from '../lora/fixtures';

const EVIL = '(.*.*)*X';

const base: LoraConfig = {
  r: 4,
  lora_alpha: 8,
  lora_dropout: 0,
  target_modules: ['q_proj', 'v_proj'],
  use_rslora: false,
  bias: 'none',
  fan_in_fan_out: false,
  init_lora_weights: true,
};

/** A real adapter for the fixture modules, with adapter_config.json fields replaced. */
function adapter(overrides: Record<string, unknown> = {}) {
  const modules = llamaModules(2);
  const targets = resolveTargets(base, modules);
  const files = exportPeft({
    config: base,
    baseModel: 'org/tiny',
    modules: targets.map((m) => ({
      path: m.path,
      r: 4,
      inF: m.inF,
      outF: m.outF,
      a: new Float32Array(4 * m.inF),
      b: new Float32Array(4 * m.outF),
    })),
    fanInFanOut: false,
  });
  const cfg = { ...JSON.parse(files.adapterConfig), ...overrides };
  return { modules, files: { adapterConfig: JSON.stringify(cfg), adapterModel: files.adapterModel } };
}

describe('catastrophic regular expressions in adapter_config.json', () => {
  // Each of these ran for ever with JavaScript's backtracking RegExp on a module path.
  it('target_modules as a catastrophic regex is matched in linear time', () => {
    const cfg = { ...base, target_modules: EVIL };
    validateLoraConfig(cfg);
    expect(() => resolveTargets(cfg, llamaModules(2))).toThrow(/matched none of this model's 14 linear modules/);
    const { modules, files } = adapter({ target_modules: EVIL });
    expect(importPeft(files, modules).modules).toHaveLength(4);
  });

  it('rank_pattern / alpha_pattern keys are matched in linear time, in the engine and in the app import', () => {
    const cfg = { ...base, rank_pattern: { [EVIL]: 2 }, alpha_pattern: { [`${EVIL}|q_proj`]: 3 } };
    validateLoraConfig(cfg);
    expect(loraRank(cfg, 'model.layers.0.self_attn.q_proj')).toBe(4);
    const { modules, files } = adapter({ rank_pattern: { [EVIL]: 2 }, exclude_modules: EVIL });
    expect(importPeft(files, modules).modules).toHaveLength(4);
    expect(inspectPeft(files).modules).toBe(4);
  });

  it('exclude_modules and nested quantifiers over a long path end at once', () => {
    const long = `model.${'a'.repeat(5000)}.q_proj`;
    const modules = [{ path: long, name: 'q_proj', inF: 1, outF: 1, transposed: false }];
    expect(() => resolveTargets({ target_modules: '(a+)+$', exclude_modules: EVIL }, modules)).toThrow(/matched none/);
    expect(resolveTargets({ target_modules: '(.+)+q_proj', exclude_modules: EVIL }, modules)).toEqual(modules);
  });

  it.each([
    [
      'target_modules',
      '^(?!.*vision).*q_proj',
      /target_modules "\^\(\?!\.\*vision\)\.\*q_proj" cannot be used: .*lookarounds and backreferences/,
    ],
    ['rank_pattern', { '(q)\\1': 2 }, /rank_pattern key "\(q\)\\\\1" cannot be used/],
    ['alpha_pattern', { 'q_proj(': 2 }, /alpha_pattern key "q_proj\(" cannot be used: missing closing \)/],
    ['target_modules', 'x'.repeat(5000), /cannot be used: it is 5000 characters long/],
  ])('an unusable %s is refused naming adapter_config.json and the field', (field, value, msg) => {
    const { modules, files } = adapter({ [field]: value });
    expect(() => importPeft(files, modules)).toThrow(/^adapter_config\.json: /);
    expect(() => importPeft(files, modules)).toThrow(msg);
  });

  it('the form validation names an unusable pattern too', () => {
    expect(() => validateLoraConfig({ ...base, target_modules: '(?<=a)b' })).toThrow(
      /target_modules .* is not a valid regex/,
    );
    expect(() =>
      validateLoraConfig({
        ...base,
        rank_pattern: Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`m${i}`, 2])),
      }),
    ).toThrow(/rank_pattern has 2000 entries; at most 1024/);
  });
});

/** Sets the uncompressed size an entry declares, in its local and central headers. */
function declareSize(zip: Uint8Array, name: string, size: number): Uint8Array {
  const out = zip.slice();
  const dv = new DataView(out.buffer);
  const nameBytes = new TextEncoder().encode(name);
  const at = (i: number, off: number) => nameBytes.every((b, j) => out[i + off + j] === b);
  for (let i = 0; i + 46 < out.length; i++) {
    const sig = dv.getUint32(i, true);
    if (sig === 0x04034b50 && at(i, 30)) dv.setUint32(i + 22, size, true);
    if (sig === 0x02014b50 && at(i, 46)) dv.setUint32(i + 24, size, true);
  }
  return out;
}

describe('zip imports', () => {
  it('an entry declaring gigabytes is refused before inflating, naming the zip and entry', () => {
    const { files } = adapter();
    const zip = zipSync({
      'adapter_config.json': new TextEncoder().encode(files.adapterConfig),
      'adapter_model.safetensors': files.adapterModel,
    });
    const bomb = declareSize(zip, 'adapter_model.safetensors', 3 * 2 ** 30);
    expect(() => collectPeftFiles([{ name: 'bomb.zip', bytes: bomb }])).toThrow(
      /^bomb\.zip: "adapter_model\.safetensors" would inflate to 3221225472 bytes/,
    );
    const cfgBomb = declareSize(zip, 'adapter_config.json', 100 << 20);
    expect(() => collectPeftFiles([{ name: 'c.zip', bytes: cfgBomb }])).toThrow(
      /c\.zip: "adapter_config\.json" would inflate to 104857600 bytes/,
    );
  });

  it('entries an adapter does not need are not inflated at all', () => {
    const { files } = adapter();
    const zip = zipSync({
      'adapter_config.json': new TextEncoder().encode(files.adapterConfig),
      'adapter_model.safetensors': files.adapterModel,
      'junk.bin': new Uint8Array(1000),
    });
    const bomb = declareSize(zip, 'junk.bin', 3_500_000_000);
    const got = collectPeftFiles([{ name: 'ok.zip', bytes: bomb }]);
    expect(got.adapterModel).toEqual(files.adapterModel);
  });

  it('an entry lying about its size (smaller than its data) only truncates, and the file then fails to parse', () => {
    const { files } = adapter();
    const zip = zipSync({
      'adapter_config.json': new TextEncoder().encode(files.adapterConfig),
      'adapter_model.safetensors': [files.adapterModel, { level: 6 }],
    });
    const liar = declareSize(zip, 'adapter_model.safetensors', 64);
    const got = collectPeftFiles([{ name: 'liar.zip', bytes: liar }]);
    expect(got.adapterModel.byteLength).toBe(64);
    expect(() => inspectPeft(got)).toThrow(/adapter_model\.safetensors/);
  });
});

describe('re-imports of renamed downloads', () => {
  it('"adapter_config (1).json" and "adapter_model (1).safetensors" are found by content', () => {
    const { files } = adapter();
    const got = collectPeftFiles([
      { name: 'adapter_model (1).safetensors', bytes: files.adapterModel },
      { name: 'notes.json', bytes: new TextEncoder().encode('{"hello": 1}') },
      { name: 'adapter_config (1).json', bytes: new TextEncoder().encode(files.adapterConfig) },
    ]);
    expect(got.adapterConfig).toBe(files.adapterConfig);
    expect(inspectPeft(got).modules).toBe(4);
  });

  it('two candidate configs are refused naming both', () => {
    const { files } = adapter();
    const cfg = new TextEncoder().encode(files.adapterConfig);
    expect(() =>
      collectPeftFiles([
        { name: 'a (1).json', bytes: cfg },
        { name: 'a (2).json', bytes: cfg },
        { name: 'w.safetensors', bytes: files.adapterModel },
      ]),
    ).toThrow(/found 2 adapter configs \(a \(1\)\.json, a \(2\)\.json\)/);
  });
});
