/**
 * A few long-lived Pythons running scripts/interop_server.py, so that a Python interop test pays
 * the import of torch + transformers + peft (seconds) once per server instead of once per command.
 * `run(script, args)` behaves as `python scripts/<script> ARGS` would (exit code, stdout, stderr)
 * and waits for a free server; up to `size` commands run at once. Servers start on first use and
 * end when `close()` closes their stdin (or when this process exits, which closes it too).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import type { ProcResult } from './proc';

interface Server {
  p: ChildProcess;
  /** The reply of the command in flight. */
  pending: { resolve: (r: ProcResult) => void; reject: (e: Error) => void } | null;
  /** The server's own output outside commands (library warnings, a crash's traceback). */
  log: string;
}

/** A server with a command in flight keeps this process alive; an idle one does not. */
function hold(s: Server, on: boolean): void {
  const m = on ? 'ref' : 'unref';
  s.p[m]();
  for (const stream of [s.p.stdin, s.p.stdout, s.p.stderr, s.p.stdio[3]])
    (stream as unknown as Record<string, (() => void) | undefined>)[m]?.();
}

export class PythonPool {
  private idle: Server[] = [];
  private count = 0;
  private waiting: ((s: Server) => void)[] = [];

  constructor(
    private readonly python: string,
    private readonly root: string,
    private readonly size: number,
    private readonly env: Record<string, string>,
  ) {}

  async run(script: string, args: string[]): Promise<ProcResult> {
    const s = await this.take();
    hold(s, true);
    try {
      return await new Promise<ProcResult>((resolve, reject) => {
        s.pending = { resolve, reject };
        s.p.stdin!.write(`${JSON.stringify({ script, args })}\n`);
      });
    } finally {
      hold(s, false);
      s.pending = null;
      if (s.p.exitCode === null && s.p.signalCode === null) this.give(s);
      else this.count--;
    }
  }

  /** Ends every server (each exits when its stdin closes). */
  close(): void {
    for (const s of this.idle) s.p.stdin!.end();
    this.idle = [];
    this.count = 0;
  }

  private take(): Promise<Server> {
    const s = this.idle.pop();
    if (s) return Promise.resolve(s);
    if (this.count < this.size) {
      this.count++;
      return Promise.resolve(this.start());
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private give(s: Server): void {
    const next = this.waiting.shift();
    if (next) next(s);
    else this.idle.push(s);
  }

  private start(): Server {
    const p = spawn(this.python, [join(this.root, 'scripts', 'interop_server.py')], {
      cwd: this.root,
      env: { ...process.env, ...this.env },
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
    });
    const s: Server = { p, pending: null, log: '' };
    const keep = (d: Buffer) => (s.log = (s.log + d.toString()).slice(-4000));
    p.stdout!.on('data', keep);
    p.stderr!.on('data', keep);
    let buf = '';
    (p.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => {
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const r = JSON.parse(line) as ProcResult;
        s.pending?.resolve(r);
      }
    });
    const fail = (why: string) =>
      s.pending?.reject(new Error(`${this.python} scripts/interop_server.py ${why}\n${s.log.slice(-3000)}`));
    p.on('error', (e) => fail(`could not start: ${e.message}`));
    // A write to a server that died is reported by its exit, not as an unhandled EPIPE.
    p.stdin!.on('error', () => undefined);
    p.on('exit', (code, signal) => fail(`exited (${signal ?? code}) during a command`));
    hold(s, false);
    return s;
  }
}
