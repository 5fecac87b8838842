// A tokenizer whose ids reach past the model's embedding rows is refused at load (it used to be
// accepted, and the GPU would read another row or nothing for those tokens).
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/model/config';
import { createTokenizer } from '../../src/model/tokenizer';
import { makeTinyModel } from '../fixtures/tiny-model';

describe('tokenizer ids vs the embedding', () => {
  it('a tokenizer with more ids than vocab_size is refused naming the token, its id and vocab_size', async () => {
    const m = makeTinyModel({ modelType: 'llama' });
    const small = parseConfig({ ...m.config, vocab_size: m.tokenizerVocabSize - 1 });
    await expect(createTokenizer(m.tokenizerJson, m.tokenizerConfig, small)).rejects.toThrow(
      new RegExp(
        `^tokenizer\\.json: token ".*" has id ${m.tokenizerVocabSize - 1}, but the model's embedding has only ${m.tokenizerVocabSize - 1} rows \\(vocab_size = ${m.tokenizerVocabSize - 1} in config\\.json\\)`,
      ),
    );
  });

  it('an added token past the embedding is refused too', async () => {
    const m = makeTinyModel({ modelType: 'llama' });
    const config = parseConfig(m.config);
    const tj = m.tokenizerJson as { added_tokens: unknown[] };
    const evil = {
      ...tj,
      added_tokens: [
        ...tj.added_tokens,
        {
          id: config.vocabSize + 5,
          content: '<evil>',
          single_word: false,
          lstrip: false,
          rstrip: false,
          normalized: false,
          special: true,
        },
      ],
    };
    await expect(createTokenizer(evil, m.tokenizerConfig, config)).rejects.toThrow(/token "<evil>" has id \d+/);
  });

  it('a tokenizer smaller than the embedding is fine (padded vocabularies are common)', async () => {
    const m = makeTinyModel({ modelType: 'llama' });
    const config = parseConfig(m.config);
    expect(config.vocabSize).toBeGreaterThan(m.tokenizerVocabSize);
    const tok = await createTokenizer(m.tokenizerJson, m.tokenizerConfig, config);
    expect(tok.vocabSize).toBe(m.tokenizerVocabSize);
  });
});
