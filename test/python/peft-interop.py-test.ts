/**
 * PEFT interop with Hugging Face's own code (transformers + peft in Python, CPU torch), on tiny
 * models of every architecture written by the test:
 *   1. an adapter trained by `tabtune train` loads in Python with PeftModel.from_pretrained and gives
 *      the loss `tabtune eval --adapter` reports on the same records (and so do the base models);
 *   2. an adapter made and saved by Python PEFT (random A and B; rsLoRA for one architecture) loads
 *      in `tabtune eval --adapter` and gives Python's loss.
 * Run by `npm run test:peft` (scripts/peft-venv.mjs makes .venv-peft with torch, transformers and
 * peft first); not part of `npm test`, which must not depend on a Python stack.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TINY_CORPUS, type TinyModelType, writeTinyModel } from '../fixtures/tiny-model';
import { runCommand } from '../helpers/proc';

const ROOT = join(import.meta.dirname, '..', '..');
const PYTHON = process.env.TABTUNE_PEFT_PYTHON ?? join(ROOT, '.venv-peft', 'bin', 'python');
let dir = '';

async function lastJson(cmd: string, args: string[]): Promise<Record<string, number>> {
  const r = await runCommand(cmd, args, ROOT);
  expect(r.code, `${cmd} ${args.join(' ')}\n${r.stderr.slice(-3000)}`).toBe(0);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!);
}

const tabtune = (args: string[]) => lastJson(process.execPath, [join(ROOT, 'bin', 'tabtune.mjs'), ...args]);
const python = (args: string[]) => lastJson(PYTHON, [join(ROOT, 'scripts', 'peft_interop.py'), ...args]);

/** Same loss on the same tokens: float32 on two engines, relative 1e-4. */
function expectSameLoss(ours: Record<string, number>, theirs: Record<string, number>, what: string) {
  expect(ours.tokens, `${what}: token count`).toBe(theirs.tokens);
  expect(
    Math.abs(ours.loss! - theirs.loss!) / theirs.loss!,
    `${what}: loss ${ours.loss} vs Python ${theirs.loss}`,
  ).toBeLessThan(1e-4);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-peft-'));
  const lines = TINY_CORPUS.trim().split('\n');
  await writeFile(join(dir, 'train.jsonl'), lines.map((t) => JSON.stringify({ text: t })).join('\n'));
  await writeFile(
    join(dir, 'eval.jsonl'),
    lines
      .slice(0, 6)
      .map((t) => JSON.stringify({ text: t }))
      .join('\n'),
  );
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const CASES: { type: TinyModelType; targets: string; pyTargets: string; rslora: boolean }[] = [
  {
    type: 'llama',
    targets: 'all-linear',
    pyTargets: 'q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj',
    rslora: false,
  },
  { type: 'mistral', targets: 'q_proj,v_proj', pyTargets: 'q_proj,v_proj', rslora: true },
  { type: 'qwen2', targets: 'q_proj,k_proj,v_proj,o_proj', pyTargets: 'q_proj,k_proj,v_proj,down_proj', rslora: false },
  { type: 'qwen3', targets: 'all-linear', pyTargets: 'q_proj,o_proj,up_proj', rslora: false },
  { type: 'gpt2', targets: 'c_attn,c_proj,c_fc', pyTargets: 'c_attn,c_fc', rslora: true },
];

describe('PEFT interop with Python transformers + peft', () => {
  for (const c of CASES) {
    it(`${c.type}: Tabtune's adapter in Python PEFT, Python PEFT's adapter in Tabtune, same losses`, async () => {
      const model = join(dir, c.type);
      await writeTinyModel(model, { modelType: c.type, addBos: c.type === 'llama' });
      const data = join(dir, 'eval.jsonl');

      // Base model: the same loss on both sides.
      const baseHere = await tabtune(['eval', '--model', model, '--data', data, '--json']);
      const baseThere = await python(['eval', '--model', model, '--data', data]);
      expectSameLoss(baseHere, baseThere, `${c.type} base`);

      // 1. Trained here, loaded there.
      const ours = join(dir, `${c.type}-ours`);
      const trainArgs = [
        'train',
        '--model',
        model,
        '--data',
        join(dir, 'train.jsonl'),
        '--out',
        ours,
        '--targets',
        c.targets,
        '--r',
        '4',
        '--alpha',
        '8',
        '--dropout',
        '0',
        '--steps',
        '12',
        '--lr',
        '0.02',
        '--seed',
        '3',
        '--json',
      ];
      if (c.rslora) trainArgs.push('--rslora');
      await tabtune(trainArgs);
      const oursHere = await tabtune(['eval', '--model', model, '--adapter', ours, '--data', data, '--json']);
      const oursThere = await python(['eval', '--model', model, '--adapter', ours, '--data', data]);
      expectSameLoss(oursHere, oursThere, `${c.type} Tabtune adapter`);

      // 2. Made there, loaded here.
      const theirs = join(dir, `${c.type}-theirs`);
      const mk = [
        'make-adapter',
        '--model',
        model,
        '--out',
        theirs,
        '--r',
        '3',
        '--alpha',
        '6',
        '--targets',
        c.pyTargets,
        '--seed',
        '7',
      ];
      if (c.rslora) mk.push('--rslora');
      await python(mk);
      const theirsThere = await python(['eval', '--model', model, '--adapter', theirs, '--data', data]);
      const theirsHere = await tabtune(['eval', '--model', model, '--adapter', theirs, '--data', data, '--json']);
      expectSameLoss(theirsHere, theirsThere, `${c.type} Python PEFT adapter`);
      console.log(
        `[tabtune] ${c.type}, loss on ${baseHere.tokens} tokens (Tabtune | Python): base ${baseHere.loss!.toFixed(5)} | ${baseThere.loss!.toFixed(5)}; ` +
          `Tabtune-trained adapter ${oursHere.loss!.toFixed(5)} | ${oursThere.loss!.toFixed(5)}; ` +
          `PEFT-made adapter ${theirsHere.loss!.toFixed(5)} | ${theirsThere.loss!.toFixed(5)}`,
      );
    }, 300_000);
  }
});
