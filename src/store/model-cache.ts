/**
 * Downloaded model files in the Cache API (cache MODEL_CACHE), keyed by URL, plus a small record per
 * model in IndexedDB's `models` store for the "cached" badges and the storage list.
 *
 * Two ways in, one format (a Response whose body is the file):
 *   ModelByteCache   the `{get(url), put(url, bytes)}` hook of src/model/source.ts UrlSource
 *   cachingFetch     a fetch() that answers model-file requests from the cache and stores what it
 *                    downloads; the worker installs it so the engine's own Hub downloads are cached
 * A full cache never fails a download: the file is used, just not kept.
 */
import { MODEL_CACHE, type TabtuneDb } from './db';
import type { CachedModelRecord, StoredModelSource } from './types';

function cacheStorage(): CacheStorage | null {
  return typeof caches === 'undefined' ? null : caches;
}

/** The UrlSource ByteCache hook over the Cache API. */
export class ModelByteCache {
  constructor(private readonly name = MODEL_CACHE) {}

  async get(url: string): Promise<Uint8Array | null> {
    const cs = cacheStorage();
    if (!cs) return null;
    const hit = await (await cs.open(this.name)).match(url);
    return hit ? new Uint8Array(await hit.arrayBuffer()) : null;
  }

  async put(url: string, bytes: Uint8Array): Promise<void> {
    const cs = cacheStorage();
    if (!cs) return;
    const copy = new Uint8Array(bytes.byteLength);
    copy.set(bytes);
    await (await cs.open(this.name)).put(
      url,
      new Response(copy.buffer, { headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) } }),
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
}

/**
 * Wraps fetch: GET/HEAD of model files are answered from the cache when present; a successful GET
 * that was not cached is stored while the caller reads it (the body is teed).
 */
export function cachingFetch(inner: typeof fetch, opts: CachingFetchOptions = {}): typeof fetch {
  const cacheName = opts.cacheName ?? MODEL_CACHE;
  return async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const method = (init?.method ?? (typeof input === 'object' && 'method' in input ? input.method : 'GET')).toUpperCase();
    const cs = cacheStorage();
    const ranged = new Headers(init?.headers).has('range');
    if (!cs || ranged || (method !== 'GET' && method !== 'HEAD') || !isModelFileUrl(url, opts.bases?.() ?? [])) {
      return inner(input, init);
    }
    let cache: Cache | null = null;
    try {
      cache = await cs.open(cacheName);
      const hit = await cache.match(url);
      if (hit) {
        if (method === 'HEAD') {
          await hit.body?.cancel();
          return new Response(null, { status: 200, headers: hit.headers });
        }
        opts.onServed?.(url, true);
        return hit;
      }
    } catch {
      cache = null;
    }
    const res = await inner(input, init);
    if (!cache || method !== 'GET' || res.status !== 200 || !res.body) return res;
    const [mine, theirs] = res.body.tee();
    const headers = new Headers();
    const len = res.headers.get('content-length');
    const enc = res.headers.get('content-encoding');
    if (len && (!enc || enc === 'identity')) headers.set('content-length', len);
    headers.set('content-type', res.headers.get('content-type') ?? 'application/octet-stream');
    const stored = new Response(mine, { status: 200, headers });
    opts.onServed?.(url, false);
    cache.put(url, stored).catch((e: unknown) => opts.onStoreFailed?.(url, e));
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

  async record(id: string, source: StoredModelSource, urls: string[], bytes: number, parameters: number | null): Promise<void> {
    const prev = await this.db.get('models', id);
    const all = [...new Set([...(prev?.urls ?? []), ...urls])];
    await this.db.put('models', { id, source, urls: all, bytes: Math.max(bytes, prev?.bytes ?? 0), cachedAt: new Date().toISOString(), parameters });
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
