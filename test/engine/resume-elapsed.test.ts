// "elapsed" of a resumed run goes on from its checkpoint (it restarted at 0 on resume); before its
// first step a run says where it starts (onStage), so the app is not blank while kernels compile.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DEFAULT_TRAIN } from '../../src/engine/defaults';
import { Engine } from '../../src/engine/engine';
import type { TrainProgress, TrainStage } from '../../src/engine/types';
import { decodeCheckpoint } from '../../src/train/checkpoint';
import { writeTinyModel, tinyCorpusJsonl } from '../fixtures/tiny-model';
import { getGpu } from '../helpers/gpu';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-elapsed-'));
  await writeTinyModel(join(dir, 'm'), { modelType: 'llama', seed: 4 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

it('a resumed run reports the elapsed time of the whole run, counted from its checkpoint', async () => {
  const engine = new Engine(await getGpu());
  try {
    await engine.loadModel({ kind: 'dir', id: 'm', path: join(dir, 'm') });
    const data = tinyCorpusJsonl();
    await engine.loadDataset('c.jsonl', data, { maxLen: 32, valFraction: 0, seed: 0 });
    const lora = { r: 4, lora_alpha: 8, lora_dropout: 0, target_modules: ['q_proj'], use_rslora: false };
    const train = { ...DEFAULT_TRAIN, steps: 6, epochs: 0, batch: 2, maxLen: 32, valFraction: 0, checkpointEvery: 3 };
    let blob: Uint8Array | null = null;
    let atCheckpoint = 0;
    const first: TrainProgress[] = [];
    const stages: (TrainStage & { before: number })[] = [];
    await engine.train(lora, train, {
      onStage: (st) => stages.push({ ...st, before: first.length }),
      onProgress: (p) => first.push(p),
      onCheckpoint: async (b, step) => {
        if (step === 3) {
          blob = b;
          atCheckpoint = first.at(-1)!.elapsedSeconds;
        }
      },
    });
    const saved = decodeCheckpoint(blob!).meta.elapsedSeconds!;
    expect(saved).toBeGreaterThanOrEqual(atCheckpoint);
    const resumed: TrainProgress[] = [];
    const res = await engine.train(lora, train, {
      resumeFrom: blob!,
      onStage: (st) => stages.push({ ...st, before: resumed.length }),
      onProgress: (p) => resumed.push(p),
    });
    expect(stages).toEqual([
      { stage: 'first-step', step: 0, totalSteps: 6, before: 0 },
      { stage: 'first-step', step: 3, totalSteps: 6, before: 0 },
    ]);
    expect(resumed[0]!.step).toBe(4);
    expect(resumed[0]!.elapsedSeconds).toBeGreaterThan(saved);
    expect(res.seconds).toBeGreaterThan(saved);
  } finally {
    engine.unload();
  }
});
