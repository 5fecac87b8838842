/**
 * UrlSource: files served from a base URL, above all the Hugging Face Hub
 * (`{endpoint}/{repo}/resolve/{revision}/{path}`), streamed with download progress, with an
 * optional byte cache (Cache API / OPFS) and the user's access token sent to the Hub only.
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

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return !!p?.versions?.node;
}

/**
 * A web page served for a file that is not one: development and single-page-app servers answer a
 * missing path with their index.html (status 200), which is no model file.
 */
function webPageFor(rel: string, res: Response): boolean {
  return /^text\/html\b/i.test(res.headers.get('content-type') ?? '') && !/\.html?$/i.test(rel);
}

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

  /**
   * Bytes [start, end) of a file and the file's whole size, by an HTTP range request, so a check can
   * read the header of a file of gigabytes. A server that ignores the range (200) is read only up to
   * `end`. `size` is null when the server does not say it (no readable Content-Range or
   * Content-Length); `bytes` is shorter than asked when the file is.
   */
  async readRange(path: string, start: number, end: number): Promise<{ bytes: Uint8Array; size: number | null }> {
    const rel = normalizeRelPath(path, this.name);
    const url = this.urlOf(rel);
    const res = await this.request(rel, url, { method: 'GET', headers: { Range: `bytes=${start}-${end - 1}` } });
    const total = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : null);
    if (res.status === 416) {
      // Nothing at `start`: the file is shorter ("bytes */SIZE").
      await res.body?.cancel().catch(() => undefined);
      return { bytes: new Uint8Array(0), size: total(/\/(\d+)\s*$/.exec(res.headers.get('content-range') ?? '')?.[1]) };
    }
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      throw this.statusError(rel, url, res.status, res.statusText);
    }
    if (webPageFor(rel, res)) {
      await res.body?.cancel().catch(() => undefined);
      throw new SourceError(
        `${this.name}: "${rel}" is not there (${this.where()} answered with a web page).`,
        'not-found',
        rel,
      );
    }
    let size: number | null;
    let skip: number;
    if (res.status === 206) {
      const m = /^bytes\s+(\d+)-\d+\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
      size = total(m?.[2]);
      skip = m ? start - Number(m[1]) : 0;
    } else {
      const enc = res.headers.get('content-encoding');
      size = !enc || enc === 'identity' ? total(res.headers.get('content-length') ?? undefined) : null;
      skip = start;
    }
    const want = end - start;
    const out = new Uint8Array(want);
    let got = 0;
    let seen = 0;
    try {
      if (res.body) {
        const reader = res.body.getReader();
        while (got < want) {
          const { done, value } = await reader.read();
          if (done) break;
          const from = Math.max(0, skip - seen);
          seen += value.byteLength;
          if (from >= value.byteLength) continue;
          const piece = value.subarray(from, from + want - got);
          out.set(piece, got);
          got += piece.byteLength;
        }
        await reader.cancel().catch(() => undefined);
      }
    } catch (e) {
      throw new SourceError(`Reading "${rel}" from ${this.where()} broke off: ${(e as Error).message}`, 'network', rel);
    }
    return { bytes: out.subarray(0, got), size };
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
