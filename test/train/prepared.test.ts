import { describe, expect, it } from 'vitest';
import { type Batch, BatchSchedule } from '../../src/train/batch';
import { EXACT_RECORDS, LAZY_MAX_VAL, PreparedDataset } from '../../src/train/data/prepared';
import { textSource } from '../../src/train/data/source';
import { type RecordTokens, type TokenStore, decodeChunk, encodeChunk } from '../../src/train/data/tokens';
import { FakeTokenizer } from '../helpers/fake-tokenizer';

const alpaca = (i: number, output = `hello world ${i}`) => JSON.stringify({ instruction: `Say ${i}`, output });
const jsonl = (n: number, f: (i: number) => string = (i) => alpaca(i)) =>
  Array.from({ length: n }, (_, i) => f(i)).join('\n');

const rows = (b: Batch): number[][] =>
  Array.from({ length: b.B }, (_, r) => [...b.ids.subarray(r * b.S, (r + 1) * b.S)]);

async function open(text: string, opts: { maxLen?: number; valFraction?: number; cacheTokens?: number } = {}) {
  const tok = new FakeTokenizer();
  const data = await PreparedDataset.open(textSource(text), 'd.jsonl', tok, {
    maxLen: opts.maxLen ?? 64,
    valFraction: opts.valFraction ?? 0,
    seed: 9,
    exactRecords: 0,
    cacheTokens: opts.cacheTokens,
  });
  return { tok, data };
}

const schedule = (n: number, steps: number) =>
  new BatchSchedule(n, { batchSize: 3, gradAccum: 2, shuffle: true, seed: 9, steps });

