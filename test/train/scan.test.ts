import { describe, expect, it } from 'vitest';
import { parseDataset } from '../../src/train/data/records';
import { MAX_LISTED_ISSUES, scanDataset } from '../../src/train/data/scan';
import { bytesSource, textSource } from '../../src/train/data/source';

/** The index must give parseDataset's records and issues, whatever the chunk size. */
async function expectSameAsParse(fileName: string, text: string, format?: 'text' | 'alpaca' | 'chat'): Promise<void> {
  const want = parseDataset(fileName, text, { format });
  for (const chunkBytes of [1, 2, 3, 7, 64, 1 << 20]) {
    const idx = await scanDataset(textSource(text), fileName, { format, chunkBytes });
    const got = await idx.read([...Array(idx.count).keys()]);
    expect(
      { container: idx.container, format: idx.format, records: got, issues: idx.issues },
      `chunk ${chunkBytes}`,
    ).toEqual({ container: want.container, format: want.format, records: want.records, issues: want.issues });
    expect(idx.issueCount).toBe(want.issues.length);
    for (let i = 0; i < idx.count; i++) expect(idx.line(i)).toBe(want.records[i]!.line);
  }
}

const alpaca = (i: number) => JSON.stringify({ instruction: `Do ${i} — ünïcode ✓`, input: '', output: `Done ${i}.` });

describe('scanDataset (JSON Lines)', () => {
  it('gives the records and issues of the in-memory reader: bad lines, blanks, CRLF, lone CR, BOM, no final newline', async () => {
    const lines = [alpaca(0), '  ', alpaca(1), '{"instruction": "x"', '[1, 2]', alpaca(2), '{"foo": 1}', alpaca(3)];
    await expectSameAsParse('a.jsonl', lines.join('\n'));
    await expectSameAsParse('a.jsonl', `${lines.join('\r\n')}\r\n`);
    await expectSameAsParse('a.jsonl', lines.join('\r'));
    await expectSameAsParse('a.jsonl', `\ufeff${lines.join('\n')}\n\n`);
    await expectSameAsParse('a.ndjson', `${lines.join('\n')}\n`, 'text');
  });

  it('decides the format from the first recognisable record, converting earlier rows once it is known', async () => {
    await expectSameAsParse('a.jsonl', ['{"foo": 1}', '{"bar": 2}', '{"text": "hi"}', alpaca(1)].join('\n'));
    await expectSameAsParse('a.jsonl', ['{"foo": 1}', '{"bar": 2}'].join('\n'));
    await expectSameAsParse('a.jsonl', '');
    await expectSameAsParse('a.jsonl', '\n\n  \n');
    await expectSameAsParse(
      'chat.jsonl',
      [
        JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }),
        JSON.stringify({
          conversations: [
            { from: 'human', value: 'hi' },
            { from: 'gpt', value: 'hello' },
          ],
        }),
      ].join('\n'),
    );
  });

  it('reads a .json or .txt file that is really JSON Lines as JSON Lines', async () => {
    await expectSameAsParse('a.json', [alpaca(0), alpaca(1), alpaca(2)].join('\n'));
    await expectSameAsParse('a.txt', [alpaca(0), alpaca(1), 'oops', alpaca(2)].join('\n'));
  });

  it('names the line that is not UTF-8 and refuses UTF-16', async () => {
    const bytes = new TextEncoder().encode(`${alpaca(0)}\n${alpaca(1)}\n`);
    const bad = new Uint8Array([...bytes, 0xff, 0xfe, 0x0a]);
    await expect(scanDataset(bytesSource(bad), 'x.jsonl', { chunkBytes: 5 })).rejects.toThrow(
      /x\.jsonl: line 3 is not UTF-8/,
    );
    const utf16 = new Uint8Array([0xff, 0xfe, 0x7b, 0x00]);
    await expect(scanDataset(bytesSource(utf16), 'x.jsonl')).rejects.toThrow(/UTF-16/);
  });

  it('lists the first issues and counts all of them', async () => {
    const text = Array.from({ length: MAX_LISTED_ISSUES + 5 }, () => 'nope').join('\n');
    const idx = await scanDataset(textSource(text), 'a.jsonl');
    expect(idx.issues).toHaveLength(MAX_LISTED_ISSUES);
    expect(idx.issueCount).toBe(MAX_LISTED_ISSUES + 5);
    expect(idx.count).toBe(0);
  });
});

describe('scanDataset (JSON array)', () => {
  const arr = (items: string[], sep = ',\n') => `[\n${items.join(sep)}\n]\n`;
  it('indexes elements across chunk boundaries, with strings holding brackets, commas and escapes', async () => {
    const tricky = JSON.stringify({ instruction: 'a, [b] {c} "d" \\ e', input: '\n', output: 'ok ✓' });
    await expectSameAsParse('a.json', arr([alpaca(0), tricky, alpaca(1), JSON.stringify({ text: 'x' })]));
    await expectSameAsParse('a.json', JSON.stringify([JSON.parse(alpaca(0)), JSON.parse(tricky)], null, 2));
    await expectSameAsParse('a.json', `\ufeff${arr([alpaca(0), alpaca(1)], ',')}`);
  });

  it('reports empty elements, bad elements, a missing "]" and text after it as the in-memory reader does', async () => {
    await expectSameAsParse('a.json', arr([alpaca(0), '', alpaca(1), '42', '{"x": ', '"s"']));
    await expectSameAsParse('a.json', `[${alpaca(0)}, ${alpaca(1)}`);
    await expectSameAsParse('a.json', `[${alpaca(0)}] trailing words here`);
    await expectSameAsParse('a.json', `[${alpaca(0)},]\n\n   `);
    await expectSameAsParse('a.json', '[]');
    await expectSameAsParse('a.json', '[\n]');
  });
});

describe('scanDataset (containers parsed in memory)', () => {
  it('CSV, TSV, plain text and a single JSON object give parseDataset results', async () => {
    await expectSameAsParse('a.csv', 'instruction,output\n"a, b",c\nd\n');
    await expectSameAsParse('a.tsv', 'text\nhello\nworld\n');
    await expectSameAsParse('notes.txt', 'one\n\ntwo\nlines\n\n\nthree');
    await expectSameAsParse('a.json', '{"text": "one object"}');
  });
});
