import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/model/config';
import { loadModel } from '../../src/model/load';
import { MemorySource } from '../../src/model/source';
import { TokenizerError, createTokenizer } from '../../src/model/tokenizer';
import { CHATML_TEMPLATE, TINY_CORPUS, type TinyModelOptions, makeTinyModel } from '../fixtures/tiny-model';

async function tinyTokenizer(o: TinyModelOptions = { modelType: 'llama' }) {
  const m = makeTinyModel(o);
  const loaded = await loadModel(new MemorySource(m.files));
  const tok = await createTokenizer(loaded.tokenizerJson, loaded.tokenizerConfig, loaded.config);
  return { m, tok, loaded };
}

describe('createTokenizer (tiny byte-level BPE)', () => {
  it('round-trips text, including non-ASCII and emoji', async () => {
    const { tok } = await tinyTokenizer();
    for (const text of [
      TINY_CORPUS,
      'Héllo wörld — ünïcödé 🙂 日本語\n\ttabs  and  spaces ',
      '',
      ' leading space',
      "it's the cat's",
    ]) {
      const ids = tok.encode(text, { addSpecialTokens: false });
      expect(tok.decode(ids)).toBe(text);
    }
  });

  it('uses the learned merges (fewer tokens than bytes) and stays within its vocabulary', async () => {
    const { tok, m } = await tinyTokenizer();
    const ids = tok.encode(TINY_CORPUS);
    const bytes = new TextEncoder().encode(TINY_CORPUS).length;
    expect(ids.length).toBeLessThan(bytes * 0.75);
    expect(Math.max(...ids)).toBeLessThan(256 + 40);
    expect(tok.vocabSize).toBe(m.tokenizerVocabSize);
    expect(tok.vocabSize).toBe(299);
    expect(tok.vocabSize).toBeLessThan(parseConfig(m.config).vocabSize);
    // " the" is frequent enough in the corpus to be one token
    expect(tok.encode(' the', { addSpecialTokens: false })).toHaveLength(1);
  });

  it('special tokens: one id each, skipped on request; ids are as the fixture says', async () => {
    const { tok, m } = await tinyTokenizer();
    const { endoftext, imStart, imEnd } = m.specialIds;
    expect([endoftext, imStart, imEnd]).toEqual([296, 297, 298]);
    const ids = tok.encode('<|im_start|>user\nhi<|im_end|>\n', { addSpecialTokens: false });
    expect(ids[0]).toBe(imStart);
    expect(ids.filter((i) => i === imEnd)).toHaveLength(1);
    expect(tok.decode(ids)).toBe('<|im_start|>user\nhi<|im_end|>\n');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('user\nhi\n');
    expect(tok.decode([endoftext])).toBe('<|endoftext|>');
  });

  it('bos / eos / pad from tokenizer_config, completed by the model config', async () => {
    const { tok, m } = await tinyTokenizer({ modelType: 'qwen2' });
    expect(tok.bosTokenId).toBeNull(); // tokenizer_config says bos_token: null
    expect(tok.eosTokenIds).toEqual([m.specialIds.imEnd, m.specialIds.endoftext]);
    expect(tok.padTokenId).toBe(m.specialIds.endoftext);
    const g = await tinyTokenizer({ modelType: 'gpt2' });
    expect(g.tok.eosTokenIds).toEqual([g.m.specialIds.imEnd, g.m.specialIds.endoftext]);
    // without a model config, only the tokenizer's own
    const bare = await createTokenizer(m.tokenizerJson, m.tokenizerConfig);
    expect(bare.eosTokenIds).toEqual([m.specialIds.imEnd]);
    // bos_token absent from tokenizer_config -> config.json's
    const cfg = { ...m.tokenizerConfig };
    delete cfg.bos_token;
    const fromCfg = await createTokenizer(m.tokenizerJson, cfg, parseConfig(m.config));
    expect(fromCfg.bosTokenId).toBe(m.specialIds.endoftext);
  });

  it('addSpecialTokens applies the post-processor (Llama-style BOS)', async () => {
    const { tok, m } = await tinyTokenizer({ modelType: 'llama', addBos: true });
    expect(tok.bosTokenId).toBe(m.specialIds.endoftext);
    const plain = tok.encode('The cat', { addSpecialTokens: false });
    const withBos = tok.encode('The cat');
    expect(withBos).toEqual([m.specialIds.endoftext, ...plain]);
    expect(tok.decode(withBos, { skipSpecialTokens: true })).toBe('The cat');
    // the ByteLevel post-processor adds nothing
    const { tok: noBos } = await tinyTokenizer({ modelType: 'llama' });
    expect(noBos.encode('The cat')).toEqual(noBos.encode('The cat', { addSpecialTokens: false }));
  });

  it('renders the ChatML chat template', async () => {
    const { tok, m } = await tinyTokenizer();
    expect(tok.hasChatTemplate).toBe(true);
    const messages = [
      { role: 'system', content: 'You are kind.' },
      { role: 'user', content: 'What did the cat watch?' },
      { role: 'assistant', content: 'The rain.' },
    ];
    const text = tok.applyChatTemplate(messages);
    expect(text).toBe(
      '<|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>user\nWhat did the cat watch?<|im_end|>\n<|im_start|>assistant\nThe rain.<|im_end|>\n',
    );
    expect(tok.applyChatTemplate(messages.slice(0, 2), { addGenerationPrompt: true })).toBe(
      '<|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>user\nWhat did the cat watch?<|im_end|>\n<|im_start|>assistant\n',
    );
    const ids = tok.encode(text, { addSpecialTokens: false });
    expect(ids.filter((i) => i === m.specialIds.imStart)).toHaveLength(3);
    expect(tok.decode(ids)).toBe(text);
  });

  it('templates see the special tokens, and named template lists pick "default"', async () => {
    const { m } = await tinyTokenizer();
    const cfg = {
      ...m.tokenizerConfig,
      chat_template: [
        { name: 'tool_use', template: 'TOOLS' },
        {
          name: 'default',
          template: '{{ eos_token }}|{{ pad_token }}|{% for m in messages %}{{ m.role }}{% endfor %}',
        },
      ],
    };
    const tok = await createTokenizer(m.tokenizerJson, cfg);
    expect(tok.applyChatTemplate([{ role: 'user', content: 'x' }])).toBe('<|im_end|>|<|endoftext|>|user');
    const raising = await createTokenizer(m.tokenizerJson, {
      ...m.tokenizerConfig,
      chat_template: "{{ raise_exception('roles must alternate') }}",
    });
    expect(() => raising.applyChatTemplate([{ role: 'user', content: 'x' }])).toThrow(
      /chat template failed to render: .*roles must alternate/,
    );
  });

  it('no chat template: flag off and a clear error', async () => {
    const { m } = await tinyTokenizer();
    const cfg = { ...m.tokenizerConfig };
    delete cfg.chat_template;
    const tok = await createTokenizer(m.tokenizerJson, cfg);
    expect(tok.hasChatTemplate).toBe(false);
    expect(() => tok.applyChatTemplate([{ role: 'user', content: 'hi' }])).toThrow(TokenizerError);
    expect(() => tok.applyChatTemplate([{ role: 'user', content: 'hi' }])).toThrow(/no chat template/);
  });

  it('decode ignores ids beyond the tokenizer (extra embedding rows) and accepts empty input', async () => {
    const { tok } = await tinyTokenizer();
    const ids = tok.encode('cat', { addSpecialTokens: false });
    expect(tok.decode([...ids, 310, 319])).toBe('cat');
    expect(tok.decode([])).toBe('');
  });

  it('rejects something that is not a tokenizers file', async () => {
    await expect(createTokenizer({ vocab: {} }, {})).rejects.toThrow(/tokenizer\.json has no "model" section/);
    await expect(createTokenizer({ model: { type: 'Nope' } }, {})).rejects.toThrow(TokenizerError);
  });

  it('the fixture template constant is the one in tokenizer_config.json', () => {
    expect(makeTinyModel({ modelType: 'qwen3' }).tokenizerConfig.chat_template).toBe(CHATML_TEMPLATE);
  });
});

