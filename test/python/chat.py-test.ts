/**
 * Chat's generation semantics against transformers (`npm run test:peft`):
 *   - the sampling distribution (repetition penalty, temperature, top-k with ties, top-p) equals
 *     transformers' logits processors' on random logits;
 *   - greedy generation with a repetition penalty gives transformers' generate(repetition_penalty=...)
 *     text on the shipped stories260K;
 *   - a multi-turn conversation with a system prompt renders to apply_chat_template's ids.
 */
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChatMessage, conversationIds } from '../../src/generate/chat';
import { applyRepetitionPenalty, samplingWeights } from '../../src/generate/sampling';
import { loadModel } from '../../src/model/load';
import { MemorySource } from '../../src/model/source';
import { createTokenizer } from '../../src/model/tokenizer';
import { mulberry32 } from '../../src/reference/check';
import { ROOT, closePython, python } from '../helpers/interop';
import { runCommand } from '../helpers/proc';

const MODEL = join(ROOT, 'public', 'models', 'stories260K');
let dir = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-chat-py-'));
});

afterAll(async () => {
  closePython();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface WarpCase {
  logits: number[];
  seen: number[];
  temperature: number;
  top_k: number;
  top_p: number;
  repetition_penalty: number;
}

describe('chat generation as transformers does it', () => {
  it("the sampling distribution equals transformers' logits processors", async () => {
    const next = mulberry32(17);
    const cases: WarpCase[] = [];
    for (const [temperature, top_k, top_p, repetition_penalty] of [
      [1, 0, 1, 1],
      [0.7, 0, 1, 1.3],
      [1.3, 5, 1, 1],
      [0.8, 0, 0.9, 1],
      [0.6, 8, 0.7, 1.1],
      [1, 3, 0.95, 0.8],
    ]) {
      const logits = Array.from({ length: 37 }, () => Math.round((next() * 8 - 4) * 64) / 64);
      // Ties at the top-k boundary: transformers keeps every tied token.
      logits[3] = logits[5] = logits[11] = Math.max(...logits) - 0.5;
      const seen = Array.from({ length: 12 }, () => Math.floor(next() * 37));
      cases.push({
        logits,
        seen,
        temperature: temperature!,
        top_k: top_k!,
        top_p: top_p!,
        repetition_penalty: repetition_penalty!,
      });
    }
    await writeFile(join(dir, 'cases.json'), JSON.stringify(cases));
    const { probs } = await python<{ probs: number[][] }>(['warp', '--cases', join(dir, 'cases.json')]);
    cases.forEach((c, k) => {
      const l = Float64Array.from(c.logits);
      applyRepetitionPenalty(l, c.seen, c.repetition_penalty);
      const w = samplingWeights(l, { temperature: c.temperature, topK: c.top_k, topP: c.top_p });
      const ours = new Array<number>(l.length).fill(0);
      w.ids.forEach((id, j) => (ours[id] = w.weights[j]! / w.total));
      const worst = Math.max(...ours.map((p, i) => Math.abs(p - probs[k]![i]!)));
      expect(worst, `case ${k} ${JSON.stringify({ ...c, logits: undefined, seen: undefined })}`).toBeLessThan(1e-12);
      expect(ours.filter((p) => p > 0).length).toBe(probs[k]!.filter((p) => p > 0).length);
    });
  });

  it("greedy generation with a repetition penalty gives transformers' text", async () => {
    const ours = async (penalty: string) => {
      const r = await runCommand(
        process.execPath,
        [
          join(ROOT, 'bin', 'tabtune.mjs'),
          'generate',
          '--model',
          MODEL,
          '--prompt',
          'Once upon a time',
          '--max-new-tokens',
          '48',
          '--repetition-penalty',
          penalty,
        ],
        ROOT,
      );
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.trim();
    };
    const penalized = await ours('1.3');
    expect(penalized, 'the penalty changes the text').not.toBe(await ours('1'));
    const { text } = await python<{ text: string }>([
      'generate',
      '--model',
      MODEL,
      '--prompt',
      'Once upon a time',
      '--max-new-tokens',
      '48',
      '--repetition-penalty',
      '1.3',
    ]);
    expect(text.startsWith('Once upon a time')).toBe(true);
    expect(text.slice('Once upon a time'.length).trim()).toBe(penalized);
  });

  it("a conversation with a system prompt renders to apply_chat_template's ids", async () => {
    const files = new Map<string, Uint8Array>();
    for (const f of await readdir(MODEL)) files.set(f, new Uint8Array(await readFile(join(MODEL, f))));
    const loaded = await loadModel(new MemorySource(files, 'stories260K'));
    const tok = await createTokenizer(loaded.tokenizerJson, loaded.tokenizerConfig, loaded.config);
    const messages: ChatMessage[] = [
      { role: 'system', content: 'A story about Lily.' },
      { role: 'user', content: "What was the little girl's name?" },
      { role: 'assistant', content: 'Her name was Lily.' },
      { role: 'user', content: 'What did Lily see one day?' },
    ];
    await writeFile(join(dir, 'messages.json'), JSON.stringify(messages));
    const { ids } = await python<{ ids: number[] }>([
      'chat-ids',
      '--model',
      MODEL,
      '--messages',
      join(dir, 'messages.json'),
    ]);
    expect(conversationIds(tok, messages, 'chat', 'stories260K')).toEqual(ids);
  });
});
