/**
 * Merging an adapter into its model (src/lora/merge.ts, `tabtune merge`): the merged weights are
 * W + scale·B·A against a float64 computation (GPT-2's Conv1D in its [in, out] layout), every
 * other tensor is byte-identical, the folder is laid out as transformers saves it (one file or
 * shards + index), dtypes convert, and the merged model's loss on the GPU equals base + adapter's.
 */
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine';
import { loraScaleInfo } from '../../src/lora/config';
import { type MergeSink, mergeAdapter, MergeError } from '../../src/lora/merge';
import { exportPeft } from '../../src/lora/peft';
import { importPeft } from '../../src/lora/peft-import';
import { Rng } from '../../src/lora/init';
import { loadModel } from '../../src/model/load';
import { type SafeTensor, parseSafetensors, tensorToF32 } from '../../src/model/safetensors';
import { DirSource } from '../../src/model/source';
import { type TinyModelOptions, writeTinyModel, tinyCorpusJsonl } from '../fixtures/tiny-model';
import { getGpu } from '../helpers/gpu';
import { runCommand } from '../helpers/proc';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-merge-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Collects the merged files in memory, checking each one's declared size. */
function memorySink(): MergeSink & { files: Map<string, Uint8Array> } {
  const files = new Map<string, Uint8Array>();
  let cur: { name: string; size: number; parts: Uint8Array[] } | null = null;
  return {
    files,
    open: async (name, size) => void (cur = { name, size, parts: [] }),
    write: async (b) => void cur!.parts.push(b.slice()),
    close: async () => {
      const out = new Uint8Array(cur!.parts.reduce((n, p) => n + p.byteLength, 0));
      let at = 0;
      for (const p of cur!.parts) {
        out.set(p, at);
        at += p.byteLength;
      }
      expect(out.byteLength, `${cur!.name}: bytes written`).toBe(cur!.size);
      files.set(cur!.name, out);
      cur = null;
    },
  };
}

/** A model folder and a random adapter on some of its modules (rsLoRA for GPT-2). */
async function modelAndAdapter(name: string, o: TinyModelOptions, targets: RegExp) {
  const path = join(dir, name);
  await writeTinyModel(path, o);
  const loaded = await loadModel(new DirSource(path));
  const linears = loaded.arch.layers.flatMap((l) => l.linears).filter((l) => targets.test(l.name));
  const rng = new Rng(5);
  const r = 3;
  const gpt2 = o.modelType === 'gpt2';
  const adapter = exportPeft({
    config: {
      r,
      lora_alpha: 5,
      lora_dropout: 0,
      target_modules: [...new Set(linears.map((l) => l.name))],
      use_rslora: gpt2,
      bias: 'none',
      fan_in_fan_out: gpt2,
      init_lora_weights: true,
    },
    baseModel: name,
    modules: linears.map((l) => ({
      path: l.path,
      r,
      inF: l.inF,
      outF: l.outF,
      a: Float32Array.from({ length: r * l.inF }, () => rng.uniform(-0.5, 0.5)),
      b: Float32Array.from({ length: l.outF * r }, () => rng.uniform(-0.5, 0.5)),
    })),
    fanInFanOut: gpt2,
  });
  return { path, loaded, linears, adapter };
}

function allTensors(files: Map<string, Uint8Array>) {
  const out = new Map<string, { file: string; t: SafeTensor }>();
  for (const [f, bytes] of files) {
    if (!f.endsWith('.safetensors')) continue;
    const st = parseSafetensors(bytes, f);
    expect(st.metadata).toEqual({ format: 'pt' });
    for (const [k, t] of st.tensors) out.set(k, { file: f, t });
  }
  return out;
}

