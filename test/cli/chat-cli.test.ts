/**
 * `tabtune chat` fed from a pipe, on a tiny model with a chat template: a greedy reply equals
 * `generate --chat` for the same prompt (and `--completion` equals plain `generate`), replies are
 * prefixed with who wrote them, commands change the system prompt and regenerate, and mistakes
 * (an unknown command, a missing adapter folder) are reported without ending the conversation,
 * then in the exit code.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTinyModel } from '../fixtures/tiny-model';
import { type ProcResult, runCommand } from '../helpers/proc';

const ROOT = join(import.meta.dirname, '..', '..');
let dir = '';
let model = '';

function run(args: string[], input?: string): Promise<ProcResult> {
  return runCommand(process.execPath, [join(ROOT, 'bin', 'tabtune.mjs'), ...args], ROOT, undefined, input);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-chat-cli-'));
  model = join(dir, 'model');
  await writeTinyModel(model, { modelType: 'llama', seed: 5 });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const own = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('tabtune:'));

describe('tabtune chat', () => {
  it('answers line by line as generate does, with commands and errors along the way', async () => {
    // Sampled (the tiny random model's greedy text is only line breaks): the same seed gives the same text.
    const sampling = ['--max-new-tokens', '8', '--temperature', '1', '--top-k', '0', '--seed', '3'];
    const gen = await run(['generate', '--model', model, '--chat', '--prompt', 'The cat', ...sampling]);
    expect(gen.code, gen.stderr).toBe(0);
    const expected = gen.stdout.replace(/\n$/, '');
    expect(expected.trim().length).toBeGreaterThan(0);

    const input = ['The cat', '/bogus', `/adapter ${join(dir, 'missing')}`, '/system Be terse.', '/regen', ''].join(
      '\n',
    );
    const res = await run(['chat', '--model', model, ...sampling], input);
    expect(res.code, 'a failed command makes the exit code 1').toBe(1);
    const replies = res.stdout
      .split('base> ')
      .slice(1)
      .map((r) => r.replace(/\n$/, ''));
    expect(replies).toHaveLength(2);
    expect(replies[0]).toBe(expected);
    // Regenerated with the system prompt and the next seed: another reply.
    expect(replies[1]).not.toBe(expected);
    expect(own(res.stderr)).toEqual([
      expect.stringMatching(/^tabtune: unknown command \/bogus\. Commands: \/system TEXT, \/adapter DIR/),
      expect.stringMatching(/^tabtune: \/adapter directory ".*missing" does not exist\./),
    ]);

    const plain = await run(['generate', '--model', model, '--prompt', 'The cat', ...sampling]);
    const completion = await run(['chat', '--model', model, '--completion', ...sampling], 'The cat\n');
    expect(completion.code, completion.stderr).toBe(0);
    expect(completion.stdout).toBe(`base> ${plain.stdout}`);
  });
});
