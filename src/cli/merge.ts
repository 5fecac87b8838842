/**
 * `tabtune merge`: folds an adapter into its base model and writes a Hugging Face model folder
 * (src/lora/merge.ts says what goes in it). Runs on the CPU; no GPU is needed. Each file is
 * streamed to a temporary name in --out and renamed into place when all are written, so a failed
 * merge leaves what was there before.
 */

import { randomBytes } from 'node:crypto';
import { type FileHandle, mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DirSource } from '../model/source';
import { type MergeDType, type MergeSink, mergeAdapter } from '../lora/merge';
import { type FlagSpec, UsageError, bool, parseFlags, str } from './args';
import { checkOutDir, requireDir } from './common';
import { readAdapterForModel } from './loftq-guard';

const MERGE_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', required: true },
  adapter: { type: 'string', required: true },
  out: { type: 'string', required: true },
  dtype: { type: 'string', choices: ['bf16', 'f16', 'f32'] },
  'max-shard-size': { type: 'string' },
  json: { type: 'bool' },
  'any-base': { type: 'bool' },
};

/** "5GB", "500MB", "2GiB", "1000000" (bytes), as transformers' max_shard_size reads them. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)?\s*$/i.exec(text);
  if (!m) throw new UsageError(`--max-shard-size "${text}": expected a size such as 5GB, 500MB or 2GiB.`);
  const unit = (m[2] ?? 'b').toLowerCase();
  const mul: Record<string, number> = {
    b: 1,
    kb: 1e3,
    mb: 1e6,
    gb: 1e9,
    tb: 1e12,
    kib: 2 ** 10,
    mib: 2 ** 20,
    gib: 2 ** 30,
    tib: 2 ** 40,
  };
  const n = Math.floor(Number(m[1]) * mul[unit]!);
  if (n < 1) throw new UsageError(`--max-shard-size "${text}" must be at least one byte.`);
  return n;
}

/** Writes each file to a temporary name in `dir`; commit() renames them all into place. */
export class DirSink implements MergeSink {
  private readonly tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  private readonly done: { temp: string; path: string }[] = [];
  private file: { fh: FileHandle; temp: string; path: string } | null = null;

  constructor(private readonly dir: string) {}

  async open(name: string): Promise<void> {
    const path = join(this.dir, name);
    const temp = `${path}.tmp-${this.tag}`;
    this.file = { fh: await open(temp, 'w'), temp, path };
  }

  async write(bytes: Uint8Array): Promise<void> {
    const f = this.file!;
    try {
      await f.fh.write(bytes);
    } catch (e) {
      const code = (e as { code?: string }).code;
      throw new Error(
        `cannot write ${f.path}: ${code === 'ENOSPC' ? 'the disk is full' : (e as Error).message}. Nothing was replaced.`,
        { cause: e },
      );
    }
  }

  async close(): Promise<void> {
    const f = this.file!;
    await f.fh.close();
    this.done.push({ temp: f.temp, path: f.path });
    this.file = null;
  }

  async commit(): Promise<void> {
    for (const d of this.done) await rename(d.temp, d.path);
    this.done.length = 0;
  }

  async cleanUp(): Promise<void> {
    if (this.file) await this.file.fh.close().catch(() => undefined);
    await Promise.all(
      [...this.done, ...(this.file ? [this.file] : [])].map((d) => rm(d.temp, { force: true }).catch(() => undefined)),
    );
  }
}

export async function merge(argv: string[]): Promise<number> {
  const f = parseFlags(argv, MERGE_FLAGS, 'merge');
  const modelDir = requireDir(str(f, 'model')!, '--model directory');
  const adapterDir = str(f, 'adapter')!;
  const adapter = await readAdapterForModel(f, { command: 'merge', dir: adapterDir, modelDir });
  const out = checkOutDir(str(f, 'out')!);
  const shard = str(f, 'max-shard-size');
  await mkdir(out, { recursive: true });
  const sink = new DirSink(out);
  const json = bool(f, 'json');
  let last = 0;
  try {
    const r = await mergeAdapter(new DirSource(modelDir), adapter, sink, {
      dtype: str(f, 'dtype') as MergeDType | undefined,
      maxShardBytes: shard === undefined ? undefined : parseSize(shard),
      onProgress: (done, total) => {
        const now = Date.now();
        if (!json && (now - last > 1000 || done === total)) {
          last = now;
          process.stderr.write(`merging: ${done}/${total} tensors\n`);
        }
      },
    });
    await sink.commit();
    for (const w of r.warnings) process.stderr.write(`warning: ${w}\n`);
    if (json) process.stdout.write(`${JSON.stringify({ out, files: r.files, merged: r.merged })}\n`);
    else process.stdout.write(`merged ${r.merged} LoRA modules into ${out} (${r.files.join(', ')})\n`);
    return 0;
  } finally {
    await sink.cleanUp();
  }
}
