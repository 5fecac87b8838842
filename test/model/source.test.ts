import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../src/model/load';
import {
  type ByteCache,
  DirSource,
  FileListSource,
  MemorySource,
  SourceError,
  UrlSource,
  isNotFound,
} from '../../src/model/source';
import { makeTinyModel } from '../fixtures/tiny-model';

/** Byte equality without vitest's slow element-wise diff. */
const same = (a: Uint8Array | undefined, b: Uint8Array | undefined) =>
  expect(!!a && !!b && Buffer.from(a).equals(Buffer.from(b))).toBe(true);

const bytesOf = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

async function expectSourceError(p: Promise<unknown>, code: string, message: RegExp | string): Promise<SourceError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(SourceError);
  expect((e as SourceError).code).toBe(code);
  if (typeof message === 'string') expect((e as Error).message).toBe(message);
  else expect((e as Error).message).toMatch(message);
  return e as SourceError;
}

describe('DirSource', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tabtune-dir-'));
    await mkdir(join(dir, 'sub'));
    await writeFile(join(dir, 'a.bin'), bytesOf(1000));
    await writeFile(join(dir, 'sub', 'b.json'), '{"x":1}');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('lists, tests and reads files with chunked progress', async () => {
    const src = new DirSource(dir, 'tiny');
    expect(src.name).toBe('tiny');
    expect(await src.list()).toEqual(['a.bin', 'sub/b.json']);
    expect(await src.has('a.bin')).toBe(true);
    expect(await src.has('sub/b.json')).toBe(true);
    expect(await src.has('./sub/b.json')).toBe(true);
    expect(await src.has('sub')).toBe(false);
    expect(await src.has('nope.json')).toBe(false);
    const old = DirSource.chunkBytes;
    DirSource.chunkBytes = 300;
    const calls: [number, number | null][] = [];
    try {
      const got = await src.read('a.bin', (l, t) => calls.push([l, t]));
      same(got, bytesOf(1000));
    } finally {
      DirSource.chunkBytes = old;
    }
    expect(calls).toEqual([
      [0, 1000],
      [300, 1000],
      [600, 1000],
      [900, 1000],
      [1000, 1000],
    ]);
    expect(new TextDecoder().decode(await src.read('sub/b.json'))).toBe('{"x":1}');
  });

  it('not-found and invalid paths', async () => {
    const src = new DirSource(dir);
    const e = await expectSourceError(src.read('config.json'), 'not-found', /file "config\.json" not found/);
    expect(isNotFound(e)).toBe(true);
    expect(e.path).toBe('config.json');
    await expectSourceError(src.read('../etc/passwd'), 'invalid-path', /not a valid relative file path/);
  });
});

// ------------------------------------------------------------------------------ local HTTP server

interface Served {
  bytes: Uint8Array;
  /** Send without Content-Length (chunked). */
  chunked?: boolean;
  status?: number;
  /** Answer a Range request with 206 (else Range is ignored: 200 with the whole file). */
  ranges?: boolean;
}

