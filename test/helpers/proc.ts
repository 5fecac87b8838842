import { spawn } from 'node:child_process';

export interface ProcResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to its end and collects its output (no shell; `cwd` defaults to the process's;
 * `env` adds variables to the process's own; `input` is written to its stdin, then closed).
 */
export function runCommand(
  cmd: string,
  args: string[],
  cwd?: string,
  env?: Record<string, string>,
  input?: string,
): Promise<ProcResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, {
      cwd,
      env: env ? { ...process.env, ...env } : undefined,
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    if (input !== undefined) p.stdin!.end(input);
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d) => (stdout += d));
    p.stderr!.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}
