/**
 * What the Python interop tests (test/python/*.py-test.ts, `npm run test:peft`) share: running
 * `tabtune` and the Python scripts (scripts/peft_interop.py, qlora_interop.py, peft_merge_check.py,
 * through a pool of scripts/interop_server.py in .venv-peft's Python, or TABTUNE_PEFT_PYTHON) and
 * reading the JSON each prints last, and the loss comparison.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { tinyCorpusJsonl } from '../fixtures/tiny-model';
import { INTEROP_JOBS } from './jobs';
import { type ProcResult, runCommand } from './proc';
import { PythonPool } from './python-pool';

export const ROOT = join(import.meta.dirname, '..', '..');
export const PYTHON = process.env.TABTUNE_PEFT_PYTHON ?? join(ROOT, '.venv-peft', 'bin', 'python');
// Nothing may be fetched: the models are local folders; no telemetry. Each server gets its share of
// the cores for torch's threads (tiny models: more threads only contend).
export const PY_ENV: Record<string, string> = {
  HF_HUB_OFFLINE: '1',
  HF_HUB_DISABLE_TELEMETRY: '1',
  TOKENIZERS_PARALLELISM: 'false',
  OMP_NUM_THREADS:
    process.env.OMP_NUM_THREADS ?? String(Math.max(1, Math.floor(availableParallelism() / INTEROP_JOBS))),
};
const pool = new PythonPool(PYTHON, ROOT, INTEROP_JOBS, PY_ENV);

function parseLast<T>(r: ProcResult, what: string): T {
  expect(r.code, `${what}\n${r.stderr.slice(-3000)}`).toBe(0);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as T;
}

/** Runs a command and reads the JSON its last stdout line holds (failing the test on a non-zero exit). */
export async function lastJson<T>(cmd: string, args: string[]): Promise<T> {
  return parseLast<T>(await runCommand(cmd, args, ROOT, PY_ENV), `${cmd} ${args.join(' ')}`);
}

/** `python scripts/SCRIPT ARGS` (one of interop_server.py's SCRIPTS), run in a pooled server. */
export async function pyScript<T = Record<string, number>>(script: string, args: string[]): Promise<T> {
  return parseLast<T>(await pool.run(script, args), `scripts/${script} ${args.join(' ')}`);
}

/** Ends the Python servers (each file's afterAll). */
export function closePython(): void {
  pool.close();
}

/** `tabtune ARGS` (with --json where the command prints JSON). */
export const tabtune = <T = Record<string, number>>(args: string[]) =>
  lastJson<T>(process.execPath, [join(ROOT, 'bin', 'tabtune.mjs'), ...args]);

/** `scripts/peft_interop.py ARGS` in the interop Python. */
export const python = <T = Record<string, number>>(args: string[]) => pyScript<T>('peft_interop.py', args);

/** Same loss on the same tokens: float32 on two engines, relative 1e-4. */
export function expectSameLoss(ours: Record<string, number>, theirs: Record<string, number>, what: string): void {
  expect(ours.tokens, `${what}: token count`).toBe(theirs.tokens);
  expect(
    Math.abs(ours.loss! - theirs.loss!) / theirs.loss!,
    `${what}: loss ${ours.loss} vs Python ${theirs.loss}`,
  ).toBeLessThan(1e-4);
}

/** A fresh temporary folder with the tiny corpus as train.jsonl (every line) and eval.jsonl (its first 6). */
export async function corpusDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await writeFile(join(dir, 'train.jsonl'), tinyCorpusJsonl());
  await writeFile(join(dir, 'eval.jsonl'), tinyCorpusJsonl(6));
  return dir;
}