describe('agrees with @huggingface/transformers (AutoTokenizer, apply_chat_template) on the same files', () => {
  it('encode with and without special tokens, decode, and chat templates', async () => {
    const { mkdtempSync, mkdirSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { AutoTokenizer, env } = await import('@huggingface/transformers');
    const root = mkdtempSync(join(tmpdir(), 'tabtune-tok-'));
    const saved = { local: env.localModelPath, remote: env.allowRemoteModels, cache: env.useFSCache };
    try {
      env.localModelPath = root;
      env.allowRemoteModels = false; // never the network
      env.useFSCache = false;
      for (const o of [{ modelType: 'llama' as const, addBos: true }, { modelType: 'qwen2' as const }]) {
        const { m, tok } = await tinyTokenizer(o);
        const dir = join(root, `tiny-${o.modelType}`);
        mkdirSync(dir, { recursive: true });
        for (const [name, bytes] of m.files) writeFileSync(join(dir, name), bytes);
        const hf = await AutoTokenizer.from_pretrained(`tiny-${o.modelType}`, { local_files_only: true });
        const texts = [
          TINY_CORPUS,
          'Héllo wörld — ünïcödé 🙂 日本語\n\ttabs  and  spaces ',
          ' leading space',
          '<|im_start|>user\nhi<|im_end|>\n',
        ];
        for (const text of texts) {
          const ids = tok.encode(text);
          expect(ids, `${o.modelType} encode ${JSON.stringify(text.slice(0, 20))}`).toEqual(hf.encode(text));
          expect(tok.encode(text, { addSpecialTokens: false })).toEqual(hf.encode(text, { add_special_tokens: false }));
          expect(tok.decode(ids)).toBe(hf.decode(ids));
          expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(hf.decode(ids, { skip_special_tokens: true }));
        }
        const messages = [
          { role: 'system', content: 'You are kind.' },
          { role: 'user', content: 'What did the cat watch?' },
          { role: 'assistant', content: 'The rain.' },
        ];
        for (const addGenerationPrompt of [false, true]) {
          const turns = addGenerationPrompt ? messages.slice(0, 2) : messages;
          const theirs = hf.apply_chat_template(turns, { tokenize: false, add_generation_prompt: addGenerationPrompt });
          expect(tok.applyChatTemplate(turns, { addGenerationPrompt }), `${o.modelType} chat template`).toBe(theirs);
        }
      }
    } finally {
      env.localModelPath = saved.local;
      env.allowRemoteModels = saved.remote;
      env.useFSCache = saved.cache;
      rmSync(root, { recursive: true, force: true });
    }
  });
});
