/**
 * Downloaded model files in the Cache API (cache MODEL_CACHE), keyed by URL, plus a small record per
 * model in IndexedDB's `models` store for the "cached" badges and the storage list.
 *
 * Two ways in, one format (a Response whose body is the file):
 *   ModelByteCache   the `{get(url), put(url, bytes)}` hook of src/model/source-url.ts UrlSource
 *   cachingFetch     a fetch() that answers model-file requests from the cache and stores what it
 *                    downloads; the worker installs it so the engine's own Hub downloads are cached
 * A full cache never fails a download: the file is used, just not kept.
 */
import { SafetensorsError, parseSafetensorsHeader } from '../model/safetensors';
import { MODEL_CACHE, type TabtuneDb } from './db';
import type { CachedModelRecord, StoredModelSource } from './types';

function cacheStorage(): CacheStorage | null {
  return typeof caches === 'undefined' ? null : caches;
}

// ------------------------------------------------------------------ whole-file checks

/** Thrown (into a cache write or a cached read) when a model file is not whole. */
export class IncompleteFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IncompleteFileError';
  }
}

function fileNameOf(url: string): string {
  const path = url.split(/[?#]/)[0]!;
  return decodeURIComponent(path.slice(path.lastIndexOf('/') + 1));
}

/**
 * JSON files up to this size are also parsed (whole, or line by line for JSON Lines); bigger ones
 * get only the streaming check of JsonShape.
 */
const MAX_PARSED_JSON = 16 << 20;

/**
 * The shape of JSON text as its bytes go by, in constant memory: brackets outside strings, string
 * state, and the top-level values seen. Whole when every value opened was closed and the text is one
 * or more objects/arrays separated by whitespace (JSON, or JSON Lines as the Hub's ".json" dataset
 * files often are); a file cut short ends inside a value or a string. Anything else at the top
 * level (an HTML error page, a bare word) makes it not JSON.
 */
class JsonShape {
  private depth = 0;
  private inString = false;
  private escaped = false;
  private values = 0;
  private bad = false;

  push(c: Uint8Array): void {
    if (this.bad) return;
    for (let i = 0; i < c.length; i++) {
      const b = c[i]!;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (b === 0x5c /* \ */) this.escaped = true;
        else if (b === 0x22 /* " */) this.inString = false;
      } else if (b === 0x22) {
        if (this.depth === 0) return void (this.bad = true);
        this.inString = true;
      } else if (b === 0x7b /* { */ || b === 0x5b /* [ */) {
        if (this.depth++ === 0) this.values++;
      } else if (b === 0x7d /* } */ || b === 0x5d /* ] */) {
        if (--this.depth < 0) return void (this.bad = true);
      } else if (
        this.depth === 0 &&
        b !== 0x20 &&
        b !== 0x0a &&
        b !== 0x0d &&
        b !== 0x09 &&
        !(b === 0xef || b === 0xbb || b === 0xbf)
      ) {
        // outside any value only whitespace (and a UTF-8 byte order mark) may stand
        return void (this.bad = true);
      }
    }
  }

  /** Whether the text seen is one or more whole top-level objects/arrays; how many. */
  result(): { whole: boolean; values: number } {
    return { whole: !this.bad && !this.inString && this.depth === 0 && this.values > 0, values: this.values };
  }
}

/** Whether text that is not one JSON value is JSON Lines: every non-blank line parses. */
function isJsonLines(text: string): boolean {
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      JSON.parse(line);
    } catch {
      return false;
    }
  }
  return true;
}

/**
 * Checks a model file as its bytes go by, so that only whole files are kept in the cache: the byte
 * count against Content-Length, a safetensors file against the data size its header declares, a
 * JSON file by its shape as it streams by (JsonShape) and, up to MAX_PARSED_JSON, by parsing it
 * (whole, or each line of JSON Lines). What it sees is fed by `push`; `finish` returns the problem,
 * if any.
 */
export class FileCheck {
  private count = 0;
  private head: Uint8Array[] = [];
  private headBytes = 0;
  private readonly kind: 'safetensors' | 'json' | 'other';
  private readonly json: JsonShape | null;
  readonly name: string;

  constructor(
    url: string,
    private readonly expectedLength: number | null,
  ) {
    this.name = fileNameOf(url);
    this.kind = this.name.endsWith('.safetensors') ? 'safetensors' : this.name.endsWith('.json') ? 'json' : 'other';
    this.json = this.kind === 'json' ? new JsonShape() : null;
  }

  /** Bytes to keep (the safetensors header, or a JSON file small enough to parse). */
  private wanted(): number {
    if (this.kind === 'json') return this.count <= MAX_PARSED_JSON ? MAX_PARSED_JSON : 0;
    if (this.kind !== 'safetensors') return 0;
    if (this.headBytes < 8) return 8;
    const n = new DataView(this.joined().buffer).getBigUint64(0, true);
    return n > BigInt(100 << 20) ? 8 : 8 + Number(n);
  }

