import { describe, expect, it } from 'vitest';
import { parseDelimited } from '../../src/train/data/containers';
import { type ChatRecord, type DatasetRecord, detectFormat, parseDataset } from '../../src/train/data/records';
import {
  type TokenizedExample,
  alpacaPrompt,
  examplePreview,
  renderRecord,
  tokenizeRecords,
} from '../../src/train/data/render';
import { BOS, EOS, FakeTokenizer, IM_END } from '../helpers/fake-tokenizer';

/** The text of the tokens that count in the loss. */
function countedText(tok: FakeTokenizer, ex: TokenizedExample): string {
  return tok.decode(ex.ids.filter((_, t) => ex.counted[t]));
}

describe('detectFormat', () => {
  it('finds container and format', () => {
    expect(detectFormat('a.jsonl', '{"text": "x"}\n')).toEqual({ container: 'jsonl', format: 'text' });
    expect(detectFormat('a.jsonl', '\n{"instruction": "x", "output": "y"}')).toEqual({
      container: 'jsonl',
      format: 'alpaca',
    });
    expect(detectFormat('a.json', '[{"messages": []}]')).toEqual({ container: 'json', format: 'chat' });
    expect(detectFormat('a.json', '{"text": "a"}\n{"text": "b"}\n')).toEqual({ container: 'jsonl', format: 'text' });
    expect(detectFormat('a.csv', 'prompt,completion\na,b\n')).toEqual({ container: 'csv', format: 'alpaca' });
    expect(detectFormat('a.csv', 'text\nhello\n')).toEqual({ container: 'csv', format: 'text' });
    expect(detectFormat('a.tsv', 'instruction\toutput\na\tb\n')).toEqual({ container: 'tsv', format: 'alpaca' });
    expect(detectFormat('notes.txt', 'hello\n\nworld')).toEqual({ container: 'txt', format: 'text' });
    expect(detectFormat('data', '[{"conversations": []}]')).toEqual({ container: 'json', format: 'chat' });
    expect(detectFormat('data', '\ufeff{"text": "a"}')).toEqual({ container: 'jsonl', format: 'text' });
    expect(detectFormat('README', 'plain words')).toEqual({ container: 'txt', format: 'text' });
  });

  it('a .txt holding JSON Lines is read as JSON Lines, not as text with JSON syntax', () => {
    const jsonl = '\ufeff{"instruction": "a", "output": "b"}\r\n\r\n{"instruction": "c", "output": "d"}\r\n';
    expect(detectFormat('train.txt', jsonl)).toEqual({ container: 'jsonl', format: 'alpaca' });
    expect(parseDataset('train.txt', jsonl).records).toEqual([
      { kind: 'alpaca', line: 1, instruction: 'a', input: '', output: 'b' },
      { kind: 'alpaca', line: 3, instruction: 'c', input: '', output: 'd' },
    ]);
    // Text that merely starts with a brace stays text.
    expect(detectFormat('notes.txt', '{braces} in prose\n\nmore')).toEqual({ container: 'txt', format: 'text' });
    expect(detectFormat('notes.txt', '{"a": 1}\nthen prose')).toEqual({ container: 'txt', format: 'text' });
  });
});

