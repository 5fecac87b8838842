/**
 * (IA)³, prompt tuning and prefix tuning both ways with Hugging Face's PEFT (transformers + peft in
 * Python, CPU torch), on tiny random models that transformers builds and saves
 * (scripts/peft_interop.py make-model), for each method:
 *   1. an adapter trained by `tabtune train --method ...` loads in Python with
 *      PeftModel.from_pretrained and gives the loss `tabtune eval --adapter` reports (1e-4 relative);
 *   2. an adapter made and saved by Python PEFT (IA3 vectors at 1 + N(0, 0.3), a random prompt, a
 *      prefix with and without PEFT's projection MLP) loads in `tabtune eval` and gives Python's loss;
 *      (a prefix trained here through PEFT's projection MLP too, on llama);
 *   3. greedy generation through each adapter gives PEFT's text (transformers' generate with
 *      PEFT's own handling of the virtual tokens and the KV cache).
 * Prompt tuning's virtual positions predict nothing on either side (the Python eval drops their
 * logits). Run by `npm run test:peft`; one method: `npm run test:peft -- -t prefix`.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TinyModelOptions, writeTinyModel } from '../fixtures/tiny-model';
import { ROOT, expectSameLoss, python, tabtune, corpusDir } from '../helpers/interop';
import { runCommand } from '../helpers/proc';

let dir = '';

beforeAll(async () => {
  dir = await corpusDir('tabtune-peft-methods-');
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const FAMILIES: { name: string; o: TinyModelOptions }[] = [
  { name: 'llama', o: { modelType: 'llama' } },
  { name: 'gpt2', o: { modelType: 'gpt2' } },
  { name: 'mistral (sliding window)', o: { modelType: 'mistral', overrides: { sliding_window: 4 } } },
  { name: 'gemma2', o: { modelType: 'gemma2' } },
];

const METHODS: { method: string; ours: string[]; theirs: string[][] }[] = [
  { method: 'ia3', ours: [], theirs: [[]] },
  {
    method: 'prompt-tuning',
    ours: ['--num-virtual-tokens', '4', '--prompt-init', 'text', '--prompt-init-text', 'the cat sat'],
    theirs: [['--num-virtual-tokens', '4']],
  },
  {
    method: 'prefix-tuning',
    ours: ['--num-virtual-tokens', '3'],
    theirs: [
      ['--num-virtual-tokens', '3'],
      ['--num-virtual-tokens', '2', '--prefix-projection'],
    ],
  },
];

/** `tabtune generate`'s continuation (it prints only the new text). */
async function generateHere(model: string, adapter: string, prompt: string): Promise<string> {
  const r = await runCommand(
    process.execPath,
    [
      join(ROOT, 'bin', 'tabtune.mjs'),
      'generate',
      '--model',
      model,
      '--adapter',
      adapter,
      '--prompt',
      prompt,
      '--max-new-tokens',
      '8',
    ],
    ROOT,
  );
  expect(r.code, r.stderr.slice(-2000)).toBe(0);
  return r.stdout.replace(/\n$/, '');
}