  private joined(): Uint8Array {
    if (this.head.length === 1) return this.head[0]!;
    const out = new Uint8Array(this.headBytes);
    let o = 0;
    for (const c of this.head) {
      out.set(c, o);
      o += c.byteLength;
    }
    this.head = [out];
    return out;
  }

  push(chunk: Uint8Array): void {
    this.count += chunk.byteLength;
    this.json?.push(chunk);
    if (this.kind === 'json' && this.count > MAX_PARSED_JSON && this.headBytes > 0) {
      // too big to parse: only its shape is checked, and nothing is held
      this.head = [];
      this.headBytes = 0;
    }
    let want = this.wanted();
    let c = chunk;
    while (this.headBytes < want && c.byteLength > 0) {
      const take = c.subarray(0, want - this.headBytes);
      this.head.push(take.slice());
      this.headBytes += take.byteLength;
      c = c.subarray(take.byteLength);
      want = this.wanted();
    }
  }

  /** Null when the file is whole, else what is wrong with it. */
  finish(): string | null {
    const got = this.count;
    if (this.expectedLength !== null && got !== this.expectedLength) {
      return `${this.name} is incomplete: ${got} of ${this.expectedLength} bytes`;
    }
    if (this.kind === 'safetensors') {
      if (got < 8) return `${this.name} is incomplete: ${got} bytes, shorter than a safetensors header`;
      const head = this.joined();
      const n = Number(new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true));
      if (head.byteLength < 8 + n)
        return `${this.name} is incomplete: its safetensors header is cut off (${got} bytes)`;
      let end: number;
      try {
        end = parseSafetensorsHeader(head, this.name).dataBytes;
      } catch (e) {
        return e instanceof SafetensorsError ? e.message : `${this.name} is not a safetensors file`;
      }
      if (got !== 8 + n + end) return `${this.name} is incomplete: ${got} of ${8 + n + end} bytes`;
    } else if (this.json) {
      const shape = this.json.result();
      if (!shape.whole) return `${this.name} is not valid JSON (or JSON Lines): it may be cut short`;
      if (got <= MAX_PARSED_JSON) {
        let text: string;
        try {
          text = new TextDecoder('utf-8', { fatal: true }).decode(this.joined());
        } catch {
          return `${this.name} is not UTF-8 text`;
        }
        try {
          JSON.parse(text);
        } catch {
          if (shape.values < 2 || !isJsonLines(text)) return `${this.name} is not valid JSON (or JSON Lines)`;
        }
      }
    }
    return null;
  }
}

/** Checks bytes already in memory (see FileCheck). */
export function wholeFileProblem(url: string, bytes: Uint8Array, expectedLength: number | null = null): string | null {
  const check = new FileCheck(url, expectedLength);
  check.push(bytes);
  return check.finish();
}

/** A stream that passes bytes through and errors at its end when the file is not whole. */
function checkedStream(
  body: ReadableStream<Uint8Array>,
  check: FileCheck,
  onBad?: (problem: string) => void,
): ReadableStream<Uint8Array> {
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctrl) {
        check.push(chunk);
        ctrl.enqueue(chunk);
      },
      flush() {
        const problem = check.finish();
        if (problem) {
          onBad?.(problem);
          throw new IncompleteFileError(problem);
        }
      },
    }),
  );
}

function lengthOf(headers: Headers): number | null {
  const len = headers.get('content-length');
  const enc = headers.get('content-encoding');
  return len && /^\d+$/.test(len) && (!enc || enc === 'identity') ? Number(len) : null;
}

/** The UrlSource ByteCache hook over the Cache API. */
export class ModelByteCache {
  constructor(private readonly name = MODEL_CACHE) {}

  /** The cached file; a damaged one (cut short, not JSON) is removed and reported absent. */
  async get(url: string): Promise<Uint8Array | null> {
    const cs = cacheStorage();
    if (!cs) return null;
    const cache = await cs.open(this.name);
    const hit = await cache.match(url);
    if (!hit) return null;
    const bytes = new Uint8Array(await hit.arrayBuffer());
    if (wholeFileProblem(url, bytes, lengthOf(hit.headers))) {
      await cache.delete(url);
      return null;
    }
    return bytes;
  }

  /** Keeps a file; one that is not whole is not kept. */
  async put(url: string, bytes: Uint8Array): Promise<void> {
    const cs = cacheStorage();
    if (!cs) return;
    if (wholeFileProblem(url, bytes)) return;
    const copy = new Uint8Array(bytes.byteLength);
    copy.set(bytes);
    await (
      await cs.open(this.name)
    ).put(
      url,
      new Response(copy.buffer, {
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) },
      }),
    );
  }
}