describe('parseDataset: JSONL', () => {
  it('reports each bad line with its number and skips it', () => {
    const content = [
      '{"text": "a"}',
      '',
      '{"text": 5}',
      'not json',
      '[1, 2]',
      '{"txt": "x"}',
      '{"text": "b"}',
      '{"text": "   "}',
    ].join('\n');
    const d = parseDataset('d.jsonl', content);
    expect(d.format).toBe('text');
    expect(d.records).toEqual([
      { kind: 'text', line: 1, text: 'a' },
      { kind: 'text', line: 7, text: 'b' },
    ]);
    expect(d.issues.map((i) => i.line)).toEqual([3, 4, 5, 6, 8]);
    expect(d.issues[0]!.message).toBe('expected {"text": "..."} with a string, got text number 5');
    expect(d.issues[1]!.message).toMatch(/^expected a JSON object, got invalid JSON \(.*\): "not json"$/);
    expect(d.issues[2]!.message).toBe('expected a JSON object, got an array [1,2]');
    expect(d.issues[3]!.message).toBe('expected {"text": "..."} with a string, got keys ["txt"]');
    expect(d.issues[4]!.message).toMatch(/non-empty "text"/);
  });

  it('alpaca records, with prompt/completion aliases', () => {
    const content = [
      '{"instruction": "Add", "input": "1+1", "output": "2"}',
      '{"instruction": "Greet", "output": "Hi"}',
      '{"instruction": "No output"}',
      '{"instruction": "Bad", "input": 3, "output": "x"}',
      '{"prompt": "Q?", "completion": "A."}',
      '{"prompt": "Q2?", "response": "A2."}',
      '{"instruction": "Empty", "output": ""}',
    ].join('\r\n');
    const d = parseDataset('a.jsonl', content);
    expect(d.format).toBe('alpaca');
    expect(d.records).toEqual([
      { kind: 'alpaca', line: 1, instruction: 'Add', input: '1+1', output: '2' },
      { kind: 'alpaca', line: 2, instruction: 'Greet', input: '', output: 'Hi' },
      { kind: 'alpaca', line: 5, instruction: 'Q?', input: '', output: 'A.' },
      { kind: 'alpaca', line: 6, instruction: 'Q2?', input: '', output: 'A2.' },
    ]);
    expect(d.issues).toEqual([
      {
        line: 3,
        message:
          'expected {"instruction", "input" (optional), "output"} strings, got no "output" (keys ["instruction"])',
      },
      { line: 4, message: 'expected {"instruction", "input" (optional), "output"} strings, got "input" as number 3' },
      {
        line: 7,
        message:
          'expected {"instruction", "input" (optional), "output"} strings, got an empty "output" (nothing to learn)',
      },
    ]);
  });

  it('chat records, ShareGPT and content parts; bad messages reported', () => {
    const content = [
      JSON.stringify({
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'assistant', content: 'hello' },
        ],
      }),
      JSON.stringify({
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'bot', content: 'hello' },
        ],
      }),
      JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }),
      JSON.stringify({
        messages: [
          { role: 'user', content: null },
          { role: 'assistant', content: 'x' },
        ],
      }),
      JSON.stringify({
        conversations: [
          { from: 'human', value: 'q' },
          { from: 'gpt', value: 'a' },
        ],
      }),
      JSON.stringify({
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'a' },
              { type: 'text', text: 'b' },
            ],
          },
          { role: 'assistant', content: 'c' },
        ],
      }),
      JSON.stringify({ messages: 'oops' }),
    ].join('\n');
    const d = parseDataset('c.jsonl', content);
    expect(d.format).toBe('chat');
    expect(d.records.map((r) => r.line)).toEqual([1, 5, 6]);
    expect((d.records[1] as ChatRecord).messages).toEqual([
      { role: 'user', content: 'q' },
      { role: 'assistant', content: 'a' },
    ]);
    expect((d.records[2] as ChatRecord).messages[0]!.content).toBe('ab');
    expect(d.issues.map((i) => [i.line, i.message])).toEqual([
      [
        2,
        'expected "messages": [{"role": "system" | "user" | "assistant", "content": "..."}], got message 2 with "role" string "bot"',
      ],
      [3, 'expected at least one non-empty assistant message (only assistant tokens are learned), got roles user'],
      [
        4,
        'expected "messages": [{"role": "system" | "user" | "assistant", "content": "..."}], got message 1 (user) with content null',
      ],
      [7, 'expected "messages": [{"role": "system" | "user" | "assistant", "content": "..."}], got string "oops"'],
    ]);
  });

  it('a forced format reports records of another shape', () => {
    const d = parseDataset('x.jsonl', '{"text": "a"}\n{"instruction": "i", "output": "o"}', { format: 'alpaca' });
    expect(d.records).toHaveLength(1);
    expect(d.issues[0]!.line).toBe(1);
  });
});

