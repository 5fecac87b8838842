/**
 * A dataset ready for training: indexed, split into training and validation, and tokenized when
 * and as far as needed. What the engine holds between loading a dataset and training on it.
 *
 * Two regimes, chosen by the number of usable records alone (so a second run, a resume or a cache
 * never changes which one applies):
 *  - exact (up to EXACT_RECORDS records): every record is tokenized at once, as the in-memory path
 *    always did; the items that are split, shuffled and batched are the usable examples (a text
 *    record longer than max length gives several), token counts are exact, and a record that
 *    cannot be rendered is an issue before training. test/train/batches-golden.test.ts pins its
 *    batches to those of the original path.
 *  - lazy (more records): the items are the records themselves. The split and each epoch's order
 *    are drawn over record indices (the same seeded functions), and a record is tokenized only when
 *    a batch needs it (or ahead of need, see `prefetch`), through a bounded TokenCache. A record
 *    that turns out unrenderable is left out of its micro-batch and reported as a late issue; the
 *    windows of a long text record stay together (a micro-batch of B records may run as several of
 *    at most B rows). Token counts in the summary are estimated from the first records, and the
 *    validation split is capped at LAZY_MAX_VAL records (evaluating 10% of a million records at
 *    every evaluation would dwarf the training).
 * In both, an item's examples are a pure function of the file, the tokenizer and the settings, so
 * batches are reproducible from the seed and a resumed run sees the same ones.
 */

import type { DatasetFormat, DatasetIssue, DatasetProvisional, DatasetSummary, ExamplePreview } from './types';
import {
  type Batch,
  type BatchShapeOptions,
  type ScheduledStep,
  makeBatch,
  paddedLength,
  splitTrainVal,
  valCountFor,
} from '../batch';
import { type RenderOptions, type TokenizerLike, examplePreview } from './render';
import type { RecordTokenizer } from './pool';
import type { DatasetRecord } from './records';
import type { RecordIndex } from './record-index';
import { ProvisionalSummary } from './provisional';
import { indexDataset } from './parquet';
import type { ColumnMapping } from './mapping';
import type { ByteSource } from './source';
import {
  CHUNK_RECORDS,
  type CompactExample,
  type RecordTokens,
  TokenCache,
  type TokenStore,
  decodeChunk,
  encodeChunk,
  needsWideIds,
  tokenizeRecord,
} from './tokens';

/** Up to this many usable records, a dataset is tokenized whole at once (the exact regime). */
export const EXACT_RECORDS = 2000;
/** The most validation records of a lazily tokenized dataset. */
export const LAZY_MAX_VAL = 1000;
/** Tokens the lazy regime keeps tokenized in memory (about 3 bytes each). */
const CACHE_TOKENS = 4 << 20;
/** Records tokenized up front in the lazy regime, for the preview and the token estimates. */
const SAMPLE_RECORDS = 64;

export class DatasetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatasetError';
  }
}

export interface PrepareOptions {
  format?: DatasetFormat | 'auto';
  /** Which columns hold the records (mapping.ts; a Parquet file's names suggest one). */
  mapping?: ColumnMapping | null;
  maxLen: number;
  valFraction: number;
  seed: number;
  /** Rendered examples to return for the preview (default 20). */
  previewCount?: number;
  /** Records up to which the whole dataset is tokenized at once (default EXACT_RECORDS). */
  exactRecords?: number;
  /** Tokens kept in the lazy regime's cache (default 4 Mi). */
  cacheTokens?: number;
  /**
   * Where the lazy regime keeps tokenized chunks between runs, with what names the tokenizer
   * (e.g. a hash of its files): a resume or a second run on the same bytes, tokenizer and settings
   * reads its tokens back instead of tokenizing again.
   */
  store?: { tokens: TokenStore; tokenizerKey: string };
  onProgress?: (phase: 'scan' | 'tokenize', done: number, total: number) => void;
  /** While the index pass runs: the summary so far (provisional.ts), at most every `provisionalMs` (250). */
  onProvisional?: (p: DatasetProvisional) => void;
  provisionalMs?: number;
  /** Bytes the index pass reads at a time (tests use small ones to see it between chunks). */
  scanChunkBytes?: number;
  /**
   * Workers that tokenize for the lazy regime (pool.ts), asked for only when a dataset is read
   * lazily; without them (or when they fail) records are tokenized on this thread.
   */
  workers?: () => RecordTokenizer | null;
  /**
   * The index of the same file read before with the same name and format (and a digest when there
   * is a store): only the split, the sample and the settings are redone.
   */
  index?: RecordIndex;
}

