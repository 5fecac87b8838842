/**
 * The early summary sent while a dataset's index pass runs (src/train/data/provisional.ts): it
 * arrives before the pass ends, its preview is the final preview's first examples, and its counts
 * are at most the final ones, in every container and in both regimes (tokenized whole, lazily).
 */
import { describe, expect, it } from 'vitest';
import type { DatasetProvisional } from '../../src/engine/types';
import { PreparedDataset } from '../../src/train/data/prepared';
import { textSource } from '../../src/train/data/source';
import { FakeTokenizer } from '../helpers/fake-tokenizer';

const alpaca = (i: number, output = `hello world ${i}`) => JSON.stringify({ instruction: `Say ${i}`, output });

async function openWatched(
  name: string,
  text: string,
  opts: { exactRecords?: number; previewCount?: number; chatTemplate?: boolean } = {},
) {
  const seen: { p: DatasetProvisional; scanDone: number }[] = [];
  let scanDone = 0;
  const data = await PreparedDataset.open(
    textSource(text),
    name,
    new FakeTokenizer(opts.chatTemplate === false ? { chatTemplate: false } : {}),
    {
      maxLen: 24,
      valFraction: 0.1,
      seed: 3,
      exactRecords: opts.exactRecords,
      previewCount: opts.previewCount ?? 12,
      scanChunkBytes: 512,
      provisionalMs: 0,
      onProgress: (phase, done) => {
        if (phase === 'scan') scanDone = done;
      },
      onProvisional: (p) => seen.push({ p, scanDone }),
    },
  );
  return { data, seen };
}

function expectConsistent(seen: { p: DatasetProvisional }[], data: PreparedDataset): void {
  expect(seen.length).toBeGreaterThan(1);
  const final = data.summary;
  let records = 0;
  for (const { p } of seen) {
    // Counts grow and stay at most the final ones.
    expect(p.records).toBeGreaterThanOrEqual(records);
    records = p.records;
    expect(p.records).toBeLessThanOrEqual(final.records);
    expect(p.issueCount).toBeLessThanOrEqual(final.issueCount);
    expect(p.format).toBe(final.format);
    // The preview is the final preview's first examples.
    expect(p.preview).toEqual(final.preview.slice(0, p.preview.length));
    for (const i of p.issues) expect(final.issues).toContainEqual(i);
  }
  // The first arrived with only part of the file read.
  expect(seen[0]!.p.bytesRead).toBeLessThan(seen[0]!.p.bytesTotal);
  expect(seen[0]!.p.records).toBeLessThan(final.records);
  expect(seen[0]!.p.preview.length).toBeGreaterThan(0);
}

describe('early summary while the index pass runs', () => {
  it('JSON Lines, read lazily: preview first, counts growing, issues as they are found', async () => {
    const lines = Array.from({ length: 400 }, (_, i) =>
      i === 5 ? '{"instruction": "cut' : i === 9 ? alpaca(i, '') : i === 300 ? '[1]' : alpaca(i),
    );
    const { data, seen } = await openWatched('d.jsonl', lines.join('\n'), { exactRecords: 0 });
    expect(data.lazy).toBe(true);
    expectConsistent(seen, data);
    // The early summary reports the parse issue and the unrenderable record among the first ones...
    expect(seen[0]!.p.issues.map((i) => i.line)).toEqual([6, 10]);
    // ...and a later one the issue found further on; the last has every record.
    expect(seen.at(-1)!.p.issues.map((i) => i.line)).toEqual([6, 10, 301]);
    expect(seen.at(-1)!.p.records).toBe(data.summary.records);
    // The preview fills from the first chunk on (512 bytes: about ten records) to the final length.
    expect(seen[0]!.p.preview.length).toBeGreaterThan(5);
    expect(seen.at(-1)!.p.preview).toHaveLength(12);
    // Sent as the scan goes, not after it.
    expect(seen[0]!.scanDone).toBeLessThan(seen[0]!.p.bytesTotal);
  });

  it('tokenized whole, and in JSON arrays, CSV and plain text', async () => {
    const n = 120;
    const array = `[\n${Array.from({ length: n }, (_, i) => alpaca(i)).join(',\n')}\n]`;
    const csv = ['instruction,output', ...Array.from({ length: n }, (_, i) => `"Say ${i}, please",hello ${i}`)];
    const txt = Array.from({ length: n }, (_, i) => `paragraph ${i} ${'word '.repeat(i % 9)}`).join('\n\n');
    for (const [name, text, chatTemplate] of [
      ['a.json', array, true],
      ['a.csv', csv.join('\n'), true],
      ['a.txt', txt, false],
    ] as const) {
      const { data, seen } = await openWatched(name, text, { chatTemplate });
      expect(data.lazy).toBe(false);
      expectConsistent(seen, data);
    }
  });

  it('sends nothing after the final summary, and nothing when asked for none', async () => {
    const text = Array.from({ length: 300 }, (_, i) => alpaca(i)).join('\n');
    const { seen } = await openWatched('d.jsonl', text);
    const n = seen.length;
    await new Promise((r) => setTimeout(r, 20));
    expect(seen).toHaveLength(n);
    // Throttled to one per interval: a long interval leaves just the first.
    const few: DatasetProvisional[] = [];
    await PreparedDataset.open(textSource(text), 'd.jsonl', new FakeTokenizer(), {
      maxLen: 24,
      valFraction: 0,
      seed: 1,
      scanChunkBytes: 512,
      provisionalMs: 60_000,
      onProvisional: (p) => few.push(p),
    });
    expect(few).toHaveLength(1);
  });
});