describe('PreparedDataset, lazily tokenized', () => {
  it('tokenizes only what the preview sample and the batches need', async () => {
    const { tok, data } = await open(jsonl(500));
    expect(data.lazy).toBe(true);
    expect(data.summary).toMatchObject({ records: 500, trainRecords: 500, tokensEstimated: true, issueCount: 0 });
    expect(data.summary.trainTokens).toBeGreaterThan(0);
    const afterOpen = tok.encodeCalls;
    expect(afterOpen).toBeLessThan(64 * 3); // the 64-record sample, a few encodes each
    const s = schedule(data.train.length, 1);
    const batches = await data.stepBatches(s.next()!, { batchSize: 3, maxLen: 64 });
    expect(batches.map((b) => b.B)).toEqual([3, 3]);
    expect(tok.encodeCalls - afterOpen).toBeLessThanOrEqual(6 * 2);
  });

  it('keeps ids in 16 bits when the vocabulary allows, and in 32 bits past 65,536 ids', async () => {
    const { data } = await open(jsonl(10));
    const [ex] = await data.examples([0]);
    expect(ex!.ids).toBeInstanceOf(Uint16Array);
    const tok = Object.assign(new FakeTokenizer(), { vocabSize: 70_000 });
    const wide = await PreparedDataset.open(textSource(jsonl(10)), 'd.jsonl', tok, {
      maxLen: 64,
      valFraction: 0,
      seed: 1,
      exactRecords: 0,
    });
    expect((await wide.examples([0]))[0]!.ids).toBeInstanceOf(Uint32Array);
  });

  it('leaves a record that cannot be rendered out of its micro-batch and reports it once, with its line', async () => {
    const text = jsonl(200, (i) => (i === 150 ? alpaca(i, '') : i === 120 ? 'not json' : alpaca(i)));
    const { data } = await open(`${text}\n${JSON.stringify({ instruction: 'long '.repeat(40), output: 'x' })}`, {
      maxLen: 40,
    });
    // Line 121 is a parse issue (found by the index); the empty output (line 151) is one too.
    expect(data.summary.issues.map((i) => i.line)).toEqual([121, 151]);
    const last = data.index.count - 1; // the record whose prompt fills max length
    expect(data.index.line(last)).toBe(201);
    const exs = await data.examples([0, last, 1]);
    expect(exs.map((e) => e.line)).toEqual([1, 2]);
    await data.examples([last]);
    expect(data.lateIssues).toEqual([{ line: 201, message: expect.stringMatching(/max length 40/) as string }]);
  });

  it('keeps the windows of a long text record together, in batches of at most B rows', async () => {
    const paras = Array.from({ length: 3000 }, (_, i) => (i === 7 ? 'the '.repeat(100) : `hello world ${i}`));
    const tok = new FakeTokenizer({ chatTemplate: false });
    const data = await PreparedDataset.open(textSource(paras.join('\n\n')), 'notes.txt', tok, {
      maxLen: 16,
      valFraction: 0,
      seed: 1,
    });
    expect(data.lazy).toBe(true);
    const windows = await data.examples([7]);
    expect(windows.length).toBeGreaterThan(4);
    expect(new Set(windows.map((w) => w.line))).toEqual(new Set([15]));
    const step = { step: 1, epoch: 0, micro: [[6, 7, 8]] };
    const batches = await data.stepBatches(step, { batchSize: 3, maxLen: 16 });
    expect(batches.reduce((n, b) => n + b.B, 0)).toBe(windows.length + 2);
    expect(batches.every((b) => b.B <= 3)).toBe(true);
  });

  it('resumes exactly: a fresh reader restored to a saved position gives the remaining batches', async () => {
    const text = jsonl(300);
    const a = await open(text);
    const whole = schedule(a.data.train.length, 8);
    const all: number[][][] = [];
    let saved = whole.position;
    for (let s = whole.next(); s; s = whole.next()) {
      all.push((await a.data.stepBatches(s, { batchSize: 3, maxLen: 64 })).flatMap(rows));
      if (s.step === 3) saved = whole.position;
    }
    const b = await open(text);
    const resumed = schedule(b.data.train.length, 8);
    resumed.restore(saved);
    const rest: number[][][] = [];
    for (let s = resumed.next(); s; s = resumed.next())
      rest.push((await b.data.stepBatches(s, { batchSize: 3, maxLen: 64 })).flatMap(rows));
    expect(rest).toEqual(all.slice(3));
  });

  it('holds at most its token budget, and a record dropped from it is tokenized again to the same ids', async () => {
    const { data } = await open(jsonl(400), { cacheTokens: 200 });
    const first = await data.examples([5, 6, 7]);
    await data.examples([...Array(200).keys()].map((i) => i + 100));
    const cache = (data as unknown as { cache: { heldTokens: number } }).cache;
    expect(cache.heldTokens).toBeLessThanOrEqual(200 + 64);
    expect(await data.examples([5, 6, 7])).toEqual(first);
  });

  it('tokenizes ahead in the background: prefetched records are ready without encoding again', async () => {
    const { tok, data } = await open(jsonl(400));
    data.prefetch([200, 201, 202, 203]);
    for (let k = 0; k < 50 && tok.encodeCalls === 0; k++) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 50));
    const calls = tok.encodeCalls;
    await data.examples([200, 201, 202, 203]);
    expect(tok.encodeCalls).toBe(calls);
    await data.stopPrefetch();
  });

  it('caps the validation split of a large dataset and evaluates it in batches made as they are consumed', async () => {
    const { data } = await open(jsonl(EXACT_RECORDS * 3 + 10), { valFraction: 0.4 });
    expect(data.val).toHaveLength(LAZY_MAX_VAL);
    expect(data.train).toHaveLength(EXACT_RECORDS * 3 + 10 - LAZY_MAX_VAL);
    expect(new Set([...data.train, ...data.val]).size).toBe(EXACT_RECORDS * 3 + 10);
    let rows = 0;
    for await (const b of data.evalBatches('validation', { batchSize: 7, maxLen: 64 })) rows += b.B;
    expect(rows).toBe(LAZY_MAX_VAL);
  });
});

/** A TokenStore in memory (the app's is IndexedDB: test/store/token-cache.test.ts). */
class MemoryTokenStore implements TokenStore {
  readonly chunks = new Map<string, Uint8Array>();
  readonly used: string[] = [];
  failPuts = false;
  get(set: string, chunk: number): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.chunks.get(`${set}#${chunk}`));
  }
  put(set: string, chunk: number, bytes: Uint8Array): Promise<void> {
    if (this.failPuts) return Promise.reject(new Error('QuotaExceededError'));
    this.chunks.set(`${set}#${chunk}`, bytes);
    return Promise.resolve();
  }
  use(set: string): Promise<void> {
    this.used.push(set);
    return Promise.resolve();
  }
}

