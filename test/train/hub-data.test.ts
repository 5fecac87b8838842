/**
 * Column mappings (mapping.ts) and Parquet datasets (parquet.ts): Hub datasets whose columns are not
 * named as records, ShareGPT and messages turns, JSON-in-a-cell, errors naming the file and the
 * column; Parquet files written by the test (test/fixtures/parquet.ts, hyparquet-writer) (several row groups, nested list<struct>
 * turns), read one row group at a time, lazily and exactly.
 */
import { describe, expect, it } from 'vitest';
import { PreparedDataset } from '../../src/train/data/prepared';
import { mapRow, parseMapping, suggestMapping } from '../../src/train/data/mapping';
import { datasetColumns, parquetColumns, scanParquet } from '../../src/train/data/parquet';
import { scanDataset } from '../../src/train/data/scan';
import { type ByteSource, bytesSource, textSource } from '../../src/train/data/source';
import { FakeTokenizer } from '../helpers/fake-tokenizer';
import { type Turn, writeParquet } from '../fixtures/parquet';

/** A Parquet file: an id, a question/answer pair and ShareGPT turns per row, `groupRows` rows per row group. */
function qaParquet(n: number, groupRows: number, turns?: (i: number) => Turn[] | null): Uint8Array {
  const rows = Array.from({ length: n }, (_, i) =>
    turns
      ? turns(i)
      : [
          { from: 'system', value: 'Be brief.' },
          { from: 'human', value: `What is ${i}?` },
          { from: 'gpt', value: `It is ${i}.` },
        ],
  );
  return writeParquet(
    {
      id: rows.map((_, i) => String(i)),
      question: rows.map((_, i) => (i === 3 ? null : `Question ${i}`)),
      answer: rows.map((_, i) => `Answer ${i}`),
    },
    { groupRows, turns: { name: 'dialog', rows } },
  );
}

/** Text that does not compress (so a column's bytes are its size). */
function noise(seed: number, n: number): string {
  let x = seed * 2654435761 + 1;
  return Array.from({ length: n }, () =>
    String.fromCharCode(97 + (((x = (x * 1103515245 + 12345) >>> 0) >>> 16) % 26)),
  ).join('');
}

/** A byte source that records the ranges read. */
function counting(bytes: Uint8Array): ByteSource & { reads: [number, number][] } {
  const inner = bytesSource(bytes);
  const reads: [number, number][] = [];
  return { size: inner.size, reads, read: (s, e) => (reads.push([s, e]), inner.read(s, e)) };
}

