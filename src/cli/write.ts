/**
 * Writing the CLI's outputs without ever leaving a half-written folder: every part goes to a
 * temporary name beside its target first; only when all parts are on disk are they renamed into
 * place (the config last, so a crash between renames never pairs a new config with old weights).
 * On any failure (a full disk, a permission) the temporaries are removed, what was there before is
 * untouched, and the error names the path that could not be written.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export interface FilePart {
  path: string;
  data: string | Uint8Array;
}

/** Why writing `path` failed, for a one-line message. */
function writeProblem(path: string, e: unknown): Error {
  return new Error(
    `cannot write ${path}: ${reason(e)}. Nothing was replaced; free space or fix the folder and run again.`,
    {
      cause: e,
    },
  );
}

function reason(e: unknown): string {
  const code = (e as { code?: string }).code;
  const why =
    code === 'ENOSPC'
      ? 'the disk is full'
      : code === 'EACCES' || code === 'EPERM'
        ? 'permission denied'
        : code === 'EROFS'
          ? 'the file system is read-only'
          : (e as Error).message;
  return why;
}

/** The file operations used (tests pass failing ones to play a full disk). */
export interface WriteIo {
  writeFile(path: string, data: string | Uint8Array): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  rm(path: string, opts: { force: boolean }): Promise<void>;
}

/** What writing a folder also uses. */
export interface FolderIo extends WriteIo {
  mkdir(path: string, opts: { recursive: true }): Promise<unknown>;
  chmod(path: string, mode: number): Promise<void>;
  rm(path: string, opts: { force: boolean; recursive?: boolean }): Promise<void>;
}

const NODE_IO: FolderIo = { writeFile, rename, rm, mkdir, chmod };

/** Writes all `parts`, then renames them into place in order; all or nothing. */
export async function writeFilesAtomic(parts: FilePart[], io: WriteIo = NODE_IO): Promise<void> {
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const temps = parts.map((p) => ({ ...p, temp: `${p.path}.tmp-${tag}` }));
  try {
    for (const t of temps) {
      try {
        await io.writeFile(t.temp, t.data);
      } catch (e) {
        throw writeProblem(t.path, e);
      }
    }
    for (const t of temps) {
      try {
        await io.rename(t.temp, t.path);
      } catch (e) {
        throw writeProblem(t.path, e);
      }
    }
  } finally {
    await Promise.all(temps.map((t) => io.rm(t.temp, { force: true }).catch(() => undefined)));
  }
}

/**
 * Writes `files` (paths relative to `out`) into a fresh sibling folder, then puts it in place of
 * `out` (an earlier folder there is replaced only once the new one is whole). On a failure the
 * partial folder is removed and the error names the file that could not be written, e.g.
 * "cannot write recipe/data/train.jsonl: the disk is full".
 */
export async function writeFolderAtomic(
  out: string,
  files: { path: string; data: string | Uint8Array; executable?: boolean }[],
  io: FolderIo = NODE_IO,
): Promise<void> {
  const tmp = join(dirname(out), `.${basename(out)}.partial-${process.pid}`);
  await io.rm(tmp, { recursive: true, force: true });
  let current = out;
  try {
    for (const f of files) {
      current = join(out, ...f.path.split('/'));
      const p = join(tmp, ...f.path.split('/'));
      await io.mkdir(dirname(p), { recursive: true });
      await io.writeFile(p, f.data);
      if (f.executable) await io.chmod(p, 0o755);
    }
    current = out;
    if (existsSync(out)) {
      const old = join(dirname(out), `.${basename(out)}.old-${process.pid}`);
      await io.rename(out, old);
      await io.rename(tmp, out);
      await io.rm(old, { recursive: true, force: true });
    } else {
      await io.rename(tmp, out);
    }
  } catch (e) {
    await io.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw writeProblem(current, e);
  }
}
