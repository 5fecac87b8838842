/**
 * A LoftQ run through the engine as the app drives it (tiny bf16 llama, 16-bit frozen weights):
 * the adapter carries its backbone recipe; evaluation and generation with it run on the quantized
 * backbone (equal to the exported backbone folder loaded as the base with the plain adapter, and
 * not to the original weights), the base model gets its own weights back bit for bit after each;
 * the export ("merge" of a LoftQ adapter) is the PEFT files, base_model_name_or_path loftq-base,
 * plus loftq-base/ holding exactly the run's Q in the model's dtype and every other tensor as it was;
 * a resumed run ends bit-identical, also when the backbone was in place when it resumed.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { unzipSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import { DEFAULT_TRAIN } from '../../src/engine/defaults';
import { Engine } from '../../src/engine/engine';
import type { LoraSettings, SamplingSettings, TrainSettings } from '../../src/engine/types';
import { packHalf } from '../../src/gpu/half';
import { decodeLoftqBackbone } from '../../src/lora/loftq-backbone';
import { parseSafetensors } from '../../src/model/safetensors';
import { tinyCorpusJsonl } from '../fixtures/tiny-model';
import { getGpu } from '../helpers/gpu';
import { useTinyModelDirs } from '../helpers/tiny-dirs';

const dirs = useTinyModelDirs('tabtune-loftq-', ['llama'], { seed: 3, dtype: 'BF16' });
const DATA = tinyCorpusJsonl();

const LORA: LoraSettings = {
  r: 4,
  lora_alpha: 4,
  lora_dropout: 0,
  target_modules: [],
  use_rslora: false,
  init_lora_weights: 'loftq',
  loftq_config: { loftq_bits: 4, loftq_iter: 2 },
};
const TRAIN: TrainSettings = {
  ...DEFAULT_TRAIN,
  lr: 1e-2,
  steps: 6,
  epochs: 0,
  batch: 4,
  maxLen: 32,
  scheduler: 'constant',
  valFraction: 0,
  seed: 5,
  lossEvery: 1,
  packing: false,
};
const GREEDY: SamplingSettings = {
  maxNewTokens: 8,
  temperature: 0,
  topK: 0,
  topP: 1,
  repetitionPenalty: 1,
  seed: 1,
  chat: false,
};

async function engineOn(path: string): Promise<Engine> {
  const engine = new Engine(await getGpu());
  await engine.loadModel({ kind: 'dir', id: 'tiny-llama', path });
  await engine.loadDataset('corpus.jsonl', DATA, { maxLen: TRAIN.maxLen, valFraction: 0, seed: 0 });
  return engine;
}

describe('engine: LoftQ adapters on their backbone', () => {
  it('trains, evaluates and generates on the backbone, restores the base, exports adapter + loftq-base/', async () => {
    const engine = await engineOn(dirs.path('llama'));
    let other: Engine | null = null;
    try {
      const base0 = await engine.evaluate(null, 'all');
      const text0 = await engine.generate('the cat', null, GREEDY);
      const run = await engine.train(LORA, TRAIN);
      const files = run.adapter;
      expect(files.loftqBackbone).toBeDefined();
      const spec = decodeLoftqBackbone(files.loftqBackbone!);
      expect(spec.loftqIter).toBe(2);
      expect(spec.modules.length).toBe(run.quantizedBase!.size);
      expect(spec.modules.every((m) => m.prev !== null && m.dtype === 'bf16')).toBe(true);

      const tuned = await engine.evaluate({ key: 'loftq', files }, 'all');
      const tunedText = await engine.generate('the cat', { key: 'loftq', files }, GREEDY);
      // the base model is itself again (weights restored, KV cache started over)
      expect(await engine.evaluate(null, 'all')).toEqual(base0);
      expect((await engine.generate('the cat', null, GREEDY)).text).toBe(text0.text);
      // the same adapter without its backbone runs on the original weights: another loss
      const { loftqBackbone: _b, ...plain } = files;
      const onOriginal = await engine.evaluate({ key: 'plain', files: plain }, 'all');
      expect(onOriginal.loss).not.toBe(tuned.loss);
      // back and forth keeps the backbone's result
      expect(await engine.evaluate({ key: 'loftq', files }, 'all')).toEqual(tuned);

      // export: PEFT files + loftq-base/ with the run's Q
      const exported = await engine.mergeAdapter(files);
      const entries = unzipSync(new Uint8Array(await exported.zip.arrayBuffer()));
      const names = Object.keys(entries).sort();
      expect(names).toContain('tiny-llama-loftq/adapter_config.json');
      expect(names).toContain('tiny-llama-loftq/adapter_model.safetensors');
      expect(names).toContain('tiny-llama-loftq/loftq-base/model.safetensors');
      expect(names).toContain('tiny-llama-loftq/loftq-base/config.json');
      const cfg = JSON.parse(new TextDecoder().decode(entries['tiny-llama-loftq/adapter_config.json']!));
      expect(cfg.base_model_name_or_path).toBe('loftq-base');
      expect(cfg.loftq_config).toEqual({ loftq_bits: 4, loftq_iter: 2 });
      expect(entries['tiny-llama-loftq/adapter_model.safetensors']).toEqual(files.adapterModel);
      const st = parseSafetensors(entries['tiny-llama-loftq/loftq-base/model.safetensors']!);
      for (const [key, q] of run.quantizedBase!) {
        const t = st.tensors.get(key)!;
        expect(t.dtype).toBe('BF16');
        expect(new Uint16Array(t.data.slice().buffer)).toEqual(packHalf(q, 'bf16'));
      }
      expect(st.tensors.size).toBeGreaterThan(run.quantizedBase!.size); // embeddings, norms as they were

      // the exported folder as the base, with the plain adapter: what the engine's backbone gave
      const out = join(dirs.root(), 'exported');
      for (const [name, bytes] of Object.entries(entries)) {
        if (!name.startsWith('tiny-llama-loftq/loftq-base/')) continue;
        const p = join(out, name.slice('tiny-llama-loftq/loftq-base/'.length));
        await mkdir(dirname(p), { recursive: true });
        await writeFile(p, bytes);
      }
      other = await engineOn(out);
      expect(await other.evaluate({ key: 'plain', files: plain }, 'all')).toEqual(tuned);
      expect((await other.generate('the cat', { key: 'plain', files: plain }, GREEDY)).text).toBe(tunedText.text);
    } finally {
      engine.unload();
      other?.unload();
    }
  });

  it('a run resumed from its checkpoint ends bit-identical (adapter and backbone), also while a backbone was in place', async () => {
    const engine = await engineOn(dirs.path('llama'));
    try {
      const settings = { ...TRAIN, steps: 6, checkpointEvery: 2, shuffle: true };
      const blobs: Uint8Array[] = [];
      const full = await engine.train(LORA, settings, { onCheckpoint: (b) => void blobs.push(b) });
      // the app evaluates the finished adapter (its backbone goes in place), then resumes the run:
      // LoftQ starts again from the original weights, not from the backbone on the GPU
      await engine.evaluate({ key: 'full', files: full.adapter }, 'all');
      const resumed = await engine.train(LORA, settings, { resumeFrom: blobs[1]! });
      expect(Buffer.from(resumed.adapter.adapterModel).equals(Buffer.from(full.adapter.adapterModel))).toBe(true);
      expect(Buffer.from(resumed.adapter.loftqBackbone!).equals(Buffer.from(full.adapter.loftqBackbone!))).toBe(true);
    } finally {
      engine.unload();
    }
  });

  it('a LoftQ adapter is refused on a model loaded in 4 bits, naming what it needs', async () => {
    const engine = await engineOn(dirs.path('llama'));
    try {
      const run = await engine.train(LORA, { ...TRAIN, steps: 1 });
      await engine.loadModel({ kind: 'dir', id: 'tiny-llama', path: dirs.path('llama') }, undefined, {
        quantize: 'nf4',
      });
      await expect(engine.generate('the cat', { key: 'q', files: run.adapter }, GREEDY)).rejects.toThrow(
        /original 16-bit weights.*load the model with 16-bit frozen weights/,
      );
    } finally {
      engine.unload();
    }
  });
});