describe('column mapping', () => {
  it('suggests a mapping from column names', () => {
    expect(suggestMapping(['id', 'conversations'])).toEqual({ kind: 'chat', messages: 'conversations' });
    expect(suggestMapping(['Question', 'Answer'])).toEqual({
      kind: 'instruction',
      instruction: 'Question',
      output: 'Answer',
    });
    expect(suggestMapping(['instruction', 'input', 'output'])).toEqual({
      kind: 'instruction',
      instruction: 'instruction',
      input: 'input',
      output: 'output',
    });
    expect(suggestMapping(['prompt', 'response'])).toEqual({
      kind: 'instruction',
      instruction: 'prompt',
      output: 'response',
    });
    expect(suggestMapping(['input', 'output'])).toEqual({
      kind: 'instruction',
      instruction: 'input',
      output: 'output',
    });
    expect(suggestMapping(['id', 'text'])).toEqual({ kind: 'text', text: 'text' });
    expect(suggestMapping(['a', 'b'])).toBeNull();
  });

  it('lists the columns of any file for the mapping', async () => {
    expect(await datasetColumns(textSource('Question,Answer\nq,a\n'), 'qa.csv')).toEqual(['question', 'answer']);
    expect(await datasetColumns(textSource('{"q":1}\n{"q":2,"a":3}\n'), 'x.jsonl')).toEqual(['q', 'a']);
    expect(await datasetColumns(textSource('[{"dialog": []}]'), 'x.json')).toEqual(['dialog']);
    expect(await datasetColumns(textSource('Once upon a time'), 'story.txt')).toEqual([]);
    expect(await datasetColumns(bytesSource(qaParquet(2, 2)), 'x.parquet')).toEqual([
      'id',
      'question',
      'answer',
      'dialog',
    ]);
  });

  it('parses --columns and says what is expected', () => {
    expect(parseMapping('prompt=q, response=a')).toEqual({
      kind: 'instruction',
      instruction: 'q',
      input: undefined,
      output: 'a',
    });
    expect(parseMapping('instruction=q,input=ctx,output=a')).toMatchObject({ input: 'ctx' });
    expect(parseMapping('conversations=dialog')).toEqual({ kind: 'chat', messages: 'dialog' });
    expect(parseMapping('text=body')).toEqual({ kind: 'text', text: 'body' });
    expect(() => parseMapping('q')).toThrow(/FIELD=COLUMN/);
    expect(() => parseMapping('colour=q')).toThrow(/"colour" is not a field/);
    expect(() => parseMapping('instruction=q')).toThrow(/instruction=COLUMN,output=COLUMN/);
  });

  it('maps ShareGPT turns, messages and JSON text in a cell; names a missing column', () => {
    const m = { kind: 'chat' as const, messages: 'dialog' };
    expect(mapRow(m, { dialog: [{ from: 'human', value: 'hi' }] })).toEqual({
      row: { conversations: [{ from: 'human', value: 'hi' }] },
    });
    expect(mapRow(m, { dialog: '[{"role":"user","content":"hi"}]' })).toEqual({
      row: { messages: [{ role: 'user', content: 'hi' }] },
    });
    expect(mapRow(m, { talk: [] })).toEqual({ error: expect.stringContaining('expected a column "dialog"') });
  });

  it('reads JSON Lines through a mapping: ShareGPT roles become user/assistant/system', async () => {
    const text = [
      {
        dialog: [
          { from: 'system', value: 'S' },
          { from: 'human', value: 'Q' },
          { from: 'gpt', value: 'A' },
        ],
      },
      {
        dialog: [
          { from: 'human', value: 'Q2' },
          { from: 'robot', value: 'A2' },
        ],
      },
      { talk: [] },
    ]
      .map((o) => JSON.stringify(o))
      .join('\n');
    const index = await scanDataset(textSource(text), 'chat.jsonl', { mapping: { kind: 'chat', messages: 'dialog' } });
    expect(index.format).toBe('chat');
    expect(index.count).toBe(1);
    const [rec] = await index.read([0]);
    expect(rec).toMatchObject({
      kind: 'chat',
      messages: [
        { role: 'system', content: 'S' },
        { role: 'user', content: 'Q' },
        { role: 'assistant', content: 'A' },
      ],
    });
    expect(index.issues.map((i) => i.line)).toEqual([2, 3]);
    expect(index.issues[0]!.message).toMatch(/"from" string "robot"/);
    expect(index.issues[1]!.message).toMatch(/expected a column "dialog"/);
  });

  it('reads a CSV whose columns are not record fields, and names a mapped column the header lacks', async () => {
    const csv = 'Question,Answer\nWhat is 1?,One\nWhat is 2?,Two\n';
    const m = { kind: 'instruction' as const, instruction: 'Question', output: 'Answer' };
    const index = await scanDataset(textSource(csv), 'qa.csv', { mapping: m });
    expect(index.count).toBe(2);
    expect(await index.read([1])).toEqual([
      { kind: 'alpaca', line: 3, instruction: 'What is 2?', input: '', output: 'Two' },
    ]);
    await expect(scanDataset(textSource(csv), 'qa.csv', { mapping: { kind: 'text', text: 'body' } })).rejects.toThrow(
      /^qa\.csv has no column "body" .*its columns are "question", "answer"/,
    );
  });
});

