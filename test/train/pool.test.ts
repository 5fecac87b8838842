import { afterAll, describe, expect, it, vi } from 'vitest';
import { nodeTokenizerWorker } from '../../src/train/data/node-threads';
import { parseConfig } from '../../src/model/config';
import { createTokenizer } from '../../src/model/tokenizer';
import { BatchSchedule } from '../../src/train/batch';
import { type PoolWorker, type TokenizerFiles, TokenizerPool } from '../../src/train/data/pool';
import { PreparedDataset } from '../../src/train/data/prepared';
import type { DatasetRecord } from '../../src/train/data/records';
import { textSource } from '../../src/train/data/source';
import { tokenizeRecord } from '../../src/train/data/tokens';
import { makeTinyModel } from '../fixtures/tiny-model';

const model = makeTinyModel({ modelType: 'qwen2' });
const files: TokenizerFiles = {
  tokenizerJson: model.tokenizerJson,
  tokenizerConfig: model.tokenizerConfig,
  config: parseConfig(model.config),
};
const pools: TokenizerPool[] = [];
afterAll(() => pools.forEach((p) => p.close()));

/** Worker threads running bin/tokenize-thread.mjs, as the CLI starts them, once they have their tokenizer. */
async function threads(n: number): Promise<TokenizerPool> {
  const pool = new TokenizerPool(nodeTokenizerWorker, files, n);
  pools.push(pool);
  await vi.waitFor(() => expect(pool.ready).toBe(true), { timeout: 60_000, interval: 20 });
  return pool;
}

const alpaca = (i: number) =>
  JSON.stringify({
    instruction: `Say hello ${i}${i % 3 ? '' : ' and more ✓'}`,
    input: i % 4 ? '' : `to ${i}`,
    output: i === 37 ? '' : `hello world ${'the '.repeat(i % 5)}${i}`,
  });
const longPrompt = JSON.stringify({ instruction: 'hello world '.repeat(40), output: 'ok' });
const dataset = [...Array.from({ length: 120 }, (_, i) => alpaca(i)), longPrompt, 'not json', alpaca(200)].join('\n');

describe('TokenizerPool (worker threads)', () => {
  it('gives each record the tokens (or the issue) it gets on the calling thread', async () => {
    const tok = await createTokenizer(files.tokenizerJson, files.tokenizerConfig, files.config);
    const records: DatasetRecord[] = [
      { kind: 'alpaca', line: 1, instruction: 'Say hi', input: '', output: 'hello world' },
      { kind: 'alpaca', line: 2, instruction: 'hello '.repeat(80), input: '', output: 'x' }, // fills max length
      {
        kind: 'chat',
        line: 5,
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Hi ✓' },
          { role: 'assistant', content: 'hello world' },
        ],
      },
      { kind: 'text', line: 9, text: 'the world says hello '.repeat(30) }, // windows of max length
    ];
    const pool = await threads(2);
    for (const render of [
      { maxLen: 48, overflow: 'truncate' as const },
      { maxLen: 40, overflow: 'chunk' as const },
    ]) {
      const want = records.map((r) => tokenizeRecord(tok, r, render, false).tokens);
      expect(want.map((t) => (t.issue ? 'issue' : t.examples.length))).toEqual(
        render.overflow === 'chunk' ? [1, 'issue', 1, 10] : [1, 'issue', 1, 1],
      );
      const got = await Promise.all([pool.tokenize(records, render, false), pool.tokenize(records, render, true)]);
      expect(got[0]).toEqual(want);
      expect(got[1].map((t) => t.examples.map((e) => [...e.ids]))).toEqual(
        want.map((t) => t.examples.map((e) => [...e.ids])),
      );
      expect(got[1][0]!.examples[0]!.ids).toBeInstanceOf(Uint32Array);
    }
  });

  it('gives a lazily read dataset the same batches, issues and evaluation as tokenizing on this thread', async () => {
    const tok = await createTokenizer(files.tokenizerJson, files.tokenizerConfig, files.config);
    const open = (workers?: () => TokenizerPool) =>
      PreparedDataset.open(textSource(dataset), 'd.jsonl', tok, {
        maxLen: 64,
        valFraction: 0.1,
        seed: 5,
        exactRecords: 0,
        workers,
      });
    const pool = await threads(3);
    const jobs = vi.spyOn(pool, 'tokenize');
    const runs = [];
    for (const data of [await open(), await open(() => pool)]) {
      const s = new BatchSchedule(data.train.length, { batchSize: 4, gradAccum: 2, shuffle: true, seed: 5, epochs: 2 });
      const batches = [];
      data.prefetch(data.train.slice(0, 40));
      for (let step = s.next(); step; step = s.next())
        batches.push(...(await data.stepBatches(step, { batchSize: 4, maxLen: 64 })));
      for await (const b of data.evalBatches('validation', { batchSize: 4, maxLen: 64 })) batches.push(b);
      await data.stopPrefetch();
      runs.push({ summary: data.summary, batches, late: [...data.lateIssues].sort((a, b) => a.line - b.line) });
    }
    expect(runs[0]!.batches.length).toBeGreaterThan(50);
    expect(runs[0]!.late.map((i) => i.line)).toEqual([121]); // the prompt that fills max length
    expect(runs[1]).toEqual(runs[0]);
    expect(jobs.mock.calls.length).toBeGreaterThan(3);
  });

  it('falls back to tokenizing on this thread when the workers fail, with the same results', async () => {
    const tok = await createTokenizer(files.tokenizerJson, files.tokenizerConfig, files.config);
    // Workers that start, then die at their first job.
    const broken = (): PoolWorker => {
      let fail: (e: Error) => void = () => undefined;
      return {
        post: (m) => {
          if (m.kind === 'tokenize') setTimeout(() => fail(new Error('the worker died')), 0);
        },
        listen: (onReply, onFail) => {
          fail = onFail;
          onReply({ kind: 'ready' });
        },
        terminate: () => undefined,
      };
    };
    let pool: TokenizerPool | null = null;
    const settings = { maxLen: 64, valFraction: 0, seed: 2, exactRecords: 0 };
    const plain = await PreparedDataset.open(textSource(dataset), 'd.jsonl', tok, settings);
    const failing = await PreparedDataset.open(textSource(dataset), 'd.jsonl', tok, {
      ...settings,
      workers: () => (pool = new TokenizerPool(broken, files, 2)),
    });
    const items = [...plain.train.keys()];
    expect(await failing.examples(items)).toEqual(await plain.examples(items));
    expect(pool!.ready).toBe(false); // both died
    expect(await failing.examples([...items].reverse())).toEqual(await plain.examples([...items].reverse()));
  });
});
