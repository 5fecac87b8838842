// A run that "succeeds" with a broken adapter says so: weights that ran away (--lr 1e9 without
// clipping saved weights near 1e9 without a word) and a final validation loss above the base model's.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_TRAIN } from '../../src/engine/defaults';
import { Engine } from '../../src/engine/engine';
import type { LoraSettings, TrainSettings } from '../../src/engine/types';
import { writeTinyModel, tinyCorpusJsonl } from '../fixtures/tiny-model';
import { getGpu } from '../helpers/gpu';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
let dir = '';
let engine: Engine;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-warn-'));
  await writeTinyModel(join(dir, 'm'), { modelType: 'llama', dtype: 'F32', seed: 5 });
  engine = new Engine(await getGpu());
  await engine.loadModel({ kind: 'dir', id: 'm', path: join(dir, 'm') });
});
afterAll(async () => {
  engine?.unload();
  await rm(dir, { recursive: true, force: true });
});

const DATA = tinyCorpusJsonl();
const LORA: LoraSettings = { r: 4, lora_alpha: 8, lora_dropout: 0, target_modules: 'all-linear', use_rslora: false };
const TRAIN: TrainSettings = {
  ...DEFAULT_TRAIN,
  steps: 4,
  epochs: 0,
  batch: 2,
  maxLen: 32,
  scheduler: 'constant',
  warmup: 0,
  seed: 1,
  lossEvery: 1,
};

describe('warnings on finished runs', () => {
  it('weights that ran away (huge learning rate, no clipping) are reported', async () => {
    await engine.loadDataset('c.jsonl', DATA, { maxLen: 32, valFraction: 0, seed: 0 });
    const res = await engine.train(LORA, { ...TRAIN, lr: 1e6, maxGradNorm: 0, valFraction: 0 });
    expect(res.warnings.join('\n')).toMatch(
      /^The adapter's weights ran away: model\.layers\.\d+\.\S+\.lora_[AB] holds [\d.e+]+ .*learning rate \(1000000\) is probably far too high and gradient clipping is off/,
    );
    expect(res.baseValLoss).toBeNull();
  });

  it('a final validation loss above the base model is reported with both numbers', async () => {
    // A far too large learning rate makes the shipped demo model (stories260K) worse on held-out
    // questions.
    const demo = new Engine(await getGpu());
    try {
      await demo.loadModel({ kind: 'dir', id: 'demo', path: join(ROOT, 'public/models/stories260K') });
      const qa = await readFile(join(ROOT, 'public/data/demo-qa.jsonl'), 'utf8');
      await demo.loadDataset('demo-qa.jsonl', qa, { maxLen: 64, valFraction: 0.3, seed: 0 });
      const res = await demo.train(LORA, {
        ...TRAIN,
        maxLen: 64,
        steps: 3,
        lr: 1,
        valFraction: 0.3,
        maxGradNorm: 1,
      });
      expect(res.finalValLoss!).toBeGreaterThan(res.baseValLoss!);
      expect(res.warnings.join('\n')).toContain(
        `The final validation loss (${res.finalValLoss!.toFixed(4)}) is above the base model's (${res.baseValLoss!.toFixed(4)})`,
      );
    } finally {
      demo.unload();
    }
  });

  it('a sound run has no warnings', async () => {
    await engine.loadDataset('c.jsonl', DATA, { maxLen: 32, valFraction: 0.3, seed: 0 });
    const res = await engine.train(LORA, { ...TRAIN, steps: 6, lr: 1e-3, valFraction: 0.3, maxGradNorm: 1 });
    expect(res.finalValLoss!).toBeLessThan(res.baseValLoss!);
    expect(res.warnings).toEqual([]);
  });
});
