/**
 * The engine in a real browser: Debian's Chromium (headless, WebGPU on SwiftShader) loads pages
 * from a Vite dev server and runs the kernels through the app's own runtime code. GPU tests never
 * skip: no adapter is a failure with the reason.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KernelPageResult } from './kernel-page';
import {
  ARTIFACTS,
  CHROMIUM,
  CHROMIUM_ARGS,
  type Harness,
  appErrors,
  openPage,
  prependToWorker,
  startHarness,
} from './harness';

const PAGE_TIMEOUT = 300_000;

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
}, 180_000);

afterAll(async () => {
  await h?.close();
});

describe('browser (Chromium + SwiftShader WebGPU)', () => {
  it(
    'runs the recorder, matmul (f32/bf16/f16 weights) and the LoRA linear fwd+bwd against the float64 references',
    async () => {
      const t0 = Date.now();
      const { page, errors, waitFor } = await openPage(h);
      await page.goto(`${h.baseUrl}/test/browser/kernel.html`);
      await waitFor(() => window.__tabtune?.done === true, PAGE_TIMEOUT);
      const r = (await page.evaluate(() => window.__tabtune)) as KernelPageResult;
      await page.screenshot({ path: join(ARTIFACTS, 'browser-kernels.png'), fullPage: true });
      await page.close();

      expect(r.secureContext, 'the test page must be a secure context (served from 127.0.0.1)').toBe(true);
      expect(
        r.error,
        `Chromium gave no usable WebGPU device (navigator.gpu ${r.hasNavigatorGpu ? 'present' : 'missing'}): ${r.error}\n` +
          `Chromium ${CHROMIUM} was started with: ${CHROMIUM_ARGS.join(' ')}`,
      ).toBeUndefined();
      console.log(
        `[tabtune] ${r.adapterLine}; subgroup lanes used ${r.report?.subgroupLanes ?? '?'} [chromium, ${Date.now() - t0} ms]`,
      );
      expect(r.adapter?.architecture, `expected the SwiftShader adapter, got ${r.adapterLine}`).toBe('swiftshader');
      expect(r.features?.f16, 'SwiftShader has no shader-f16: the kernels must take the f32 path').toBe(false);

      const report = r.report!;
      const names = report.checks.map((c) => c.name);
      for (const want of [
        /^recorder/,
        /f32 W/,
        /bf16 W \[/,
        /f16 W \[/,
        /small-M/,
        /linear forward/,
        /linear backward/,
        // SwiftShader is a CPU driver with subgroups: the direct attention kernels, on 4 lanes
        /^attention .* direct subgroup kernels/,
      ]) {
        expect(
          names.some((n) => want.test(n)),
          `no check matching ${want} in ${names.join(' | ')}`,
        ).toBe(true);
      }
      for (const c of report.checks) {
        console.log(
          `[tabtune]   ${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: max abs err ${c.maxAbsErr.toExponential(2)}, ${c.ms.toFixed(0)} ms`,
        );
      }
      for (const c of report.checks) expect(c.ok, `${c.name}: ${c.error}`).toBe(true);
      expect(errors, `page console errors:\n${errors.join('\n')}`).toEqual([]);
    },
    PAGE_TIMEOUT + 30_000,
  );

  it(
    'renders the Diagnostics view (React) and its self-test passes',
    async () => {
      const { page, errors, waitFor } = await openPage(h);
      await page.goto(`${h.baseUrl}/#/diagnostics`);
      const main = page.locator('main.page');
      await waitFor(() => {
        const s = document.querySelector('main.page')?.getAttribute('data-status');
        return !!s && s !== 'starting' && s !== 'waiting' && s !== 'running';
      }, PAGE_TIMEOUT);
      await page.screenshot({ path: join(ARTIFACTS, 'start-page.png'), fullPage: true });
      const status = await main.getAttribute('data-status');
      const text = await main.innerText();
      await page.close();
      expect(status, `start page ended in "${status}":\n${text}`).toBe('passed');
      expect(text).toContain('swiftshader');
      expect(text).toMatch(/shader-f16\s*no/);
      expect(text).toContain('maxStorageBufferBindingSize');
      expect(errors, `page console errors:\n${errors.join('\n')}`).toEqual([]);
    },
    PAGE_TIMEOUT + 30_000,
  );

  it('Diagnostics explains when there is no WebGPU (no navigator.gpu, or no adapter)', async () => {
    // The GPU is the worker's: each case runs its line at the top of the worker's script.
    const cases = [
      {
        name: 'no navigator.gpu',
        init: "Object.defineProperty(WorkerNavigator.prototype, 'gpu', { get: () => undefined, configurable: true });",
        expect: /navigator\.gpu is missing/,
      },
      { name: 'no adapter', init: 'GPU.prototype.requestAdapter = async () => null;', expect: /gave no adapter/ },
    ];
    for (const c of cases) {
      const { page, errors } = await openPage(h);
      await prependToWorker(page, c.init);
      await page.goto(`${h.baseUrl}/#/diagnostics`);
      await page.waitForSelector('main.page[data-status="unavailable"]', { timeout: 60_000 });
      const text = await page.locator('main.page').innerText();
      if (c.name === 'no adapter') await page.screenshot({ path: join(ARTIFACTS, 'start-page-no-webgpu.png') });
      await page.close();
      expect(text, c.name).toContain('WebGPU is not available');
      expect(text, c.name).toMatch(c.expect);
      expect(appErrors(errors), `${c.name}: page console errors:\n${errors.join('\n')}`).toEqual([]);
    }
  }, 120_000);
});
