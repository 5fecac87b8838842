import { describe, expect, it } from 'vitest';
import { parseDataset } from '../../src/train/data/records';
import { MAX_LISTED_ISSUES } from '../../src/train/data/record-index';
import { scanDataset } from '../../src/train/data/scan';
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

describe('scanDataset (CSV and TSV)', () => {
  it('indexes rows across chunk boundaries: quoted delimiters, line breaks and "" escapes, CRLF, lone CR, BOM', async () => {
    const rows = ['"a, b","line one\nline two"', '"say ""hi""",ok', '"cr\r\nlf",x', '"lone\rcr",y', 'plain,"end"'];
    for (const eol of ['\n', '\r\n', '\r']) {
      await expectSameAsParse('a.csv', `instruction,output${eol}${rows.join(eol)}${eol}`);
      await expectSameAsParse('a.csv', `\ufeffinstruction,output${eol}${eol}${rows.join(eol)}`);
    }
    await expectSameAsParse('a.tsv', 'prompt\tresponse\n"tab\tinside"\t"multi\nline"\nsay, "hi"\tok\n');
    await expectSameAsParse('p.csv', 'prompt,response,,\nQ,A,,\nQ2,A2\n');
  });

  it('reports what the in-memory reader reports: stray text after a quote, field counts, bad and missing headers, an unclosed quote', async () => {
    await expectSameAsParse('a.csv', 'instruction,output\n"a"b,c\nonly one\n"x",y,z\n,\n"i",""\nq,"unclosed\nrest\n');
    await expectSameAsParse('a.csv', '"unclosed header\ninstruction,output\n');
    await expectSameAsParse('a.csv', 'foo,bar\n1,2\n"bad"x,3\n');
    await expectSameAsParse('a.csv', 'instruction,output\n');
    await expectSameAsParse('a.csv', '');
    await expectSameAsParse('a.csv', '\n \n');
    await expectSameAsParse('a.csv', 'instruction,output\ni,o,');
    await expectSameAsParse('a.csv', 'text\nhello\n"a\nb"\n', 'alpaca');
    // Rows that show no format until a later one does, and a file where none does.
    await expectSameAsParse('a.csv', 'input,foo\nx,1\ny,2\n');
    await expectSameAsParse('a.csv', 'input,text,output\nx,,\ny,hi,\nz,,o\n');
  });

  it('matches the in-memory reader on random CSV and TSV text', async () => {
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let k = 0; k < 60; k++) {
      const delim = k % 2 ? ',' : '\t';
      const alphabet = ['a', 'b ', delim, delim, '"', '"', '\n', '\r\n', '\r', ' ', 'é'];
      let body = '';
      for (let c = 0, len = rand(60); c < len; c++) body += alphabet[rand(alphabet.length)];
      const header = ['instruction', 'output', 'text'].slice(0, 1 + rand(3)).join(delim);
      await expectSameAsParse(delim === ',' ? 'r.csv' : 'r.tsv', `${header}\n${body}`);
    }
  });
});

describe('scanDataset (plain text)', () => {
  it('indexes paragraphs: blank and white-space lines, CRLF, lone CR, BOM, no final newline', async () => {
    await expectSameAsParse('notes.txt', 'one\n\ntwo\nlines\n\n\nthree');
    await expectSameAsParse('notes.txt', '\r\n\r\none\r\nstill one\r\n  \t\r\ntwo\r\n');
    await expectSameAsParse('notes.txt', 'one\rtwo\r\rthree\r');
    await expectSameAsParse('notes.md', '\ufeffpara ✓\n\u00a0\nnext\n');
    await expectSameAsParse('notes.txt', '');
    await expectSameAsParse('notes.txt', '\n \n');
    await expectSameAsParse('notes.txt', 'one\n\ntwo', 'chat');
  });
});

describe('scanDataset (a JSON file that is not an array)', () => {
  it('reads a single object as one record, and reports anything else as the in-memory reader does', async () => {
    await expectSameAsParse('a.json', '{"text": "one object"}');
    await expectSameAsParse('a.json', '\ufeff\n  {"instruction": "i",\n "output": "o"}\n\n');
    await expectSameAsParse('a.json', '"just a string"');
    await expectSameAsParse('a.json', '{"text": ');
    await expectSameAsParse('a.json', '');
    await expectSameAsParse('csv-named.json', 'text\nThe cat\n');
  });
});
