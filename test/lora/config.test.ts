import { describe, expect, it } from 'vitest';
import {
  type LoraConfig,
  LoraConfigError,
  loraConfigProblems,
  loraRank,
  loraScale,
  loraScaleInfo,
  validateLoraConfig,
} from '../../src/lora/config';
import { defaultTargetModules, loraConfigFromSettings, resolveTargets, unmatchedTargets } from '../../src/lora/targets';
import { gpt2Modules, llamaModules } from './fixtures';

const base: LoraConfig = {
  r: 8,
  lora_alpha: 16,
  lora_dropout: 0.05,
  target_modules: ['q_proj', 'v_proj'],
  use_rslora: false,
  bias: 'none',
  fan_in_fan_out: false,
  init_lora_weights: true,
};

describe('loraScale', () => {
  it('is alpha / r, or alpha / sqrt(r) with rsLoRA', () => {
    const m = { path: 'model.layers.0.self_attn.q_proj' };
    expect(loraScale(base, m)).toBe(2);
    expect(loraScale({ ...base, use_rslora: true }, m)).toBeCloseTo(16 / Math.sqrt(8), 12);
    expect(loraScale({ ...base, r: 16, lora_alpha: 16, use_rslora: true }, m)).toBe(4);
  });

  it('honours rank_pattern and alpha_pattern with PEFT get_pattern_key semantics', () => {
    const cfg: LoraConfig = {
      ...base,
      rank_pattern: { 'layers.1.self_attn.q_proj': 4, v_proj: 2 },
      alpha_pattern: { '.*\\.0\\.self_attn\\.q_proj': 32 },
    };
    expect(loraRank(cfg, 'model.layers.1.self_attn.q_proj')).toBe(4);
    expect(loraRank(cfg, 'model.layers.0.self_attn.q_proj')).toBe(8);
    expect(loraRank(cfg, 'model.layers.0.self_attn.v_proj')).toBe(2);
    // The key must match a whole dotted suffix: "v_proj" does not match "xv_proj".
    expect(loraRank(cfg, 'model.layers.0.self_attn.xv_proj')).toBe(8);
    expect(loraScale(cfg, { path: 'model.layers.0.self_attn.q_proj' })).toBe(32 / 8);
    expect(loraScale(cfg, { path: 'model.layers.1.self_attn.q_proj' })).toBe(16 / 4);
    expect(loraScaleInfo(cfg, { path: 'model.layers.0.self_attn.v_proj' })).toEqual({ r: 2, scale: 8, dropout: 0.05 });
  });
});

describe('validateLoraConfig', () => {
  it('accepts a good config', () => {
    expect(loraConfigProblems(base)).toEqual([]);
    expect(() => validateLoraConfig({ ...base, target_modules: 'all-linear' })).not.toThrow();
    expect(() => validateLoraConfig({ ...base, target_modules: '.*\\.(q|v)_proj' })).not.toThrow();
  });

  it('names every problem', () => {
    const bad = {
      ...base,
      r: 2.5,
      lora_alpha: 0,
      lora_dropout: 1,
      target_modules: [],
      init_lora_weights: 'eva',
    } as unknown as LoraConfig;
    const p = loraConfigProblems(bad);
    expect(p).toHaveLength(5);
    expect(p[0]).toMatch(/r \(the LoRA rank\) must be a positive integer, got 2.5/);
    expect(p[1]).toMatch(/lora_alpha must be a number > 0, got 0/);
    expect(p[2]).toMatch(/lora_dropout must be in \[0, 1\), got 1/);
    expect(p[3]).toMatch(/target_modules is empty/);
    expect(p[4]).toMatch(
      /init_lora_weights must be true, "gaussian", "pissa", "pissa_niter_N", "olora" or "loftq", got "eva"/,
    );
    expect(() => validateLoraConfig(bad)).toThrow(LoraConfigError);
  });

  it('rejects a broken regex and bad patterns', () => {
    expect(loraConfigProblems({ ...base, target_modules: '(q_proj' })[0]).toMatch(/not a valid regex/);
    expect(loraConfigProblems({ ...base, rank_pattern: { q_proj: 0 } })[0]).toMatch(
      /rank_pattern\["q_proj"\] must be a positive integer/,
    );
    expect(loraConfigProblems({ ...base, r: -1 })[0]).toMatch(/got -1/);
    expect(loraConfigProblems({ ...base, lora_dropout: -0.1 })[0]).toMatch(/lora_dropout/);
  });
});

describe('default targets', () => {
  it("covers PEFT's mapping", () => {
    expect(defaultTargetModules('gpt2')).toEqual(['c_attn']);
    expect(defaultTargetModules('gpt_bigcode')).toEqual(['c_attn']);
    for (const t of ['bloom', 'gpt_neox', 'falcon']) expect(defaultTargetModules(t)).toEqual(['query_key_value']);
    for (const t of [
      'opt',
      'llama',
      'mistral',
      'mixtral',
      'stablelm',
      'gemma',
      'gemma2',
      'gemma3_text',
      'qwen2',
      'qwen3',
    ]) {
      expect(defaultTargetModules(t)).toEqual(['q_proj', 'v_proj']);
    }
    expect(defaultTargetModules('phi')).toEqual(['q_proj', 'v_proj', 'fc1', 'fc2']);
  });

  it('asks for explicit targets when unmapped', () => {
    expect(() => defaultTargetModules('phi3')).toThrow(
      /no default LoRA target modules for model_type "phi3".*explicitly/,
    );
    expect(() => defaultTargetModules('toString')).toThrow(LoraConfigError);
  });

  it('fills empty settings targets from the model type', () => {
    const s = { r: 4, lora_alpha: 8, lora_dropout: 0, target_modules: [] as string[], use_rslora: false };
    expect(loraConfigFromSettings(s, 'qwen2').target_modules).toEqual(['q_proj', 'v_proj']);
    expect(loraConfigFromSettings(s, 'gpt2', { fanInFanOut: true })).toMatchObject({
      target_modules: ['c_attn'],
      fan_in_fan_out: true,
    });
    expect(loraConfigFromSettings(s, 'gpt2').fan_in_fan_out).toBe(false);
    expect(loraConfigFromSettings({ ...s, target_modules: 'all-linear' }, 'phi3').target_modules).toBe('all-linear');
    expect(loraConfigFromSettings({ ...s, target_modules: ['o_proj'] }, 'llama')).toMatchObject({
      target_modules: ['o_proj'],
      fan_in_fan_out: false,
      init_lora_weights: true,
    });
  });
});

