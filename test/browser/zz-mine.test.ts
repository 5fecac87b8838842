import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Harness, openPage, startHarness } from './harness';
let h: Harness;
beforeAll(async () => { h = await startHarness(); }, 180_000);
afterAll(async () => { await h?.close(); });
it('my kernels in chromium/swiftshader', async () => {
  const { page, errors, waitFor } = await openPage(h);
  await page.goto(`${h.baseUrl}/test/browser/zz-mine.html`);
  await waitFor(() => (window as any).__mine?.done === true, 300_000);
  const r = await page.evaluate(() => (window as any).__mine);
  console.log(JSON.stringify({ arch: r.arch, f16: r.f16, error: r.error }));
  for (const c of r.results) console.log(`${c.ok ? 'ok  ' : 'FAIL'} ${c.name} ${c.maxAbs.toExponential(2)}`);
  expect(r.error).toBeUndefined(); expect(errors).toEqual([]);
  for (const c of r.results) expect(c.ok, c.name).toBe(true);
}, 400_000);
