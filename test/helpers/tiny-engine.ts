/**
 * The engine tests' common start: training settings for the tiny models and the tiny corpus
 * (32-token rows, batches of 4, a constant learning rate, no validation split), and an Engine on
 * the shared test device with a tiny model and the corpus loaded.
 */
import { Engine } from '../../src/engine/engine';
import { DEFAULT_TRAIN } from '../../src/engine/defaults';
import type { FrozenWeightsSettings, TrainSettings } from '../../src/engine/types';
import { type TinyModelType, tinyCorpusJsonl } from '../fixtures/tiny-model';
import { getGpu } from './gpu';
import type { TinyModelDirs } from './tiny-dirs';

export const TINY_TRAIN: TrainSettings = {
  ...DEFAULT_TRAIN,
  lr: 1e-2,
  steps: 80,
  epochs: 0,
  batch: 4,
  maxLen: 32,
  scheduler: 'constant',
  valFraction: 0,
  seed: 7,
  lossEvery: 1,
};

/** An Engine with tiny model `type` from `dirs` (id `tiny-TYPE`) and the tiny corpus (TINY_TRAIN's maxLen). */
export async function tinyEngine(
  dirs: TinyModelDirs,
  type: TinyModelType,
  frozen: FrozenWeightsSettings = {},
): Promise<Engine> {
  const engine = new Engine(await getGpu());
  await engine.loadModel({ kind: 'dir', id: `tiny-${type}`, path: dirs.path(type) }, undefined, frozen);
  const maxLen = TINY_TRAIN.maxLen;
  await engine.loadDataset('corpus.jsonl', tinyCorpusJsonl(), { maxLen, valFraction: 0, seed: 0 });
  return engine;
}
