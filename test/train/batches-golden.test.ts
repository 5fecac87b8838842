/**
 * The batches a dataset gives for a seed are pinned: test/fixtures/batches-golden.json holds, for a
 * few small datasets (bad lines, records that cannot be rendered, text chunked into windows, every
 * container), the summary counts and a fingerprint of every micro-batch of every step and of the
 * validation batches, as the data path computed them before datasets were read lazily. The current
 * data path must reproduce them exactly (same split, same order, same padding, same loss masks).
 *
 * Regenerate (only when a change of batches is intended): UPDATE_GOLDEN=1 npx vitest run test/train/batches-golden.test.ts
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { type Batch, BatchSchedule } from '../../src/train/batch';
import { PreparedDataset } from '../../src/train/data/prepared';
import { textSource } from '../../src/train/data/source';
import { FakeTokenizer } from '../helpers/fake-tokenizer';

const FIXTURE = new URL('../fixtures/batches-golden.json', import.meta.url);

interface Case {
  name: string;
  fileName: string;
  content: string;
  chatTemplate: boolean;
  addBos?: boolean;
  format?: 'auto' | 'text' | 'alpaca' | 'chat';
  maxLen: number;
  valFraction: number;
  seed: number;
  batch: number;
  gradAccum: number;
  shuffle: boolean;
  steps?: number;
  epochs?: number;
}

const alpacaLines = Array.from({ length: 23 }, (_, i) =>
  JSON.stringify({
    instruction: `Say hello ${i}${i % 3 === 0 ? ' with the world' : ''}`,
    input: i % 4 === 0 ? `in ${'x'.repeat(i % 5)}` : '',
    output: `hello${' world'.repeat(1 + (i % 3))} ${i}`,
  }),
);
alpacaLines.splice(4, 0, '{"instruction": "broken"'); // invalid JSON
alpacaLines.splice(9, 0, '{"instruction": "no output"}'); // not an Alpaca record
alpacaLines.splice(13, 0, ''); // blank line
alpacaLines.splice(15, 0, JSON.stringify({ instruction: 'long '.repeat(50), output: 'short' })); // prompt fills maxLen

const chatArray = JSON.stringify(
  Array.from({ length: 14 }, (_, i) => ({
    messages: [
      ...(i % 5 === 0 ? [{ role: 'system', content: 'Be brief.' }] : []),
      { role: 'user', content: `What is ${i}?` },
      { role: 'assistant', content: `It is ${i}${' the'.repeat(i % 4)}.` },
      ...(i % 3 === 0
        ? [
            { role: 'user', content: 'And then?' },
            { role: 'assistant', content: 'hello world' },
          ]
        : []),
    ],
  })),
  null,
  1,
);

const paragraphs = Array.from({ length: 17 }, (_, i) =>
  i % 6 === 2 ? `A long paragraph ${i}: ${'the thing '.repeat(12)}end.` : `Paragraph ${i} says hello world.`,
).join('\n\n');

const csv = ['instruction,input,output', ...Array.from({ length: 12 }, (_, i) => `"Add ${i}, please",${i},"=${i + i}"`)]
  .concat(['only,two'])
  .join('\n');

const CASES: Case[] = [
  {
    name: 'alpaca jsonl, chat template, split, shuffled epochs',
    fileName: 'a.jsonl',
    content: alpacaLines.join('\n'),
    chatTemplate: true,
    maxLen: 64,
    valFraction: 0.2,
    seed: 7,
    batch: 3,
    gradAccum: 2,
    shuffle: true,
    epochs: 2,
  },
  {
    name: 'alpaca jsonl, Alpaca template, a prompt that fills max length',
    fileName: 'a.jsonl',
    content: alpacaLines.join('\n'),
    chatTemplate: false,
    addBos: true,
    maxLen: 200,
    valFraction: 0.1,
    seed: 3,
    batch: 4,
    gradAccum: 1,
    shuffle: true,
    steps: 9,
  },
  {
    name: 'chat JSON array',
    fileName: 'c.json',
    content: chatArray,
    chatTemplate: true,
    maxLen: 48,
    valFraction: 0.25,
    seed: 11,
    batch: 2,
    gradAccum: 3,
    shuffle: true,
    epochs: 1.5,
  },
  {
    name: 'plain text paragraphs chunked into windows',
    fileName: 'notes.txt',
    content: paragraphs,
    chatTemplate: false,
    maxLen: 16,
    valFraction: 0.1,
    seed: 5,
    batch: 4,
    gradAccum: 1,
    shuffle: true,
    epochs: 2,
  },
  {
    name: 'csv, file order',
    fileName: 'd.csv',
    content: csv,
    chatTemplate: true,
    maxLen: 32,
    valFraction: 0,
    seed: 1,
    batch: 5,
    gradAccum: 1,
    shuffle: false,
    steps: 4,
  },
];

/** FNV-1a over the micro-batch's arrays: equal fingerprints mean equal batches. */
function fingerprint(b: Batch): string {
  let h = 0x811c9dc5;
  for (const arr of [b.ids, b.targets, b.positions]) {
    for (let i = 0; i < arr.length; i++) {
      h ^= arr[i]! & 0xffff;
      h = Math.imul(h, 0x01000193) >>> 0;
      h ^= arr[i]! >>> 16;
      h = Math.imul(h, 0x01000193) >>> 0;
    }
  }
  return `${b.B}x${b.S}:${b.counted}:${h.toString(16)}`;
}

