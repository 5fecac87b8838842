/**
 * A fake Hugging Face Hub for the browser tests, played with Playwright's page.route: repos of
 * files served at `{HUB}/{id}/resolve/main/{file}` (GET, HEAD, and single-range GETs answered with
 * 206 and Content-Range as the Hub's servers do, 416 past the end), the API's file listing
 * (`/api/models/{id}/tree/main`, with sizes), CORS, per-file faults, gated repos opened by an access
 * token, held responses, and a log of every request.
 */
import type { Page, Route } from 'playwright-core';

const HUB = 'https://huggingface.co';

export type Fault = 'none' | '404' | '401' | 'drop' | 'short' | 'truncate';

export class FakeHub {
  readonly repos = new Map<string, Map<string, Uint8Array>>();
  readonly faults = new Map<string, Fault>();
  /** Gated repos: the access token that opens them (their '401' fault then gives way to it). */
  readonly tokens = new Map<string, string>();
  readonly log: { method: string; url: string; auth?: string; range?: string }[] = [];
  /** Held requests: the file name -> a promise the response waits for. */
  readonly holds = new Map<string, Promise<void>>();

  add(id: string, files: Map<string, Uint8Array>): void {
    this.repos.set(id, files);
  }

  /** Whole-file GET requests for a repo file (downloads; range requests are not counted). */
  gets(id: string, file: string): number {
    return this.log.filter((r) => r.method === 'GET' && !r.range && r.url === `${HUB}/${id}/resolve/main/${file}`)
      .length;
  }

  /** Range requests for a repo file (a check reading a header). */
  ranges(id: string, file: string): string[] {
    return this.log.filter((r) => r.range && r.url === `${HUB}/${id}/resolve/main/${file}`).map((r) => r.range!);
  }

  async install(page: Page): Promise<void> {
    await page.route(`${HUB}/**`, (route) => this.serve(route));
  }

  private async serve(route: Route): Promise<void> {
    const req = route.request();
    const url = new URL(req.url());
    const method = req.method();
    const cors = {
      'access-control-allow-origin': '*',
      'access-control-allow-headers': '*',
      'access-control-allow-methods': 'GET, HEAD',
      'access-control-expose-headers': 'content-range, content-length, accept-ranges',
    };
    if (method === 'OPTIONS') return route.fulfill({ status: 204, headers: cors });
    const auth = req.headers()['authorization'];
    const range = req.headers()['range'];
    this.log.push({ method, url: req.url(), ...(auth ? { auth } : {}), ...(range ? { range } : {}) });
    const tree = /^\/api\/models\/(.+)\/tree\/main$/.exec(url.pathname);
    if (tree) {
      const files = this.repos.get(decodeURIComponent(tree[1]!));
      if (!files) return route.fulfill({ status: 404, headers: cors, body: '{"error":"Repository not found"}' });
      const list = [...files].map(([path, b]) => ({ type: 'file', path, size: b.byteLength }));
      return route.fulfill({
        status: 200,
        headers: { ...cors, 'content-type': 'application/json' },
        body: JSON.stringify(list),
      });
    }
    const m = /^\/(.+)\/resolve\/main\/(.+)$/.exec(url.pathname);
    const files = m ? this.repos.get(decodeURIComponent(m[1]!)) : undefined;
    const file = m ? decodeURIComponent(m[2]!) : '';
    const bytes = files?.get(file);
    if (!files || !bytes) return route.fulfill({ status: 404, headers: cors, body: 'Entry not found' });
    const hold = this.holds.get(file);
    if (hold) await hold;
    const fault = this.faults.get(`${m![1]}/${file}`) ?? 'none';
    if (fault === '404') return route.fulfill({ status: 404, headers: cors, body: 'Entry not found' });
    const opened = auth !== undefined && auth === `Bearer ${this.tokens.get(decodeURIComponent(m![1]!))}`;
    if (fault === '401' && !opened)
      return route.fulfill({ status: 401, headers: cors, body: 'Access to model is restricted' });
    if (fault === 'drop') return route.abort('connectionreset');
    if (fault === 'short') {
      // Content-Length says the whole file, the connection ends half way.
      const half = Buffer.from(bytes.subarray(0, Math.floor(bytes.byteLength / 2)));
      return route.fulfill({
        status: 200,
        headers: { ...cors, 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) },
        body: half,
      });
    }
    const body = fault === 'truncate' ? bytes.subarray(0, Math.floor(bytes.byteLength / 2)) : bytes;
    const type = { ...cors, 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes' };
    const r = /^bytes=(\d+)-(\d*)$/.exec(range ?? '');
    if (r && method === 'GET') {
      const size = body.byteLength;
      const a = Number(r[1]);
      const b = Math.min(r[2] ? Number(r[2]) : size - 1, size - 1);
      if (a >= size) return route.fulfill({ status: 416, headers: { ...cors, 'content-range': `bytes */${size}` } });
      const part = body.subarray(a, b + 1);
      return route.fulfill({
        status: 206,
        headers: { ...type, 'content-range': `bytes ${a}-${b}/${size}`, 'content-length': String(part.byteLength) },
        body: Buffer.from(part),
      });
    }
    const headers = { ...type, 'content-length': String(body.byteLength) };
    if (method === 'HEAD') return route.fulfill({ status: 200, headers });
    return route.fulfill({ status: 200, headers, body: Buffer.from(body) });
  }
}
