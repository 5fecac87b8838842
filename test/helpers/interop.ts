/**
 * What the Python interop tests (test/python/*.py-test.ts, `npm run test:peft`) share: running
 * `tabtune` and scripts/peft_interop.py (with .venv-peft's Python, or TABTUNE_PEFT_PYTHON) and reading
 * the JSON each prints last, and the loss comparison.
 */
import { join } from 'node:path';
import { expect } from 'vitest';
import { runCommand } from './proc';

export const ROOT = join(import.meta.dirname, '..', '..');
const PYTHON = process.env.TABTUNE_PEFT_PYTHON ?? join(ROOT, '.venv-peft', 'bin', 'python');

async function lastJson<T>(cmd: string, args: string[]): Promise<T> {
  const r = await runCommand(cmd, args, ROOT);
  expect(r.code, `${cmd} ${args.join(' ')}\n${r.stderr.slice(-3000)}`).toBe(0);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as T;
}

/** `tabtune ARGS` (with --json where the command prints JSON). */
export const tabtune = <T = Record<string, number>>(args: string[]) =>
  lastJson<T>(process.execPath, [join(ROOT, 'bin', 'tabtune.mjs'), ...args]);

/** `scripts/peft_interop.py ARGS` in the interop Python. */
export const python = <T = Record<string, number>>(args: string[]) =>
  lastJson<T>(PYTHON, [join(ROOT, 'scripts', 'peft_interop.py'), ...args]);

/** Same loss on the same tokens: float32 on two engines, relative 1e-4. */
export function expectSameLoss(ours: Record<string, number>, theirs: Record<string, number>, what: string): void {
  expect(ours.tokens, `${what}: token count`).toBe(theirs.tokens);
  expect(
    Math.abs(ours.loss! - theirs.loss!) / theirs.loss!,
    `${what}: loss ${ours.loss} vs Python ${theirs.loss}`,
  ).toBeLessThan(1e-4);
}
