/**
 * The model-file cache: cachingFetch answers Hub files from the Cache API after the first
 * download (GET and HEAD), streams the first download through unchanged, leaves other requests
 * alone, and a full cache never fails a download. Node has no Cache API, so a small in-memory one
 * stands in for it.
 */
import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openTabtuneDb } from '../../src/store/db';
import { ModelByteCache, ModelCacheIndex, cachingFetch, isModelFileUrl } from '../../src/store/model-cache';
import { UrlSource } from '../../src/model/source';

class MemoryCache {
  entries = new Map<string, { body: Uint8Array; headers: Headers }>();
  full = false;
  async match(url: string): Promise<Response | undefined> {
    const e = this.entries.get(url);
    return e ? new Response(e.body.slice(), { status: 200, headers: e.headers }) : undefined;
  }
  async put(url: string, res: Response): Promise<void> {
    const body = new Uint8Array(await res.arrayBuffer());
    if (this.full) throw Object.assign(new Error('full'), { name: 'QuotaExceededError' });
    this.entries.set(url, { body, headers: res.headers });
  }
  async delete(url: string): Promise<boolean> {
    return this.entries.delete(url);
  }
}

const cache = new MemoryCache();
const g = globalThis as { caches?: unknown };

beforeEach(() => {
  cache.entries.clear();
  cache.full = false;
  g.caches = { open: async () => cache };
  globalThis.indexedDB = new IDBFactory();
});

afterEach(() => {
  delete g.caches;
});

const HUB = 'https://huggingface.co/org/model/resolve/main/';
const WEIGHTS = new Uint8Array(100_000).map((_, i) => i % 251);

function server() {
  const hits: string[] = [];
  const fetchFn = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input instanceof Request ? input.url : input);
    hits.push(`${init?.method ?? 'GET'} ${url}`);
    if (url === `${HUB}model.safetensors`) {
      // A streamed body in chunks, as a network response.
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(ctrl) {
          if (sent >= WEIGHTS.byteLength) return ctrl.close();
          ctrl.enqueue(WEIGHTS.slice(sent, sent + 16_384));
          sent += 16_384;
        },
      });
      return new Response(init?.method === 'HEAD' ? null : body, { status: 200, headers: { 'content-length': String(WEIGHTS.byteLength) } });
    }
    return new Response('nope', { status: 404 });
  }) as typeof fetch;
  return { hits, fetchFn };
}

describe('cachingFetch', () => {
  it('downloads once, then answers GET and HEAD from the cache with the same bytes and progress', async () => {
    const { hits, fetchFn } = server();
    const served: [string, boolean][] = [];
    const f = cachingFetch(fetchFn, { onServed: (u, c) => served.push([u, c]) });
    const src = new UrlSource(HUB, 'org/model', { fetch: f });
    const progress: number[] = [];
    const first = await src.read('model.safetensors', (l) => progress.push(l));
    expect(Buffer.from(first).equals(Buffer.from(WEIGHTS))).toBe(true);
    expect(progress.length).toBeGreaterThan(3); // streamed in chunks
    await new Promise((r) => setTimeout(r, 10)); // the cache write finishes in the background
    expect(cache.entries.has(`${HUB}model.safetensors`)).toBe(true);
    const second = await src.read('model.safetensors');
    expect(Buffer.from(second).equals(Buffer.from(WEIGHTS))).toBe(true);
    expect(await src.has('model.safetensors')).toBe(true);
    expect(hits).toEqual([`GET ${HUB}model.safetensors`]); // one network request in all
    expect(served).toEqual([
      [`${HUB}model.safetensors`, false],
      [`${HUB}model.safetensors`, true],
    ]);
  });

  it('passes other requests through, and a full cache never fails the download', async () => {
    const { hits, fetchFn } = server();
    const failures: string[] = [];
    const f = cachingFetch(fetchFn, { onStoreFailed: (u, e) => failures.push(`${u} ${(e as Error).name}`) });
    expect(isModelFileUrl('https://huggingface.co/api/models/org/model')).toBe(false);
    await f('https://huggingface.co/api/models/org/model');
    expect(cache.entries.size).toBe(0);
    cache.full = true;
    const res = await f(`${HUB}model.safetensors`);
    expect(new Uint8Array(await res.arrayBuffer()).byteLength).toBe(WEIGHTS.byteLength);
    await new Promise((r) => setTimeout(r, 10));
    expect(failures).toEqual([`${HUB}model.safetensors QuotaExceededError`]);
    expect(hits).toHaveLength(2);
  });

  it('ModelByteCache and the models index: cached badge, delete frees the files', async () => {
    const bc = new ModelByteCache();
    await bc.put(`${HUB}config.json`, new TextEncoder().encode('{}'));
    expect(new TextDecoder().decode((await bc.get(`${HUB}config.json`))!)).toBe('{}');
    const idx = new ModelCacheIndex(await openTabtuneDb());
    await idx.record('org/model', { kind: 'hub', id: 'org/model' }, [`${HUB}config.json`], 2, 1000);
    expect(await idx.isCached('org/model')).toBe(true);
    await idx.remove('org/model');
    expect(await idx.isCached('org/model')).toBe(false);
    expect(cache.entries.size).toBe(0);
  });
});
