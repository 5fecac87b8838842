import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { f16BitsToF32 } from '../../src/gpu/half';
import { ModelLoadError, estimateModel, loadConfigOnly, loadModel } from '../../src/model/load';
import { firstNonFinite } from '../../src/model/nf4';
import { ModelWeightsError } from '../../src/model/registry';
import { parseSafetensors, tensorToF32, writeSafetensors } from '../../src/model/safetensors';
import { DirSource, MemorySource } from '../../src/model/source';
import { type TinyModelOptions, type TinyTensor, makeTinyModel, writeTinyModel } from '../fixtures/tiny-model';

let root: string;
let n = 0;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'tabtune-load-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function tinyDir(o: TinyModelOptions) {
  const dir = join(root, `m${n++}`);
  const m = await writeTinyModel(dir, o);
  return { dir, m, src: new DirSource(dir) };
}

async function loadError(p: Promise<unknown>): Promise<Error> {
  const e = await p.then(
    () => null,
    (err: unknown) => err as Error,
  );
  expect(e).toBeInstanceOf(Error);
  return e!;
}

const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

describe('loadModel', () => {
  for (const modelType of ['llama', 'mistral', 'qwen2', 'qwen3', 'gpt2'] as const) {
    it(`${modelType}: unsharded from a folder`, async () => {
      const { src, m } = await tinyDir({ modelType, seed: 3 });
      const files: string[] = [];
      const loaded = await loadModel(src, { onProgress: (f) => files.includes(f) || files.push(f) });
      expect(files).toEqual([
        'config.json',
        'tokenizer.json',
        'tokenizer_config.json',
        'generation_config.json',
        'model.safetensors',
      ]);
      expect(loaded.config.modelType).toBe(modelType);
      expect(loaded.weightFiles).toEqual(['model.safetensors']);
      expect([...loaded.tensors.keys()].sort()).toEqual(m.tensorNames);
      expect(loaded.arch.layers).toHaveLength(2);
      expect(loaded.tokenizerJson.model).toBeTruthy();
      expect(loaded.tokenizerConfig.eos_token).toBe('<|im_end|>');
      expect(loaded.generationConfig).not.toBeNull();
      for (const t of loaded.tensors.values()) expect(t.dtype).toBe('F32');
      // estimate before download = what was loaded
      const est = estimateModel(await loadConfigOnly(src));
      let params = 0;
      for (const [k, t] of loaded.tensors)
        if (!k.endsWith('attn.bias') || k.includes('c_attn')) params += numel(t.shape);
      expect(est.params).toBe(params);
      expect(est.bytes.F32).toBe(params * 4);
      expect(est.checkpointDtype).toBe('F32');
      expect(est.embeddingParams + est.lmHeadParams + est.linearParams + est.normParams).toBe(params);
    });
  }

  it('generation_config eos ids are merged into config.eosTokenIds', async () => {
    const { src, m } = await tinyDir({ modelType: 'llama' });
    const loaded = await loadModel(src);
    expect(loaded.config.eosTokenIds).toEqual([m.specialIds.imEnd, m.specialIds.endoftext]);
    expect((await loadConfigOnly(src)).eosTokenIds).toEqual([m.specialIds.imEnd]);
  });

  it('sharded equals unsharded, tensor for tensor; progress per shard', async () => {
    const a = await tinyDir({ modelType: 'qwen3', seed: 9, dtype: 'BF16' });
    const b = await tinyDir({ modelType: 'qwen3', seed: 9, dtype: 'BF16', sharded: true });
    const seen = new Map<string, [number, number | null]>();
    const la = await loadModel(a.src);
    const lb = await loadModel(b.src, { onProgress: (f, l, t) => seen.set(f, [l, t]) });
    expect(lb.weightFiles).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect(seen.has('model.safetensors.index.json')).toBe(true);
    for (const f of lb.weightFiles) {
      const size = b.m.files.get(f)!.byteLength;
      expect(seen.get(f)).toEqual([size, size]);
    }
    expect([...lb.tensors.keys()].sort()).toEqual([...la.tensors.keys()].sort());
    for (const [k, t] of la.tensors) {
      const u = lb.tensors.get(k)!;
      expect(u.dtype).toBe('BF16');
      expect(u.shape).toEqual(t.shape);
      expect(Buffer.from(u.data).equals(Buffer.from(t.data))).toBe(true);
    }
    expect(lb.arch).toEqual(la.arch);
  });

  it('F16 / BF16 weights hold the F32 values rounded', async () => {
    const f32 = await loadModel(new MemorySource(makeTinyModel({ modelType: 'mistral', seed: 5 }).files));
    const f16 = await loadModel(new MemorySource(makeTinyModel({ modelType: 'mistral', seed: 5, dtype: 'F16' }).files));
    const key = 'model.layers.1.self_attn.k_proj.weight';
    const x = tensorToF32(f32.tensors.get(key)!);
    const h = f16.tensors.get(key)!;
    expect(h.dtype).toBe('F16');
    const bits = new Uint16Array(h.data.slice().buffer);
    for (let i = 0; i < x.length; i += 17) expect(Math.abs(f16BitsToF32(bits[i]!) - x[i]!)).toBeLessThan(1e-3);
    // scale is sensible: linears ~0.1, norms ~1
    const std = Math.sqrt(x.reduce((a, v) => a + v * v, 0) / x.length);
    expect(std).toBeGreaterThan(0.05);
    expect(std).toBeLessThan(0.2);
    const norm = tensorToF32(f32.tensors.get('model.norm.weight')!);
    expect(Math.abs(norm.reduce((a, v) => a + v, 0) / norm.length - 1)).toBeLessThan(0.05);
  });

  it('reads tensors parsed from a Node Buffer (slice() is a view there) as from a Uint8Array', () => {
    const values = [1.5, -2.25, 3, 0.125, -7];
    const file = writeSafetensors([
      { name: 'odd', dtype: 'U8', shape: [3], data: Uint8Array.of(1, 2, 3) }, // puts the next tensor off alignment
      { name: 'f32', dtype: 'F32', shape: [5], data: Float32Array.from(values) },
      { name: 'bf16', dtype: 'BF16', shape: [2], data: Uint16Array.of(0x3fc0, 0xc010) }, // 1.5, -2.25
    ]);
    // As readFile gives it: a Buffer with the file somewhere inside a larger allocation.
    const big = Buffer.alloc(file.byteLength + 13, 0xff);
    file.forEach((b, i) => (big[i + 13] = b));
    const parsed = parseSafetensors(big.subarray(13));
    expect(Array.from(tensorToF32(parsed.tensors.get('f32')!))).toEqual(values);
    expect(Array.from(tensorToF32(parsed.tensors.get('bf16')!))).toEqual([1.5, -2.25]);
    expect(firstNonFinite({ ...parsed.tensors.get('f32')!, dtype: 'F32' })).toBeNull();
  });

  it('seeds change the weights deterministically', () => {
    const w = (seed: number) => makeTinyModel({ modelType: 'llama', seed }).files.get('model.safetensors')!;
    expect(Buffer.from(w(1)).equals(Buffer.from(w(1)))).toBe(true);
    expect(Buffer.from(w(1)).equals(Buffer.from(w(2)))).toBe(false);
  });

  it('gpt2 with and without the "transformer." prefix load to the same weights', async () => {
    const a = await loadModel((await tinyDir({ modelType: 'gpt2', seed: 4 })).src);
    const b = await loadModel((await tinyDir({ modelType: 'gpt2', seed: 4, gpt2Prefix: false, sharded: true })).src);
    expect(a.arch.layers[0]!.linears.map((l) => l.path)).toEqual(b.arch.layers[0]!.linears.map((l) => l.path));
    expect(b.arch.layers[0]!.linears[0]!.weightKey).toBe('h.0.attn.c_attn.weight');
    expect(a.arch.layers[0]!.linears[0]!.weightKey).toBe('transformer.h.0.attn.c_attn.weight');
    // Same seed, same tensor order of generation -> same values under both names.
    const va = tensorToF32(a.tensors.get('transformer.h.1.mlp.c_fc.weight')!);
    const vb = tensorToF32(b.tensors.get('h.1.mlp.c_fc.weight')!);
    expect(Buffer.from(va.buffer).equals(Buffer.from(vb.buffer))).toBe(true);
    expect(b.arch.lmHead).toBe('wte.weight');
  });

  it('missing tensor in a shard: names the shard file', async () => {
    const { src } = await tinyDir({
      modelType: 'llama',
      sharded: true,
      editTensors: (ts: TinyTensor[]) => ts.filter((t) => t.name !== 'model.layers.1.mlp.up_proj.weight'),
    });
    const e = await loadError(loadModel(src));
    expect(e).toBeInstanceOf(ModelWeightsError);
    expect(e.message).toMatch(
      /^model\.safetensors\.index\.json: missing tensor "model\.layers\.1\.mlp\.up_proj\.weight" expected by model_type "llama"/,
    );
  });

  it('shape mismatch in a shard: names the shard, key and shapes', async () => {
    const { src, m } = await tinyDir({
      modelType: 'qwen2',
      sharded: true,
      editTensors: (ts: TinyTensor[]) =>
        ts.map((t) =>
          t.name === 'model.layers.0.self_attn.k_proj.bias' ? { ...t, shape: [9], values: new Float32Array(9) } : t,
        ),
    });
    const index = JSON.parse(new TextDecoder().decode(m.files.get('model.safetensors.index.json')!));
    const shard = index.weight_map['model.layers.0.self_attn.k_proj.bias'];
    const e = await loadError(loadModel(src));
    expect(e.message).toBe(
      `${shard}: tensor "model.layers.0.self_attn.k_proj.bias" has shape [9], but model_type "qwen2" with this config.json expects [8].`,
    );
  });

  it('missing files are named', async () => {
    const cfg = await tinyDir({ modelType: 'llama' });
    await unlink(join(cfg.dir, 'config.json'));
    expect((await loadError(loadModel(cfg.src))).message).toMatch(
      /has no config\.json; expected a Hugging Face model folder/,
    );

    const tok = await tinyDir({ modelType: 'llama' });
    await unlink(join(tok.dir, 'tokenizer.json'));
    expect((await loadError(loadModel(tok.src))).message).toMatch(
      /has no tokenizer\.json; Tabtune needs the "fast" tokenizer file/,
    );

    const w = await tinyDir({ modelType: 'llama' });
    await unlink(join(w.dir, 'model.safetensors'));
    const e = await loadError(loadModel(w.src));
    expect(e).toBeInstanceOf(ModelLoadError);
    expect(e.message).toBe(`${w.dir} has neither model.safetensors nor model.safetensors.index.json.`);
    await writeFile(join(w.dir, 'pytorch_model.bin'), 'x');
    expect((await loadError(loadModel(w.src))).message).toMatch(/It has pytorch_model\.bin, which Tabtune cannot read/);

    const sh = await tinyDir({ modelType: 'llama', sharded: true });
    await unlink(join(sh.dir, 'model-00002-of-00002.safetensors'));
    expect((await loadError(loadModel(sh.src))).message).toBe(
      `${sh.dir} has no model-00002-of-00002.safetensors, a shard listed in model.safetensors.index.json.`,
    );
  });

  it('a shard without a tensor its index promises', async () => {
    const files = makeTinyModel({ modelType: 'llama', sharded: true }).files;
    const index = JSON.parse(new TextDecoder().decode(files.get('model.safetensors.index.json')!));
    index.weight_map['model.extra.weight'] = 'model-00001-of-00002.safetensors';
    files.set('model.safetensors.index.json', new TextEncoder().encode(JSON.stringify(index)));
    await expect(loadModel(new MemorySource(files))).rejects.toThrow(
      'model-00001-of-00002.safetensors: missing tensor "model.extra.weight", which model.safetensors.index.json says is in that shard.',
    );
  });

  it('optional files: no tokenizer_config/generation_config; chat_template.jinja picked up', async () => {
    const m = makeTinyModel({ modelType: 'qwen2' });
    const files = new Map(m.files);
    files.delete('generation_config.json');
    const tc = { ...m.tokenizerConfig };
    delete tc.chat_template;
    files.set('tokenizer_config.json', new TextEncoder().encode(JSON.stringify(tc)));
    files.set('chat_template.jinja', new TextEncoder().encode('{{ messages[0].content }}'));
    const loaded = await loadModel(new MemorySource(files));
    expect(loaded.generationConfig).toBeNull();
    expect(loaded.tokenizerConfig.chat_template).toBe('{{ messages[0].content }}');
    files.delete('tokenizer_config.json');
    expect((await loadModel(new MemorySource(files))).tokenizerConfig).toEqual({
      chat_template: '{{ messages[0].content }}',
    });
  });

  it('bad JSON, bad safetensors and unsupported dtypes are reported with the file', async () => {
    const m = makeTinyModel({ modelType: 'llama' });
    const badJson = new Map(m.files).set('config.json', new TextEncoder().encode('{oops'));
    await expect(loadModel(new MemorySource(badJson, 'bad'))).rejects.toThrow(/config\.json of bad is not valid JSON/);

    const truncated = new Map(m.files);
    const whole = m.files.get('model.safetensors')!;
    truncated.set('model.safetensors', whole.subarray(0, whole.byteLength - 100));
    await expect(loadModel(new MemorySource(truncated))).rejects.toThrow(
      /model\.safetensors: its header declares \d+ bytes, but the file has \d+; the file is truncated/,
    );

    // an int8 tensor where a weight should be
    const parsed = parseSafetensors(m.files.get('model.safetensors')!).tensors;
    const list = [...parsed].map(([name, t]) =>
      name === 'model.layers.0.mlp.down_proj.weight'
        ? { name, dtype: 'I8' as const, shape: t.shape, data: new Int8Array(numel(t.shape)) }
        : { name, dtype: t.dtype, shape: t.shape, data: t.data },
    );
    const quant = new Map(m.files).set('model.safetensors', writeSafetensors(list));
    await expect(loadModel(new MemorySource(quant))).rejects.toThrow(
      'model.safetensors: tensor "model.layers.0.mlp.down_proj.weight" is I8; Tabtune reads F32, F16 and BF16 weights, and bitsandbytes 4-bit NF4 ones',
    );
  });

  it('estimateModel: tied heads counted once, dtype from torch_dtype', async () => {
    const tied = estimateModel(
      (await loadModel(new MemorySource(makeTinyModel({ modelType: 'llama', dtype: 'BF16' }).files))).config,
    );
    const untied = estimateModel(
      (await loadModel(new MemorySource(makeTinyModel({ modelType: 'llama', tie: false }).files))).config,
    );
    expect(untied.params - tied.params).toBe(320 * 24);
    expect(tied.lmHeadParams).toBe(0);
    expect(untied.lmHeadParams).toBe(320 * 24);
    expect(tied.checkpointDtype).toBe('BF16');
    expect(tied.checkpointBytes).toBe(tied.params * 2);
  });
});