describe('UrlSource (local HTTP server)', () => {
  let server: Server;
  let base: string;
  const files = new Map<string, Served>();
  const requests: { method: string; url: string; auth: string | undefined }[] = [];

  beforeAll(async () => {
    files.set('/m/config.json', { bytes: new TextEncoder().encode('{"a": 1}') });
    files.set('/m/big.bin', { bytes: bytesOf(200_000, 7) });
    files.set('/m/ranged.bin', { bytes: bytesOf(200_000, 5), ranges: true });
    files.set('/m/stream.bin', { bytes: bytesOf(50_000, 3), chunked: true });
    files.set('/m/sub dir/x y.txt', { bytes: new TextEncoder().encode('spaced') });
    files.set('/m/secret.json', { bytes: new Uint8Array(0), status: 401 });
    files.set('/m/broken.json', { bytes: new Uint8Array(0), status: 500 });
    // A Hub-layout repo with a whole tiny model, and the Hub's API listing.
    const tiny = makeTinyModel({ modelType: 'qwen2', sharded: true });
    for (const [name, bytes] of tiny.files)
      files.set(`/org/tiny/resolve/main/${name}`, { bytes, chunked: name.endsWith('.json') });
    const listing = { siblings: [...tiny.files.keys()].map((rfilename) => ({ rfilename })) };
    files.set('/api/models/org/tiny/revision/main', { bytes: new TextEncoder().encode(JSON.stringify(listing)) });

    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const url = decodeURIComponent((req.url ?? '').split('?')[0]!);
      requests.push({ method: req.method ?? '', url, auth: req.headers.authorization });
      const f = files.get(url);
      if (url.startsWith('/spa/')) {
        // A single-page app's server: index.html for any path.
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
        res.end(req.method === 'HEAD' ? undefined : '<!doctype html><html></html>');
        return;
      }
      if (!f) {
        res.writeHead(404, { 'Content-Type': 'text/plain' });
        res.end('Entry not found');
        return;
      }
      if (f.status) {
        res.writeHead(f.status, { 'Content-Type': 'text/plain' });
        res.end('no');
        return;
      }
      const headers: Record<string, string | number> = { 'Content-Type': 'application/octet-stream' };
      const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (range && f.ranges) {
        // A single range, as the Hub's servers answer one: 206 with Content-Range, or 416 past the end.
        const size = f.bytes.byteLength;
        const a = Number(range[1]);
        const b = Math.min(Number(range[2]), size - 1);
        if (a >= size) {
          res.writeHead(416, { 'Content-Range': `bytes */${size}` });
          res.end();
          return;
        }
        res.writeHead(206, { ...headers, 'Content-Range': `bytes ${a}-${b}/${size}`, 'Content-Length': b - a + 1 });
        res.end(Buffer.from(f.bytes.subarray(a, b + 1)));
        return;
      }
      if (!f.chunked) headers['Content-Length'] = f.bytes.byteLength;
      res.writeHead(200, headers);
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      // Several writes so the client sees several chunks.
      const step = Math.max(1, Math.ceil(f.bytes.byteLength / 5));
      let pos = 0;
      const pump = () => {
        if (pos >= f.bytes.byteLength) {
          res.end();
          return;
        }
        res.write(Buffer.from(f.bytes.subarray(pos, pos + step)));
        pos += step;
        setTimeout(pump, 2);
      };
      pump();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections(); // keep-alive sockets would hold close() for seconds
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('streams a file with progress against Content-Length', async () => {
    const src = new UrlSource(`${base}/m`, 'local');
    const calls: [number, number | null][] = [];
    const got = await src.read('big.bin', (l, t) => calls.push([l, t]));
    same(got, bytesOf(200_000, 7));
    expect(calls.length).toBeGreaterThanOrEqual(3);
    expect(calls[0]).toEqual([0, 200_000]);
    expect(calls.at(-1)).toEqual([200_000, 200_000]);
    for (let i = 1; i < calls.length; i++) expect(calls[i]![0]).toBeGreaterThan(calls[i - 1]![0]);
    expect(calls.every(([, t]) => t === 200_000)).toBe(true);
  });

  it('without Content-Length the total is null', async () => {
    const src = new UrlSource(`${base}/m/`);
    const calls: [number, number | null][] = [];
    const got = await src.read('stream.bin', (l, t) => calls.push([l, t]));
    same(got, bytesOf(50_000, 3));
    expect(calls.every(([, t]) => t === null)).toBe(true);
    expect(calls.at(-1)![0]).toBe(50_000);
  });

  it('readRange: bytes and size by a range request (206), or from the head of a 200 without ranges', async () => {
    const src = new UrlSource(`${base}/m`, 'local');
    const whole = bytesOf(200_000, 5);
    const r = await src.readRange('ranged.bin', 1000, 1008);
    same(r.bytes, whole.subarray(1000, 1008));
    expect(r.size).toBe(200_000);
    expect(requests.at(-1)).toMatchObject({ method: 'GET', url: '/m/ranged.bin' });
    // the end past the file: what there is
    const tail = await src.readRange('ranged.bin', 199_990, 200_100);
    same(tail.bytes, whole.subarray(199_990));
    expect(tail.size).toBe(200_000);
    // nothing at the start: 416, the size from Content-Range
    expect(await src.readRange('ranged.bin', 300_000, 300_008)).toEqual({ bytes: new Uint8Array(0), size: 200_000 });
    // a server that ignores Range answers 200 with the whole file: only what was asked is kept
    const plain = await src.readRange('big.bin', 16, 48);
    same(plain.bytes, bytesOf(200_000, 7).subarray(16, 48));
    expect(plain.size).toBe(200_000);
    // without Content-Length the size is unknown
    expect((await src.readRange('stream.bin', 0, 8)).size).toBeNull();
    await expectSourceError(src.readRange('nothing.bin', 0, 8), 'not-found', /nothing\.bin/);
  });

  it('encodes path segments', async () => {
    const src = new UrlSource(`${base}/m`);
    expect(src.urlOf('sub dir/x y.txt')).toBe(`${base}/m/sub%20dir/x%20y.txt`);
    expect(new TextDecoder().decode(await src.read('sub dir/x y.txt'))).toBe('spaced');
  });

  it('404 names the file and the source; has() is false', async () => {
    const src = new UrlSource(`${base}/m`, 'local');
    await expectSourceError(
      src.read('model.safetensors'),
      'not-found',
      `File "model.safetensors" not found in "${base}/m/" (HTTP 404 for ${base}/m/model.safetensors).`,
    );
    expect(await src.has('model.safetensors')).toBe(false);
    expect(await src.has('config.json')).toBe(true);
    expect(requests.filter((r) => r.url === '/m/config.json').at(-1)!.method).toBe('HEAD');
  });

  it("a web page served for a missing file (a single-page app's fallback) is not the file", async () => {
    const src = new UrlSource(`${base}/spa`, 'app');
    await expectSourceError(src.read('tokenizer.model'), 'not-found', /"tokenizer\.model" is not there .*web page/);
    expect(await src.has('chat_template.jinja')).toBe(false);
    expect(new TextDecoder().decode(await src.read('index.html'))).toContain('<html>');
  });

  it('Hub layout: 404 and 401 messages name the repo', async () => {
    const hub = UrlSource.hub('org/tiny', 'main', { endpoint: base });
    expect(hub.name).toBe('org/tiny');
    expect(hub.urlOf('config.json')).toBe(`${base}/org/tiny/resolve/main/config.json`);
    await expectSourceError(
      hub.read('missing.json'),
      'not-found',
      /^File "missing\.json" not found in repo "org\/tiny" \(HTTP 404/,
    );
    const m = new UrlSource(`${base}/m`, 'local');
    await expectSourceError(m.read('secret.json'), 'unauthorized', /Access denied \(HTTP 401\) to "secret\.json"/);
    const gated = new UrlSource(`${base}/m`, 'x', {}, { repo: 'meta/gated', revision: 'v2', endpoint: base });
    await expectSourceError(
      gated.read('secret.json'),
      'unauthorized',
      /repo "meta\/gated" \(revision "v2"\)\. The repo is gated or private: accept the license at http:\/\/127\.0\.0\.1:\d+\/meta\/gated \(signed in\), then give an access token/,
    );
    // With a token: it goes to the Hub as a Bearer header, and a refusal says the token did not open the repo.
    const withToken = UrlSource.hub('meta/gated', 'main', { endpoint: base, token: 'hf_abc' });
    await expectSourceError(withToken.read('x.json'), 'not-found', /not found/);
    expect(requests.at(-1)!.auth).toBe('Bearer hf_abc');
    const secretHub = new UrlSource(
      `${base}/m`,
      'x',
      { headers: { Authorization: 'Bearer hf_x' } },
      { repo: 'meta/gated', revision: 'main', endpoint: base },
    );
    await expectSourceError(
      secretHub.read('secret.json'),
      'unauthorized',
      /The access token given does not open it: if the repo is gated, accept the license at .*\/meta\/gated/,
    );
    await UrlSource.hub('meta/gated', 'main', { endpoint: base }).has('config.json');
    expect(requests.at(-1)!.auth).toBeUndefined();
    await expectSourceError(m.read('broken.json'), 'http', /HTTP 500/);
    expect(() => UrlSource.hub('not a repo!')).toThrow(/not a Hugging Face repo id/);
    expect(UrlSource.hub('HuggingFaceTB/SmolLM2-135M').urlOf('config.json')).toBe(
      'https://huggingface.co/HuggingFaceTB/SmolLM2-135M/resolve/main/config.json',
    );
  });

  it('network failure names the file', async () => {
    const src = new UrlSource('http://127.0.0.1:1/x', 'dead');
    await expectSourceError(
      src.read('config.json'),
      'network',
      /Could not reach http:\/\/127\.0\.0\.1:1\/x\/config\.json for "config\.json"/,
    );
  });

  it('sends extra headers (access token)', async () => {
    const src = new UrlSource(`${base}/m`, 'local', { headers: { Authorization: 'Bearer hf_test' } });
    await src.read('config.json');
    expect(requests.at(-1)!.auth).toBe('Bearer hf_test');
  });

  it('cache hook: put after download, get before the network', async () => {
    const store = new Map<string, Uint8Array>();
    const cache: ByteCache = {
      get: async (url) => store.get(url) ?? null,
      put: async (url, bytes) => {
        store.set(url, bytes);
      },
    };
    const src = new UrlSource(`${base}/m`, 'local', { cache });
    const n0 = requests.length;
    const first = await src.read('big.bin');
    expect(requests.length).toBe(n0 + 1);
    same(store.get(`${base}/m/big.bin`), first);
    const calls: [number, number | null][] = [];
    const second = await src.read('big.bin', (l, t) => calls.push([l, t]));
    same(second, first);
    expect(requests.length).toBe(n0 + 1); // served from the cache
    expect(calls).toEqual([[200_000, 200_000]]);
    expect(await src.has('big.bin')).toBe(true);
    expect(requests.length).toBe(n0 + 1);
    // A failing cache never fails the load.
    const broken = new UrlSource(`${base}/m`, 'local', {
      cache: { get: () => Promise.reject(new Error('quota')), put: () => Promise.reject(new Error('quota')) },
    });
    same(await broken.read('config.json'), new TextEncoder().encode('{"a": 1}'));
  });

  it('loads a sharded tiny model from a Hub-layout server, with per-file progress', async () => {
    const hub = UrlSource.hub('org/tiny', 'main', { endpoint: base });
    expect(await hub.list!()).toContain('model.safetensors.index.json');
    const seen = new Map<string, [number, number | null]>();
    const m = await loadModel(hub, { onProgress: (file, l, t) => seen.set(file, [l, t]) });
    expect(m.config.modelType).toBe('qwen2');
    expect(m.weightFiles).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect(m.arch.layers).toHaveLength(2);
    const shard = files.get('/org/tiny/resolve/main/model-00002-of-00002.safetensors')!.bytes.byteLength;
    expect(seen.get('model-00002-of-00002.safetensors')).toEqual([shard, shard]);
    expect(seen.get('config.json')![1]).toBeNull(); // sent chunked
    expect(seen.get('model.safetensors') ?? [0, null]).toEqual([0, null]); // asked for (0 bytes), 404: nothing read
  });
});

describe('FileListSource and MemorySource', () => {
  const tiny = makeTinyModel({ modelType: 'llama' });
  const asFiles = (prefix: string) =>
    [...tiny.files].map(([name, bytes]) => {
      const f = new File([new Uint8Array(bytes)], name);
      if (prefix) Object.defineProperty(f, 'webkitRelativePath', { value: `${prefix}/${name}` });
      return f;
    });

  it('matches dropped-folder files by relative path and loads a model', async () => {
    const files = asFiles('TinyLlama');
    files.push(
      Object.defineProperty(new File(['{}'], 'config.json'), 'webkitRelativePath', {
        value: 'TinyLlama/onnx/config.json',
      }),
    );
    const src = new FileListSource(files);
    expect(src.name).toBe('TinyLlama');
    expect(await src.has('config.json')).toBe(true);
    expect(await src.has('onnx/config.json')).toBe(true);
    expect(await src.has('model.safetensors.index.json')).toBe(false);
    expect((await src.list()).slice(0, 3)).toEqual(['config.json', 'generation_config.json', 'model.safetensors']);
    // the shallowest config.json wins
    same(await src.read('config.json'), tiny.files.get('config.json'));
    expect(new TextDecoder().decode(await src.read('onnx/config.json'))).toBe('{}');
    const calls: [number, number | null][] = [];
    const w = await src.read('model.safetensors', (l, t) => calls.push([l, t]));
    same(w, tiny.files.get('model.safetensors'));
    expect(calls.at(-1)).toEqual([w.byteLength, w.byteLength]);
    const m = await loadModel(src);
    expect(m.config.modelType).toBe('llama');
    await expectSourceError(
      src.read('tokenizer.model'),
      'not-found',
      /"tokenizer\.model" is not among the selected files of "TinyLlama"/,
    );
  });

  it('plain File objects (no folder) and explicit paths', async () => {
    const src = new FileListSource(asFiles(''), 'picked');
    expect(await src.has('tokenizer.json')).toBe(true);
    const explicit = new FileListSource([{ path: 'x/config.json', file: new File(['{"k":2}'], 'whatever') }]);
    expect(new TextDecoder().decode(await explicit.read('config.json'))).toBe('{"k":2}');
  });

  it('MemorySource', async () => {
    const src = new MemorySource(tiny.files, 'mem');
    expect(await src.list()).toEqual([...tiny.files.keys()].sort());
    expect(await src.has('./config.json')).toBe(true);
    await expectSourceError(src.read('nope'), 'not-found', 'File "nope" not found in mem.');
    expect((await loadModel(src)).config.hiddenSize).toBe(24);
  });
});
