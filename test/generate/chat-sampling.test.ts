/**
 * The Chat playground's logic without a GPU: how a conversation becomes the model's prompt (chat
 * template with the system prompt first, or plain completion), its errors, and the sampling rules
 * (transformers' repetition penalty, top-k ties, top-p, generation_config.json defaults, seeded
 * draws).
 */
import { describe, expect, it } from 'vitest';
import { ChatError, conversationIds, conversationText, withSystem } from '../../src/generate/chat';
import { applyRepetitionPenalty, sampleToken, samplingDefaults } from '../../src/generate/sampling';
import { Rng } from '../../src/lora/init';
import { createTokenizer } from '../../src/model/tokenizer';
import { makeTinyModel } from '../fixtures/tiny-model';
import { FakeTokenizer } from '../helpers/fake-tokenizer';

describe('conversation -> prompt', () => {
  const tok = new FakeTokenizer({ addBos: true });
  const turns = withSystem('Be brief.', [
    { role: 'user', content: 'hello' },
    { role: 'assistant', content: 'hello world' },
    { role: 'user', content: 'again' },
  ]);

  it('chat mode renders every turn, system first, with the generation prompt, and adds no BOS of its own', () => {
    expect(conversationText(tok, turns, 'chat', 'm')).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n' +
        '<|im_start|>assistant\nhello world<|im_end|>\n<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n',
    );
    const ids = conversationIds(tok, turns, 'chat', 'm');
    expect(ids[0]).toBe(3); // <|im_start|>, not <s>
    expect(tok.decode(ids)).toBe(conversationText(tok, turns, 'chat', 'm'));
  });

  it('completion mode runs the texts together and tokenizes them as a plain prompt (with BOS)', () => {
    expect(conversationText(tok, turns, 'completion', 'm')).toBe('Be brief.hellohello worldagain');
    expect(conversationIds(tok, turns, 'completion', 'm')[0]).toBe(1);
    // One user message in completion mode is exactly the prompt Compare sends without the chat template.
    expect(conversationIds(tok, [{ role: 'user', content: 'hello world' }], 'completion', 'm')).toEqual(
      tok.encode('hello world', { addSpecialTokens: true }),
    );
  });

  it('a blank system prompt adds no message', () => {
    expect(withSystem('  \n', [{ role: 'user', content: 'x' }])).toEqual([{ role: 'user', content: 'x' }]);
  });

  it('says what to do when the model has no template, and when the conversation is empty', () => {
    const plain = new FakeTokenizer({ chatTemplate: false });
    expect(() => conversationText(plain, [{ role: 'user', content: 'x' }], 'chat', 'org/base')).toThrow(
      /Model "org\/base" has no chat template .*switch to plain completion/,
    );
    expect(() => conversationText(tok, [], 'chat', 'm')).toThrow(ChatError);
  });

  it("a template that refuses the conversation fails naming the model and the template, with the template's own words", async () => {
    const m = makeTinyModel({ modelType: 'llama' });
    const real = await createTokenizer(m.tokenizerJson, {
      ...m.tokenizerConfig,
      chat_template:
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}" +
        '{% for m in messages %}{{ m.content }}{% endfor %}',
    });
    const sys = withSystem('Be brief.', [{ role: 'user', content: 'hi' }]);
    expect(() => conversationText(real, sys, 'chat', 'org/gemma-like')).toThrow(
      /Model "org\/gemma-like": The chat template failed to render: System role not supported\. .*chat_template in tokenizer_config\.json.*Clear the system prompt/,
    );
    expect(conversationText(real, [{ role: 'user', content: 'hi' }], 'chat', 'org/gemma-like')).toBe('hi');
    // A template that loops forever is stopped by the tokenizer's budget, named the same way.
    const looping = await createTokenizer(m.tokenizerJson, {
      ...m.tokenizerConfig,
      chat_template: '{% for i in range(99999999) %}x{% endfor %}',
    });
    expect(() => conversationText(looping, sys, 'chat', 'org/m')).toThrow(
      /Model "org\/m": The chat template .*range\(\)/,
    );
  });
});

describe('sampling as transformers does it', () => {
  it('repetition penalty: divides positive and multiplies negative logits of seen tokens, once each (RepetitionPenaltyLogitsProcessor)', () => {
    const l = Float32Array.from([2, -2, 1, 0.5, -1]);
    applyRepetitionPenalty(l, [0, 1, 1, 1, 3, 99], 2);
    expect(Array.from(l)).toEqual([1, -4, 1, 0.25, -1]);
    const same = Float32Array.from([2, -2]);
    applyRepetitionPenalty(same, [0, 1], 1);
    expect(Array.from(same)).toEqual([2, -2]);
  });

  it('greedy is the argmax; top-k keeps every token tied with the k-th; top-p keeps the head up to p', () => {
    const rng = new Rng(1);
    expect(sampleToken([0, 3, 1], { temperature: 0, topK: 0, topP: 1 }, rng)).toBe(1);
    // top_k 1 with a tie: both tied tokens stay candidates (TopKLogitsWarper keeps scores >= the k-th).
    const tied = [5, 0, 5, 1];
    const seen = new Set<number>();
    for (let s = 0; s < 200; s++) seen.add(sampleToken(tied, { temperature: 1, topK: 1, topP: 1 }, new Rng(s)));
    expect([...seen].sort()).toEqual([0, 2]);
    // probabilities 0.5, 0.25, 0.125, 0.125: top_p 0.6 keeps two (0.5 < 0.6 <= 0.75), top_p 0.5 one.
    const logits = [Math.log(0.5), Math.log(0.25), Math.log(0.125), Math.log(0.125)];
    const pick = (p: number) => {
      const got = new Set<number>();
      for (let s = 0; s < 300; s++) got.add(sampleToken(logits, { temperature: 1, topK: 0, topP: p }, new Rng(s)));
      return [...got].sort();
    };
    expect(pick(0.6)).toEqual([0, 1]);
    expect(pick(0.5)).toEqual([0]);
    expect(pick(1)).toEqual([0, 1, 2, 3]);
  });

  it('the same seed draws the same tokens; another seed draws others', () => {
    const logits = Array.from({ length: 50 }, (_, i) => Math.sin(i * 1.7));
    const draw = (seed: number) => {
      const r = new Rng(seed);
      return Array.from({ length: 40 }, () => sampleToken(logits, { temperature: 1.2, topK: 20, topP: 0.9 }, r));
    };
    expect(draw(7)).toEqual(draw(7));
    expect(draw(7)).not.toEqual(draw(8));
  });

  it("generation_config.json's values, or GenerationConfig's defaults; greedy unless do_sample", () => {
    expect(samplingDefaults(null)).toEqual({
      temperature: 0,
      topK: 50,
      topP: 1,
      repetitionPenalty: 1,
      maxNewTokens: null,
    });
    // Qwen2.5-Instruct's file.
    expect(
      samplingDefaults({ do_sample: true, temperature: 0.7, top_p: 0.8, top_k: 20, repetition_penalty: 1.05 }),
    ).toEqual({ temperature: 0.7, topK: 20, topP: 0.8, repetitionPenalty: 1.05, maxNewTokens: null });
    // Values given without do_sample do not turn sampling on; bad values fall back to the defaults.
    expect(samplingDefaults({ temperature: 0.6, top_p: 7, max_new_tokens: 128 })).toEqual({
      temperature: 0,
      topK: 50,
      topP: 1,
      repetitionPenalty: 1,
      maxNewTokens: 128,
    });
  });
});
