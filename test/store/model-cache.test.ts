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
import {
  FileCheck,
  ModelByteCache,
  ModelCacheIndex,
  cachingFetch,
  isModelFileUrl,
  wholeFileProblem,
} from '../../src/store/model-cache';
import { UrlSource } from '../../src/model/source';
import { writeSafetensors } from '../../src/model/safetensors';

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
/** A real safetensors file of about 100 KB. */
const WEIGHTS = writeSafetensors(
  [{ name: 'w', dtype: 'F32', shape: [250, 100], data: new Float32Array(25_000).map((_, i) => (i % 251) / 251) }],
  { format: 'pt' },
);

/**
 * How the server answers a file: whole; 'cut' (Content-Length of the whole file, the body ends half
 * way: a dropped connection); 'short' (the server's own copy is half the file, Content-Length to match).
 */
type Serve = 'whole' | 'cut' | 'short';

function server(files: Record<string, Uint8Array> = { 'model.safetensors': WEIGHTS }) {
  const hits: string[] = [];
  const mode: Record<string, Serve> = {};
  const fetchFn = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input instanceof Request ? input.url : input);
    hits.push(`${init?.method ?? 'GET'} ${url}`);
    const name = url.startsWith(HUB) ? url.slice(HUB.length) : '';
    const file = files[name];
    if (file) {
      const how = mode[name] ?? 'whole';
      const body = how === 'whole' ? file : file.subarray(0, file.byteLength >> 1);
      // A streamed body in chunks, as a network response.
      let sent = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(ctrl) {
          if (sent >= body.byteLength) return ctrl.close();
          ctrl.enqueue(body.slice(sent, sent + 16_384));
          sent += 16_384;
        },
      });
      const length = how === 'cut' ? file.byteLength : body.byteLength;
      return new Response(init?.method === 'HEAD' ? null : stream, {
        status: 200,
        headers: { 'content-length': String(length) },
      });
    }
    return new Response('nope', { status: 404 });
  }) as typeof fetch;
  return { hits, fetchFn, mode };
}

