/**
 * The shipped demo model, public/models/stories260K (llama2.c's stories260K converted by
 * scripts/llama2c.ts):
 *   - its tokenizer gives the ids of llama2.c's own encoder (run.c's `encode`, written out below
 *     on the original tok512.bin) on varied text;
 *   - the demo's chat format counts exactly the answer and its closing `<s>`;
 *   - greedy generation from "Once upon a time" is the text llama2.c's documentation shows;
 *   - the picker's figures for it (parameters, download) and its model card's shapes are the folder's;
 *   - the app's default demo run (the catalog's settings on public/data/demo-qa.jsonl) teaches it to
 *     answer Compare's demo questions, which the base model answers with a story.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine';
import { DEFAULT_SAMPLING } from '../../src/engine/defaults';
import { createNodeGpu } from '../../src/gpu/node';
import { parseDataset } from '../../src/train/data/records';
import { renderRecord } from '../../src/train/data/render';
import { loadModel } from '../../src/model/load';
import { MemorySource } from '../../src/model/source';
import { type TextTokenizer, createTokenizer } from '../../src/model/tokenizer';
import { presetSettings } from '../../src/ui/settings';
import { DEMO_MODEL_ID, DEMO_PROMPTS, catalogEntry } from '../../src/ui/catalog';
import { parseSafetensors } from '../../src/model/safetensors';
import { formatCount } from '../../src/ui/format';

const DIR = join(process.cwd(), 'public/models/stories260K');
const DATA = join(process.cwd(), 'public/data/demo-qa.jsonl');
const modelFiles = () => new Map(readdirSync(DIR).map((n) => [n, new Uint8Array(readFileSync(join(DIR, n)))]));

/** llama2.c's tokenizer.bin: the pieces as stored (" " for spaces, "\n<s>\n" for BOS) and scores. */
function readTok512(): { vocab: string[]; scores: number[] } {
  const bytes = readFileSync(join(import.meta.dirname, '../fixtures/llama2c/tok512.bin'));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const vocab: string[] = [];
  const scores: number[] = [];
  let at = 4;
  for (let i = 0; i < 512; i++) {
    scores.push(view.getFloat32(at, true));
    const len = view.getInt32(at + 4, true);
    vocab.push(new TextDecoder().decode(bytes.subarray(at + 8, at + 8 + len)));
    at += 8 + len;
  }
  return { vocab, scores };
}

/**
 * run.c's encode(text, bos=1, eos=0): BOS, a " " piece in front of non-empty text, each code point
 * as its piece or else as its UTF-8 bytes (id byte + 3), then repeatedly merge the adjacent pair
 * whose concatenated string is a piece with the highest score (the leftmost on a tie).
 */
function llama2cEncode(text: string, vocab: string[], scores: number[]): number[] {
  const lookup = new Map(vocab.map((p, i) => [p, i]));
  const ids = [1];
  if (text !== '') ids.push(lookup.get(' ')!);
  for (const ch of text) {
    const id = lookup.get(ch);
    if (id !== undefined) ids.push(id);
    else for (const b of new TextEncoder().encode(ch)) ids.push(b + 3);
  }
  for (;;) {
    let best = -1e10;
    let bestId = -1;
    let bestAt = -1;
    for (let i = 0; i < ids.length - 1; i++) {
      const id = lookup.get(vocab[ids[i]!]! + vocab[ids[i + 1]!]!);
      if (id !== undefined && scores[id]! > best) {
        best = scores[id]!;
        bestId = id;
        bestAt = i;
      }
    }
    if (bestAt < 0) return ids;
    ids.splice(bestAt, 2, bestId);
  }
}

const TEXTS = [
  'Once upon a time, there was a little girl named Lily.',
  'One day, Tim said: "Look! A big, red ball!" His mom smiled. They played all day.',
  'She had 3 cats, 12 dogs and 100 fish; 7 + 5 = 12 (really?) [yes] {no} <tag> ~50% | #1 @home & *stars*',
  'two  spaces,   three, and a tab\there\nnew line\n\nand a blank line before this. ',
  'Ünïcödé: café, naïve, jalapeño — “quotes” … ™ € â 日本語 🙂 𝄞',
  "don't can't won't it's Lily's",
  'a',
  '',
];

