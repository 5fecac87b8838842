/**
 * Tokenizing a large dataset's records on other threads: a pool of workers (Web Workers in the
 * app, worker threads under Node: src/worker/tokenize.worker.ts, src/cli/tokenize-thread.ts), each
 * holding its own copy of the model's tokenizer. A job is a list of records plus the render
 * settings; the reply is the records' tokens as one encoded chunk (tokens.ts's `encodeChunk`, its
 * buffer transferred, not copied). Rendering is a pure function of the record, the tokenizer and
 * the settings, so a record tokenized in a worker has exactly the tokens it has on the calling
 * thread (test/train/pool.test.ts).
 *
 * Where it pays: the lazy regime (prepared.ts) sends the records a step needs, and those it
 * prefetches, here; the thread that drives the GPU then only reads bytes and decodes chunks.
 * A worker that cannot start or dies fails its jobs; prepared.ts then tokenizes on its own thread.
 */

import type { ModelConfig } from '../../model/config';
import { createTokenizer } from '../../model/tokenizer';
import type { DatasetRecord } from './records';
import type { RenderOptions } from './render';
import { type RecordTokens, decodeChunk, encodeChunk, tokenizeRecord } from './tokens';

/** The tokenizer's files as loaded (what createTokenizer takes). */
export interface TokenizerFiles {
  tokenizerJson: object;
  tokenizerConfig: object;
  config: ModelConfig;
}

export type PoolRequest =
  | { kind: 'setup'; files: TokenizerFiles }
  | { kind: 'tokenize'; id: number; records: DatasetRecord[]; render: RenderOptions; wide: boolean };

export type PoolReply =
  | { kind: 'ready' }
  | { kind: 'tokens'; id: number; bytes: Uint8Array }
  /** A job that failed; id -1: the tokenizer could not be made (the worker is of no use). */
  | { kind: 'error'; id: number; message: string };

/** One worker as the pool sees it (a Web Worker or a worker thread behind a small adapter). */
export interface PoolWorker {
  post(m: PoolRequest): void;
  /** Replies as they come; `onFail` when the worker could not start or died. */
  listen(onReply: (m: PoolReply) => void, onFail: (e: Error) => void): void;
  terminate(): void;
}

/** What prepared.ts asks of a pool. */
export interface RecordTokenizer {
  /** How many jobs can run at once (the number of workers). */
  readonly size: number;
  /** Whether a worker has its tokenizer yet (until then the caller tokenizes what it waits for itself). */
  readonly ready: boolean;
  tokenize(records: DatasetRecord[], render: RenderOptions, wide: boolean): Promise<RecordTokens[]>;
}

interface Slot {
  worker: PoolWorker;
  busy: number;
  ready: boolean;
  dead: Error | null;
}

export class TokenizerPool implements RecordTokenizer {
  private readonly slots: Slot[] = [];
  private readonly jobs = new Map<
    number,
    { slot: Slot; resolve: (t: RecordTokens[]) => void; reject: (e: Error) => void }
  >();
  private nextId = 0;

  /** Starts `size` workers, each loading the tokenizer from `files`. */
  constructor(
    spawn: () => PoolWorker,
    files: TokenizerFiles,
    readonly size: number,
  ) {
    for (let k = 0; k < size; k++) {
      const slot: Slot = { worker: spawn(), busy: 0, ready: false, dead: null };
      slot.worker.listen(
        (m) => this.reply(slot, m),
        (e) => this.fail(slot, e),
      );
      slot.worker.post({ kind: 'setup', files });
      this.slots.push(slot);
    }
  }

  get ready(): boolean {
    return this.slots.some((s) => s.ready && !s.dead);
  }

  tokenize(records: DatasetRecord[], render: RenderOptions, wide: boolean): Promise<RecordTokens[]> {
    const live = this.slots.filter((s) => !s.dead);
    if (!live.length) return Promise.reject(this.slots[0]?.dead ?? new Error('the tokenizer pool has no workers'));
    const slot = live.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = this.nextId++;
    slot.busy++;
    return new Promise((resolve, reject) => {
      this.jobs.set(id, { slot, resolve, reject });
      slot.worker.post({ kind: 'tokenize', id, records, render, wide });
    });
  }

  private reply(slot: Slot, m: PoolReply): void {
    if (m.kind === 'ready') {
      slot.ready = true;
      return;
    }
    if (m.kind === 'error' && m.id < 0) {
      this.fail(slot, new Error(m.message));
      return;
    }
    const job = this.jobs.get(m.id);
    if (!job) return;
    this.jobs.delete(m.id);
    job.slot.busy--;
    if (m.kind === 'tokens') job.resolve(decodeChunk(m.bytes));
    else job.reject(new Error(m.message));
  }

  private fail(slot: Slot, e: Error): void {
    slot.dead = e;
    for (const [id, job] of this.jobs) {
      if (job.slot !== slot) continue;
      this.jobs.delete(id);
      job.reject(e);
    }
    slot.worker.terminate();
  }

  /** Stops the workers; jobs still running fail. */
  close(): void {
    for (const slot of this.slots) if (!slot.dead) this.fail(slot, new Error('the tokenizer pool was closed'));
  }
}

/**
 * The worker's side: handles the pool's messages, replying with `post` (and the buffers to
 * transfer). Jobs run in the order they come, after the tokenizer is made.
 */
export function servePool(post: (m: PoolReply, transfer: ArrayBuffer[]) => void): (m: PoolRequest) => void {
  let tok: ReturnType<typeof createTokenizer> | null = null;
  let queue: Promise<void> = Promise.resolve();
  return (m) => {
    if (m.kind === 'setup') {
      tok = createTokenizer(m.files.tokenizerJson, m.files.tokenizerConfig, m.files.config);
      tok.then(
        () => post({ kind: 'ready' }, []),
        (e: unknown) => post({ kind: 'error', id: -1, message: (e as Error).message }, []),
      );
      return;
    }
    const made = tok;
    queue = queue.then(async () => {
      try {
        if (!made) throw new Error('the tokenizer worker got a job before its setup');
        const t = await made;
        const tokens = m.records.map((r) => tokenizeRecord(t, r, m.render, m.wide).tokens);
        const bytes = encodeChunk(tokens, m.wide);
        post({ kind: 'tokens', id: m.id, bytes }, [bytes.buffer as ArrayBuffer]);
      } catch (e) {
        post({ kind: 'error', id: m.id, message: (e as Error).message }, []);
      }
    });
  };
}