const settle = () => new Promise((r) => setTimeout(r, 10)); // cache writes finish in the background

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

  it('a download cut short is not kept: the next try downloads it again, whole, and keeps it', async () => {
    const { hits, fetchFn, mode } = server();
    const src = new UrlSource(HUB, 'org/model', { fetch: cachingFetch(fetchFn) });
    mode['model.safetensors'] = 'cut';
    await expect(src.read('model.safetensors')).rejects.toThrow(
      /model\.safetensors.*ended after 50\d+ of 100\d+ bytes/,
    );
    await settle();
    expect(cache.entries.size).toBe(0);
    mode['model.safetensors'] = 'whole';
    expect(Buffer.from(await src.read('model.safetensors')).equals(Buffer.from(WEIGHTS))).toBe(true);
    await settle();
    expect(cache.entries.has(`${HUB}model.safetensors`)).toBe(true);
    await src.read('model.safetensors');
    expect(hits).toHaveLength(2);
  });

  it('a safetensors file shorter than its header says, or a JSON file that is not JSON, reaches the caller but is not kept', async () => {
    const page = new TextEncoder().encode('<!doctype html><title>Sign in</title>');
    const { hits, fetchFn, mode } = server({ 'model.safetensors': WEIGHTS, 'config.json': page });
    const f = cachingFetch(fetchFn);
    mode['model.safetensors'] = 'short';
    const res = await f(`${HUB}model.safetensors`);
    expect((await res.arrayBuffer()).byteLength).toBe(WEIGHTS.byteLength >> 1); // the loader reports the damage
    expect(await (await f(`${HUB}config.json`)).text()).toContain('Sign in');
    await settle();
    expect(cache.entries.size).toBe(0);
    await f(`${HUB}config.json`);
    expect(hits.filter((h) => h.endsWith('config.json'))).toHaveLength(2);
  });

  it('a damaged copy already in the cache is removed when read, and the next read downloads the file', async () => {
    const { hits, fetchFn } = server();
    const half = WEIGHTS.slice(0, 40_000);
    cache.entries.set(`${HUB}model.safetensors`, {
      body: half,
      headers: new Headers({ 'content-length': String(half.byteLength) }),
    });
    const damaged: string[] = [];
    const src = new UrlSource(HUB, 'org/model', {
      fetch: cachingFetch(fetchFn, { onDamaged: (u, p) => damaged.push(p) }),
    });
    await expect(src.read('model.safetensors')).rejects.toThrow(
      /model\.safetensors is incomplete: 40000 of 100\d+ bytes/,
    );
    await settle();
    expect(damaged).toHaveLength(1);
    expect(cache.entries.has(`${HUB}model.safetensors`)).toBe(false);
    expect(hits).toEqual([]);
    expect(Buffer.from(await src.read('model.safetensors')).equals(Buffer.from(WEIGHTS))).toBe(true);
    expect(hits).toHaveLength(1);
  });

  it('ModelByteCache keeps only whole files and drops a damaged one it finds', async () => {
    const bc = new ModelByteCache();
    await bc.put(`${HUB}config.json`, new TextEncoder().encode('<html>'));
    expect(cache.entries.size).toBe(0);
    cache.entries.set(`${HUB}config.json`, { body: new TextEncoder().encode('{"a":'), headers: new Headers() });
    expect(await bc.get(`${HUB}config.json`)).toBeNull();
    expect(cache.entries.size).toBe(0);
    await bc.put(`${HUB}model.safetensors`, WEIGHTS);
    expect((await bc.get(`${HUB}model.safetensors`))!.byteLength).toBe(WEIGHTS.byteLength);
  });

  it('FileCheck reads a safetensors header split over many chunks', () => {
    const check = new FileCheck(`${HUB}model-00001-of-00002.safetensors`, null);
    for (let i = 0; i < 300; i++) check.push(WEIGHTS.subarray(i, i + 1));
    check.push(WEIGHTS.subarray(300));
    expect(check.finish()).toBeNull();
    expect(wholeFileProblem(`${HUB}a.safetensors`, WEIGHTS.subarray(0, WEIGHTS.byteLength - 1))).toMatch(
      /a\.safetensors is incomplete/,
    );
    expect(wholeFileProblem(`${HUB}a.safetensors`, new Uint8Array(5))).toMatch(/shorter than a safetensors header/);
    expect(wholeFileProblem(`${HUB}tokenizer.json`, new TextEncoder().encode('{"model":{}}'))).toBeNull();
    expect(wholeFileProblem(`${HUB}tokenizer.model`, new Uint8Array(3))).toBeNull(); // other files: length only
  });

  it('a Hub dataset ".json" that is JSON Lines, or too big to parse, is kept when whole; one cut short is not', () => {
    const enc = (s: string) => new TextEncoder().encode(s);
    const lines = Array.from({ length: 50 }, (_, i) => JSON.stringify({ text: `record {${i}} "quoted" \\ [` }));
    const jsonl = enc(`\uFEFF${lines.join('\n')}\n`);
    expect(wholeFileProblem(`${HUB}data/train.json`, jsonl)).toBeNull();
    expect(wholeFileProblem(`${HUB}data/train.json`, enc('[{"text": "a"},\n {"text": "b"}]'))).toBeNull();
    // cut inside a line or a string, a bare word, an HTML page, a line that is not JSON
    const cut = jsonl.subarray(0, jsonl.byteLength - 20);
    expect(wholeFileProblem(`${HUB}data/train.json`, cut)).toMatch(/train\.json is not valid JSON \(or JSON Lines\)/);
    expect(wholeFileProblem(`${HUB}data/train.json`, enc('{"a": "b'))).toMatch(/not valid JSON/);
    expect(wholeFileProblem(`${HUB}data/train.json`, enc('{"a": 1} oops'))).toMatch(/not valid JSON/);
    expect(wholeFileProblem(`${HUB}data/train.json`, enc('<!doctype html>'))).toMatch(/not valid JSON/);
    expect(wholeFileProblem(`${HUB}data/train.json`, enc('{"a": 1}\n{"a": nope}\n'))).toMatch(/not valid JSON/);
    // 20 MB of JSON Lines (past the size parsed whole) streamed in 1 MB chunks: kept, by its shape,
    // without holding it; the same cut short in a string is not
    const line = enc(`${JSON.stringify({ text: 'x'.repeat(1000) })}\n`);
    const chunk = new Uint8Array(line.byteLength * 1000);
    for (let k = 0; k < 1000; k++) chunk.set(line, k * line.byteLength);
    const big = new FileCheck(`${HUB}data/big.json`, chunk.byteLength * 20);
    for (let k = 0; k < 20; k++) big.push(chunk);
    expect(big.finish()).toBeNull();
    const short = new FileCheck(`${HUB}data/big.json`, null);
    for (let k = 0; k < 20; k++) short.push(chunk);
    short.push(line.subarray(0, 500));
    expect(short.finish()).toMatch(/big\.json is not valid JSON \(or JSON Lines\): it may be cut short/);
  });
});
