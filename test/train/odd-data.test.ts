// Odd data that used to hang or mislead: a 3 MB text file on one line (one record: tokenized in one
// call for seconds with no progress, then ~47k windows all labelled "line 1"), a JSON Lines file
// whose last line was cut off (an anonymous "invalid JSON"), a record longer than max length (cut
// with only a small tag on its preview), and "chat" forced on Alpaca data ("got nothing").
import { beforeAll, describe, expect, it } from 'vitest';
import { type TextTokenizer, createTokenizer } from '../../src/model/tokenizer';
import { PreparedDataset } from '../../src/train/data/prepared';
import { parseDataset } from '../../src/train/data/records';
import { PIECE_CHARS, renderRecord } from '../../src/train/data/render';
import { scanDataset } from '../../src/train/data/scan';
import { textSource } from '../../src/train/data/source';
import { makeTinyModel } from '../fixtures/tiny-model';

let tok: TextTokenizer;
beforeAll(async () => {
  const m = makeTinyModel({ modelType: 'llama' });
  tok = await createTokenizer(m.tokenizerJson, m.tokenizerConfig);
});

const WORDS = ['the', 'quick', 'brown', 'fox', 'jumps', 'over', 'a', 'lazy', 'dog,', 'again.'];
function oneLine(chars: number): string {
  let s = '';
  for (let i = 0; s.length < chars; i++) s += (i ? ' ' : '') + WORDS[(i * 7) % WORDS.length];
  return s;
}

describe('a long text on one line', () => {
  it('is encoded piece by piece to the same tokens as in one call', () => {
    const text = oneLine(3 * PIECE_CHARS + 1234);
    const whole = tok.encode(text, { addSpecialTokens: true });
    const calls: [number, number][] = [];
    const [ex] = renderRecord(tok, { kind: 'text', line: 1, text }, { maxLen: 1_000_000 }, (d, t) =>
      calls.push([d, t]),
    );
    expect(calls).toEqual([
      [1, 4],
      [2, 4],
      [3, 4],
      [4, 4],
    ]);
    expect(ex!.ids.slice(0, whole.length)).toEqual(whole);
  });

  it('a long one-line .txt (a 3 MB one in the app; 400 KB here) shows progress while it is tokenized, and its windows are numbered', async () => {
    const text = oneLine(400_000);
    const progress: number[] = [];
    const d = await PreparedDataset.open(textSource(text), 'big.txt', tok, {
      maxLen: 64,
      valFraction: 0,
      seed: 0,
      previewCount: 3,
      onProgress: (phase, done, total) => {
        if (phase === 'tokenize') progress.push(done / total);
      },
    });
    // Fractions of the one record, in order, up to the whole.
    expect(progress.length).toBeGreaterThan(5);
    expect(progress.some((p) => p > 0.2 && p < 0.8)).toBe(true);
    expect([...progress].sort((a, b) => a - b)).toEqual(progress);
    expect(progress.at(-1)).toBe(1);
    const n = d.summary.trainRecords;
    expect(n).toBeGreaterThan(1_000);
    expect(d.summary.preview.map((p) => [p.line, p.part])).toEqual([
      [1, { index: 1, of: n }],
      [1, { index: 2, of: n }],
      [1, { index: 3, of: n }],
    ]);
    expect(d.summary.truncated).toEqual({ examples: 0, lines: [] }); // windows, not cuts
  }, 120_000);
});

describe('JSON Lines', () => {
  const cut = '{"text": "one"}\n{"text": "two"}\n{"text": "thr';

  it('a last line cut off is named as such, with its line, by the streamed and the in-memory readers', async () => {
    const message =
      'expected a JSON object, got a last line cut off at the end of the file (the file looks truncated: copy or download it again): "{\\"text\\": \\"thr"';
    const index = await scanDataset(textSource(cut), 'cut.jsonl');
    expect(index.issues).toEqual([{ line: 3, message }]);
    expect(parseDataset('cut.jsonl', cut).issues).toEqual([{ line: 3, message }]);
    // A bad line that is not the last, or that ends the file complete, is invalid JSON as before.
    const mid = await scanDataset(textSource('{"text": "a\n{"text": "b"}\n'), 'mid.jsonl');
    expect(mid.issues[0]!.message).toMatch(/^expected a JSON object, got invalid JSON/);
  });

  it('records longer than max length are counted and their lines named in the summary', async () => {
    const long = 'word '.repeat(200);
    const text = [
      JSON.stringify({ text: 'short one' }),
      JSON.stringify({ text: long }),
      JSON.stringify({ text: 'short two' }),
      JSON.stringify({ text: long }),
    ].join('\n');
    const d = await PreparedDataset.open(textSource(text), 'long.jsonl', tok, { maxLen: 32, valFraction: 0, seed: 0 });
    expect(d.summary.truncated).toEqual({ examples: 2, lines: [2, 4] });
  });

  it('"chat" forced on Alpaca records names the keys it found', () => {
    const r = parseDataset('a.jsonl', JSON.stringify({ instruction: 'Say hi', output: 'hi' }), { format: 'chat' });
    expect(r.issues).toEqual([
      {
        line: 1,
        message:
          'expected "messages": [{"role": "system" | "user" | "assistant", "content": "..."}], got no "messages" (keys ["instruction","output"])',
      },
    ]);
  });
});
