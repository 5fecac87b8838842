/**
 * Browser-test plumbing: a Vite dev server on 127.0.0.1 (a secure context for WebGPU) and Debian's
 * Chromium driven by playwright-core, with the flags that give a SwiftShader WebGPU adapter on a
 * GPU-less machine (docs: ../shared/PLATFORM.md). Nothing here downloads anything.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, type ConsoleMessage, type Page, chromium } from 'playwright-core';
import { build, createServer, preview } from 'vite';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const ARTIFACTS = join(ROOT, 'test-artifacts');
export const CHROMIUM = process.env.TABTUNE_CHROMIUM || '/usr/bin/chromium';

/** WebGPU on SwiftShader (Vulkan on the CPU), headless, quiet, offline. */
export const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-vulkan=swiftshader',
  '--use-webgpu-adapter=swiftshader',
  '--disable-vulkan-surface',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createNetServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface Harness {
  baseUrl: string;
  context: BrowserContext;
  close(): Promise<void>;
}

function needChromium(): void {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium is not installed at ${CHROMIUM}. The browser tests need Debian's chromium package ` +
        '(as root: bash scripts/setup-system.sh, or apt-get install chromium), or TABTUNE_CHROMIUM=/path/to/chromium.',
    );
  }
  mkdirSync(ARTIFACTS, { recursive: true });
}

/** Starts the dev server and the browser. Throws with a clear message when Chromium is missing. */
export async function startHarness(): Promise<Harness> {
  needChromium();
  const port = await freePort();
  const server = await createServer({
    configFile: join(ROOT, 'vite.config.ts'),
    root: ROOT,
    logLevel: 'warn',
    clearScreen: false,
    server: { host: '127.0.0.1', port, strictPort: true, watch: null, hmr: false },
    // Dependencies are pre-bundled from the config's explicit list only: no scan, so no reload
    // while a page is running.
    optimizeDeps: { noDiscovery: true },
  });
  await server.listen();
  return withBrowser(`http://127.0.0.1:${port}`, () => server.close());
}

/**
 * The production build (`vite build` into a temporary folder, minified as users get it) served by
 * `vite preview`, and the browser: for what only the built app can show (e.g. minified class names).
 */
export async function startBuiltHarness(): Promise<Harness> {
  needChromium();
  const outDir = mkdtempSync(join(tmpdir(), 'tabtune-build-'));
  const config = { configFile: join(ROOT, 'vite.config.ts'), root: ROOT, logLevel: 'error' as const };
  try {
    await build({ ...config, build: { outDir, emptyOutDir: true } });
  } catch (e) {
    rmSync(outDir, { recursive: true, force: true });
    throw e;
  }
  const port = await freePort();
  const server = await preview({
    ...config,
    build: { outDir },
    preview: { host: '127.0.0.1', port, strictPort: true },
  });
  return withBrowser(`http://127.0.0.1:${port}`, async () => {
    await new Promise<void>((resolve) => server.httpServer.close(() => resolve()));
    rmSync(outDir, { recursive: true, force: true });
  });
}

async function withBrowser(baseUrl: string, closeServer: () => Promise<void>): Promise<Harness> {
  const userDataDir = mkdtempSync(join(tmpdir(), 'tabtune-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1100, height: 900 },
      env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? userDataDir },
      timeout: 120_000,
    });
  } catch (e) {
    await closeServer();
    rmSync(userDataDir, { recursive: true, force: true });
    throw new Error(`Could not launch ${CHROMIUM}: ${(e as Error).message}`, { cause: e });
  }
  // The app's kernel tuning is off in the browser tests (Diagnostics' setting, kept in localStorage),
  // so SwiftShader does not time matmul kernels in every test; test/e2e/kernel-tuning.test.ts turns
  // it on through Diagnostics (set once: a value already kept is left as it is).
  await context.addInitScript(() => {
    if (localStorage.getItem('tabtune-kernels') === null) localStorage.setItem('tabtune-kernels', 'off');
  });
  // A page's first load has the dev server transform the app's modules on demand (and SwiftShader
  // compile its shaders); on a busy 2-core machine that passes Playwright's default 30 s.
  context.setDefaultNavigationTimeout(180_000);
  return {
    baseUrl,
    context,
    async close() {
      await context.close().catch(() => {});
      await closeServer();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

export interface OpenedPage {
  page: Page;
  /** Console errors, uncaught exceptions and crashes, in order. */
  errors: string[];
  /**
   * Waits for `predicate` to hold in the page; fails at once (instead of at the timeout) when the
   * page reports an error first, naming that error.
   */
  waitFor(predicate: () => unknown, timeoutMs: number): Promise<void>;
}

/** A new page whose console errors and uncaught exceptions are collected. */
export async function openPage(h: Harness): Promise<OpenedPage> {
  const page = await h.context.newPage();
  const errors: string[] = [];
  let onError: ((msg: string) => void) | null = null;
  const add = (msg: string) => {
    errors.push(msg);
    onError?.(msg);
  };
  page.on('console', (m: ConsoleMessage) => {
    if (m.type() === 'error') add(`console.error: ${m.text()}`);
  });
  page.on('pageerror', (e) => add(`uncaught: ${e.message}`));
  page.on('crash', () => add('the page crashed'));
  return {
    page,
    errors,
    async waitFor(predicate, timeoutMs) {
      if (errors.length) throw new Error(`the page reported an error: ${errors[0]}`);
      const failed = new Promise<never>((_, reject) => {
        onError = (msg) => reject(new Error(`the page reported an error before finishing: ${msg}`));
      });
      try {
        await Promise.race([page.waitForFunction(predicate, undefined, { timeout: timeoutMs, polling: 250 }), failed]);
      } finally {
        onError = null;
        failed.catch(() => {});
      }
    },
  };
}

/**
 * Runs `code` at the top of the app's GPU worker script in `page` (what addInitScript is for the
 * page itself, which does not reach workers): e.g. a browser without WebGPU in the worker.
 */
export async function prependToWorker(page: Page, code: string): Promise<void> {
  await page.route('**/src/worker/worker.ts*', async (route) => {
    const res = await route.fetch();
    await route.fulfill({ response: res, body: `${code}\n${await res.text()}` });
  });
}

/**
 * The page's errors less Vite's "failed to connect to websocket": a page with routed requests loses
 * the dev server's socket (seen only with a route in place), the dev server's message, not the app's.
 */
export function appErrors(errors: string[]): string[] {
  return errors.filter((e) => !e.startsWith('console.error: [vite] failed to connect to websocket'));
}