describe('resolveTargets', () => {
  const llama = llamaModules(2);
  const gpt2 = gpt2Modules(2);

  it('matches list entries by name or dotted suffix, in model order', () => {
    const got = resolveTargets({ target_modules: ['v_proj', 'q_proj'] }, llama).map((m) => m.path);
    expect(got).toEqual([
      'model.layers.0.self_attn.q_proj',
      'model.layers.0.self_attn.v_proj',
      'model.layers.1.self_attn.q_proj',
      'model.layers.1.self_attn.v_proj',
    ]);
    expect(resolveTargets({ target_modules: ['layers.1.mlp.down_proj'] }, llama).map((m) => m.path)).toEqual([
      'model.layers.1.mlp.down_proj',
    ]);
    expect(resolveTargets({ target_modules: ['model.layers.0.mlp.up_proj'] }, llama)).toHaveLength(1);
    // "proj" is not a dotted suffix of "q_proj".
    expect(() => resolveTargets({ target_modules: ['proj'] }, llama)).toThrow(LoraConfigError);
  });

  it('treats a string as a full-match regex on the path', () => {
    expect(resolveTargets({ target_modules: '.*\\.1\\.self_attn\\.(q|k)_proj' }, llama).map((m) => m.name)).toEqual([
      'q_proj',
      'k_proj',
    ]);
    // Not a search: must match the whole path.
    expect(() => resolveTargets({ target_modules: 'q_proj' }, llama)).toThrow(/matched none/);
  });

  it("Mixtral's experts: w1 and w3 are targeted together (PEFT fuses them) or not at all", () => {
    const mods = [0, 1].flatMap((e) =>
      ['w1', 'w2', 'w3'].map((name) => ({
        path: `model.layers.0.block_sparse_moe.experts.${e}.${name}`,
        name,
        inF: 4,
        outF: 4,
        transposed: false,
      })),
    );
    expect(resolveTargets({ target_modules: ['w1', 'w3'] }, mods)).toHaveLength(4);
    expect(resolveTargets({ target_modules: ['w2'] }, mods)).toHaveLength(2);
    expect(() => resolveTargets({ target_modules: ['w1', 'w2'] }, mods)).toThrow(
      /"model\.layers\.0\.block_sparse_moe\.experts\.0\.w1" but not its expert's w3.*target both \(w1, w3\) or neither/,
    );
    expect(() => resolveTargets({ target_modules: '.*experts\\.1\\.w[13]|.*experts\\.0\\.w3' }, mods)).toThrow(
      /w3" but not its expert's w1/,
    );
  });

  it('all-linear takes every module; exclude_modules wins', () => {
    expect(resolveTargets({ target_modules: 'all-linear' }, llama)).toHaveLength(14);
    expect(resolveTargets({ target_modules: 'ALL-LINEAR' }, gpt2)).toHaveLength(8);
    const got = resolveTargets({ target_modules: 'all-linear', exclude_modules: ['mlp.c_proj'] }, gpt2).map(
      (m) => m.path,
    );
    expect(got).toEqual([
      'transformer.h.0.attn.c_attn',
      'transformer.h.0.attn.c_proj',
      'transformer.h.0.mlp.c_fc',
      'transformer.h.1.attn.c_attn',
      'transformer.h.1.attn.c_proj',
      'transformer.h.1.mlp.c_fc',
    ]);
  });

  it('GPT-2 c_attn', () => {
    expect(resolveTargets({ target_modules: ['c_attn'] }, gpt2).map((m) => m.path)).toEqual([
      'transformer.h.0.attn.c_attn',
      'transformer.h.1.attn.c_attn',
    ]);
    // c_proj names both the attention and the MLP output projection.
    expect(resolveTargets({ target_modules: ['c_proj'] }, gpt2)).toHaveLength(4);
  });

  it('names the targets and the available modules when nothing matches', () => {
    let msg = '';
    try {
      resolveTargets({ target_modules: ['q', 'v'] }, llama);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toContain('target_modules ["q","v"] matched none of this model\'s 14 linear modules');
    expect(msg).toContain('Available module names: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj');
    expect(msg).toContain('"model.layers.0.self_attn.q_proj"');
  });

  it('reports list entries that match nothing', () => {
    expect(unmatchedTargets({ target_modules: ['q_proj', 'query_key_value'] }, llama)).toEqual(['query_key_value']);
    expect(unmatchedTargets({ target_modules: 'all-linear' }, llama)).toEqual([]);
  });
});