describe('stories260K: tokenizer', () => {
  let tok: TextTokenizer;
  const { vocab, scores } = readTok512();
  beforeAll(async () => {
    const loaded = await loadModel(new MemorySource(modelFiles(), 'stories260K'));
    tok = await createTokenizer(loaded.tokenizerJson, loaded.tokenizerConfig, loaded.config);
  });

  it("gives llama2.c's ids (with <s> in front) and decodes back to the text", () => {
    for (const text of TEXTS) {
      const ids = tok.encode(text);
      expect(ids, JSON.stringify(text)).toEqual(llama2cEncode(text, vocab, scores));
      expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(text);
    }
    // byte fallback: 日 is not a piece, so it is its three UTF-8 bytes
    expect(tok.encode('日', { addSpecialTokens: false }).slice(1)).toEqual([0xe6 + 3, 0x97 + 3, 0xa5 + 3]);
  });

  it('a text starting with a space gets no second ▁ (as transformers does): the ids of the text without it', () => {
    for (const text of TEXTS.filter(Boolean)) {
      expect(tok.encode(` ${text}`), JSON.stringify(` ${text}`)).toEqual(llama2cEncode(text, vocab, scores));
    }
  });

  it('the demo chat format: "Q: question", then "A:" and the answer, which counts up to and including its <s>', () => {
    expect(tok.applyChatTemplate([{ role: 'user', content: 'Who?' }], { addGenerationPrompt: true })).toBe(
      '<s>Q: Who?\nA:',
    );
    const { records } = parseDataset('demo-qa.jsonl', readFileSync(DATA, 'utf8'));
    expect(records).toHaveLength(24);
    const [ex] = renderRecord(tok, records[0]!, { maxLen: 64 });
    const counted = ex!.ids.filter((_, t) => ex!.counted[t]);
    expect(tok.decode(counted)).toBe('Her name was Lily.<s>');
    expect(counted.at(-1)).toBe(1);
    const prompt = ex!.ids.slice(0, ex!.counted.indexOf(true));
    expect(prompt).toEqual(tok.encode("<s>Q: What was the little girl's name?\nA:", { addSpecialTokens: false }));
    expect(prompt.slice(0, 3)).toEqual([1, 410, vocab.indexOf('Q')]); // <s> ▁ Q: a ▁ after <s>, as in pretraining
  });
});

describe("stories260K: the app's and the model card's figures", () => {
  it("the picker's parameters and size are the shipped weights'; the card's shapes are config.json's", () => {
    const weights = readFileSync(join(DIR, 'model.safetensors'));
    const st = parseSafetensors(new Uint8Array(weights), 'model.safetensors');
    const params = [...st.tensors.values()].reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
    expect(params).toBe(260_032);
    const entry = catalogEntry(DEMO_MODEL_ID)!;
    expect(entry.approxParams).toBe(formatCount(params));
    const folderBytes = readdirSync(DIR).reduce((n, f) => n + readFileSync(join(DIR, f)).length, 0);
    expect(entry.approxDownload).toBe(`${Math.round(folderBytes / 1e6)} MB`);

    const config = JSON.parse(readFileSync(join(DIR, 'config.json'), 'utf8')) as Record<string, number>;
    const card = readFileSync(join(DIR, 'README.md'), 'utf8').replace(/\s+/g, ' ');
    expect(card).toContain(
      `hidden size ${config.hidden_size}, ${config.num_hidden_layers} layers, ${config.num_attention_heads} heads ` +
        `(${config.num_key_value_heads} key/value heads), MLP ${config.intermediate_size}, ` +
        `vocabulary ${config.vocab_size}, ${config.max_position_embeddings} positions`,
    );
    expect(card).toContain(`A ${entry.approxParams}-parameter Llama`);
  });
});

describe('stories260K: on the GPU', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = new Engine(await createNodeGpu());
    const files = [...modelFiles()].map(([n, bytes]) => new File([bytes], n));
    await engine.loadModel({ kind: 'files', id: DEMO_MODEL_ID, files });
  });
  afterAll(() => engine?.dispose());

  it('greedy from "Once upon a time" writes llama2.c\'s documented text', async () => {
    const out = await engine.generate('Once upon a time', null, { ...DEFAULT_SAMPLING, maxNewTokens: 64 });
    expect(`Once upon a time${out.text}`).toMatch(
      /^Once upon a time, there was a little girl named Lily\. She loved to play outside in the park\. One day, she saw a big, red ball\. She wanted to play with it, but it was too high\./,
    );
  });

  it("the app's default demo run teaches it to answer Compare's questions", async () => {
    const { lora, train } = presetSettings(DEMO_MODEL_ID, null);
    await engine.loadDataset('demo-qa.jsonl', readFileSync(DATA, 'utf8'), {
      maxLen: train.maxLen,
      valFraction: train.valFraction,
      seed: train.seed,
    });
    const ask = async (adapter: { key: string; files: Awaited<ReturnType<Engine['train']>>['adapter'] } | null) => {
      const answers: string[] = [];
      for (const p of DEMO_PROMPTS)
        answers.push((await engine.generate(p, adapter, { ...DEFAULT_SAMPLING, maxNewTokens: 24, chat: true })).text);
      return answers;
    };
    const base = await ask(null);
    const run = await engine.train(lora, { ...train, evalEvery: 0, checkpointEvery: 0 });
    const adapter = { key: 'demo', files: run.adapter };
    const tuned = await ask(adapter);
    const [baseVal, tunedVal] = [await engine.evaluate(null), await engine.evaluate(adapter)];
    console.log(
      `[tabtune] stories260K demo run: ${run.steps} steps, final loss ${run.finalLoss?.toFixed(3)}, ` +
        `validation ${baseVal.loss.toFixed(3)} -> ${tunedVal.loss.toFixed(3)}; base ${JSON.stringify(base)}; adapter ${JSON.stringify(tuned)}`,
    );
    expect(tuned).toEqual(['Her name was Lily.', 'She saw a big, red ball.']);
    for (const b of base) expect(b).not.toMatch(/^(Her name was Lily|She saw a big, red ball)\.$/);
    expect(tunedVal.loss).toBeLessThan(baseVal.loss / 4);
  }, 300_000);
});
