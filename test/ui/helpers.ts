/**
 * A controller wired to the fake engine, a fresh fake-indexeddb, a fetch that serves public/ (the
 * shipped demo model and dataset) plus given extra URLs, and Web Locks simulated per "browser", so
 * two controllers on one database behave like two tabs.
 */
import 'fake-indexeddb/auto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { IDBFactory } from 'fake-indexeddb';
import { openTabtuneDb } from '../../src/store/db';
import type { HeldLock } from '../../src/store/runs';
import { AppController } from '../../src/ui/controller';
import type { Platform } from '../../src/ui/context';
import { FakeEngine } from './fake-engine';

export const PAGE = 'http://app.test/';
/** public/ of the repository (tests run from its root). */
const PUBLIC = join(process.cwd(), 'public');

/** A fresh IndexedDB for a test. */
export function freshIndexedDb(): void {
  globalThis.indexedDB = new IDBFactory();
}

/** Web Locks shared by the "tabs" of one simulated browser. */
export class FakeLocks {
  held = new Set<string>();
  lock(runId: string): HeldLock | null {
    const name = `tabtune-run-${runId}`;
    if (this.held.has(name)) return null;
    this.held.add(name);
    return { release: () => this.held.delete(name) };
  }
}

export function fakeFetch(extra: Record<string, string | Uint8Array> = {}): typeof fetch {
  return (async (input: RequestInfo | URL) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if (url in extra) {
      const body = extra[url]!;
      return new Response(typeof body === 'string' ? body : body.slice().buffer, { status: 200 });
    }
    if (url.startsWith(PAGE)) {
      try {
        const bytes = readFileSync(join(PUBLIC, decodeURIComponent(url.slice(PAGE.length))));
        return new Response(bytes, { status: 200, headers: { 'content-length': String(bytes.byteLength) } });
      } catch {
        return new Response('not found', { status: 404 });
      }
    }
    return new Response('not found', { status: 404 });
  }) as typeof fetch;
}

export interface TestApp {
  c: AppController;
  engine: FakeEngine;
  locks: FakeLocks;
}

export async function makeApp(
  opts: {
    engine?: FakeEngine;
    locks?: FakeLocks;
    tabId?: string;
    autoDemo?: boolean;
    fetch?: typeof fetch;
    noDb?: boolean;
    start?: boolean;
    /** false: a browser without Web Locks (only the run leases in IndexedDB guard runs). */
    webLocks?: boolean;
    /** The browser's localStorage for the settings (kept across "reloads" when shared). */
    settingsStorage?: Map<string, string>;
    /** The browser's storage estimate (default: 1 MB used of 10 GB). */
    storageEstimate?: Platform['storageEstimate'];
  } = {},
): Promise<TestApp> {
  const engine = opts.engine ?? new FakeEngine();
  const locks = opts.locks ?? new FakeLocks();
  const platform: Platform = {
    fetch: opts.fetch ?? fakeFetch(),
    pageUrl: PAGE,
    lockRun: async (id) => (opts.webLocks === false ? { release() {} } : locks.lock(id)),
    heldRunLocks: async () => (opts.webLocks === false ? null : new Set(locks.held)),
    persistStorage: async () => true,
    storageEstimate: opts.storageEstimate ?? (async () => ({ usage: 1_000_000, quota: 10_000_000_000 })),
    isPersisted: async () => false,
    settingsStorage: opts.settingsStorage && {
      getItem: (k) => opts.settingsStorage!.get(k) ?? null,
      setItem: (k, v) => void opts.settingsStorage!.set(k, v),
    },
  };
  const c = new AppController({
    engine,
    platform,
    tabId: opts.tabId ?? 'tab-a',
    autoDemo: opts.autoDemo,
    useByteCache: false,
    openDb: opts.noDb
      ? () => Promise.reject(Object.assign(new Error('no IndexedDB'), { name: 'StorageUnavailableError' }))
      : () => openTabtuneDb(),
  });
  if (opts.start !== false) await c.start();
  return { c, engine, locks };
}

/** Waits until `pred` holds (polling), failing after `ms`. */
export async function until(pred: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
