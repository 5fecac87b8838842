/** DirSource: a model folder on the local disk (Node; node:fs is imported lazily so browser bundles stay clean). */

import {
  type ChunkFn,
  ConsumerError,
  type ModelSource,
  type ReadProgress,
  SourceError,
  normalizeRelPath,
} from './source-common';

type FsPromises = typeof import('node:fs/promises');
type PathMod = typeof import('node:path');

let nodeMods: Promise<{ fs: FsPromises; path: PathMod }> | null = null;

/** node:fs and node:path, loaded on first use. The specifiers are hidden from bundlers on purpose. */
function loadNodeMods(): Promise<{ fs: FsPromises; path: PathMod }> {
  if (!nodeMods) {
    const fsName = 'node:fs/promises';
    const pathName = 'node:path';
    nodeMods = Promise.all([
      import(/* @vite-ignore */ fsName) as Promise<FsPromises>,
      import(/* @vite-ignore */ pathName) as Promise<PathMod>,
    ]).then(([fs, path]) => ({ fs, path }));
  }
  return nodeMods;
}

/** A model folder on the local disk (Node only). */
export class DirSource implements ModelSource {
  readonly name: string;

  /** Files are read in chunks of this many bytes (progress granularity; also avoids readFile's 2 GiB cap). */
  static chunkBytes = 16 << 20;

  constructor(
    readonly root: string,
    name?: string,
  ) {
    this.name = name ?? root;
  }

  private async resolve(path: string): Promise<{ full: string; rel: string }> {
    const rel = normalizeRelPath(path, this.name);
    const { path: p } = await loadNodeMods();
    return { full: p.join(this.root, ...rel.split('/')), rel };
  }

  async list(): Promise<string[]> {
    const { fs, path: p } = await loadNodeMods();
    const out: string[] = [];
    const walk = async (dir: string, prefix: string): Promise<void> => {
      let entries;
      try {
        entries = await fs.readdir(dir, { withFileTypes: true });
      } catch (e) {
        throw new SourceError(
          `${this.name}: cannot list folder "${dir}": ${(e as Error).message}`,
          'io',
          prefix || '.',
        );
      }
      for (const ent of entries) {
        const rel = prefix ? `${prefix}/${ent.name}` : ent.name;
        if (ent.isDirectory()) await walk(p.join(dir, ent.name), rel);
        else if (ent.isFile()) out.push(rel);
      }
    };
    await walk(this.root, '');
    return out.sort();
  }

  async has(path: string): Promise<boolean> {
    const { full } = await this.resolve(path);
    const { fs } = await loadNodeMods();
    try {
      return (await fs.stat(full)).isFile();
    } catch {
      return false;
    }
  }

  async read(path: string, onProgress?: ReadProgress): Promise<Uint8Array> {
    const out = { bytes: new Uint8Array(0) };
    // Each chunk is read straight into its place in one array of the file's size.
    await this.chunks(path, onProgress, (size) => {
      out.bytes = new Uint8Array(size);
      return (pos, len) => out.bytes.subarray(pos, pos + len);
    });
    return out.bytes;
  }

  async stream(path: string, onChunk: ChunkFn, onProgress?: ReadProgress): Promise<void> {
    // One chunk-sized buffer, reused: a chunk is only valid during onChunk.
    const into = (size: number) => {
      const buf = new Uint8Array(Math.min(size, DirSource.chunkBytes));
      return (_pos: number, len: number) => buf.subarray(0, len);
    };
    await this.chunks(path, onProgress, into, onChunk);
  }

  /**
   * Reads a file in chunks of at most chunkBytes: `target(size)` gives the memory to read the chunk
   * at file position pos of length len into; `onChunk` (if any) takes each chunk once read.
   */
  private async chunks(
    path: string,
    onProgress: ReadProgress | undefined,
    target: (size: number) => (pos: number, len: number) => Uint8Array,
    onChunk?: ChunkFn,
  ): Promise<void> {
    const { full, rel } = await this.resolve(path);
    const { fs } = await loadNodeMods();
    let handle;
    try {
      handle = await fs.open(full, 'r');
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        throw new SourceError(`${this.name}: file "${rel}" not found (looked for ${full}).`, 'not-found', rel);
      }
      throw new SourceError(`${this.name}: cannot open "${rel}": ${(e as Error).message}`, 'io', rel);
    }
    try {
      const st = await handle.stat();
      if (!st.isFile()) throw new SourceError(`${this.name}: "${rel}" is not a regular file.`, 'not-found', rel);
      const size = st.size;
      const into = target(size);
      onProgress?.(0, size);
      let pos = 0;
      while (pos < size) {
        const len = Math.min(DirSource.chunkBytes, size - pos);
        const buf = into(pos, len);
        let got = 0;
        while (got < len) {
          const { bytesRead } = await handle.read(buf, got, len - got, pos + got);
          if (bytesRead === 0) {
            throw new SourceError(
              `${this.name}: "${rel}" ended after ${pos + got} of ${size} bytes (changed while reading?).`,
              'io',
              rel,
            );
          }
          got += bytesRead;
        }
        if (onChunk) {
          try {
            await onChunk(buf);
          } catch (e) {
            throw new ConsumerError(e); // the reader's own error, passed through unchanged below
          }
        }
        pos += len;
        onProgress?.(pos, size);
      }
    } catch (e) {
      if (e instanceof ConsumerError) throw e.cause;
      if (e instanceof SourceError) throw e;
      throw new SourceError(`${this.name}: cannot read "${rel}": ${(e as Error).message}`, 'io', rel);
    } finally {
      await handle.close();
    }
  }
}