/** Which requests cachingFetch keeps: model files on the Hub ("/resolve/") and files under registered bases. */
export function isModelFileUrl(url: string, extraBases: readonly string[] = []): boolean {
  if (/^https?:\/\/[^/]+\/[^?#]+\/resolve\/[^/]+\/.+/.test(url)) return true;
  return extraBases.some((b) => url.startsWith(b));
}

export interface CachingFetchOptions {
  cacheName?: string;
  /** URL prefixes (besides Hub /resolve/ URLs) whose files are cached. */
  bases?: () => readonly string[];
  /** Called for every model-file GET answered, from the cache or the network (for the models record). */
  onServed?: (url: string, fromCache: boolean) => void;
  /** Called when storing failed (quota): the download still succeeds. */
  onStoreFailed?: (url: string, error: unknown) => void;
  /** Called when a cached file turned out damaged (it has been removed from the cache). */
  onDamaged?: (url: string, problem: string) => void;
}

/**
 * Wraps fetch: GET/HEAD of model files are answered from the cache when present; a successful GET
 * that was not cached is stored while the caller reads it (the body is teed).
 */
export function cachingFetch(inner: typeof fetch, opts: CachingFetchOptions = {}): typeof fetch {
  const cacheName = opts.cacheName ?? MODEL_CACHE;
  return async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const method = (
      init?.method ?? (typeof input === 'object' && 'method' in input ? input.method : 'GET')
    ).toUpperCase();
    const cs = cacheStorage();
    const ranged = new Headers(init?.headers).has('range');
    if (!cs || ranged || (method !== 'GET' && method !== 'HEAD') || !isModelFileUrl(url, opts.bases?.() ?? [])) {
      return inner(input, init);
    }
    let cache: Cache | null;
    try {
      cache = await cs.open(cacheName);
      const hit = await cache.match(url);
      if (hit) {
        if (method === 'HEAD') {
          await hit.body?.cancel();
          return new Response(null, { status: 200, headers: hit.headers });
        }
        opts.onServed?.(url, true);
        if (!hit.body) return hit;
        // A damaged copy (kept by an older version, or cut short on disk) is removed as it is found,
        // so trying again downloads the file afresh.
        const c = cache;
        const body = checkedStream(hit.body, new FileCheck(url, lengthOf(hit.headers)), (problem) => {
          void c.delete(url).catch(() => undefined);
          opts.onDamaged?.(url, problem);
        });
        return new Response(body, { status: 200, headers: hit.headers });
      }
    } catch {
      cache = null;
    }
    const res = await inner(input, init);
    if (!cache || method !== 'GET' || res.status !== 200 || !res.body) return res;
    const [mine, theirs] = res.body.tee();
    const headers = new Headers();
    const len = lengthOf(res.headers);
    if (len !== null) headers.set('content-length', String(len));
    headers.set('content-type', res.headers.get('content-type') ?? 'application/octet-stream');
    // Only a whole file is kept: a download cut short or a damaged file makes the write fail,
    // so the next try downloads it again instead of reading the broken copy.
    const stored = new Response(checkedStream(mine, new FileCheck(url, len)), { status: 200, headers });
    opts.onServed?.(url, false);
    cache.put(url, stored).catch((e: unknown) => {
      if (!(e instanceof IncompleteFileError)) opts.onStoreFailed?.(url, e);
    });
    return new Response(theirs, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}

/** Records of cached models (IndexedDB) and clearing their files (Cache API). */
export class ModelCacheIndex {
  constructor(
    readonly db: TabtuneDb,
    private readonly cacheName = MODEL_CACHE,
  ) {}

  list(): Promise<CachedModelRecord[]> {
    return this.db.getAll('models');
  }

  get(id: string): Promise<CachedModelRecord | undefined> {
    return this.db.get('models', id);
  }

  async record(
    id: string,
    source: StoredModelSource,
    urls: string[],
    bytes: number,
    parameters: number | null,
  ): Promise<void> {
    const prev = await this.db.get('models', id);
    const all = [...new Set([...(prev?.urls ?? []), ...urls])];
    await this.db.put('models', {
      id,
      source,
      urls: all,
      bytes: Math.max(bytes, prev?.bytes ?? 0),
      cachedAt: new Date().toISOString(),
      parameters,
    });
  }

  /** Whether every URL of the model is in the cache. */
  async isCached(id: string): Promise<boolean> {
    const rec = await this.get(id);
    const cs = cacheStorage();
    if (!rec || !cs || rec.urls.length === 0) return false;
    const cache = await cs.open(this.cacheName);
    for (const u of rec.urls) if (!(await cache.match(u))) return false;
    return true;
  }

  /** Deletes a model's files from the cache and its record. */
  async remove(id: string): Promise<void> {
    const rec = await this.get(id);
    const cs = cacheStorage();
    if (rec && cs) {
      const cache = await cs.open(this.cacheName);
      await Promise.all(rec.urls.map((u) => cache.delete(u)));
    }
    await this.db.delete('models', id);
  }
}

/** Asks the browser to keep this site's storage under pressure (true when granted). */
export async function requestPersistentStorage(): Promise<boolean> {
  const st = globalThis.navigator?.storage;
  if (!st?.persist) return false;
  try {
    if (st.persisted && (await st.persisted())) return true;
    return await st.persist();
  } catch {
    return false;
  }
}

export async function storageEstimate(): Promise<{ usage: number; quota: number } | null> {
  try {
    const est = await globalThis.navigator?.storage?.estimate?.();
    return est?.quota ? { usage: est.usage ?? 0, quota: est.quota } : null;
  } catch {
    return null;
  }
}
