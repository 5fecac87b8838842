/**
 * Engine.exportRecipe (what the app's worker runs for "Run at scale"): the zip holds the recipe of
 * the loaded model and dataset, with exactly the examples and split the engine trains on.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unzipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_TRAIN } from '../../src/engine/defaults';
import { Engine } from '../../src/engine/engine';
import type { TrainSettings } from '../../src/engine/types';
import { writeTinyModel, tinyCorpusJsonl } from '../fixtures/tiny-model';
import { getGpu } from '../helpers/gpu';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-engine-recipe-'));
  await writeTinyModel(join(dir, 'gpt2'), { modelType: 'gpt2', seed: 3 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const DATA = tinyCorpusJsonl();

describe('Engine.exportRecipe', () => {
  it("zips the recipe with the engine's own split of the loaded dataset", async () => {
    const engine = new Engine(await getGpu());
    try {
      await engine.loadModel({ kind: 'dir', id: 'tiny-gpt2', path: join(dir, 'gpt2') });
      const train: TrainSettings = { ...DEFAULT_TRAIN, maxLen: 40, valFraction: 0.2, seed: 4, steps: 3 };
      const summary = await engine.loadDataset('story.jsonl', DATA, { maxLen: 40, valFraction: 0.2, seed: 4 });
      const lora = { r: 4, lora_alpha: 8, lora_dropout: 0, target_modules: ['c_attn'], use_rslora: false };
      const files = unzipSync(await engine.exportRecipe(lora, train));
      const text = (p: string) => new TextDecoder().decode(files[`tabtune-recipe/${p}`]);
      expect(Object.keys(files)).toContain('tabtune-recipe/train.py');
      expect(Object.keys(files)).toContain('tabtune-recipe/accelerate/fsdp.yaml');
      const run = JSON.parse(text('tabtune_run.json'));
      expect(run.model).toBe('tiny-gpt2');
      expect(run.lora).toMatchObject({ r: 4, target_modules: ['c_attn'], fan_in_fan_out: true });
      expect(run.data).toMatchObject({
        train_examples: summary.trainRecords,
        validation_examples: summary.valRecords,
        train_tokens: summary.trainTokens,
        train_counted_tokens: summary.countedTokens,
      });
      expect(text('data/train.jsonl').trim().split('\n')).toHaveLength(summary.trainRecords);
      expect(run.quantization).toBeNull();
      expect(Object.keys(files)).not.toContain('tabtune-recipe/bnb_4bit.json');
      // Settings that do not match the loaded dataset are refused, not silently exported.
      await expect(engine.exportRecipe(lora, { ...train, maxLen: 24 })).rejects.toThrow(/max length 40/);
    } finally {
      engine.unload();
    }
  });

  it('takes the frozen weights the model is loaded with: 4-bit NF4 becomes the bitsandbytes config', async () => {
    const engine = new Engine(await getGpu());
    try {
      const spec = { kind: 'dir', id: 'tiny-gpt2', path: join(dir, 'gpt2') } as const;
      await engine.loadModel(spec, undefined, { quantize: 'nf4', doubleQuant: false });
      const train: TrainSettings = { ...DEFAULT_TRAIN, maxLen: 40, steps: 3 };
      await engine.loadDataset('story.jsonl', DATA, { maxLen: 40, valFraction: 0, seed: 1 });
      const lora = { r: 4, lora_alpha: 8, lora_dropout: 0, target_modules: ['c_attn'], use_rslora: false };
      const unzip = async (o?: Parameters<Engine['exportRecipe']>[2]) => {
        const files = unzipSync(await engine.exportRecipe(lora, train, o));
        const text = (p: string) => new TextDecoder().decode(files[`tabtune-recipe/${p}`]);
        return {
          run: JSON.parse(text('tabtune_run.json')),
          bnb: files['tabtune-recipe/bnb_4bit.json'] && text('bnb_4bit.json'),
        };
      };
      const q = await unzip();
      expect(q.run.quantization).toEqual({ method: 'nf4', config: 'bnb_4bit.json' });
      expect(JSON.parse(q.bnb!)).toEqual({
        load_in_4bit: true,
        bnb_4bit_quant_type: 'nf4',
        bnb_4bit_use_double_quant: false,
      });
      // An explicit choice wins (null: 16-bit frozen weights in the recipe).
      const sixteen = await unzip({ quantize: null });
      expect(sixteen.run.quantization).toBeNull();
      expect(sixteen.bnb).toBeUndefined();
    } finally {
      engine.unload();
    }
  });
});