describe('tokenized chunks kept between runs', () => {
  const text = jsonl(3000, (i) =>
    i === 40
      ? JSON.stringify({ instruction: 'long '.repeat(40), output: 'x' })
      : i === 77
        ? alpaca(i, 'x'.repeat(200))
        : alpaca(i),
  );
  async function openWith(store: TokenStore, maxLen = 64) {
    const tok = new FakeTokenizer();
    const data = await PreparedDataset.open(textSource(text), 'd.jsonl', tok, {
      maxLen,
      valFraction: 0.1,
      seed: 3,
      store: { tokens: store, tokenizerKey: 'fake-tokenizer' },
    });
    return { tok, data };
  }
  async function firstSteps(data: PreparedDataset) {
    const s = new BatchSchedule(data.train.length, { batchSize: 4, gradAccum: 2, shuffle: true, seed: 3, steps: 3 });
    const out: number[][][] = [];
    for (let st = s.next(); st; st = s.next())
      out.push((await data.stepBatches(st, { batchSize: 4, maxLen: 64 })).flatMap(rows));
    return out;
  }

  it('a second run on the same bytes, tokenizer and settings reads its tokens back instead of tokenizing', async () => {
    const store = new MemoryTokenStore();
    const a = await openWith(store);
    const stepsA = await firstSteps(a.data);
    expect(store.chunks.size).toBeGreaterThan(4);
    const b = await openWith(store);
    expect(b.tok.encodeCalls).toBe(0);
    expect(await firstSteps(b.data)).toEqual(stepsA);
    expect(b.tok.encodeCalls).toBe(0);
    expect(b.data.summary).toEqual(a.data.summary);
    expect(store.used[0]).toBe(store.used[1]);
    // Another max length is another tokenized dataset.
    const c = await openWith(store, 32);
    expect(c.tok.encodeCalls).toBeGreaterThan(0);
    expect(store.used[2]).not.toBe(store.used[0]);
  });

  it('tokens read back equal tokens made afresh, issues included, and a store that cannot write changes nothing', async () => {
    const fresh = await open(text);
    const broken = new MemoryTokenStore();
    broken.failPuts = true;
    const a = await openWith(broken);
    const items = [0, 1, 40, 77, 2999, 16, 17];
    expect(await a.data.examples(items)).toEqual(await fresh.data.examples(items));
    const store = new MemoryTokenStore();
    await (await openWith(store)).data.examples(items);
    const b = await openWith(store);
    expect(await b.data.examples(items)).toEqual(await fresh.data.examples(items));
    // Record 40 (line 41) is in the preview sample: its issue is in the summary, read back like its tokens.
    expect(b.data.summary.issues.map((i) => i.line)).toEqual([41]);
  });

  it('chunks round-trip through bytes: 16- and 32-bit ids, masks, truncation and issues', () => {
    const ex = (ids: number[], line: number) => ({
      ids: Uint32Array.from(ids),
      counted: Uint8Array.from(ids.map((_, t) => (t > 1 ? 1 : 0))),
      line,
      truncated: line % 2 === 0,
      countedTokens: Math.max(0, ids.length - 2),
    });
    const records: RecordTokens[] = [
      { issue: null, examples: [ex([1, 70_000, 3], 1)] },
      { examples: [], issue: { line: 2, message: 'no tokens ✓' } },
      { issue: null, examples: [ex([5, 6, 7, 8, 9], 4), ex([10, 11], 4)] },
    ];
    expect(decodeChunk(encodeChunk(records, true))).toEqual(records);
    const narrow = records.map((r) =>
      r.issue
        ? r
        : { ...r, examples: r.examples.map((e) => ({ ...e, ids: Uint16Array.from(e.ids.map((i) => i % 60_000)) })) },
    );
    expect(decodeChunk(encodeChunk(narrow, false))).toEqual(narrow);
  });
});
