/**
 * Tokenizer workers under Node (the CLI's and the data benchmark's): worker threads running
 * bin/tokenize-thread.mjs, one per core but the one that drives the GPU (at most 4), for the
 * engine's TokenizerPool (pool.ts). Node only: nothing the browser loads imports it.
 */

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { PoolReply, PoolWorker } from './pool';

const THREAD = new URL('../../../bin/tokenize-thread.mjs', import.meta.url);

/**
 * Workers to start: TABTUNE_DATA_WORKERS when set (0: tokenize on the main thread), else the cores
 * but one, at most 4 (none on a single core).
 */
export function tokenizerThreadCount(env = process.env.TABTUNE_DATA_WORKERS): number {
  const given = env === undefined || env === '' ? NaN : Number(env);
  if (Number.isInteger(given) && given >= 0) return Math.min(given, 64);
  return Math.max(0, Math.min(4, availableParallelism() - 1));
}

export function nodeTokenizerWorker(): PoolWorker {
  const w = new Worker(THREAD);
  return {
    post: (m) => w.postMessage(m),
    listen(onReply, onFail) {
      w.on('message', (m: PoolReply) => onReply(m));
      w.on('error', onFail);
      w.on('exit', (code) => onFail(new Error(`the tokenizer thread stopped (exit code ${code})`)));
    },
    terminate: () => void w.terminate(),
  };
}