describe('parseDataset: JSON array', () => {
  it('gives each element the line it starts on; one broken element is one issue', () => {
    const content = [
      '[',
      '  {"text": "a"},',
      '  {"text": "b",',
      '   "x": 1},',
      '  {"text": },',
      '  {"text": "c, [still \\"string\\"]"}',
      ']',
    ].join('\n');
    const d = parseDataset('d.json', content);
    expect(d.records).toEqual([
      { kind: 'text', line: 2, text: 'a' },
      { kind: 'text', line: 3, text: 'b' },
      { kind: 'text', line: 6, text: 'c, [still "string"]' },
    ]);
    expect(d.issues).toHaveLength(1);
    expect(d.issues[0]!.line).toBe(5);
    expect(d.issues[0]!.message).toMatch(/^expected a JSON object, got invalid JSON/);
  });

  it('reports a truncated array and non-object elements', () => {
    const d = parseDataset('d.json', '[{"text": "a"}, 3,\n{"text": "b"}');
    expect(d.records.map((r) => r.line)).toEqual([1, 2]);
    expect(d.issues).toEqual([
      { line: 1, message: 'expected a JSON object, got number 3' },
      { line: 2, message: 'expected "]" closing the JSON array, got the end of the file (truncated?)' },
    ]);
  });

  it('issue messages stay on one line when the broken JSON spans several', () => {
    const d = parseDataset('d.json', '[\n{"text": "a"},\n{"text":\n "b" oops\n}\n]');
    expect(d.issues).toHaveLength(1);
    expect(d.issues[0]!.line).toBe(3);
    const notJson = parseDataset('csv-named.json', 'text\nThe cat\n');
    expect(notJson.issues).toHaveLength(1);
    expect(notJson.issues[0]!.message).toMatch(/^expected a JSON array of records, got invalid JSON/);
    for (const i of [...d.issues, ...notJson.issues]) expect(i.message).not.toMatch(/[\r\n]/);
  });

  it('a single object is one record; garbage is one issue', () => {
    expect(parseDataset('d.json', '{"text": "solo"}').records).toEqual([{ kind: 'text', line: 1, text: 'solo' }]);
    const d = parseDataset('d.json', '"just a string"');
    expect(d.records).toEqual([]);
    expect(d.issues[0]!.message).toBe('expected a JSON array of records, got string "just a string"');
  });
});

describe('parseDataset: CSV / TSV', () => {
  it('RFC 4180 quoting, embedded newlines and commas, line numbers', () => {
    const content = [
      'instruction,input,output',
      '"Say ""hi""",,"Hello, world"',
      '"Multi',
      'line",ctx,"out',
      'put"',
      'bad,row',
      '"x",,y',
      '',
    ].join('\r\n');
    const d = parseDataset('d.csv', content);
    expect(d.format).toBe('alpaca');
    expect(d.records).toEqual([
      { kind: 'alpaca', line: 2, instruction: 'Say "hi"', input: '', output: 'Hello, world' },
      { kind: 'alpaca', line: 3, instruction: 'Multi\r\nline', input: 'ctx', output: 'out\r\nput' },
      { kind: 'alpaca', line: 7, instruction: 'x', input: '', output: 'y' },
    ]);
    expect(d.issues).toEqual([
      { line: 6, message: 'expected 3 fields (instruction, input, output), got 2: "bad,row"' },
    ]);
  });

  it('low-level parser: trailing delimiter, lone CR, unterminated quote', () => {
    const issues: { line: number; message: string }[] = [];
    expect(parseDelimited('a,b,\rc,"d\ne"', ',', issues)).toEqual([
      { line: 1, fields: ['a', 'b', ''] },
      { line: 2, fields: ['c', 'd\ne'] },
    ]);
    expect(issues).toEqual([]);
    expect(parseDelimited('a,b\n"open,x\ny', ',', issues)).toEqual([{ line: 1, fields: ['a', 'b'] }]);
    expect(issues).toEqual([
      { line: 2, message: 'expected a closing quote for the field opened on line 2, got the end of the file' },
    ]);
  });

  it('text / prompt,completion / response columns; padded rows; unknown header', () => {
    expect(parseDataset('t.csv', 'Text\nhello\n"a\nb"\n').records).toEqual([
      { kind: 'text', line: 2, text: 'hello' },
      { kind: 'text', line: 3, text: 'a\nb' },
    ]);
    expect(parseDataset('p.csv', 'prompt,response,,\nQ,A,,\n').records).toEqual([
      { kind: 'alpaca', line: 2, instruction: 'Q', input: '', output: 'A' },
    ]);
    const bad = parseDataset('u.csv', 'foo,bar\n1,2\n');
    expect(bad.records).toEqual([]);
    expect(bad.issues).toEqual([
      {
        line: 1,
        message:
          'expected a header row with columns text; or instruction, output (and optionally input); or prompt, completion (or response), got "foo,bar"',
      },
    ]);
    expect(parseDataset('t.tsv', 'instruction\toutput\nsay, "hi"\tok\n').records).toEqual([
      { kind: 'alpaca', line: 2, instruction: 'say, "hi"', input: '', output: 'ok' },
    ]);
  });
});

