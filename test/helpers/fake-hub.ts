/**
 * A local HTTP server standing in for the Hugging Face Hub in CLI tests (HF_ENDPOINT points at it):
 * routes by method and path, every request recorded with its headers and body.
 */
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HubRequest {
  method: string;
  /** Path and query. */
  url: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

export type HubHandler = (req: HubRequest, res: ServerResponse) => void;

export interface FakeHub {
  url: string;
  requests: HubRequest[];
  /** Adds a handler for `METHOD /path` (the query is ignored in matching). */
  on(method: string, path: string, handler: HubHandler): void;
  close(): Promise<void>;
}

export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

export async function startFakeHub(): Promise<FakeHub> {
  const routes = new Map<string, HubHandler>();
  const requests: HubRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r: HubRequest = {
        method: req.method ?? 'GET',
        url: req.url ?? '/',
        headers: req.headers,
        body: Buffer.concat(chunks),
      };
      requests.push(r);
      const handler = routes.get(`${r.method} ${r.url.split('?')[0]}`);
      if (handler) handler(r, res);
      else json(res, 404, { error: `no route ${r.method} ${r.url}` });
    });
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    on: (method, path, handler) => routes.set(`${method} ${path}`, handler),
    close: () => new Promise((res) => server.close(() => res())),
  };
}
