// `tabtune train` under Ctrl-C / SIGTERM: the first signal saves the adapter so far and a checkpoint
// and says how to resume (the run then resumes from it); a second signal quits at once (before, a
// signal lost everything). And a run that ends with a broken-looking adapter warns on stderr.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensors } from '../../src/model/safetensors';
import { writeTinyModel, tinyCorpusJsonl } from '../fixtures/tiny-model';
import { runCommand } from '../helpers/proc';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'tabtune.mjs');
let dir = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-sig-'));
  await writeTinyModel(join(dir, 'model'), { modelType: 'llama', seed: 2 });
  await writeFile(join(dir, 'text.jsonl'), tinyCorpusJsonl());
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * Starts a long training run and sends `signals[0]` once its output shows step 3; any further signal
 * is sent when the run says it is stopping (signals sent together may arrive as one).
 */
function interrupted(out: string, signals: NodeJS.Signals[], extra: string[] = []) {
  const args = ['train', '--model', join(dir, 'model'), '--data', join(dir, 'text.jsonl'), '--out', out];
  const p = spawn(process.execPath, [BIN, ...args, '--steps', '100000', ...extra], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let sent = 0;
  p.stdout.on('data', (d) => {
    stdout += d;
    if (sent === 0 && /step 3\//.test(stdout)) p.kill(signals[sent++]!);
    else if (sent > 0 && sent < signals.length && /stopping after this step/.test(stdout)) p.kill(signals[sent++]!);
  });
  p.stderr.on('data', (d) => (stderr += d));
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    p.on('close', (code) => resolve({ code, stdout, stderr })),
  );
}

describe('signals during train', () => {
  it('the first SIGINT saves the adapter and a checkpoint and says how to resume; the run resumes', async () => {
    const out = join(dir, 'int');
    const r = await interrupted(out, ['SIGINT'], ['--batch', '1', '--max-len', '16']);
    expect(r.code).toBe(130);
    expect(r.stdout).toMatch(/SIGINT: stopping after this step to save the adapter and a checkpoint/);
    const m =
      /interrupted \(SIGINT\) at step (\d+): the adapter so far and checkpoint\.safetensors are in (.*)\. Resume with: tabtune (train .* --resume)\n/.exec(
        r.stdout,
      );
    expect(m, r.stdout + r.stderr).not.toBeNull();
    const step = Number(m![1]);
    expect(step).toBeGreaterThanOrEqual(3);
    for (const f of ['adapter_config.json', 'adapter_model.safetensors', 'checkpoint.safetensors'])
      expect(existsSync(join(out, f)), f).toBe(true);
    // The printed command resumes (here with a nearer end than the original 100000 steps).
    const again = m![3]!.split(' ').filter((a) => a !== '100000' && a !== '--steps');
    const resumed = await runCommand(process.execPath, [BIN, ...again, '--steps', String(step + 2), '--json'], ROOT);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(JSON.parse(resumed.stdout.trim().split('\n').at(-1)!).steps).toBe(step + 2);
    const st = parseSafetensors(
      new Uint8Array(await (await import('node:fs/promises')).readFile(join(out, 'adapter_model.safetensors'))),
    );
    expect(st.tensors.size).toBeGreaterThan(0);
  });

  it('SIGTERM does the same with exit code 143', async () => {
    const out = join(dir, 'term');
    const r = await interrupted(out, ['SIGTERM'], ['--batch', '1', '--max-len', '16']);
    expect(r.code).toBe(143);
    expect(r.stdout).toMatch(/interrupted \(SIGTERM\) at step \d+/);
    expect(existsSync(join(out, 'checkpoint.safetensors'))).toBe(true);
  });

  it('a second signal quits at once without saving', async () => {
    const out = join(dir, 'twice');
    // Long steps, so that the second signal comes while the step after the first one still runs.
    const r = await interrupted(out, ['SIGINT', 'SIGINT'], ['--batch', '64', '--max-len', '128']);
    expect(r.code).toBe(130);
    expect(r.stderr).toMatch(/tabtune: SIGINT again: quitting without saving\./);
    expect(existsSync(join(out, 'adapter_config.json'))).toBe(false);
  });
});

describe('warnings after train', () => {
  it('weights that ran away are reported on stderr (--lr 1e6 without clipping)', async () => {
    const out = join(dir, 'runaway');
    const args = ['train', '--model', join(dir, 'model'), '--data', join(dir, 'text.jsonl'), '--out', out];
    const r = await runCommand(
      process.execPath,
      [BIN, ...args, '--steps', '3', '--lr', '1e6', '--max-grad-norm', '0', '--max-len', '16'],
      ROOT,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /^tabtune: warning: The adapter's weights ran away: .* holds [\d.e+]+ .*learning rate \(1000000\)/m,
    );
  });
});
