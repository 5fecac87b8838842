/**
 * Where model files come from. One interface for every origin:
 *   DirSource       a local folder (Node; node:fs is imported lazily so browser bundles stay clean)
 *   UrlSource       the Hugging Face Hub (`{endpoint}/{repo}/resolve/{revision}/{path}`) or any base URL,
 *                   streamed with download progress, with an optional byte cache (Cache API / OPFS)
 *   FileListSource  browser `File`s from a dropped or picked folder, matched by relative path
 *   MemorySource    files already in memory (bundled demo models, tests)
 *
 * Paths are relative, '/'-separated ("config.json", "model-00001-of-00002.safetensors").
 * A file that does not exist is reported as a SourceError with code 'not-found', so callers can
 * tell "absent" from "unreadable".
 */

/** `total` is null when the size is not known in advance (e.g. a compressed HTTP response). */
export type ReadProgress = (loaded: number, total: number | null) => void;

/**
 * Takes the next bytes of a file being streamed. The chunk is only valid until the call returns
 * (or its promise settles): the source may reuse the memory for the next one.
 */
export type ChunkFn = (chunk: Uint8Array) => void | Promise<void>;

export interface ModelSource {
  /** Human-readable origin, used in error messages ("HuggingFaceTB/SmolLM2-135M", "/models/tiny"). */
  name: string;
  /** Every file path the source holds, when it can tell (not every origin can). */
  list?(): Promise<string[]>;
  has(path: string): Promise<boolean>;
  /** The whole file in memory (config, tokenizer and other small files). */
  read(path: string, onProgress?: ReadProgress): Promise<Uint8Array>;
  /**
   * The file front to back in chunks, each awaited before the next is read, so that a big weight
   * file is never held whole (the model loader quantizes and uploads tensors as they complete).
   */
  stream(path: string, onChunk: ChunkFn, onProgress?: ReadProgress): Promise<void>;
}

export type SourceErrorCode = 'not-found' | 'unauthorized' | 'http' | 'network' | 'io' | 'invalid-path' | 'aborted';

export class SourceError extends Error {
  constructor(
    message: string,
    readonly code: SourceErrorCode,
    /** The relative path that was asked for. */
    readonly path: string,
    /** HTTP status, when the error came from a server. */
    readonly status: number | null = null,
  ) {
    super(message);
    this.name = 'SourceError';
  }
}

export function isNotFound(e: unknown): boolean {
  return e instanceof SourceError && e.code === 'not-found';
}

/** Normalises a relative path: '\\' -> '/', no leading './' or '/', no '..' segments. */
export function normalizeRelPath(path: string, sourceName = 'model source'): string {
  const parts = path
    .replace(/\\/g, '/')
    .split('/')
    .filter((p) => p !== '' && p !== '.');
  if (parts.length === 0 || parts.some((p) => p === '..')) {
    throw new SourceError(`${sourceName}: "${path}" is not a valid relative file path.`, 'invalid-path', path);
  }
  return parts.join('/');
}

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return !!p?.versions?.node;
}

/** Hands a byte stream's chunks to onChunk to its end, reporting progress; returns the byte count. */
async function pumpStream(
  stream: ReadableStream<Uint8Array>,
  total: number | null,
  onChunk: ChunkFn,
  onProgress: ReadProgress | undefined,
): Promise<number> {
  const reader = stream.getReader();
  let loaded = 0;
  onProgress?.(0, total);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!value || value.byteLength === 0) continue;
      await onChunk(value);
      loaded += value.byteLength;
      onProgress?.(loaded, total);
    }
  } catch (e) {
    await reader.cancel().catch(() => undefined);
    throw e;
  }
  return loaded;
}

/** Collects chunks into one array (preallocated when the size is known: no second copy). */
function collector(total: number | null): { onChunk: ChunkFn; bytes: () => Uint8Array } {
  let buf = new Uint8Array(total ?? 1 << 16);
  let loaded = 0;
  return {
    onChunk: (value) => {
      if (loaded + value.byteLength > buf.byteLength) {
        const grown = new Uint8Array(Math.max(buf.byteLength * 2, loaded + value.byteLength));
        grown.set(buf.subarray(0, loaded));
        buf = grown;
      }
      buf.set(value, loaded);
      loaded += value.byteLength;
    },
    bytes: () => (loaded === buf.byteLength ? buf : buf.slice(0, loaded)),
  };
}