describe('Parquet datasets', () => {
  it('lists the columns from the footer and indexes row group by row group', async () => {
    const bytes = qaParquet(10, 4);
    expect(await parquetColumns(bytesSource(bytes), 'qa.parquet')).toEqual(['id', 'question', 'answer', 'dialog']);
    const progress: number[] = [];
    const index = await scanParquet(bytesSource(bytes), 'qa.parquet', {
      mapping: { kind: 'instruction', instruction: 'question', output: 'answer' },
      onProgress: (d) => progress.push(d),
    });
    expect(index.container).toBe('parquet');
    expect(index.format).toBe('alpaca');
    expect(index.count).toBe(9); // row 4's question is null
    expect(index.issues).toEqual([{ line: 4, message: expect.stringContaining('no "instruction"') }]);
    expect(progress).toHaveLength(3); // rows 1-4, 5-8, 9-10
    expect(progress.at(-1)).toBe(bytes.length);
    const recs = await index.read([8, 0, 4]);
    expect(recs.map((r) => r.kind === 'alpaca' && r.output)).toEqual(['Answer 9', 'Answer 0', 'Answer 5']);
    expect(recs.map((r) => r.line)).toEqual([10, 1, 6]);
  });

  it('reads nested list<struct> ShareGPT turns, suggested by the column name', async () => {
    const bytes = qaParquet(5, 2);
    const index = await scanParquet(bytesSource(bytes), 'chat.parquet', {
      mapping: { kind: 'chat', messages: 'dialog' },
    });
    expect(index.format).toBe('chat');
    expect(await index.read([2])).toEqual([
      {
        kind: 'chat',
        line: 3,
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'What is 2?' },
          { role: 'assistant', content: 'It is 2.' },
        ],
      },
    ]);
    // "dialog" is a chat column name: with no mapping given, it is the one used.
    expect((await scanParquet(bytesSource(bytes), 'chat.parquet')).format).toBe('chat');
  });

  it('decodes only the row groups a read needs, and only the mapped columns', async () => {
    const bytes = qaParquet(40, 10, (i) => [
      { from: 'human', value: `q${i}` },
      { from: 'gpt', value: noise(i, 8000) },
    ]);
    const src = counting(bytes);
    const index = await scanParquet(src, 'big.parquet', { mapping: { kind: 'text', text: 'answer' } });
    const scanned = src.reads.reduce((a, [s, e]) => a + Math.min(e, bytes.length) - s, 0);
    expect(scanned).toBeLessThan(bytes.length / 2); // the long dialog column is never read
    src.reads.length = 0;
    await index.read([35]);
    expect(src.reads).toHaveLength(1); // one column chunk of the last row group
    expect(src.reads[0]![0]).toBeGreaterThan(bytes.length / 2);
  });

  it('names the file and its columns when nothing is mapped, and a mapped column it lacks', async () => {
    const bytes = qaParquet(3, 3);
    await expect(
      scanParquet(bytesSource(bytes), 'x.parquet', { mapping: { kind: 'text', text: 'body' } }),
    ).rejects.toThrow(/^x\.parquet has no column "body" .*"id", "question", "answer", "dialog"/);
    const plain = writeParquet({ a: ['1'], b: ['2'] });
    await expect(scanParquet(bytesSource(plain), 'ab.parquet')).rejects.toThrow(
      /^ab\.parquet has no column Tabtune recognises by name \(its columns are "a", "b"\)/,
    );
    await expect(scanParquet(textSource('not parquet'), 'bad.parquet')).rejects.toThrow(
      /^bad\.parquet is not a readable Parquet file/,
    );
  });

  it('trains from Parquet through PreparedDataset, exactly and lazily, with the same records', async () => {
    const bytes = qaParquet(30, 7);
    const tok = new FakeTokenizer();
    const open = (exactRecords: number) =>
      PreparedDataset.open(bytesSource(bytes), 'qa.parquet', tok, {
        maxLen: 64,
        valFraction: 0.2,
        seed: 3,
        exactRecords,
        mapping: { kind: 'instruction', instruction: 'question', output: 'answer' },
      });
    const exact = await open(1000);
    const lazy = await open(0);
    expect(exact.summary).toMatchObject({ fileName: 'qa.parquet', format: 'alpaca', records: 29, issueCount: 1 });
    expect(lazy.summary).toMatchObject({ records: 29, tokensEstimated: true });
    expect(lazy.summary.preview[0]!.pieces.map((p) => p.text).join('')).toBe(
      exact.summary.preview[0]!.pieces.map((p) => p.text).join(''),
    );
  });
});