describe('parseDataset: plain text', () => {
  it('one record per paragraph, or the whole file', () => {
    const content = 'para one\nline two\n\n \npara two\n';
    expect(parseDataset('t.txt', content).records).toEqual([
      { kind: 'text', line: 1, text: 'para one\nline two' },
      { kind: 'text', line: 5, text: 'para two' },
    ]);
    expect(parseDataset('t.txt', `\n\n${content}`, { txtSplit: 'whole' }).records).toEqual([
      { kind: 'text', line: 3, text: 'para one\nline two\n\n \npara two' },
    ]);
    expect(parseDataset('t.txt', '\n\n').issues).toEqual([
      { line: 1, message: 'expected at least one record, got an empty file' },
    ]);
    expect(parseDataset('t.txt', 'x', { format: 'chat' }).issues[0]!.message).toMatch(
      /plain-text files hold text records only/,
    );
    expect(parseDataset('t.txt', 'x', { format: 'alpaca' }).issues[0]!.message).toMatch(
      /^expected an alpaca record, got plain text/,
    );
  });

  it('never throws on garbage', () => {
    const alphabet = '{}[]",:\\\n\r\t abc0123ntrufl';
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    for (let k = 0; k < 300; k++) {
      let s = '';
      const len = rand(80);
      for (let i = 0; i < len; i++) s += alphabet[rand(alphabet.length)];
      for (const name of ['g.jsonl', 'g.json', 'g.csv', 'g.txt']) {
        const d = parseDataset(name, s);
        for (const i of d.issues) expect(i.line).toBeGreaterThanOrEqual(1);
      }
    }
  });
});

