import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/model/config';
import {
  ModelWeightsError,
  describeModel,
  expectedTensors,
  linearModuleNames,
  referencedKeys,
} from '../../src/model/registry';
import { parseSafetensors } from '../../src/model/safetensors';
import { type TinyModelOptions, makeTinyModel } from '../fixtures/tiny-model';

function tiny(o: TinyModelOptions) {
  const m = makeTinyModel(o);
  const config = parseConfig(m.config);
  const tensors = parseSafetensors(m.files.get('model.safetensors')!, 'model.safetensors').tensors;
  return { m, config, tensors };
}

const summary = (arch: ReturnType<typeof describeModel>, layer = 0) =>
  arch.layers[layer]!.linears.map((l) => ({
    path: l.path,
    name: l.name,
    role: l.role,
    weightKey: l.weightKey,
    biasKey: l.biasKey,
    inF: l.inF,
    outF: l.outF,
    transposed: l.transposed,
  }));

describe('registry', () => {
  it('llama: PEFT paths, keys, roles and shapes (GQA)', () => {
    const { config, tensors } = tiny({ modelType: 'llama' });
    const arch = describeModel(config, tensors);
    const p = 'model.layers.1.';
    expect(summary(arch, 1)).toEqual([
      {
        path: `${p}self_attn.q_proj`,
        name: 'q_proj',
        role: 'q',
        weightKey: `${p}self_attn.q_proj.weight`,
        biasKey: null,
        inF: 24,
        outF: 24,
        transposed: false,
      },
      {
        path: `${p}self_attn.k_proj`,
        name: 'k_proj',
        role: 'k',
        weightKey: `${p}self_attn.k_proj.weight`,
        biasKey: null,
        inF: 24,
        outF: 8,
        transposed: false,
      },
      {
        path: `${p}self_attn.v_proj`,
        name: 'v_proj',
        role: 'v',
        weightKey: `${p}self_attn.v_proj.weight`,
        biasKey: null,
        inF: 24,
        outF: 8,
        transposed: false,
      },
      {
        path: `${p}self_attn.o_proj`,
        name: 'o_proj',
        role: 'o',
        weightKey: `${p}self_attn.o_proj.weight`,
        biasKey: null,
        inF: 24,
        outF: 24,
        transposed: false,
      },
      {
        path: `${p}mlp.gate_proj`,
        name: 'gate_proj',
        role: 'gate',
        weightKey: `${p}mlp.gate_proj.weight`,
        biasKey: null,
        inF: 24,
        outF: 44,
        transposed: false,
      },
      {
        path: `${p}mlp.up_proj`,
        name: 'up_proj',
        role: 'up',
        weightKey: `${p}mlp.up_proj.weight`,
        biasKey: null,
        inF: 24,
        outF: 44,
        transposed: false,
      },
      {
        path: `${p}mlp.down_proj`,
        name: 'down_proj',
        role: 'down',
        weightKey: `${p}mlp.down_proj.weight`,
        biasKey: null,
        inF: 44,
        outF: 24,
        transposed: false,
      },
    ]);
    expect(arch.layers[0]!.linears[0]!.path).toBe('model.layers.0.self_attn.q_proj');
    expect(arch.layers[1]!.linears.every((l) => l.layer === 1)).toBe(true);
    expect(arch.embed).toBe('model.embed_tokens.weight');
    expect(arch.lmHead).toBe('model.embed_tokens.weight'); // tied
    expect(arch.posEmbed).toBeNull();
    expect(arch.finalNorm).toEqual({ w: 'model.norm.weight', b: null });
    expect(arch.layers[0]!.inputNorm).toEqual({ w: 'model.layers.0.input_layernorm.weight', b: null });
    expect(arch.layers[0]!.postAttnNorm).toEqual({ w: 'model.layers.0.post_attention_layernorm.weight', b: null });
    expect(arch.layers[0]!.qNorm).toBeUndefined();
    expect(linearModuleNames(config)).toEqual([
      'q_proj',
      'k_proj',
      'v_proj',
      'o_proj',
      'gate_proj',
      'up_proj',
      'down_proj',
    ]);
  });

  it('llama untied: lm_head.weight; attention/mlp bias keys', () => {
    const { config, tensors } = tiny({
      modelType: 'llama',
      tie: false,
      overrides: { attention_bias: true, mlp_bias: true },
    });
    const arch = describeModel(config, tensors);
    expect(arch.lmHead).toBe('lm_head.weight');
    expect(arch.layers[0]!.linears.map((l) => l.biasKey)).toEqual([
      'model.layers.0.self_attn.q_proj.bias',
      'model.layers.0.self_attn.k_proj.bias',
      'model.layers.0.self_attn.v_proj.bias',
      'model.layers.0.self_attn.o_proj.bias',
      'model.layers.0.mlp.gate_proj.bias',
      'model.layers.0.mlp.up_proj.bias',
      'model.layers.0.mlp.down_proj.bias',
    ]);
  });

  it('mistral: explicit head_dim shapes, untied head', () => {
    const { config, tensors } = tiny({ modelType: 'mistral' });
    const arch = describeModel(config, tensors);
    expect(arch.lmHead).toBe('lm_head.weight');
    expect(summary(arch).map((l) => [l.name, l.inF, l.outF])).toEqual([
      ['q_proj', 36, 36],
      ['k_proj', 36, 12],
      ['v_proj', 36, 12],
      ['o_proj', 36, 36],
      ['gate_proj', 36, 40],
      ['up_proj', 36, 40],
      ['down_proj', 40, 36],
    ]);
  });

  it('qwen2: q/k/v biases, no o bias', () => {
    const { config, tensors } = tiny({ modelType: 'qwen2' });
    const arch = describeModel(config, tensors);
    expect(arch.layers[0]!.linears.map((l) => l.biasKey)).toEqual([
      'model.layers.0.self_attn.q_proj.bias',
      'model.layers.0.self_attn.k_proj.bias',
      'model.layers.0.self_attn.v_proj.bias',
      null,
      null,
      null,
      null,
    ]);
  });

  it('qwen3: q/k norms and head_dim*heads != hidden', () => {
    const { config, tensors } = tiny({ modelType: 'qwen3' });
    const arch = describeModel(config, tensors);
    expect(arch.layers[1]!.qNorm).toBe('model.layers.1.self_attn.q_norm.weight');
    expect(arch.layers[1]!.kNorm).toBe('model.layers.1.self_attn.k_norm.weight');
    expect(summary(arch).map((l) => [l.name, l.inF, l.outF])).toEqual([
      ['q_proj', 40, 24],
      ['k_proj', 40, 8],
      ['v_proj', 40, 8],
      ['o_proj', 24, 40],
      ['gate_proj', 40, 48],
      ['up_proj', 40, 48],
      ['down_proj', 48, 40],
    ]);
  });

  it('gpt2 with "transformer." keys: fused Conv1D c_attn, tied head, learned positions', () => {
    const { config, tensors } = tiny({ modelType: 'gpt2' });
    const arch = describeModel(config, tensors);
    const p = 'transformer.h.0.';
    expect(summary(arch)).toEqual([
      {
        path: `${p}attn.c_attn`,
        name: 'c_attn',
        role: 'qkv',
        weightKey: `${p}attn.c_attn.weight`,
        biasKey: `${p}attn.c_attn.bias`,
        inF: 36,
        outF: 108,
        transposed: true,
      },
      {
        path: `${p}attn.c_proj`,
        name: 'c_proj',
        role: 'o',
        weightKey: `${p}attn.c_proj.weight`,
        biasKey: `${p}attn.c_proj.bias`,
        inF: 36,
        outF: 36,
        transposed: true,
      },
      {
        path: `${p}mlp.c_fc`,
        name: 'c_fc',
        role: 'fc_in',
        weightKey: `${p}mlp.c_fc.weight`,
        biasKey: `${p}mlp.c_fc.bias`,
        inF: 36,
        outF: 144,
        transposed: true,
      },
      {
        path: `${p}mlp.c_proj`,
        name: 'c_proj',
        role: 'fc_out',
        weightKey: `${p}mlp.c_proj.weight`,
        biasKey: `${p}mlp.c_proj.bias`,
        inF: 144,
        outF: 36,
        transposed: true,
      },
    ]);
    expect(arch.embed).toBe('transformer.wte.weight');
    expect(arch.lmHead).toBe('transformer.wte.weight');
    expect(arch.posEmbed).toBe('transformer.wpe.weight');
    expect(arch.finalNorm).toEqual({ w: 'transformer.ln_f.weight', b: 'transformer.ln_f.bias' });
    expect(arch.layers[0]!.inputNorm).toEqual({ w: 'transformer.h.0.ln_1.weight', b: 'transformer.h.0.ln_1.bias' });
    expect(arch.layers[0]!.postAttnNorm).toEqual({ w: 'transformer.h.0.ln_2.weight', b: 'transformer.h.0.ln_2.bias' });
    expect(linearModuleNames(config)).toEqual(['c_attn', 'c_proj', 'c_fc']);
  });

  it('gpt2 without prefix: keys as found, PEFT paths still under "transformer."; mask buffers ignored', () => {
    const { config, tensors } = tiny({ modelType: 'gpt2', gpt2Prefix: false });
    expect(tensors.has('h.0.attn.bias')).toBe(true);
    const arch = describeModel(config, tensors);
    const l = arch.layers[1]!.linears[0]!;
    expect(l.path).toBe('transformer.h.1.attn.c_attn');
    expect(l.weightKey).toBe('h.1.attn.c_attn.weight');
    expect(l.biasKey).toBe('h.1.attn.c_attn.bias');
    expect(arch.embed).toBe('wte.weight');
    expect(arch.lmHead).toBe('wte.weight');
    expect(arch.posEmbed).toBe('wpe.weight');
    expect(arch.finalNorm.w).toBe('ln_f.weight');
    expect(referencedKeys(arch)).not.toContain('h.0.attn.bias');
  });

  it('every fixture tensor is what the registry expects (independent descriptions agree)', () => {
    const variants: TinyModelOptions[] = [
      { modelType: 'llama' },
      { modelType: 'llama', tie: false, overrides: { attention_bias: true, mlp_bias: true } },
      { modelType: 'mistral' },
      { modelType: 'qwen2' },
      { modelType: 'qwen3' },
      { modelType: 'qwen3', overrides: { attention_bias: true, num_hidden_layers: 3 } },
      { modelType: 'gpt2' },
      { modelType: 'gpt2', gpt2Prefix: false },
      { modelType: 'gpt2', tie: false },
    ];
    for (const v of variants) {
      const { m, config, tensors } = tiny(v);
      const arch = describeModel(config, tensors);
      const used = new Set(referencedKeys(arch));
      const written = m.tensorNames.filter((n) => !/\.attn\.bias$/.test(n));
      expect([...used].sort(), JSON.stringify(v)).toEqual([...written].sort());
      if (v.gpt2Prefix !== false) {
        expect(
          expectedTensors(config)
            .map((e) => e.key)
            .sort(),
          JSON.stringify(v),
        ).toEqual([...written].sort());
        for (const e of expectedTensors(config)) expect(tensors.get(e.key)!.shape).toEqual(e.shape);
      }
    }
  });

  it('missing tensor: names file, key and model_type', () => {
    const { config, tensors } = tiny({
      modelType: 'llama',
      overrides: { num_hidden_layers: 4 },
      editTensors: (ts) => ts.filter((t) => t.name !== 'model.layers.3.mlp.up_proj.weight'),
    });
    expect(() => describeModel(config, tensors)).toThrow(ModelWeightsError);
    expect(() => describeModel(config, tensors)).toThrow(
      'model.safetensors: missing tensor "model.layers.3.mlp.up_proj.weight" expected by model_type "llama".',
    );
  });

  it('missing untied head and several missing tensors', () => {
    const { config, tensors } = tiny({
      modelType: 'mistral',
      editTensors: (ts) => ts.filter((t) => t.name !== 'lm_head.weight'),
    });
    expect(() => describeModel(config, tensors)).toThrow(
      /missing tensor "lm_head\.weight".*tie_word_embeddings is false/,
    );
    const two = tiny({ modelType: 'qwen2', editTensors: (ts) => ts.filter((t) => !t.name.includes('v_proj')) });
    expect(() => describeModel(two.config, two.tensors, { fileName: 'x.safetensors' })).toThrow(
      /^x\.safetensors: missing tensor "model\.layers\.0\.self_attn\.v_proj\.weight" expected by model_type "qwen2" \(and 3 more/,
    );
  });

  it('wrong model: reports the missing embedding and hints at the checkpoint', () => {
    const g = tiny({ modelType: 'gpt2' });
    const l = tiny({ modelType: 'llama' });
    expect(() => describeModel(l.config, g.tensors)).toThrow(
      /missing tensor "model\.embed_tokens\.weight".*is this really a llama model/,
    );
  });

  it('shape mismatch: names key, expected and actual shape', () => {
    const { config, tensors } = tiny({
      modelType: 'llama',
      editTensors: (ts) =>
        ts.map((t) =>
          t.name === 'model.layers.1.mlp.gate_proj.weight'
            ? { ...t, shape: [43, 24], values: t.values.subarray(0, 43 * 24) }
            : t,
        ),
    });
    expect(() => describeModel(config, tensors)).toThrow(
      'model.safetensors: tensor "model.layers.1.mlp.gate_proj.weight" has shape [43, 24], but model_type "llama" with this config.json expects [44, 24].',
    );
  });

  it('gpt2 Conv1D orientation is checked ([in, out])', () => {
    const { config, tensors } = tiny({
      modelType: 'gpt2',
      editTensors: (ts) =>
        ts.map((t) => (t.name === 'transformer.h.0.mlp.c_fc.weight' ? { ...t, shape: [144, 36] } : t)),
    });
    expect(() => describeModel(config, tensors)).toThrow(
      /"transformer\.h\.0\.mlp\.c_fc\.weight" has shape \[144, 36\].*expects \[36, 144\]/,
    );
  });

  it('a set of names with a shape lookup, or names only', () => {
    const { config, tensors } = tiny({ modelType: 'qwen3' });
    const names = new Set(tensors.keys());
    expect(describeModel(config, names).layers).toHaveLength(2);
    const bad = (k: string) => (k === 'model.norm.weight' ? [7] : tensors.get(k)?.shape);
    expect(() => describeModel(config, names, { shapeOf: bad })).toThrow(
      /"model\.norm\.weight" has shape \[7\].*expects \[40\]/,
    );
  });
});