/** What batching needs besides the items: the shape options of makeBatch and the rows per batch. */
export interface BatchingOptions extends BatchShapeOptions {
  batchSize: number;
}

/** Yields to the event loop (so GPU completions and messages are handled between slices of work). */
const yieldNow = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

export class PreparedDataset {
  /** Items of the training split (example indices when exact, record indices when lazy). */
  readonly train: number[];
  readonly val: number[];
  readonly summary: DatasetSummary;
  /** Issues found while training (lazy regime: records tokenized only then). */
  readonly lateIssues: DatasetIssue[] = [];
  private readonly cache: TokenCache;
  private readonly reported: Uint8Array;
  private prefetchQueue: number[] = [];
  private prefetching: Promise<void> | null = null;
  /** Records being read or tokenized now (by a batch or by prefetch), so none is done twice. */
  private readonly inflight = new Map<number, Promise<RecordTokens>>();
  private workers: RecordTokenizer | null = null;
  /** The stored set's name and store (lazy regime with a store), else null. */
  private stored: { set: string; tokens: TokenStore } | null = null;

  private constructor(
    readonly index: RecordIndex,
    private readonly tok: TokenizerLike,
    private readonly render: RenderOptions,
    private readonly wide: boolean,
    /** All usable examples (exact regime), else null. */
    private readonly all: CompactExample[] | null,
    split: { train: number[]; val: number[] },
    summary: DatasetSummary,
    cacheTokens: number,
  ) {
    this.train = split.train;
    this.val = split.val;
    this.summary = summary;
    this.cache = new TokenCache(cacheTokens);
    this.reported = new Uint8Array(all ? 0 : index.count);
  }

  get lazy(): boolean {
    return this.all === null;
  }