describe('PEFT interop: (IA)³, prompt tuning, prefix tuning', () => {
  FAMILIES.forEach((fam, i) => {
    describe(fam.name, () => {
      const model = () => join(dir, `m${i}`);
      beforeAll(async () => {
        await writeTinyModel(model(), { ...fam.o, addBos: fam.o.modelType === 'llama' });
        await python(['make-model', '--model', model(), '--seed', String(i)]);
      }, 300_000);

      for (const m of METHODS) {
        it(`${m.method}: Tabtune's adapter in PEFT, PEFT's adapter in Tabtune, generation`, async () => {
          const data = join(dir, 'eval.jsonl');
          const base = await tabtune(['eval', '--model', model(), '--data', data, '--json']);
          // 1. trained here, loaded there
          const ours = join(dir, `m${i}-${m.method}-ours`);
          await tabtune([
            'train',
            ...['--model', model(), '--data', join(dir, 'train.jsonl'), '--out', ours],
            ...['--method', m.method, ...m.ours],
            ...['--steps', '6', '--lr', '0.05', '--seed', '3', '--json'],
          ]);
          const oursHere = await tabtune(['eval', '--model', model(), '--adapter', ours, '--data', data, '--json']);
          const oursThere = await python(['eval', '--model', model(), '--adapter', ours, '--data', data]);
          expectSameLoss(oursHere, oursThere, `${fam.name} ${m.method} Tabtune adapter`);
          expect(Math.abs(oursHere.loss! - base.loss!), 'training changed the model').toBeGreaterThan(1e-4);
          const prompt = 'The cat';
          const there = await python<{ text: string }>([
            'generate',
            '--model',
            model(),
            '--adapter',
            ours,
            '--prompt',
            prompt,
            '--max-new-tokens',
            '8',
          ]);
          const here = await generateHere(model(), ours, prompt);
          expect(there.text.replace(/\s+/g, ' ').trim(), 'greedy text').toBe(
            `${prompt}${here}`.replace(/\s+/g, ' ').trim(),
          );
          // 2. made there, loaded here
          for (const [k, extra] of m.theirs.entries()) {
            const theirs = join(dir, `m${i}-${m.method}-theirs${k}`);
            await python([
              'make-method-adapter',
              '--model',
              model(),
              '--out',
              theirs,
              '--method',
              m.method,
              ...extra,
              '--seed',
              '7',
            ]);
            const theirsThere = await python(['eval', '--model', model(), '--adapter', theirs, '--data', data]);
            const theirsHere = await tabtune([
              'eval',
              '--model',
              model(),
              '--adapter',
              theirs,
              '--data',
              data,
              '--json',
            ]);
            expectSameLoss(theirsHere, theirsThere, `${fam.name} ${m.method} PEFT adapter ${extra.join(' ')}`);
            expect(Math.abs(theirsHere.loss! - base.loss!), 'the adapter changes the model').toBeGreaterThan(1e-3);
            console.log(
              `[tabtune] ${fam.name} ${m.method} ${extra.join(' ')} (Tabtune | Python): Tabtune-trained ${oursHere.loss!.toFixed(6)} | ` +
                `${oursThere.loss!.toFixed(6)}; PEFT-made ${theirsHere.loss!.toFixed(6)} | ${theirsThere.loss!.toFixed(6)}`,
            );
          }
        }, 600_000);
      }

      if (fam.name === 'llama') {
        it("prefix-tuning through the projection MLP: Tabtune's adapter in PEFT", async () => {
          const data = join(dir, 'eval.jsonl');
          const base = await tabtune(['eval', '--model', model(), '--data', data, '--json']);
          const ours = join(dir, `m${i}-prefix-projection-ours`);
          await tabtune([
            'train',
            ...['--model', model(), '--data', join(dir, 'train.jsonl'), '--out', ours],
            ...['--method', 'prefix-tuning', '--num-virtual-tokens', '3', '--prefix-projection'],
            ...['--encoder-hidden-size', '12', '--steps', '6', '--lr', '0.05', '--seed', '3', '--json'],
          ]);
          const oursHere = await tabtune(['eval', '--model', model(), '--adapter', ours, '--data', data, '--json']);
          const oursThere = await python(['eval', '--model', model(), '--adapter', ours, '--data', data]);
          expectSameLoss(oursHere, oursThere, `${fam.name} prefix-tuning --prefix-projection Tabtune adapter`);
          expect(Math.abs(oursHere.loss! - base.loss!), 'training changed the model').toBeGreaterThan(1e-4);
          console.log(
            `[tabtune] ${fam.name} prefix-tuning --prefix-projection (Tabtune | Python): Tabtune-trained ` +
              `${oursHere.loss!.toFixed(6)} | ${oursThere.loss!.toFixed(6)}`,
          );
        }, 600_000);
      }
    });
  });
});
