/**
 * A split in several files read as one dataset (src/train/data/shards.ts): JSON Lines, Parquet (with
 * several row groups) and CSV shards bundled into one Blob give every record in file order, numbered
 * through the shards, with issues naming their shard and line; the columns are the first shard's;
 * the progress covers all the bytes; the digest follows every shard; a damaged bundle is refused.
 */
import { describe, expect, it } from 'vitest';
import { PreparedDataset } from '../../src/train/data/prepared';
import { datasetColumns, indexDataset } from '../../src/train/data/parquet';
import type { RecordIndex } from '../../src/train/data/record-index';
import { shardBundle } from '../../src/train/data/shards';
import { blobSource, bytesSource, textSource } from '../../src/train/data/source';
import { writeParquet } from '../fixtures/parquet';
import { FakeTokenizer } from '../helpers/fake-tokenizer';

const enc = (s: string) => new TextEncoder().encode(s);

async function all(index: RecordIndex) {
  return index.read([...Array(index.count).keys()]);
}

function bundle(parts: [string, Uint8Array][]): Blob {
  return shardBundle(parts.map(([name, bytes]) => ({ name, blob: new Blob([bytes as BlobPart]) })));
}

const qa = (from: number, n: number) => Array.from({ length: n }, (_, k) => from + k);

describe('a split in several files', () => {
  it('JSON Lines shards: every record in order, lines through the shards, issues naming their shard', async () => {
    const line = (i: number) => JSON.stringify({ instruction: `Q${i}`, output: `A${i}` });
    const shards: [string, Uint8Array][] = [
      ['o/d/data/train-00000-of-00003.jsonl', enc(`${qa(0, 4).map(line).join('\n')}\n`)],
      ['o/d/data/train-00001-of-00003.jsonl', enc(`${line(4)}\n{"instruction": "broken"\n${line(5)}`)], // no final newline
      ['o/d/data/train-00002-of-00003.jsonl', enc(`\n${qa(6, 3).map(line).join('\n')}\n`)],
    ];
    const progress: [number, number][] = [];
    const blob = bundle(shards);
    const index = await indexDataset(blobSource(blob), 'o/d/train (3 files)', {
      onProgress: (d, t) => progress.push([d, t]),
      chunkBytes: 7,
    });
    expect(index.format).toBe('alpaca');
    expect(index.count).toBe(9);
    const records = await all(index);
    expect(records.map((r) => r.kind === 'alpaca' && r.output)).toEqual(qa(0, 9).map((i) => `A${i}`));
    // Lines: shard 1 holds lines 1-4, shard 2 lines 5-7 (its line 2 is the issue), shard 3 from 8 (a blank first).
    expect(records.map((r) => r.line)).toEqual([1, 2, 3, 4, 5, 7, 9, 10, 11]);
    expect(qa(0, 9).map((i) => index.line(i))).toEqual([1, 2, 3, 4, 5, 7, 9, 10, 11]);
    expect(index.issueCount).toBe(1);
    expect(index.issues[0]!.line).toBe(6);
    expect(index.issues[0]!.message).toMatch(/\(o\/d\/data\/train-00001-of-00003\.jsonl, line 2\)$/);
    // Records read out of order and across shards.
    const some = await index.read([8, 0, 5, 4]);
    expect(some.map((r) => r.kind === 'alpaca' && r.output)).toEqual(['A8', 'A0', 'A5', 'A4']);
    // Progress over the shards' bytes, up to their total.
    const total = shards.reduce((n, [, b]) => n + b.length, 0);
    expect(progress.at(-1)).toEqual([total, total]);
    expect(progress.every(([d], k) => k === 0 || d >= progress[k - 1]![0])).toBe(true);
    expect(await datasetColumns(blobSource(blob), 'o/d/train (3 files)')).toEqual(['instruction', 'output']);
  });

  it('Parquet shards (several row groups each): the records of all, in order, through the suggested mapping', async () => {
    const shard = (from: number, n: number) =>
      writeParquet(
        { question: qa(from, n).map((i) => `What is ${i}?`), answer: qa(from, n).map((i) => `It is ${i}.`) },
        { groupRows: 3 },
      );
    const blob = bundle([
      ['o/p/data/train-00000-of-00003.parquet', shard(0, 7)],
      ['o/p/data/train-00001-of-00003.parquet', shard(7, 5)],
      ['o/p/data/train-00002-of-00003.parquet', shard(12, 2)],
    ]);
    expect(await datasetColumns(blobSource(blob), 'o/p/train (3 files)')).toEqual(['question', 'answer']);
    const index = await indexDataset(blobSource(blob), 'o/p/train (3 files)', {
      mapping: { kind: 'instruction', instruction: 'question', output: 'answer' },
    });
    expect(index.container).toBe('parquet');
    expect(index.count).toBe(14);
    const records = await all(index);
    expect(records.map((r) => r.kind === 'alpaca' && r.instruction)).toEqual(qa(0, 14).map((i) => `What is ${i}?`));
    expect(records.map((r) => r.line)).toEqual(qa(1, 14));
    // Through the dataset reader as the engine opens it: 14 records, the preview starting at the first shard.
    const tok = new FakeTokenizer();
    const data = await PreparedDataset.open(blobSource(blob), 'o/p/train (3 files)', tok, {
      mapping: { kind: 'instruction', instruction: 'question', output: 'answer' },
      maxLen: 64,
      valFraction: 0,
      seed: 1,
      previewCount: 2,
    });
    expect(data.summary.records).toBe(14);
    expect(data.summary.preview[0]!.pieces.map((p) => p.text).join('')).toContain('What is 0?');
  });

  it('CSV shards each with their header; the fingerprint changes with any shard', async () => {
    const csv = (from: number, n: number) =>
      enc(
        `text\n${qa(from, n)
          .map((i) => `story ${i}`)
          .join('\n')}\n`,
      );
    const parts: [string, Uint8Array][] = [
      ['o/c/train-0.csv', csv(0, 3)],
      ['o/c/train-1.csv', csv(3, 2)],
    ];
    const index = await indexDataset(blobSource(bundle(parts)), 'o/c/train (2 files)', { fingerprint: true });
    expect((await all(index)).map((r) => r.kind === 'text' && r.text)).toEqual(qa(0, 5).map((i) => `story ${i}`));
    const again = await indexDataset(blobSource(bundle(parts)), 'o/c/train (2 files)', { fingerprint: true });
    expect(again.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(again.digest).toBe(index.digest);
    const changed = await indexDataset(
      blobSource(bundle([parts[0]!, ['o/c/train-1.csv', csv(4, 2)]])),
      'o/c/train (2 files)',
      { fingerprint: true },
    );
    expect(changed.digest).not.toBe(index.digest);
  });

  it('a damaged bundle says so; a file that merely starts like one is read as itself', async () => {
    const good = new Uint8Array(await bundle([['a.jsonl', enc('{"text": "x"}\n')]]).arrayBuffer());
    await expect(indexDataset(bytesSource(good.subarray(0, good.length - 3)), 'split', {})).rejects.toThrow(
      /^split is a damaged bundle of dataset files \(its files hold \d+ bytes with the header, the bundle \d+\)/,
    );
    await expect(indexDataset(textSource('TABTUNE-SHARDS {"shards":[}\n'), 'split', {})).rejects.toThrow(
      /header is not JSON/,
    );
    const text = await indexDataset(textSource('TABTUNE-SHARDS is a word.\n'), 'notes.txt', {});
    expect(text.count).toBe(1);
  });
});