  static async open(
    source: ByteSource,
    fileName: string,
    tok: TokenizerLike & { vocabSize?: number },
    opts: PrepareOptions,
  ): Promise<PreparedDataset> {
    const previewCount = opts.previewCount ?? 20;
    const renderOf = (container: string): RenderOptions => ({
      maxLen: opts.maxLen,
      overflow: container === 'txt' ? 'chunk' : 'truncate',
    });
    let index = opts.index;
    if (!index) {
      // The first records' preview and the counts so far, while the pass runs (the same records and
      // rendering as the summary below: the first SAMPLE_RECORDS, or all when tokenized whole).
      const early =
        opts.onProvisional &&
        new ProvisionalSummary(
          tok,
          (p) => renderOf(p.index.container),
          previewCount,
          Math.max(previewCount, SAMPLE_RECORDS),
          opts.onProvisional,
          opts.provisionalMs,
        );
      try {
        index = await indexDataset(source, fileName, {
          format: opts.format,
          mapping: opts.mapping,
          onProgress: (d, t) => opts.onProgress?.('scan', d, t),
          fingerprint: !!opts.store,
          onPartial: early ? (p) => early.offer(p) : undefined,
          chunkBytes: opts.scanChunkBytes,
        });
      } finally {
        await early?.settle();
      }
    }
    const render = renderOf(index.container);
    const wide = needsWideIds(tok.vocabSize);
    const issues = [...index.issues];
    let issueCount = index.issueCount;
    const noUsable = (): DatasetError => {
      issues.sort((a, b) => a.line - b.line);
      const first = issues[0] ? ` First problem: line ${issues[0].line}: ${issues[0].message}.` : '';
      return new DatasetError(`${fileName}: no usable records (${index.count} parsed).${first}`);
    };
    const base = { fileName, format: index.format, records: index.count };

    const cut = new CutExamples();
    if (index.count <= (opts.exactRecords ?? EXACT_RECORDS)) {
      const all: CompactExample[] = [];
      const preview: ExamplePreview[] = [];
      const step = 256;
      for (let from = 0; from < index.count; from += step) {
        const ids = Array.from({ length: Math.min(step, index.count - from) }, (_, k) => from + k);
        let at = from;
        for (const record of await index.read(ids)) {
          // A long text record reports progress piece by piece (a 3 MB one-line file is one record).
          const r = at++;
          const { tokens, full } = tokenizeRecord(tok, record, render, wide, (d, t) =>
            opts.onProgress?.('tokenize', r + d / t, index.count),
          );
          if (tokens.issue) {
            issues.push(tokens.issue);
            issueCount++;
          }
          cut.add(tokens.examples);
          for (const ex of full) if (preview.length < previewCount) preview.push(examplePreview(tok, ex));
          all.push(...tokens.examples);
        }
        opts.onProgress?.('tokenize', Math.min(from + step, index.count), index.count);
      }
      if (all.length === 0) throw noUsable();
      issues.sort((a, b) => a.line - b.line);
      const split = splitTrainVal([...all.keys()], { valFraction: opts.valFraction, seed: opts.seed });
      let trainTokens = 0;
      let countedTokens = 0;
      for (const i of split.train) {
        trainTokens += all[i]!.ids.length;
        countedTokens += all[i]!.countedTokens;
      }
      const summary: DatasetSummary = {
        ...base,
        trainRecords: split.train.length,
        valRecords: split.val.length,
        trainTokens,
        countedTokens,
        tokensEstimated: false,
        issues,
        issueCount,
        preview,
        truncated: cut.summary(),
      };
      return new PreparedDataset(index, tok, render, wide, all, split, summary, 0);
    }

    // Lazy: a sample of the first records for the preview and the estimates.
    const ds = new PreparedDataset(
      index,
      tok,
      render,
      wide,
      null,
      splitTrainVal([...Array(index.count).keys()], {
        valCount: Math.min(LAZY_MAX_VAL, valCountFor(index.count, opts.valFraction)),
        seed: opts.seed,
      }),
      // filled in below
      null as unknown as DatasetSummary,
      opts.cacheTokens ?? CACHE_TOKENS,
    );
    ds.workers = opts.workers?.() ?? null;
    if (opts.store && index.digest) {
      const set = [index.digest, opts.store.tokenizerKey, opts.maxLen, render.overflow, index.format, 'v1'].join('|');
      ds.stored = { set, tokens: opts.store.tokens };
      await opts.store.tokens.use(set).catch(() => undefined);
    }
    const sampleN = Math.min(index.count, Math.max(previewCount, SAMPLE_RECORDS));
    const sample = await ds.ensure([...Array(sampleN).keys()]);
    const preview: ExamplePreview[] = [];
    let sampleTokens = 0;
    let sampleCounted = 0;
    for (let i = 0; i < sampleN; i++) {
      const t = sample.get(i)!;
      if (t.issue) {
        issues.push(t.issue);
        issueCount++;
      }
      cut.add(t.examples);
      for (const ex of t.examples) {
        if (preview.length < previewCount) preview.push(examplePreview(tok, ex));
        sampleTokens += ex.ids.length;
        sampleCounted += ex.countedTokens;
      }
    }
    ds.lateIssues.length = 0; // the sample's issues are in the summary
    if (sampleTokens === 0 && sampleN === index.count) throw noUsable();
    issues.sort((a, b) => a.line - b.line);
    const perRecord = (n: number): number => Math.round((n / sampleN) * ds.train.length);
    (ds as { summary: DatasetSummary }).summary = {
      ...base,
      trainRecords: ds.train.length,
      valRecords: ds.val.length,
      trainTokens: perRecord(sampleTokens),
      countedTokens: perRecord(sampleCounted),
      tokensEstimated: true,
      issues,
      issueCount,
      preview,
      truncated: cut.summary(),
    };
    return ds;
  }