describe('merge', () => {
  for (const c of [
    {
      name: 'llama',
      o: { modelType: 'llama', dtype: 'BF16', sharded: true, seed: 2 } as TinyModelOptions,
      targets: /proj$/,
    },
    { name: 'gpt2', o: { modelType: 'gpt2', seed: 3 } as TinyModelOptions, targets: /^c_(attn|fc)$/ },
  ]) {
    it(`${c.name}: W + scale·B·A folded in, the rest unchanged, a transformers folder`, async () => {
      const { path, loaded, linears, adapter } = await modelAndAdapter(c.name, c.o, c.targets);
      const sink = memorySink();
      const r = await mergeAdapter(new DirSource(path), adapter, sink, { dtype: 'f32' });
      expect(r.merged).toBe(linears.length);
      expect([...sink.files.keys()].sort()).toEqual(
        [
          'config.json',
          'generation_config.json',
          'model.safetensors',
          'tokenizer.json',
          'tokenizer_config.json',
        ].sort(),
      );
      const config = JSON.parse(new TextDecoder().decode(sink.files.get('config.json')));
      expect(config.model_type).toBe(loaded.config.modelType);
      expect(config.dtype).toBe('float32');
      expect(sink.files.get('tokenizer.json')).toEqual(new Uint8Array(await readFile(join(path, 'tokenizer.json'))));
      const gen = JSON.parse(new TextDecoder().decode(sink.files.get('generation_config.json')));
      expect(gen.eos_token_id).toBeDefined();

      const merged = allTensors(sink.files);
      expect([...merged.keys()].sort()).toEqual([...loaded.tensors.keys()].sort());
      const imported = importPeft(adapter, linears);
      const byWeight = new Map(imported.modules.map((m) => [linears.find((l) => l.path === m.path)!.weightKey, m]));
      for (const [key, base] of loaded.tensors) {
        const got = merged.get(key)!.t;
        expect(got.dtype).toBe('F32');
        expect(got.shape).toEqual(base.shape);
        const w = tensorToF32(base);
        const m = byWeight.get(key);
        if (!m) {
          expect(tensorToF32(got)).toEqual(w);
          continue;
        }
        const lin = linears.find((l) => l.weightKey === key)!;
        expect(lin.transposed).toBe(c.name === 'gpt2');
        const { scale } = loraScaleInfo(imported.config, m);
        const v = tensorToF32(got);
        let worst = 0;
        for (let o = 0; o < m.outF; o++)
          for (let i = 0; i < m.inF; i++) {
            let d = 0;
            for (let k = 0; k < m.r; k++) d += m.b[o * m.r + k]! * m.a[k * m.inF + i]!;
            const at = lin.transposed ? i * m.outF + o : o * m.inF + i;
            worst = Math.max(worst, Math.abs(v[at]! - (w[at]! + scale * d)));
          }
        expect(worst, key).toBeLessThan(1e-6);
      }

      // The merged model's loss equals the base model's with the adapter (GPU, float32).
      const out = join(dir, `${c.name}-merged`);
      await mkdir(out, { recursive: true });
      for (const [f, bytes] of sink.files) await writeFile(join(out, f), bytes);
      const data = tinyCorpusJsonl(6);
      const engine = new Engine(await getGpu());
      try {
        await engine.loadModel({ kind: 'dir', id: c.name, path });
        await engine.loadDataset('d.jsonl', data, { maxLen: 64, valFraction: 0, seed: 0 });
        const withAdapter = await engine.evaluate({ key: 'a', files: adapter }, 'all');
        await engine.loadModel({ kind: 'dir', id: `${c.name}-merged`, path: out });
        await engine.loadDataset('d.jsonl', data, { maxLen: 64, valFraction: 0, seed: 0 });
        const mergedLoss = await engine.evaluate(null, 'all');
        expect(mergedLoss.tokens).toBe(withAdapter.tokens);
        expect(Math.abs(mergedLoss.loss - withAdapter.loss) / withAdapter.loss).toBeLessThan(1e-5);
      } finally {
        engine.unload();
      }
    });
  }

  it('shards past max-shard-size with an index as transformers writes it; bf16 / f16 output', async () => {
    const { path, loaded, adapter } = await modelAndAdapter(
      'llama-shards',
      { modelType: 'llama', seed: 4 },
      /^[qv]_proj$/,
    );
    const sink = memorySink();
    await mergeAdapter(new DirSource(path), adapter, sink, { dtype: 'bf16', maxShardBytes: 6_000 });
    const shards = [...sink.files.keys()].filter((f) => f.endsWith('.safetensors')).sort();
    expect(shards.length).toBeGreaterThan(2);
    shards.forEach((f, i) =>
      expect(f).toBe(
        `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`,
      ),
    );
    const indexText = new TextDecoder().decode(sink.files.get('model.safetensors.index.json'));
    const index = JSON.parse(indexText);
    expect(Object.keys(index)).toEqual(['metadata', 'weight_map']);
    expect(Object.keys(index.metadata)).toEqual(['total_parameters', 'total_size']);
    expect(indexText).toBe(`${JSON.stringify(index, null, 2)}\n`);
    const keys = Object.keys(index.weight_map);
    expect(keys).toEqual([...keys].sort());
    const merged = allTensors(sink.files);
    expect(keys.sort()).toEqual([...loaded.tensors.keys()].sort());
    let size = 0;
    let params = 0;
    for (const [k, { file, t }] of merged) {
      expect(index.weight_map[k]).toBe(file);
      expect(t.dtype).toBe('BF16');
      size += t.data.byteLength;
      params += t.shape.reduce((a, b) => a * b, 1);
    }
    expect(index.metadata.total_size).toBe(size);
    expect(index.metadata.total_parameters).toBe(params);
    for (const f of shards) {
      const st = parseSafetensors(sink.files.get(f)!, f);
      const bytes = [...st.tensors.values()].reduce((n, t) => n + t.data.byteLength, 0);
      if (st.tensors.size > 1) expect(bytes).toBeLessThanOrEqual(6_000);
    }
    expect(JSON.parse(new TextDecoder().decode(sink.files.get('config.json'))).dtype).toBe('bfloat16');
    // An unmerged tensor is its f32 value rounded to bf16.
    const emb = [...loaded.tensors.keys()].find((k) => k.endsWith('embed_tokens.weight'))!;
    const want = tensorToF32(loaded.tensors.get(emb)!);
    const got = tensorToF32(merged.get(emb)!.t);
    for (let i = 0; i < want.length; i += 97)
      expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual(Math.abs(want[i]!) / 128);

    const f16 = memorySink();
    await mergeAdapter(new DirSource(path), adapter, f16, { dtype: 'f16' });
    expect(allTensors(f16.files).get(emb)!.t.dtype).toBe('F16');
    // Without --dtype each tensor keeps its own.
    const same = memorySink();
    await mergeAdapter(new DirSource(path), adapter, same);
    expect(allTensors(same.files).get(emb)!.t.data).toEqual(loaded.tensors.get(emb)!.data);
  });

  it('refuses an adapter for another model, naming the tensor', async () => {
    const a = await modelAndAdapter('llama-a', { modelType: 'llama', seed: 1 }, /^q_proj$/);
    const b = await modelAndAdapter('gpt2-b', { modelType: 'gpt2', seed: 1 }, /^c_attn$/);
    await expect(mergeAdapter(new DirSource(b.path), a.adapter, memorySink())).rejects.toThrow(MergeError);
    await expect(mergeAdapter(new DirSource(b.path), a.adapter, memorySink())).rejects.toThrow(/does not fit/);
    expect(await readdir(dir)).toContain('gpt2-b');
  });

  it('tabtune merge writes the folder and reports what it did', async () => {
    const { path, adapter } = await modelAndAdapter('llama-cli', { modelType: 'llama', seed: 6 }, /^v_proj$/);
    const adapterDir = join(dir, 'adapter-cli');
    await mkdir(adapterDir, { recursive: true });
    await writeFile(join(adapterDir, 'adapter_config.json'), adapter.adapterConfig);
    await writeFile(join(adapterDir, 'adapter_model.safetensors'), adapter.adapterModel);
    const out = join(dir, 'cli-out');
    const bin = join(import.meta.dirname, '..', '..', 'bin', 'tabtune.mjs');
    const r = await runCommand(
      process.execPath,
      [
        bin,
        'merge',
        '--model',
        path,
        '--adapter',
        adapterDir,
        '--out',
        out,
        '--dtype',
        'bf16',
        '--max-shard-size',
        '30KB',
        '--json',
      ],
      dir,
    );
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(summary.merged).toBe(2);
    const files = (await readdir(out)).sort();
    expect(files).toContain('model.safetensors.index.json');
    expect(files.some((f) => f.includes('.tmp-'))).toBe(false);
    expect(files).toEqual([...summary.files].sort());
    const bad = await runCommand(
      process.execPath,
      [bin, 'merge', '--model', path, '--adapter', adapterDir, '--out', out, '--dtype', 'f8'],
      dir,
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--dtype/);
  });
});
