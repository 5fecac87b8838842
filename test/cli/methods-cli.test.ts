/**
 * Every PEFT method through the `tabtune` CLI as a user runs it, on one tiny llama: `train
 * --method ...` with the method's own flags writes PEFT files of its peft_type; `eval --adapter`
 * reads each back by that peft_type and gives a loss below the base model's on the same tokens;
 * one `chat --completion` session generates with every adapter in turn (`/adapter DIR`), then
 * the base model (`/base`), each reply labelled, as a side-by-side comparison. (Both directions
 * with Python PEFT: test/python/peft-methods.py-test.ts and peft-dora-inits.py-test.ts.)
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TINY_CORPUS, writeTinyModel } from '../fixtures/tiny-model';
import { type ProcResult, runCommand } from '../helpers/proc';

const ROOT = join(import.meta.dirname, '..', '..');
let dir = '';
let model = '';
let data = '';

function run(args: string[], input?: string): Promise<ProcResult> {
  return runCommand(process.execPath, [join(ROOT, 'bin', 'tabtune.mjs'), ...args], ROOT, undefined, input);
}

function lastJson(r: ProcResult): { loss: number; tokens: number } {
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-methods-cli-'));
  model = join(dir, 'model');
  await writeTinyModel(model, { modelType: 'llama' });
  data = join(dir, 'text.jsonl');
  const lines = TINY_CORPUS.trim().split('\n');
  await writeFile(data, lines.map((text) => JSON.stringify({ text })).join('\n'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const METHODS: { name: string; flags: string[]; config: Record<string, unknown>; lr?: string }[] = [
  { name: 'dora', flags: ['--method', 'dora', '--targets', 'q_proj,v_proj', '--r', '4'], config: { use_dora: true } },
  {
    name: 'pissa',
    flags: ['--method', 'lora', '--init', 'pissa', '--targets', 'q_proj,v_proj', '--r', '4'],
    config: { peft_type: 'LORA', r: 8, init_lora_weights: true },
  },
  {
    name: 'ia3',
    flags: ['--method', 'ia3', '--targets', 'k_proj,up_proj,down_proj', '--feedforward-modules', 'down_proj'],
    config: { peft_type: 'IA3', feedforward_modules: ['down_proj'] },
  },
  {
    name: 'prompt',
    // (virtual tokens start N(0, 1): a larger step moves them, as prompt tuning's usual learning rates)
    flags: ['--method', 'prompt-tuning', '--num-virtual-tokens', '3'],
    lr: '0.5',
    config: { peft_type: 'PROMPT_TUNING', num_virtual_tokens: 3 },
  },
  {
    name: 'prefix',
    flags: ['--method', 'prefix-tuning', '--num-virtual-tokens', '3'],
    lr: '0.5',
    config: { peft_type: 'PREFIX_TUNING', num_virtual_tokens: 3 },
  },
];

describe('tabtune CLI: every PEFT method', () => {
  it('trains, evaluates and generates with each, and compares them in one chat session', async () => {
    const base = lastJson(await run(['eval', '--model', model, '--data', data, '--json']));
    for (const m of METHODS) {
      const out = join(dir, m.name);
      const trained = await run([
        'train', '--model', model, '--data', data, '--out', out, '--lr', m.lr ?? '0.05', ...m.flags, '--steps', '6',
        '--batch', '8', '--val-fraction', '0', '--json',
      ]); // prettier-ignore
      expect(trained.code, trained.stderr).toBe(0);
      const cfg = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
      expect(cfg, m.name).toMatchObject(m.config);
      const tuned = lastJson(await run(['eval', '--model', model, '--adapter', out, '--data', data, '--json']));
      console.log(`[tabtune] CLI ${m.name}: eval ${tuned.loss.toFixed(4)} (base ${base.loss.toFixed(4)})`);
      expect(tuned.tokens, m.name).toBe(base.tokens);
      expect(tuned.loss, m.name).toBeLessThan(base.loss);
    }
    // Sampled (a tiny random model's greedy text is mostly line breaks), the same seed for each reply.
    const turns = [...METHODS.flatMap((m) => [`/adapter ${join(dir, m.name)}`, 'The cat']), '/base', 'The cat', ''];
    const chat = await run(
      ['chat', '--model', model, '--completion', '--max-new-tokens', '6', '--temperature', '1', '--seed', '3'],
      turns.join('\n'),
    );
    expect(chat.code, chat.stderr).toBe(0);
    const labels = [...chat.stdout.matchAll(/^(\w+)> /gm)].map((x) => x[1]);
    expect(labels).toEqual([...METHODS.map((m) => m.name), 'base']);
  }, 600_000);
});