  /** Largest B·S a micro-batch of these options can have (what the trainer allocates for). */
  maxTokens(o: BatchingOptions, items: 'train' | 'validation' | 'all' = 'train'): number {
    const list = items === 'train' ? this.train : items === 'validation' ? this.val : [...this.train, ...this.val];
    if (!this.all) return Math.min(o.batchSize, list.length) * paddedLength(o.maxLen, o.maxLen, o.padMultiple ?? 8);
    let longest = 0;
    for (const i of list) longest = Math.max(longest, this.all[i]!.ids.length);
    return Math.min(o.batchSize, list.length) * paddedLength(longest, o.maxLen, o.padMultiple ?? 8);
  }

  /** The usable examples of items, in item order (tokenizing the records not held). */
  async examples(items: readonly number[]): Promise<CompactExample[]> {
    if (this.all) return items.map((i) => this.all![i]!);
    const got = await this.ensure(items);
    return items.flatMap((r) => got.get(r)!.examples);
  }

  /**
   * The tokens of these records: from the memory cache, else from the store (whole chunks), else
   * tokenized (whole chunks when there is a store, which then keeps them; by the workers when
   * there are some). A record already on its way is waited for, not done again.
   */
  private async ensure(records: readonly number[]): Promise<Map<number, RecordTokens>> {
    const got = new Map<number, RecordTokens>();
    const waiting = new Set<number>();
    for (const r of records) {
      if (got.has(r)) continue;
      const t = this.cache.get(r);
      if (t) got.set(r, t);
      else waiting.add(r);
    }
    if (!waiting.size) return got;
    const wait = [...waiting];
    this.start(wait.filter((r) => !this.inflight.has(r)));
    (await Promise.all(wait.map((r) => this.inflight.get(r)!))).forEach((t, k) => got.set(wait[k]!, t));
    return got;
  }

  /** Starts reading and tokenizing these records, in jobs (one per worker, or per stored chunk). */
  private start(fresh: number[]): void {
    if (!fresh.length) return;
    if (!this.stored) {
      const jobs = this.workers ? Math.min(this.workers.size, Math.ceil(fresh.length / 4)) : 1;
      const per = Math.ceil(fresh.length / jobs);
      for (let k = 0; k < fresh.length; k += per) {
        const ids = fresh.slice(k, k + per);
        this.track(ids, async () => this.tokenizeAll(await this.index.read(ids)));
      }
      return;
    }
    const { set, tokens: store } = this.stored;
    for (const c of new Set(fresh.map((r) => Math.floor(r / CHUNK_RECORDS)))) {
      const first = c * CHUNK_RECORDS;
      const ids = Array.from({ length: Math.min(CHUNK_RECORDS, this.index.count - first) }, (_, k) => first + k);
      this.track(ids, async () => {
        try {
          const bytes = await store.get(set, c);
          const tokens = bytes && decodeChunk(bytes);
          if (tokens && tokens.length === ids.length) return tokens;
        } catch {
          // an unreadable chunk is tokenized again
        }
        const tokens = await this.tokenizeAll(await this.index.read(ids));
        // Kept for the next run; a full disk only costs tokenizing again next time.
        store.put(set, c, encodeChunk(tokens, this.wide)).catch(() => undefined);
        return tokens;
      });
    }
  }

  /** Runs a job for these records: each gets its tokens (cached, issue reported) when it ends. */
  private track(ids: number[], job: () => Promise<RecordTokens[]>): void {
    const all = job().then((tokens) => tokens.map((t, k) => this.keep(ids[k]!, t)));
    const done = (): void => {
      for (const r of ids) this.inflight.delete(r);
    };
    all.then(done, done);
    ids.forEach((r, k) => {
      if (this.inflight.has(r)) return; // (a stored chunk holding a record already on its way)
      const one = all.then((t) => t[k]!);
      one.catch(() => undefined); // (the batch that needs it gets the error)
      this.inflight.set(r, one);
    });
  }

