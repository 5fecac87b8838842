/**
 * The shipped demo model (public/models/stories260K, converted from llama2.c by scripts/llama2c.ts)
 * in Hugging Face's own code (`npm run test:peft`):
 *   - transformers' AutoTokenizer gives Tabtune's ids on varied text and chat-rendered prompts, and
 *     saves the tokenizer in the layout the converter writes;
 *   - transformers' greedy generation (its rotate-half RoPE on the permuted q/k) gives llama2.c's
 *     documented text;
 *   - the base model and an adapter trained by `tabtune train` with the app's default demo settings
 *     give the same loss in transformers + PEFT as in Tabtune.
 */
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../src/model/load';
import { MemorySource } from '../../src/model/source';
import { createTokenizer } from '../../src/model/tokenizer';
import { ROOT, closePython, expectSameLoss, python, tabtune } from '../helpers/interop';

const MODEL = join(ROOT, 'public', 'models', 'stories260K');
const DATA = join(ROOT, 'public', 'data', 'demo-qa.jsonl');
let dir = '';

const TEXTS = [
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.',
  'One day, Tim said: "Look! A big, red ball!" His mom smiled. They played all day.',
  'She had 3 cats, 12 dogs and 100 fish; 7 + 5 = 12 (really?) [yes] {no} ~50% | #1 @home & *stars*',
  'two  spaces,   three, and a tab\there\nnew line\n\nand a blank line before this. ',
  'Ünïcödé: café, naïve, jalapeño — “quotes” … ™ € â 日本語 🙂',
  "<s>Q: What was the little girl's name?\nA: Her name was Lily.<s>Q: What did Lily see one day?\nA:",
];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-stories-'));
});

afterAll(async () => {
  closePython();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the shipped stories260K in transformers', () => {
  it("tokenizes as Tabtune does, and transformers saves the converter's tokenizer.json", async () => {
    const files = new Map<string, Uint8Array>();
    for (const f of await readdir(MODEL)) files.set(f, new Uint8Array(await readFile(join(MODEL, f))));
    const loaded = await loadModel(new MemorySource(files, 'stories260K'));
    const tok = await createTokenizer(loaded.tokenizerJson, loaded.tokenizerConfig, loaded.config);
    const tokJson = loaded.tokenizerJson as Record<string, Record<string, unknown>>;
    await writeFile(join(dir, 'texts.json'), JSON.stringify(TEXTS));
    const there = await python<{ ids: number[][]; saved: Record<string, unknown> }>([
      'tokenize',
      '--model',
      MODEL,
      '--texts',
      join(dir, 'texts.json'),
    ]);
    expect(there.ids).toEqual(TEXTS.map((t) => tok.encode(t)));
    // transformers writes no unk_token into the BPE model; everything else is the same
    const ours: Record<string, unknown> = { ...tokJson, model: { ...tokJson.model, unk_token: null } };
    for (const key of ['added_tokens', 'normalizer', 'pre_tokenizer', 'post_processor', 'decoder', 'model'])
      expect(there.saved[key], key).toEqual(ours[key]);
  });

  it("greedy generation gives llama2.c's documented text", async () => {
    const { text } = await python<{ text: string }>([
      'generate',
      '--model',
      MODEL,
      '--prompt',
      'Once upon a time',
      '--max-new-tokens',
      '64',
    ]);
    expect(text).toMatch(
      /^Once upon a time, there was a little girl named Lily\. She loved to play outside in the park\. One day, she saw a big, red ball\. She wanted to play with it, but it was too high\./,
    );
  });

  it('the base model and an adapter trained with the default demo settings: the same loss in both', async () => {
    const evalFile = join(dir, 'eval.jsonl');
    await writeFile(
      evalFile,
      TEXTS.slice(0, 5)
        .map((text) => JSON.stringify({ text }))
        .join('\n'),
    );
    const baseHere = await tabtune(['eval', '--model', MODEL, '--data', evalFile, '--json']);
    const baseThere = await python(['eval', '--model', MODEL, '--data', evalFile]);
    expectSameLoss(baseHere, baseThere, 'stories260K base');

    const adapter = join(dir, 'adapter');
    // The catalog's demo preset (src/ui/catalog.ts) with the app's validation split and seed.
    await tabtune([
      'train',
      '--model',
      MODEL,
      '--data',
      DATA,
      '--out',
      adapter,
      '--targets',
      'all-linear',
      '--r',
      '8',
      '--alpha',
      '16',
      '--dropout',
      '0',
      '--lr',
      '1e-2',
      '--steps',
      '16',
      '--batch',
      '8',
      '--max-len',
      '64',
      '--scheduler',
      'cosine',
      '--val-fraction',
      '0.1',
      '--seed',
      '42',
      '--json',
    ]);
    const tunedHere = await tabtune(['eval', '--model', MODEL, '--adapter', adapter, '--data', evalFile, '--json']);
    const tunedThere = await python(['eval', '--model', MODEL, '--adapter', adapter, '--data', evalFile]);
    expectSameLoss(tunedHere, tunedThere, 'stories260K + demo adapter');
    console.log(
      `[tabtune] stories260K, loss on ${baseHere.tokens} tokens (Tabtune | Python): base ${baseHere.loss!.toFixed(5)} | ${baseThere.loss!.toFixed(5)}; ` +
        `demo adapter ${tunedHere.loss!.toFixed(5)} | ${tunedThere.loss!.toFixed(5)}`,
    );
  }, 300_000);
});