interface Result {
  summary: {
    records: number;
    trainRecords: number;
    valRecords: number;
    trainTokens: number;
    countedTokens: number;
    issueLines: number[];
  };
  steps: { step: number; epoch: number; micro: string[] }[];
  val: string[];
}

/** The data path under test: file text -> summary, training steps and validation batches. */
async function run(c: Case, exactRecords?: number): Promise<Result> {
  const tok = new FakeTokenizer({ chatTemplate: c.chatTemplate, addBos: c.addBos });
  const data = await PreparedDataset.open(textSource(c.content), c.fileName, tok, {
    format: c.format,
    maxLen: c.maxLen,
    valFraction: c.valFraction,
    seed: c.seed,
    exactRecords,
  });
  const schedule = new BatchSchedule(data.train.length, {
    batchSize: c.batch,
    gradAccum: c.gradAccum,
    shuffle: c.shuffle,
    seed: c.seed,
    steps: c.steps,
    epochs: c.epochs,
  });
  const shape = { batchSize: c.batch, maxLen: c.maxLen, padId: tok.padTokenId ?? 0 };
  const steps: Result['steps'] = [];
  for (let s = schedule.next(); s; s = schedule.next()) {
    steps.push({ step: s.step, epoch: s.epoch, micro: (await data.stepBatches(s, shape)).map(fingerprint) });
  }
  const val: string[] = [];
  for await (const b of data.evalBatches('validation', { batchSize: c.batch, maxLen: c.maxLen }))
    val.push(fingerprint(b));
  const sum = data.summary;
  return {
    summary: {
      records: sum.records,
      trainRecords: sum.trainRecords,
      valRecords: sum.valRecords,
      trainTokens: sum.trainTokens,
      countedTokens: sum.countedTokens,
      issueLines: sum.issues.map((i) => i.line),
    },
    steps,
    val,
  };
}

describe('batches for a seed are those of the pinned data path', () => {
  const update = !!process.env.UPDATE_GOLDEN;
  const golden = update ? {} : (JSON.parse(readFileSync(FIXTURE, 'utf8')) as Record<string, Result>);
  const fresh: Record<string, Result> = {};
  afterAll(() => {
    if (update) writeFileSync(FIXTURE, `${JSON.stringify(fresh, null, 1)}\n`);
  });
  for (const c of CASES) {
    it(c.name, async () => {
      const r = await run(c);
      fresh[c.name] = r;
      expect(r.steps.length).toBeGreaterThan(1);
      if (!update) expect(r).toEqual(golden[c.name]);
    });
  }

  // Read lazily (records tokenized when a batch needs them), data whose every record renders to
  // one example gives the same batches; only the token counts become estimates.
  for (const name of ['chat JSON array', 'csv, file order']) {
    it(`${name}, tokenized lazily`, async () => {
      const want = golden[name]!;
      const r = await run(
        CASES.find((c) => c.name === name)!,
        0,
      );
      expect(r.steps).toEqual(want.steps);
      expect(r.val).toEqual(want.val);
      expect(r.summary).toMatchObject({
        records: want.summary.records,
        trainRecords: want.summary.trainRecords,
        valRecords: want.summary.valRecords,
        issueLines: want.summary.issueLines,
      });
    });
  }
});
