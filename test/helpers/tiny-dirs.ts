/**
 * Tiny models on disk for a test file: written once in beforeAll under a fresh temp folder, one
 * sub-folder per model type, and removed in afterAll.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { type TinyModelOptions, type TinyModelType, writeTinyModel } from '../fixtures/tiny-model';

export interface TinyModelDirs {
  /** The temp folder (for further files of the test). */
  root(): string;
  /** The folder of one of the model types written. */
  path(t: TinyModelType): string;
}

export function useTinyModelDirs(
  prefix: string,
  types: readonly TinyModelType[],
  opts: Omit<TinyModelOptions, 'modelType'> = {},
): TinyModelDirs {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), prefix));
    for (const t of types) await writeTinyModel(join(dir, t), { ...opts, modelType: t });
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  return {
    root: () => dir,
    path: (t) => {
      if (!types.includes(t)) throw new Error(`useTinyModelDirs: no ${t} model was written (have ${types.join(', ')})`);
      return join(dir, t);
    },
  };
}