// ---------------------------------------------------------------------------------------- DirSource

/** Wraps an error thrown by a stream's consumer so that the source does not report it as its own. */
class ConsumerError {
  constructor(readonly cause: unknown) {}
}

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

/**
 * A web page served for a file that is not one: development and single-page-app servers answer a
 * missing path with their index.html (status 200), which is no model file.
 */
function webPageFor(rel: string, res: Response): boolean {
  return /^text\/html\b/i.test(res.headers.get('content-type') ?? '') && !/\.html?$/i.test(rel);
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

// ---------------------------------------------------------------------------------------- UrlSource

/** A byte cache keyed by URL (the browser's Cache API or OPFS behind it). Failures are ignored. */
export interface ByteCache {
  get(url: string): Promise<Uint8Array | null | undefined>;
  put(url: string, bytes: Uint8Array): Promise<void>;
}

export interface UrlSourceOptions {
  /** Extra request headers, e.g. `{ Authorization: 'Bearer hf_...' }` for gated repos. */
  headers?: Record<string, string>;
  cache?: ByteCache;
  /** Defaults to globalThis.fetch. */
  fetch?: typeof fetch;
  signal?: AbortSignal;
}

export interface HubOptions extends UrlSourceOptions {
  /** Defaults to https://huggingface.co */
  endpoint?: string;
  /** The user's access token (gated and private repos): sent as a Bearer header to the Hub only. */
  token?: string | null;
}

export const HF_ENDPOINT = 'https://huggingface.co';

/**
 * Why `id` is not a Hub repo id, or null when it is one. The Hub's own rules (huggingface_hub's
 * validate_repo_id): "owner/name" (a bare "name" when `ownerOptional`), each part of letters, digits,
 * "-", "_" and ".", not starting or ending with "-" or ".", without "--" or "..", at most 96
 * characters. Above all "." and ".." never pass: in a URL they would resolve to another path.
 */
export function hubIdProblem(id: string, ownerOptional = false): string | null {
  const parts = id.split('/');
  if (parts.length > 2 || (parts.length === 1 && !ownerOptional))
    return 'expected "owner/name" (letters, digits, "-", "_" and ".").';
  if (id.length > 96) return `it is ${id.length} characters long; the Hub allows at most 96.`;
  for (const p of parts) {
    if (!/^[\w.-]+$/.test(p)) return `"${p}" may hold only letters, digits, "-", "_" and ".".`;
    if (p === '.' || p === '..') return `"${p}" is not a name: it would point the download at another address.`;
    if (/^[.-]|[.-]$/.test(p)) return `"${p}" may not start or end with "-" or ".".`;
    if (p.includes('--') || p.includes('..')) return `"${p}" may not contain "--" or "..".`;
  }
  return null;
}

/** Files served from `baseUrl + path` (the Hub's resolve layout, a static server, a CDN). */
export class UrlSource implements ModelSource {
  readonly name: string;
  readonly baseUrl: string;
  /** Hub repo id when made by `UrlSource.hub` (used in messages and for `list`). */
  readonly repo: string | null = null;
  readonly revision: string | null = null;
  private readonly endpoint: string | null = null;
  /** Present only for Hub sources (the Hub's API can list a repo; a plain URL cannot). */
  list?: () => Promise<string[]>;

  constructor(
    baseUrl: string,
    name?: string,
    private readonly opts: UrlSourceOptions = {},
    hub?: { repo: string; revision: string; endpoint: string },
  ) {
    this.baseUrl = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
    this.name = name ?? baseUrl;
    if (hub) {
      this.repo = hub.repo;
      this.revision = hub.revision;
      this.endpoint = hub.endpoint;
      this.list = () => this.hubList();
    }
  }

  /** A Hugging Face Hub repo: `{endpoint}/{repo}/resolve/{revision}/{path}`. */
  static hub(repo: string, revision = 'main', opts: HubOptions = {}): UrlSource {
    const id = repo.trim().replace(/^\/+|\/+$/g, '');
    const problem = hubIdProblem(id, true);
    if (problem) throw new SourceError(`"${repo}" is not a Hugging Face repo id: ${problem}`, 'invalid-path', repo);
    if (!revision || revision.split(/[\\/]/).some((seg) => seg === '.' || seg === '..')) {
      throw new SourceError(
        `"${revision}" is not a revision of ${id}: "." and ".." would point the download at another address.`,
        'invalid-path',
        revision,
      );
    }
    const endpoint = (opts.endpoint ?? HF_ENDPOINT).replace(/\/+$/, '');
    const base = `${endpoint}/${id}/resolve/${encodeURIComponent(revision)}/`;
    const headers = opts.token ? { ...opts.headers, Authorization: `Bearer ${opts.token}` } : opts.headers;
    return new UrlSource(base, id, { ...opts, headers }, { repo: id, revision, endpoint });
  }

  urlOf(path: string): string {
    const rel = normalizeRelPath(path, this.name);
    return this.baseUrl + rel.split('/').map(encodeURIComponent).join('/');
  }

  private get fetchFn(): typeof fetch {
    const f = this.opts.fetch ?? globalThis.fetch;
    if (!f) throw new SourceError(`${this.name}: no fetch() in this environment.`, 'network', '');
    return f.bind(globalThis);
  }

  private where(): string {
    return this.repo
      ? `repo "${this.repo}"${this.revision && this.revision !== 'main' ? ` (revision "${this.revision}")` : ''}`
      : `"${this.baseUrl}"`;
  }

  private statusError(rel: string, url: string, status: number, statusText: string): SourceError {
    if (status === 404) {
      return new SourceError(
        `File "${rel}" not found in ${this.where()} (HTTP 404 for ${url}).`,
        'not-found',
        rel,
        404,
      );
    }
    if (status === 401 || status === 403) {
      const page = `${this.endpoint ?? HF_ENDPOINT}/${this.repo}`;
      const hint = !this.repo
        ? 'The server requires credentials.'
        : this.opts.headers?.Authorization
          ? `The access token given does not open it: if the repo is gated, accept the license at ${page} with the account the token belongs to; a private repo needs a token of an account that can read it (or the id is misspelled).`
          : `The repo is gated or private: accept the license at ${page} (signed in), then give an access token (read access) to download it; or the repo id is misspelled.`;
      return new SourceError(
        `Access denied (HTTP ${status}) to "${rel}" in ${this.where()}. ${hint}`,
        'unauthorized',
        rel,
        status,
      );
    }
    return new SourceError(
      `Download of "${rel}" from ${this.where()} failed: HTTP ${status}${statusText ? ` ${statusText}` : ''} (${url}).`,
      'http',
      rel,
      status,
    );
  }

  private async request(rel: string, url: string, init: RequestInit): Promise<Response> {
    try {
      return await this.fetchFn(url, {
        ...init,
        headers: { ...this.opts.headers, ...(init.headers as Record<string, string>) },
        signal: this.opts.signal,
      });
    } catch (e) {
      if ((e as Error).name === 'AbortError')
        throw new SourceError(`Download of "${rel}" was cancelled.`, 'aborted', rel);
      throw new SourceError(
        `Could not reach ${url} for "${rel}" of ${this.where()}: ${(e as Error).message}. Check the network connection` +
          (isNode() ? '.' : ' and that the server allows cross-origin requests (CORS).'),
        'network',
        rel,
      );
    }
  }

  async has(path: string): Promise<boolean> {
    const rel = normalizeRelPath(path, this.name);
    const url = this.urlOf(rel);
    if (this.opts.cache) {
      try {
        if (await this.opts.cache.get(url)) return true;
      } catch {
        /* cache unavailable: ask the server */
      }
    }
    let res = await this.request(rel, url, { method: 'HEAD' });
    if (res.status === 405 || res.status === 501) {
      // No HEAD support: ask for one byte instead.
      res = await this.request(rel, url, { method: 'GET', headers: { Range: 'bytes=0-0' } });
      await res.body?.cancel().catch(() => undefined);
    }
    if (res.ok) {
      await res.body?.cancel().catch(() => undefined);
      return !webPageFor(rel, res);
    }
    if (res.status === 404) return false;
    throw this.statusError(rel, url, res.status, res.statusText);
  }

  async read(path: string, onProgress?: ReadProgress): Promise<Uint8Array> {
    const rel = normalizeRelPath(path, this.name);
    const url = this.urlOf(rel);
    const cache = this.opts.cache;
    if (cache) {
      let hit: Uint8Array | null | undefined;
      try {
        hit = await cache.get(url);
      } catch {
        hit = null;
      }
      if (hit) {
        onProgress?.(hit.byteLength, hit.byteLength);
        return hit;
      }
    }
    const into: { c?: ReturnType<typeof collector> } = {};
    await this.download(rel, url, onProgress, (total) => {
      into.c = collector(total);
      return into.c.onChunk;
    });
    const bytes = into.c!.bytes();
    if (cache) {
      try {
        await cache.put(url, bytes);
      } catch {
        /* a full or unavailable cache must not fail the load */
      }
    }
    return bytes;
  }

  async stream(path: string, onChunk: ChunkFn, onProgress?: ReadProgress): Promise<void> {
    const rel = normalizeRelPath(path, this.name);
    // The byte cache hook keeps whole files (small ones, read on the page); without one, chunks go
    // straight through (a cache in fetch(), like the app's worker installs, sees the same stream).
    if (this.opts.cache) {
      await onChunk(await this.read(rel, onProgress));
      return;
    }
    await this.download(rel, this.urlOf(rel), onProgress, () => onChunk);
  }

  /**
   * GETs a file and hands its body to the chunk function `sink(total)` returns, checking the byte
   * count against Content-Length. Errors of the consumer pass through unchanged.
   */
  private async download(
    rel: string,
    url: string,
    onProgress: ReadProgress | undefined,
    sink: (total: number | null) => ChunkFn,
  ): Promise<void> {
    const res = await this.request(rel, url, { method: 'GET' });
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      throw this.statusError(rel, url, res.status, res.statusText);
    }
    if (webPageFor(rel, res)) {
      await res.body?.cancel().catch(() => undefined);
      throw new SourceError(
        `${this.name}: "${rel}" is not there (${this.where()} answered with a web page, as a single-page app's server does for a missing file).`,
        'not-found',
        rel,
      );
    }
    // Content-Length is the encoded size; with a compressed response it does not count our bytes.
    const enc = res.headers.get('content-encoding');
    const lenHeader = res.headers.get('content-length');
    const total =
      lenHeader !== null && (!enc || enc === 'identity') && /^\d+$/.test(lenHeader) ? Number(lenHeader) : null;
    const onChunk = sink(total);
    const consume: ChunkFn = async (chunk) => {
      try {
        await onChunk(chunk);
      } catch (e) {
        throw new ConsumerError(e);
      }
    };
    let loaded: number;
    try {
      if (res.body) loaded = await pumpStream(res.body, total, consume, onProgress);
      else {
        const bytes = new Uint8Array(await res.arrayBuffer());
        await consume(bytes);
        loaded = bytes.byteLength;
        onProgress?.(loaded, total ?? loaded);
      }
    } catch (e) {
      if (e instanceof ConsumerError) throw e.cause;
      if ((e as Error).name === 'AbortError')
        throw new SourceError(`Download of "${rel}" was cancelled.`, 'aborted', rel);
      throw new SourceError(
        `Download of "${rel}" from ${this.where()} broke off: ${(e as Error).message}`,
        'network',
        rel,
      );
    }
    if (total !== null && loaded !== total) {
      throw new SourceError(
        `Download of "${rel}" from ${this.where()} ended after ${loaded} of ${total} bytes.`,
        'network',
        rel,
      );
    }
  }

  private async hubList(): Promise<string[]> {
    const url = `${this.endpoint}/api/models/${this.repo}/revision/${encodeURIComponent(this.revision ?? 'main')}`;
    const res = await this.request('(file list)', url, { method: 'GET' });
    if (!res.ok) throw this.statusError('(file list)', url, res.status, res.statusText);
    const info = (await res.json()) as { siblings?: { rfilename: string }[] };
    return (info.siblings ?? []).map((s) => s.rfilename).sort();
  }
}

// ----------------------------------------------------------------------------------- FileListSource

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

// ------------------------------------------------------------------------------------- MemorySource

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