  /**
   * Records' tokens, by the workers when there are some and one has its tokenizer (a batch never
   * waits for workers to start), else on this thread.
   */
  private async tokenizeAll(records: DatasetRecord[]): Promise<RecordTokens[]> {
    if (this.workers?.ready) {
      try {
        return await this.workers.tokenize(records, this.render, this.wide);
      } catch {
        // (a worker that failed: the same tokens, made here)
      }
    }
    return records.map((r) => this.tokenize(r));
  }

  private tokenize(record: Parameters<typeof tokenizeRecord>[1]): RecordTokens {
    return tokenizeRecord(this.tok, record, this.render, this.wide).tokens;
  }

  /** Caches a record's tokens, and reports its issue the first time it is seen. */
  private keep(r: number, tokens: RecordTokens): RecordTokens {
    this.cache.set(r, tokens);
    if (tokens.issue && !this.reported[r]) {
      this.reported[r] = 1;
      this.lateIssues.push(tokens.issue);
    }
    return tokens;
  }

  /**
   * Tokenizes these items in the background (between other work on the event loop), so the batches
   * that need them find them ready. Items already held or queued are skipped.
   */
  prefetch(items: readonly number[]): void {
    if (this.all) return;
    for (const r of items) if (!this.cache.has(r) && !this.inflight.has(r)) this.prefetchQueue.push(r);
    // On this thread a few records at a time, between other work; with workers, a job for each.
    const per = this.workers ? 4 * this.workers.size : 4;
    this.prefetching ??= (async () => {
      while (this.prefetchQueue.length) {
        await yieldNow();
        const slice = this.prefetchQueue.splice(0, per).filter((r) => !this.cache.has(r));
        try {
          if (slice.length) await this.ensure(slice);
        } catch {
          // (a file that cannot be read now fails the batch that needs it, with its message)
          this.prefetchQueue = [];
        }
      }
      this.prefetching = null;
    })();
  }

  /** Stops background tokenization (the queued work is dropped). */
  async stopPrefetch(): Promise<void> {
    this.prefetchQueue = [];
    await this.prefetching;
  }

  /**
   * The micro-batches of a scheduled step over the training split: each micro-batch's items as
   * examples, packed into batches of at most batchSize rows (an item with no usable example adds
   * none; an item with several may add a batch).
   */
  async stepBatches(step: ScheduledStep, o: BatchingOptions): Promise<Batch[]> {
    const out: Batch[] = [];
    for (const positions of step.micro) out.push(...pack(await this.examples(positions.map((p) => this.train[p]!)), o));
    return out;
  }

  /** Evaluation batches over the validation split (or every item), made as they are consumed. */
  async *evalBatches(split: 'validation' | 'all', o: BatchingOptions): AsyncGenerator<Batch> {
    const items = split === 'all' ? [...this.train, ...this.val] : this.val;
    // Read ahead in runs of whole batches, so a large split is tokenized in pieces.
    const run = o.batchSize * Math.max(1, Math.floor(256 / o.batchSize));
    for (let k = 0; k < items.length; k += run) {
      const exs = await this.examples(items.slice(k, k + run));
      yield* pack(exs, o);
    }
  }
}

function pack(exs: CompactExample[], o: BatchingOptions): Batch[] {
  const out: Batch[] = [];
  for (let k = 0; k < exs.length; k += o.batchSize) out.push(makeBatch(exs.slice(k, k + o.batchSize), o));
  return out;
}

/** Examples cut to max length: how many, and the first lines they come from (the Data view and the CLI warn). */
class CutExamples {
  private examples = 0;
  private readonly lines: number[] = [];
  add(examples: readonly CompactExample[]): void {
    for (const ex of examples) {
      if (!ex.truncated) continue;
      this.examples++;
      if (this.lines.length < 10 && !this.lines.includes(ex.line)) this.lines.push(ex.line);
    }
  }
  summary(): DatasetSummary['truncated'] {
    return { examples: this.examples, lines: [...this.lines].sort((a, b) => a - b) };
  }
}
