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

/** [name, role, inF, outF, bias, qkvGroups] of layer 0's modules. */
const brief = (arch: ReturnType<typeof describeModel>) =>
  arch.layers[0]!.linears.map((l) => [l.name, l.role, l.inF, l.outF, l.biasKey !== null, l.qkvGroups]);

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
    expect(arch.layers[0]!.norms).toEqual({
      attn: { w: 'model.layers.0.input_layernorm.weight', b: null },
      mlp: { w: 'model.layers.0.post_attention_layernorm.weight', b: null },
    });
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
    expect(arch.layers[1]!.norms.q).toEqual({ w: 'model.layers.1.self_attn.q_norm.weight', b: null });
    expect(arch.layers[1]!.norms.k).toEqual({ w: 'model.layers.1.self_attn.k_norm.weight', b: null });
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
    expect(arch.layers[0]!.norms.attn).toEqual({ w: 'transformer.h.0.ln_1.weight', b: 'transformer.h.0.ln_1.bias' });
    expect(arch.layers[0]!.norms.mlp).toEqual({ w: 'transformer.h.0.ln_2.weight', b: 'transformer.h.0.ln_2.bias' });
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
    expect(arch.finalNorm!.w).toBe('ln_f.weight');
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
      { modelType: 'gemma' },
      { modelType: 'gemma2' },
      { modelType: 'gemma3_text' },
      { modelType: 'phi3' },
      { modelType: 'phi' },
      { modelType: 'phi', overrides: { qk_layernorm: true } },
      { modelType: 'gpt_neox' },
      { modelType: 'gpt_neox', tie: true, overrides: { use_parallel_residual: false } },
      { modelType: 'opt' },
      { modelType: 'opt', overrides: { do_layer_norm_before: false, word_embed_proj_dim: 16 } },
      { modelType: 'stablelm' },
      { modelType: 'stablelm', overrides: { use_parallel_residual: true, use_qkv_bias: false } },
      { modelType: 'olmo2' },
      { modelType: 'granite' },
      { modelType: 'smollm3' },
      { modelType: 'bloom' },
      { modelType: 'falcon' },
      { modelType: 'falcon', overrides: { new_decoder_architecture: true, num_attention_heads: 4, num_kv_heads: 2 } },
      { modelType: 'falcon', overrides: { alibi: true, multi_query: false, parallel_attn: false, bias: true } },
      { modelType: 'gpt_bigcode' },
      { modelType: 'gpt_bigcode', overrides: { multi_query: false } },
      { modelType: 'gptj' },
      { modelType: 'gpt_neo' },
    ];
    for (const v of variants) {
      const { m, config, tensors } = tiny(v);
      const arch = describeModel(config, tensors);
      const used = new Set(referencedKeys(arch));
      const written = m.tensorNames.filter((n) => !/\.attn\.bias$/.test(n));
      expect([...used].sort(), JSON.stringify(v)).toEqual([...written].sort());
      if (v.gpt2Prefix !== false) {
        // expectedTensors names the canonical head; Pythia's files use the older "embed_out"
        const canonical = written.map((k) => (k === 'embed_out.weight' ? 'lm_head.weight' : k));
        expect(
          expectedTensors(config)
            .map((e) => e.key)
            .sort(),
          JSON.stringify(v),
        ).toEqual([...canonical].sort());
        for (const e of expectedTensors(config))
          expect(
            tensors.get(e.key === 'lm_head.weight' && !tensors.has(e.key) ? 'embed_out.weight' : e.key)!.shape,
          ).toEqual(e.shape);
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

  it('the other families: PEFT paths, fused layouts (qkvGroups), norms, heads', () => {
    const d = (o: TinyModelOptions) => {
      const t = tiny(o);
      return { config: t.config, arch: describeModel(t.config, t.tensors) };
    };
    const phi3 = d({ modelType: 'phi3' });
    expect(brief(phi3.arch)).toEqual([
      ['qkv_proj', 'qkv', 24, 40, false, 1],
      ['o_proj', 'o', 24, 24, false, 1],
      ['gate_up_proj', 'gate_up', 24, 80, false, 1],
      ['down_proj', 'down', 40, 24, false, 1],
    ]);
    expect(phi3.arch.layers[0]!.linears[0]!.path).toBe('model.layers.0.self_attn.qkv_proj');
    const neox = d({ modelType: 'gpt_neox' });
    expect(brief(neox.arch)[0]).toEqual(['query_key_value', 'qkv', 24, 72, true, 3]);
    expect(neox.arch.layers[1]!.linears[0]!.path).toBe('gpt_neox.layers.1.attention.query_key_value');
    expect(neox.arch.lmHead).toBe('embed_out.weight'); // the older head name, as Pythia's files have it
    const bloom = d({ modelType: 'bloom' });
    expect(bloom.arch.embedNorm).toEqual({
      w: 'transformer.word_embeddings_layernorm.weight',
      b: 'transformer.word_embeddings_layernorm.bias',
    });
    expect(brief(bloom.arch)[0]).toEqual(['query_key_value', 'qkv', 24, 72, true, 3]);
    expect(brief(d({ modelType: 'falcon' }).arch)[0]).toEqual(['query_key_value', 'qkv', 24, 40, false, 1]);
    const fNew = d({
      modelType: 'falcon',
      overrides: { new_decoder_architecture: true, num_attention_heads: 4, num_kv_heads: 2 },
    });
    expect(brief(fNew.arch)[0]).toEqual(['query_key_value', 'qkv', 24, 48, false, 2]);
    expect(Object.keys(fNew.arch.layers[0]!.norms)).toEqual(['attn', 'mlp']);
    expect(fNew.arch.layers[0]!.norms.attn!.w).toBe('transformer.h.0.ln_attn.weight');
    expect(brief(d({ modelType: 'gpt_bigcode' }).arch)[0]).toEqual(['c_attn', 'qkv', 24, 40, true, 1]);
    expect(d({ modelType: 'gpt_bigcode' }).arch.layers[0]!.linears[0]!.transposed).toBe(false);
    const opt = d({ modelType: 'opt', overrides: { do_layer_norm_before: false, word_embed_proj_dim: 16 } });
    expect(opt.arch.top.map((m) => [m.path, m.layer, m.inF, m.outF])).toEqual([
      ['model.decoder.project_out', -1, 24, 16],
      ['model.decoder.project_in', -1, 16, 24],
    ]);
    expect(opt.arch.finalNorm).toBeNull();
    expect(opt.arch.posEmbed).toBe('model.decoder.embed_positions.weight');
    expect(linearModuleNames(opt.config)).toEqual([
      'project_out',
      'project_in',
      'q_proj',
      'k_proj',
      'v_proj',
      'out_proj',
      'fc1',
      'fc2',
    ]);
    const phi = d({ modelType: 'phi' });
    expect(phi.arch.lmHeadBias).toBe('lm_head.bias');
    expect(linearModuleNames(phi.config)).toEqual(['q_proj', 'k_proj', 'v_proj', 'dense', 'fc1', 'fc2']);
    expect(d({ modelType: 'gptj' }).arch.layers[0]!.linears[3]!.path).toBe('transformer.h.0.attn.out_proj');
    expect(d({ modelType: 'gpt_neo' }).arch.layers[0]!.linears[0]!.path).toBe('transformer.h.0.attn.attention.q_proj');
    const g2 = d({ modelType: 'gemma2' });
    expect(Object.values(g2.arch.layers[0]!.norms).map((n) => n!.w)).toEqual([
      'model.layers.0.input_layernorm.weight',
      'model.layers.0.pre_feedforward_layernorm.weight',
      'model.layers.0.post_attention_layernorm.weight',
      'model.layers.0.post_feedforward_layernorm.weight',
    ]);
    const olmo = d({ modelType: 'olmo2' });
    expect(olmo.arch.layers[0]!.norms.q).toEqual({ w: 'model.layers.0.self_attn.q_norm.weight', b: null });
    expect(Object.keys(olmo.arch.layers[0]!.norms)).toEqual(['attnOut', 'mlpOut', 'q', 'k']);
  });

  it('gemma3 (multimodal): the text model under model.language_model. or language_model.model.', () => {
    const m = makeTinyModel({ modelType: 'gemma3_text' });
    const config = parseConfig({ model_type: 'gemma3', text_config: m.config, tie_word_embeddings: true });
    const tensors = parseSafetensors(m.files.get('model.safetensors')!, 'model.safetensors').tensors;
    for (const prefix of ['model.language_model.', 'language_model.model.']) {
      const renamed = new Map([...tensors].map(([k, t]) => [k.replace(/^model\./, prefix), t]));
      renamed.set('vision_tower.vision_model.post_layernorm.weight', tensors.get('model.norm.weight')!);
      const arch = describeModel(config, renamed);
      expect(arch.embed).toBe(`${prefix}embed_tokens.weight`);
      expect(arch.layers[1]!.linears[0]!.path).toBe('model.language_model.layers.1.self_attn.q_proj');
      expect(referencedKeys(arch).some((k) => k.startsWith('vision'))).toBe(false);
    }
  });
});
