/**
 * The production build (vite build + vite preview, minified as users get it) in headless Chromium.
 * Tests otherwise run the dev server, where class names survive; a minifier renames them, and error
 * messages are chosen by the error's `name`. Here the worker sees no WebGPU, as in a browser without
 * it, and the app must still title its message "WebGPU is not available" (a name taken from the class
 * would have been mangled, leaving a generic "... failed").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, openPage, startBuiltHarness } from '../browser/harness';
import { onPage, screenshotter } from './app-page';

let h: Harness;

beforeAll(async () => {
  h = await startBuiltHarness();
}, 300_000);

afterAll(async () => {
  await h?.close();
});

const shot = screenshotter('built');

describe('built app', () => {
  it('names errors by their literal names after minification', async () => {
    const opened = await openPage(h);
    await onPage(opened, shot, 'failed', async () => {
      const { page } = opened;
      let routed = 0;
      // The bundled worker (assets/worker-<hash>.js) sees no navigator.gpu.
      await page.route(/\/assets\/worker[^/]*\.js/, async (route) => {
        routed++;
        const res = await route.fetch();
        const body = `Object.defineProperty(WorkerNavigator.prototype, 'gpu', { get: () => undefined });\n${await res.text()}`;
        await route.fulfill({ response: res, body });
      });
      await page.goto(`${h.baseUrl}/`);
      await page.waitForSelector('.app[data-gpu="unavailable"]', { timeout: 120_000 });
      expect(routed).toBeGreaterThan(0);
      const alert = await page.getByRole('alert').first().innerText();
      await shot(page, 'no-webgpu');
      expect(alert).toMatch(/WebGPU is not available/);
      expect(opened.errors).toEqual([]);
    });
  }, 300_000);
});
