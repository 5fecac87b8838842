/**
 * PEFT interop with Hugging Face's own code (transformers + peft in Python, CPU torch), for every
 * supported family and form, on tiny random models that transformers itself builds and saves:
 *   0. the test writes a tiny config.json and tokenizer files (test/fixtures/tiny-model.ts); Python
 *      reads the config with AutoConfig, builds the model with AutoModelForCausalLM.from_config,
 *      randomises every parameter and saves it with save_pretrained (this transformers version's
 *      own config.json and tensor names);
 *   1. the base model gives the same loss in `tabtune eval` and in transformers;
 *   2. an adapter trained by `tabtune train` loads in Python with PeftModel.from_pretrained and gives
 *      the loss `tabtune eval --adapter` reports on the same records;
 *   3. an adapter made and saved by Python PEFT (all-linear, random A and B; rsLoRA for some) loads
 *      in `tabtune eval --adapter` and gives Python's loss.
 * All to 1e-4 relative. Run by `npm test` after the vitest suite, or alone by `npm run test:peft`
 * (scripts/peft-venv.mjs makes .venv-peft first; TABTUNE_PEFT_PYTHON may name another Python).
 * The cases run concurrently (test/helpers/jobs.ts), each with its own Python server
 * (test/helpers/python-pool.ts). One family: `npm run test:peft -- -t gemma2`.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAMILY_CASES } from '../fixtures/family-cases';
import { type TinyModelOptions, writeTinyModel } from '../fixtures/tiny-model';
import { closePython, expectSameLoss, python, tabtune, corpusDir } from '../helpers/interop';

let dir = '';

beforeAll(async () => {
  dir = await corpusDir('tabtune-peft-');
});

afterAll(async () => {
  closePython();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface InteropCase {
  name: string;
  o: TinyModelOptions;
  /** Tabtune's training targets ('' = PEFT's default for the model type). */
  targets: string;
  rslora: boolean;
  /** Python builds the multimodal Gemma 3 checkpoint around the text config. */
  wrapGemma3?: boolean;
}

const TARGETS: Record<string, string> = {
  llama: 'all-linear',
  qwen2: 'q_proj,k_proj,v_proj,o_proj',
  gpt2: 'c_attn,c_proj,c_fc',
  phi3: 'qkv_proj,o_proj,gate_up_proj,down_proj',
  gpt_neox: '',
  opt: 'all-linear',
  bloom: '',
  falcon: 'query_key_value,dense,dense_h_to_4h,dense_4h_to_h',
  gpt_bigcode: '',
  phi: '',
};

const CASES: InteropCase[] = [
  ...FAMILY_CASES.map((fc, i) => ({
    name: fc.name,
    o: fc.o,
    targets: TARGETS[fc.o.modelType] ?? 'all-linear',
    rslora: i % 3 === 1,
  })),
  {
    name: 'gemma3 (multimodal checkpoint, text model)',
    o: { modelType: 'gemma3_text' },
    targets: 'all-linear',
    rslora: false,
    // PEFT's all-linear also adapts the vision tower; Tabtune skips those weights (unused by text)
    wrapGemma3: true,
  },
];

describe.concurrent('PEFT interop with Python transformers + peft', () => {
  CASES.forEach((c, i) => {
    it(`${c.name}: base loss, Tabtune's adapter in PEFT, PEFT's all-linear adapter in Tabtune`, async () => {
      const model = join(dir, `m${i}`);
      await writeTinyModel(model, { ...c.o, addBos: c.o.modelType === 'llama' });
      const mk = ['make-model', '--model', model, '--seed', String(i)];
      if (c.wrapGemma3) mk.push('--wrap-gemma3');
      await python(mk);
      const data = join(dir, 'eval.jsonl');

      // Base model: the same loss on both sides.
      const baseHere = await tabtune(['eval', '--model', model, '--data', data, '--json']);
      const baseThere = await python(['eval', '--model', model, '--data', data]);
      expectSameLoss(baseHere, baseThere, `${c.name} base`);

      // 1. Trained here, loaded there.
      const ours = join(dir, `m${i}-ours`);
      const trainArgs = ['train', '--model', model, '--data', join(dir, 'train.jsonl'), '--out', ours];
      if (c.targets) trainArgs.push('--targets', c.targets);
      trainArgs.push(
        '--r',
        '4',
        '--alpha',
        '8',
        '--dropout',
        '0',
        '--steps',
        '6',
        '--lr',
        '0.02',
        '--seed',
        '3',
        '--json',
      );
      if (c.rslora) trainArgs.push('--rslora');
      await tabtune(trainArgs);
      const oursHere = await tabtune(['eval', '--model', model, '--adapter', ours, '--data', data, '--json']);
      const oursThere = await python(['eval', '--model', model, '--adapter', ours, '--data', data]);
      expectSameLoss(oursHere, oursThere, `${c.name} Tabtune adapter`);
      expect(Math.abs(oursHere.loss! - baseHere.loss!), 'training changed the model').toBeGreaterThan(1e-3);

      // 2. Made there (all-linear, random A and B), loaded here.
      const theirs = join(dir, `m${i}-theirs`);
      const make = ['make-adapter', '--model', model, '--out', theirs, '--r', '3', '--alpha', '6'];
      make.push('--targets', 'all-linear', '--seed', '7');
      if (c.rslora) make.push('--rslora');
      await python(make);
      const theirsThere = await python(['eval', '--model', model, '--adapter', theirs, '--data', data]);
      const theirsHere = await tabtune(['eval', '--model', model, '--adapter', theirs, '--data', data, '--json']);
      expectSameLoss(theirsHere, theirsThere, `${c.name} Python PEFT adapter`);
      expect(Math.abs(theirsHere.loss! - baseHere.loss!), 'the adapter changes the model').toBeGreaterThan(1e-3);
      console.log(
        `[tabtune] ${c.name}, loss on ${baseHere.tokens} tokens (Tabtune | Python): base ${baseHere.loss!.toFixed(6)} | ${baseThere.loss!.toFixed(6)}; ` +
          `Tabtune-trained adapter ${oursHere.loss!.toFixed(6)} | ${oursThere.loss!.toFixed(6)}; ` +
          `PEFT-made adapter ${theirsHere.loss!.toFixed(6)} | ${theirsThere.loss!.toFixed(6)}`,
      );
    }, 600_000);
  });
});
