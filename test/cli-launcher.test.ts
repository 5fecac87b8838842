/**
 * The CLI runs straight from the TypeScript sources: bin/tabtune.mjs registers tsx and the `?raw`
 * loader, then calls src/cli/main.ts.
 */
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

function tabtune(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(ROOT, 'bin', 'tabtune.mjs'), ...args],
      { cwd: ROOT, timeout: 120_000, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe('bin/tabtune.mjs', () => {
  it('`info` prints the WebGPU adapter', async () => {
    const r = await tabtune(['info']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^adapter: \S.*$/m);
    expect(r.stdout).toMatch(/shader-f16: (yes|no)/);
    console.log(`[tabtune] CLI: ${r.stdout.split('\n')[0]}`);
  });

  it('an unknown command is a one-line usage error with exit code 2', async () => {
    const r = await tabtune(['no-such-command']);
    expect(r.code).toBe(2);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('tabtune:'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/unknown command "no-such-command"/);
  });
});
