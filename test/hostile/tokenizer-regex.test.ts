// A tokenizer.json whose pre-tokenizer or normalizer regex backtracks exponentially ("(.*.*)*X") is
// refused at load, naming the field, instead of hanging the worker or the CLI on the first text;
// the patterns of published tokenizers pass.
import { describe, expect, it } from 'vitest';
import { catastrophicShape, tokenizerRegexes } from '../../src/model/regex-budget';
import { createTokenizer } from '../../src/model/tokenizer';
import { makeTinyModel } from '../fixtures/tiny-model';

/** The tiny model's tokenizer with a Split pre-tokenizer on `pattern` before its ByteLevel one. */
function withSplit(pattern: string) {
  const m = makeTinyModel({ modelType: 'llama' });
  const tj = m.tokenizerJson as Record<string, unknown>;
  return {
    m,
    tj: {
      ...tj,
      pre_tokenizer: {
        type: 'Sequence',
        pretokenizers: [
          { type: 'Split', pattern: { Regex: pattern }, behavior: 'Isolated', invert: false },
          tj.pre_tokenizer,
        ],
      },
    },
  };
}

const PUBLISHED = {
  gpt2: "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
  llama3:
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  qwen2:
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  bloom: ' ?[^(\\s|[.,!?…。，、।۔،])]+',
  smollm: '\\p{N}',
  digits: '(?:\\d{1,3})|(?:[a-z]+)?',
};

describe('tokenizer.json regular expressions', () => {
  it('a catastrophic pre-tokenizer regex is refused in milliseconds, naming the field', async () => {
    const { m, tj } = withSplit('(.*.*)*X');
    const t0 = performance.now();
    await expect(createTokenizer(tj, m.tokenizerConfig)).rejects.toThrow(
      'tokenizer.json: pre_tokenizer.pretokenizers[0].pattern.Regex "(.*.*)*X" could take exponential time on some texts: ' +
        'the group at character 1 repeats a repetition (nested quantifiers, as in (a+)+). ' +
        'Tabtune does not run it; use the tokenizer.json that came with the model.',
    );
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('a normalizer Replace pattern is checked too', async () => {
    const m = makeTinyModel({ modelType: 'llama' });
    const tj = {
      ...(m.tokenizerJson as Record<string, unknown>),
      normalizer: { type: 'Replace', pattern: { Regex: '(a|a)*b' }, content: '' },
    };
    await expect(createTokenizer(tj, m.tokenizerConfig)).rejects.toThrow(
      /^tokenizer\.json: normalizer\.pattern\.Regex "\(a\|a\)\*b" .*alternatives that match the same text/,
    );
  });

  it('the shapes that backtrack exponentially, and those that do not', () => {
    for (const bad of [
      '(.*.*)*X',
      '(a+)+$',
      '(?:\\s*\\w+)*!',
      '(x+x+)+y',
      '([a-z]+){2,}',
      '(a|a)+',
      '(a|)*',
      '((ab)*c)*d',
    ])
      expect(catastrophicShape(bad), bad).not.toBeNull();
    for (const [name, ok] of Object.entries(PUBLISHED)) expect(catastrophicShape(ok), name).toBeNull();
    for (const ok of ['(ab)+', '(a|b)*', '(?:a+)?', '\\(a+\\)+', '[(a+)]+', '(a{1})*', 'x{2,3}y*'])
      expect(catastrophicShape(ok), ok).toBeNull();
    expect(catastrophicShape('a'.repeat(20_000))).toMatch(/20000 characters long/);
  });

  it('published patterns load and tokenize as before', async () => {
    const { m, tj } = withSplit(PUBLISHED.llama3);
    const tok = await createTokenizer(tj, m.tokenizerConfig);
    expect(tok.encode('hello world 1234').length).toBeGreaterThan(0);
    expect(tokenizerRegexes(tj).map((r) => r.path)).toEqual(['pre_tokenizer.pretokenizers[0].pattern.Regex']);
  });
});
