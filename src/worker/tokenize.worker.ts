/**
 * A Web Worker that tokenizes dataset records for the GPU worker's engine (src/train/data/pool.ts).
 * Started by worker.ts (`new Worker(new URL('./tokenize.worker.ts', import.meta.url))`), several
 * at once: each holds its own copy of the model's tokenizer.
 */
/// <reference lib="webworker" />
import { type PoolRequest, servePool } from '../train/data/pool';

declare const self: DedicatedWorkerGlobalScope;

const serve = servePool((m, transfer) => self.postMessage(m, transfer));
self.onmessage = (e: MessageEvent<PoolRequest>) => serve(e.data);