describe('rendering and loss masks', () => {
  const text = (t: string, line = 1): DatasetRecord => ({ kind: 'text', line, text: t });

  it('text: every token counts; BOS only when the tokenizer adds it; EOS appended once', () => {
    const gpt2ish = new FakeTokenizer({ addBos: false });
    const [a] = renderRecord(gpt2ish, text('hello world'), { maxLen: 64 });
    expect(gpt2ish.pieces(a!.ids)).toEqual(['hello', ' world', '</s>']);
    expect(a!.counted).toEqual([false, true, true]);
    expect(a!.countedTokens).toBe(2);
    const llamaish = new FakeTokenizer({ addBos: true });
    const [b] = renderRecord(llamaish, text('hello world</s>'), { maxLen: 64 });
    expect(b!.ids).toEqual([BOS, ...llamaish.encode('hello world', { addSpecialTokens: false }), EOS]);
    expect(b!.counted).toEqual([false, true, true, true]);
  });

  it('text: truncation and chunking', () => {
    const tok = new FakeTokenizer();
    const [t] = renderRecord(tok, text('abcdefghij'), { maxLen: 4 });
    expect(t).toMatchObject({ truncated: true, countedTokens: 3 });
    expect(tok.decode(t!.ids)).toBe('abcd');
    const chunks = renderRecord(tok, text('abcdefghij'), { maxLen: 4, overflow: 'chunk' });
    expect(chunks.map((c) => tok.decode(c.ids))).toEqual(['abcd', 'efgh', 'ij</s>']);
    expect(chunks.every((c) => !c.counted[0] && c.counted.slice(1).every(Boolean))).toBe(true);
  });

  it('alpaca without a chat template: the Alpaca prompt, only the response and EOS count', () => {
    const tok = new FakeTokenizer({ chatTemplate: false, addBos: true });
    const rec: DatasetRecord = { kind: 'alpaca', line: 3, instruction: 'Name a pet.', input: '', output: 'cat' };
    const [ex] = renderRecord(tok, rec, { maxLen: 256 });
    expect(tok.decode(ex!.ids)).toBe(`<s>${alpacaPrompt('Name a pet.')}cat</s>`);
    expect(alpacaPrompt('Name a pet.')).toBe(
      'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nName a pet.\n\n### Response:\n',
    );
    expect(countedText(tok, ex!)).toBe('cat</s>');
    expect(ex!.line).toBe(3);
    expect(alpacaPrompt('Add.', '1+1')).toContain('paired with an input that provides further context.');
    expect(alpacaPrompt('Add.', '1+1')).toContain('### Instruction:\nAdd.\n\n### Input:\n1+1\n\n### Response:\n');
  });

  it('alpaca: a token straddling the prompt/response boundary counts', () => {
    const tok = new FakeTokenizer({ chatTemplate: false });
    const [ex] = renderRecord(
      tok,
      { kind: 'alpaca', line: 1, instruction: 'Describe.', input: '', output: 'A cat.' },
      { maxLen: 256 },
    );
    // "### Response:\n" + "A cat." encodes "\nA" as one piece.
    expect(countedText(tok, ex!)).toBe('\nA cat.</s>');
  });

  it('alpaca with a chat template: user/assistant turns, only the assistant turn counts', () => {
    const tok = new FakeTokenizer();
    const [ex] = renderRecord(
      tok,
      { kind: 'alpaca', line: 1, instruction: 'Add.', input: '1+1', output: '2' },
      { maxLen: 256 },
    );
    expect(tok.decode(ex!.ids)).toBe('<|im_start|>user\nAdd.\n\n1+1<|im_end|>\n<|im_start|>assistant\n2<|im_end|>\n');
    expect(countedText(tok, ex!)).toBe('2<|im_end|>');
    const [tpl] = renderRecord(
      tok,
      { kind: 'alpaca', line: 1, instruction: 'Add.', input: '', output: '2' },
      { maxLen: 256, alpacaStyle: 'template' },
    );
    expect(countedText(tok, tpl!)).toBe('2</s>');
  });

  it('chat: only assistant tokens up to their end-of-turn token count, across turns', () => {
    const tok = new FakeTokenizer();
    const rec: ChatRecord = {
      kind: 'chat',
      line: 1,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: 'hello' },
        { role: 'user', content: 'more' },
        { role: 'assistant', content: 'ok' },
      ],
    };
    const [ex] = renderRecord(tok, rec, { maxLen: 256 });
    expect(tok.decode(ex!.ids)).toBe(tok.applyChatTemplate(rec.messages));
    expect(countedText(tok, ex!)).toBe('hello<|im_end|>ok<|im_end|>');
    // The counted spans are contiguous runs starting right after "assistant\n".
    const p = examplePreview(tok, ex!);
    expect(p.pieces.filter((x) => x.counted).map((x) => x.text)).toEqual(['hello<|im_end|>', 'ok<|im_end|>']);
    expect(p.pieces.map((x) => x.text).join('')).toBe(tok.decode(ex!.ids));
    expect(p).toMatchObject({ line: 1, tokens: ex!.ids.length, countedTokens: ex!.countedTokens, truncated: false });
  });

  it('chat: assistant first, and a template that renders history differently', () => {
    const tok = new FakeTokenizer();
    const [first] = renderRecord(
      tok,
      { kind: 'chat', line: 1, messages: [{ role: 'assistant', content: 'hello' }] },
      { maxLen: 64 },
    );
    expect(countedText(tok, first!)).toBe('hello<|im_end|>');

    // Like Qwen3: the last assistant turn gets an empty think block, earlier ones do not.
    class ThinkingTok extends FakeTokenizer {
      override applyChatTemplate(
        messages: { role: string; content: string }[],
        opts: { addGenerationPrompt?: boolean } = {},
      ): string {
        let s = '';
        messages.forEach((m, i) => {
          const think = m.role === 'assistant' && i === messages.length - 1 ? '<think></think>' : '';
          s += `<|im_start|>${m.role}\n${think}${m.content}<|im_end|>\n`;
        });
        return opts.addGenerationPrompt ? `${s}<|im_start|>assistant\n` : s;
      }
    }
    const t2 = new ThinkingTok();
    const msgs = [
      { role: 'user' as const, content: 'hi' },
      { role: 'assistant' as const, content: 'hello' },
      { role: 'user' as const, content: 'more' },
      { role: 'assistant' as const, content: 'ok' },
    ];
    const [ex] = renderRecord(t2, { kind: 'chat', line: 1, messages: msgs }, { maxLen: 256 });
    expect(countedText(t2, ex!)).toBe('hello<|im_end|><think></think>ok<|im_end|>');
  });

  it('chat without a chat template: a plain layout with EOS after each assistant turn', () => {
    const tok = new FakeTokenizer({ chatTemplate: false, eosTokenIds: [EOS] });
    const msgs = [
      { role: 'user' as const, content: 'hi' },
      { role: 'assistant' as const, content: 'hello' },
    ];
    const [ex] = renderRecord(tok, { kind: 'chat', line: 1, messages: msgs }, { maxLen: 64 });
    expect(tok.decode(ex!.ids)).toBe('### User:\nhi\n\n### Assistant:\nhello</s>\n\n');
    expect(countedText(tok, ex!)).toBe('hello</s>');
    expect(ex!.ids).not.toContain(IM_END);
  });

  it('a prompt that fills maxLen is an issue; stats and issues from tokenizeRecords', () => {
    const tok = new FakeTokenizer({ chatTemplate: false });
    const records: DatasetRecord[] = [
      { kind: 'alpaca', line: 1, instruction: 'x'.repeat(50), input: '', output: 'y' },
      { kind: 'text', line: 2, text: 'hello world' },
    ];
    const r = tokenizeRecords(tok, records, { maxLen: 40 });
    expect(r.examples.map((e) => e.line)).toEqual([2]);
    expect(r.issues).toEqual([
      {
        line: 1,
        message:
          'expected trainable tokens within max length 40, got a prompt that fills all 40 tokens; raise max length or shorten the record',
      },
    ]);
    expect(r).toMatchObject({ tokens: 3, countedTokens: 2, truncated: 0 });
    expect(() => renderRecord(tok, records[1]!, { maxLen: 1 })).toThrow(RangeError);
  });

  it('a failing chat template is an issue, not a crash', () => {
    class Strict extends FakeTokenizer {
      override applyChatTemplate(
        messages: { role: string; content: string }[],
        opts?: { addGenerationPrompt?: boolean },
      ): string {
        if (messages[0]?.role === 'system') throw new Error('System role not supported');
        return super.applyChatTemplate(messages, opts);
      }
    }
    const r = tokenizeRecords(
      new Strict(),
      [
        {
          kind: 'chat',
          line: 9,
          messages: [
            { role: 'system', content: 's' },
            { role: 'assistant', content: 'a' },
          ],
        },
      ],
      { maxLen: 64 },
    );
    expect(r.examples).toEqual([]);
    expect(r.issues).toEqual([
      { line: 9, message: 'the chat template failed on this conversation: System role not supported' },
    ]);
  });
});
