/**
 * Writing the CLI's outputs without ever leaving a half-written folder: every part goes to a
 * temporary name beside its target first; only when all parts are on disk are they renamed into
 * place (the config last, so a crash between renames never pairs a new config with old weights).
 * On any failure (a full disk, a permission) the temporaries are removed, what was there before is
 * untouched, and the error names the path that could not be written.
 */
import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';

export interface FilePart {
  path: string;
  data: string | Uint8Array;
}

/** Why writing `path` failed, for a one-line message. */
function writeProblem(path: string, e: unknown): Error {
  const code = (e as { code?: string }).code;
  const why =
    code === 'ENOSPC'
      ? 'the disk is full'
      : code === 'EACCES' || code === 'EPERM'
        ? 'permission denied'
        : code === 'EROFS'
          ? 'the file system is read-only'
          : (e as Error).message;
  return new Error(`cannot write ${path}: ${why}. Nothing was replaced; free space or fix the folder and run again.`, {
    cause: e,
  });
}

/** The file operations used (tests pass failing ones to play a full disk). */
export interface WriteIo {
  writeFile(path: string, data: string | Uint8Array): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  rm(path: string, opts: { force: boolean }): Promise<void>;
}

const NODE_IO: WriteIo = { writeFile, rename, rm };

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
