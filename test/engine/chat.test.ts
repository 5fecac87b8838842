/**
 * Engine.chat on a tiny model (the Chat view and `tabtune chat` call it): greedy replies equal
 * Compare's (Engine.generate) for the same prompt, a seed repeats its sample, Stop ends a reply
 * between tokens (or before the first when pressed while the request gets ready), the next turn
 * reuses the KV cache of the conversation so far and replies exactly as a fresh prefill would, the
 * repetition penalty reaches the generator, and a conversation longer than the model's context fails
 * saying so.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_SAMPLING } from '../../src/engine/defaults';
import { Engine } from '../../src/engine/engine';
import type { ChatMessage, SamplingSettings } from '../../src/engine/types';
import { Generator } from '../../src/generate/generator';
import { writeTinyModel } from '../fixtures/tiny-model';
import { getGpu } from '../helpers/gpu';
import { tinyGpuModel } from '../helpers/tiny-gpu-model';

let dir = '';
let engine: Engine;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-chat-'));
  await writeTinyModel(dir, { modelType: 'llama', seed: 3 });
  engine = new Engine(await getGpu());
  await engine.loadModel({ kind: 'dir', id: 'tiny-llama', path: dir });
});

afterAll(async () => {
  engine?.unload();
  await rm(dir, { recursive: true, force: true });
});

const GREEDY: SamplingSettings = { ...DEFAULT_SAMPLING, maxNewTokens: 8 };
const TURNS: ChatMessage[] = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'The cat' },
  { role: 'assistant', content: 'sat on the mat.' },
  { role: 'user', content: 'And the dog?' },
];

describe('Engine.chat', () => {
  it("greedy: the same text as Compare's generate for the same prompt, with and without the chat template", async () => {
    for (const chat of [false, true]) {
      const compare = await engine.generate('The cat', null, { ...GREEDY, chat });
      const reply = await engine.chat(
        { messages: [{ role: 'user', content: 'The cat' }], mode: chat ? 'chat' : 'completion', sampling: GREEDY },
        null,
      );
      expect(reply.text).toBe(compare.text);
      expect(reply.tokens).toBe(compare.tokens);
      expect(reply.tokens).toBeGreaterThan(0);
    }
  });

  it('a multi-turn conversation streams its reply, and the same seed samples the same reply', async () => {
    const sampled: SamplingSettings = { ...GREEDY, temperature: 1.5, topK: 0, topP: 1, seed: 11, maxNewTokens: 12 };
    const deltas: string[] = [];
    const a = await engine.chat({ messages: TURNS, mode: 'chat', sampling: sampled }, null, (d) => deltas.push(d));
    expect(deltas.join('')).toBe(a.text);
    expect(a.promptTokens).toBeGreaterThan(10);
    const b = await engine.chat({ messages: TURNS, mode: 'chat', sampling: sampled }, null);
    expect(b.text).toBe(a.text);
    // Some other seed draws another text.
    const texts: string[] = [];
    for (const seed of [12, 13, 14]) {
      texts.push((await engine.chat({ messages: TURNS, mode: 'chat', sampling: { ...sampled, seed } }, null)).text);
    }
    expect(texts.some((t) => t !== a.text)).toBe(true);
  });

  it('Stop ends the reply after the current token and returns what was made', async () => {
    let n = 0;
    const res = await engine.chat(
      { messages: TURNS, mode: 'completion', sampling: { ...GREEDY, maxNewTokens: 60 } },
      null,
      () => {
        if (++n === 2) engine.stopGeneration();
      },
    );
    expect(res.stopReason).toBe('stopped');
    expect(res.tokens).toBeLessThan(10);
    // The next reply is not stopped by the old request.
    const next = await engine.chat(
      { messages: TURNS, mode: 'completion', sampling: { ...GREEDY, maxNewTokens: 5 } },
      null,
    );
    expect(next.stopReason === 'length' || next.stopReason === 'eos').toBe(true);
  });

  it('Stop pressed while the reply is getting ready ends it before its first token; the next is not stopped', async () => {
    const pending = engine.chat({ messages: TURNS, mode: 'chat', sampling: GREEDY }, null);
    engine.stopGeneration();
    const res = await pending;
    expect(res).toMatchObject({ text: '', tokens: 0, stopReason: 'stopped' });
    const next = await engine.chat({ messages: TURNS, mode: 'chat', sampling: GREEDY }, null);
    expect(next.tokens).toBeGreaterThan(0);
  });

  it("the next turn reads only what is new (the KV cache's common prefix) and replies as a fresh prefill does", async () => {
    const sampling: SamplingSettings = { ...GREEDY, maxNewTokens: 6 };
    const first: ChatMessage[] = TURNS.slice(0, 2);
    const a = await engine.chat({ messages: first, mode: 'chat', sampling }, null);
    const second: ChatMessage[] = [
      ...first,
      { role: 'assistant', content: a.text },
      { role: 'user', content: 'And the dog?' },
    ];
    const reused = await engine.chat({ messages: second, mode: 'chat', sampling }, null);
    // The whole first prompt (at least) came from the cache.
    expect(reused.reusedTokens).toBeGreaterThanOrEqual(a.promptTokens - 1);
    expect(reused.reusedTokens).toBeLessThan(reused.promptTokens);
    // The same turn again after another conversation (nothing in common but the template's start)...
    await engine.chat({ messages: [{ role: 'user', content: 'Zebras run' }], mode: 'completion', sampling }, null);
    const fresh = await engine.chat({ messages: second, mode: 'chat', sampling }, null);
    expect(fresh.reusedTokens).toBeLessThan(a.promptTokens);
    // ...gives the same reply, token for token.
    expect(fresh.text).toBe(reused.text);
    expect(fresh.tokens).toBe(reused.tokens);
    // And through the Generator itself: a prompt extending the cached one gives the ids a forgotten cache gives.
    const gpu = await getGpu();
    const tiny = await tinyGpuModel(gpu, { modelType: 'llama', seed: 3 });
    const gen = new Generator(gpu, tiny.model, { maxContext: 128, prefillChunk: 8 });
    try {
      const p1 = [3, 9, 14, 15, 9, 2, 6, 5, 3, 5, 8, 9, 7];
      const r1 = await gen.generate(p1, null, { maxNewTokens: 5 });
      const p2 = [...p1, ...r1.ids, 11, 12, 13, 21, 22, 23, 24, 25, 26, 27];
      const warm = await gen.generate(p2, null, { maxNewTokens: 12 });
      expect(warm.reused).toBe(p1.length + r1.ids.length - 1);
      gen.forget();
      const cold = await gen.generate(p2, null, { maxNewTokens: 12 });
      expect(cold.reused).toBe(0);
      expect(warm.ids).toEqual(cold.ids);
    } finally {
      gen.dispose();
      tiny.model.dispose();
    }
  });

  it('a conversation longer than the context fails naming the limit and what to do', async () => {
    const long: ChatMessage[] = [{ role: 'user', content: 'the cat sat on the mat '.repeat(60) }];
    await expect(engine.chat({ messages: long, mode: 'chat', sampling: GREEDY }, null)).rejects.toThrow(
      /The prompt is \d+ tokens long, but model "tiny-llama" reads at most 128 \(max_position_embeddings = 128 in config.json\).*clear the conversation/,
    );
  });

  it('the repetition penalty reaches the generator: a huge one never repeats a token', async () => {
    const gpu = await getGpu();
    const tiny = await tinyGpuModel(gpu, { modelType: 'llama', seed: 3 });
    const gen = new Generator(gpu, tiny.model, { maxContext: 64 });
    try {
      const prompt = [5, 6, 7, 5, 6];
      const plain = await gen.generate(prompt, null, { maxNewTokens: 16, stopIds: [] });
      const penalized = await gen.generate(prompt, null, { maxNewTokens: 16, stopIds: [], repetitionPenalty: 1e9 });
      const seen = new Set(prompt);
      for (const id of penalized.ids) {
        expect(seen.has(id)).toBe(false);
        seen.add(id);
      }
      // Without it the tiny model repeats itself (else the check above would prove nothing).
      expect(new Set([...prompt, ...plain.ids]).size).toBeLessThan(prompt.length + plain.ids.length);
    } finally {
      gen.dispose();
      tiny.model.dispose();
    }
  });
});
