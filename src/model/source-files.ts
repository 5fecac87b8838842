/**
 * Sources of files the page already holds: FileListSource (browser `File`s from a dropped or picked
 * folder, matched by relative path) and MemorySource (bundled demo models, tests).
 */

import {
  type ChunkFn,
  ConsumerError,
  type ModelSource,
  type ReadProgress,
  SourceError,
  collector,
  normalizeRelPath,
  pumpStream,
} from './source-common';

/** What we need of a browser `File` (Node 20's global File fits too). */
export interface FileLike {
  name: string;
  size: number;
  /** Set by <input webkitdirectory> and folder drops: "MyModel/config.json". */
  webkitRelativePath?: string;
  arrayBuffer(): Promise<ArrayBuffer>;
  stream?(): ReadableStream<Uint8Array>;
}

/** An explicit relative path for a file (e.g. from a drag-and-drop directory walk). */
export interface FileWithPath {
  path: string;
  file: FileLike;
}

/**
 * Files picked or dropped in the browser. A request for "a/b.json" matches, in order: a file whose
 * relative path is exactly that; one whose path ends with "/a/b.json" (the dropped folder's own name
 * comes first), the shallowest winning; for a bare name, a file with that name anywhere, shallowest first.
 */
export class FileListSource implements ModelSource {
  readonly name: string;
  private readonly entries: { rel: string; file: FileLike }[];

  constructor(files: Iterable<FileLike | FileWithPath> | ArrayLike<FileLike>, name?: string) {
    const items: (FileLike | FileWithPath)[] = Array.from(files as Iterable<FileLike | FileWithPath>);
    this.entries = items.map((it) => {
      const file = 'file' in it && 'path' in it ? it.file : (it as FileLike);
      const raw = 'file' in it && 'path' in it ? it.path : (it as FileLike).webkitRelativePath || (it as FileLike).name;
      return { rel: raw.replace(/\\/g, '/').replace(/^\/+/, ''), file };
    });
    this.name = name ?? (this.entries[0]?.rel.includes('/') ? this.entries[0].rel.split('/')[0]! : 'selected files');
  }

  private find(path: string): FileLike | null {
    const rel = normalizeRelPath(path, this.name);
    const depth = (s: string) => s.split('/').length;
    const exact = this.entries.find((e) => e.rel === rel);
    if (exact) return exact.file;
    const suffix = this.entries.filter((e) => e.rel.endsWith(`/${rel}`)).sort((a, b) => depth(a.rel) - depth(b.rel));
    if (suffix[0]) return suffix[0].file;
    if (!rel.includes('/')) {
      const base = this.entries
        .filter((e) => e.rel.slice(e.rel.lastIndexOf('/') + 1) === rel)
        .sort((a, b) => depth(a.rel) - depth(b.rel));
      if (base[0]) return base[0].file;
    }
    return null;
  }

  /** The selected file at `path` (looked up as reads do), or null. */
  file(path: string): FileLike | null {
    return this.find(path);
  }

  async list(): Promise<string[]> {
    // Paths relative to the common top folder, when every file shares one.
    const rels = this.entries.map((e) => e.rel);
    const tops = new Set(rels.map((r) => (r.includes('/') ? r.split('/')[0] : '')));
    const strip = tops.size === 1 && !tops.has('');
    return rels.map((r) => (strip ? r.slice(r.indexOf('/') + 1) : r)).sort();
  }

  async has(path: string): Promise<boolean> {
    return this.find(path) !== null;
  }

  async read(path: string, onProgress?: ReadProgress): Promise<Uint8Array> {
    const file = this.required(path);
    const c = collector(file.size);
    await this.stream(path, c.onChunk, onProgress);
    return c.bytes();
  }

  async stream(path: string, onChunk: ChunkFn, onProgress?: ReadProgress): Promise<void> {
    const rel = normalizeRelPath(path, this.name);
    const file = this.required(rel);
    const consume: ChunkFn = async (chunk) => {
      try {
        await onChunk(chunk);
      } catch (e) {
        throw new ConsumerError(e);
      }
    };
    try {
      if (typeof file.stream === 'function') await pumpStream(file.stream(), file.size, consume, onProgress);
      else {
        const bytes = new Uint8Array(await file.arrayBuffer());
        await consume(bytes);
        onProgress?.(bytes.byteLength, bytes.byteLength);
      }
    } catch (e) {
      if (e instanceof ConsumerError) throw e.cause;
      throw new SourceError(`Cannot read "${rel}" from "${this.name}": ${(e as Error).message}`, 'io', rel);
    }
  }

  /** The selected file at `path`, or an error saying to select the whole folder. */
  private required(path: string): FileLike {
    const rel = normalizeRelPath(path, this.name);
    const file = this.find(rel);
    if (!file) {
      throw new SourceError(
        `File "${rel}" is not among the selected files of "${this.name}"; select the whole model folder.`,
        'not-found',
        rel,
      );
    }
    return file;
  }
}

/** Files held in memory, e.g. a bundled demo model. */
export class MemorySource implements ModelSource {
  private readonly files: Map<string, Uint8Array>;

  constructor(
    files: Map<string, Uint8Array> | Record<string, Uint8Array>,
    readonly name = 'in-memory model',
  ) {
    const entries = files instanceof Map ? [...files.entries()] : Object.entries(files);
    this.files = new Map(entries.map(([k, v]) => [normalizeRelPath(k, name), v]));
  }

  async list(): Promise<string[]> {
    return [...this.files.keys()].sort();
  }

  async has(path: string): Promise<boolean> {
    return this.files.has(normalizeRelPath(path, this.name));
  }

  async read(path: string, onProgress?: ReadProgress): Promise<Uint8Array> {
    const rel = normalizeRelPath(path, this.name);
    const bytes = this.files.get(rel);
    if (!bytes) throw new SourceError(`File "${rel}" not found in ${this.name}.`, 'not-found', rel);
    onProgress?.(bytes.byteLength, bytes.byteLength);
    return bytes;
  }

  async stream(path: string, onChunk: ChunkFn, onProgress?: ReadProgress): Promise<void> {
    await onChunk(await this.read(path, onProgress));
  }
}
