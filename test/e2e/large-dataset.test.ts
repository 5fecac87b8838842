/**
 * A large upload in Chromium: 100,000 synthetic Alpaca records (about 23 MB) through the Data view's
 * file input. The page keeps the File and never reads it whole: the worker indexes it by range and
 * tokenizes only a sample, so the preview shows while the file is still counted (with the records
 * counted so far), then the exact record count and the estimated token counts show, the page's own
 * heap grows by far less than the file's size, and a 2-step run trains from it, with the GPU
 * worker's tokenizer workers (src/worker/tokenize.worker.ts) started beside it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syntheticJsonl } from '../../src/bench/synthetic-data';
import { type Harness, openPage } from '../browser/harness';
import { nav, onPage, screenshotter, shortRunSettings, startAppHarness } from './app-page';

const LONG = 240_000;
const RECORDS = 100_000;

let h: Harness;

beforeAll(async () => {
  h = await startAppHarness();
}, 300_000);

afterAll(async () => {
  await h?.close();
});

const shot = screenshotter('large-data');

describe('a large dataset in the app', () => {
  it('previews and counts a 100,000-record upload without the page reading it, and trains from it', async () => {
    const { page, errors } = await openPage(h);
    const workers: string[] = [];
    page.on('worker', (w) => workers.push(w.url()));
    await onPage({ page, errors }, shot, 'failed', async () => {
      await page.goto(`${h.baseUrl}/`);
      await page.waitForSelector('.app[data-model="ready"]', { timeout: LONG });
      await nav(page, /Data/);
      await page.waitForSelector('[data-testid="dataset-summary"]', { timeout: LONG });
      // No validation split: evaluating its records on SwiftShader would outlast the test.
      await page.locator('input[name="valFraction"]').fill('0');
      // Every text the progress line shows while the file is read, and the first example the
      // early summary shows while the file is still counted.
      await page.evaluate(() => {
        const seen: string[] = [];
        const w = window as unknown as { progressSeen: string[]; earlyExample: string | null };
        w.progressSeen = seen;
        w.earlyExample = null;
        new MutationObserver(() => {
          const t = document.querySelector('[data-testid="dataset-progress"]')?.textContent;
          if (t && seen[seen.length - 1] !== t) seen.push(t);
          const early = document.querySelector('[data-testid="dataset-provisional"]');
          const example = document.querySelector('.example')?.textContent;
          if (early && t?.startsWith('Counting') && example && w.earlyExample === null) w.earlyExample = example;
        }).observe(document.body, { subtree: true, childList: true, characterData: true });
      });
      // The page's heap before the upload (the app, the model's page-side state, the demo data).
      const cdp = await page.context().newCDPSession(page);
      const heap = async (): Promise<number> => {
        await cdp.send('HeapProfiler.collectGarbage');
        return ((await cdp.send('Runtime.getHeapUsage')) as { usedSize: number }).usedSize;
      };
      const heapBefore = await heap();
      const buffer = Buffer.from(syntheticJsonl(RECORDS));
      await page.locator('#dataset-file').setInputFiles({ name: 'big.jsonl', mimeType: 'application/json', buffer });
      const summary = page.getByTestId('dataset-summary');
      await expect.poll(() => summary.innerText(), { timeout: LONG }).toContain('big.jsonl');
      await expect.poll(() => summary.innerText(), { timeout: LONG }).toContain('100,000');
      const text = await summary.innerText();
      expect(text).toContain('≈');
      expect(text).toMatch(/tokenized as training reaches each record/);
      expect(await page.locator('.example').first().innerText()).toContain('Write a short story about');
      await shot(page, 'data');
      const { progress, earlyExample } = await page.evaluate(() => {
        const w = window as unknown as { progressSeen: string[]; earlyExample: string | null };
        return { progress: w.progressSeen, earlyExample: w.earlyExample };
      });
      // The preview showed before counting ended, with the records counted so far (fewer than all,
      // part of the file read), and it is the final preview's first example.
      const counting = progress
        .map((t) => /^Counting… ([\d,]+) records so far \((\d+)%\)$/.exec(t))
        .filter((m): m is RegExpExecArray => m !== null);
      expect(counting.length, progress.join(' | ')).toBeGreaterThan(0);
      expect(Number(counting[0]![1]!.replace(/,/g, '')), progress.join(' | ')).toBeLessThan(RECORDS);
      expect(Number(counting[0]![2]), progress.join(' | ')).toBeLessThan(100);
      expect(earlyExample).toBe(await page.locator('.example').first().textContent());

      // The page holds the File, not its text: its heap grows by a tenth of the file's size at most.
      const grown = (await heap()) - heapBefore;
      expect(grown, `page heap grew ${grown} bytes (from ${heapBefore}) for a ${buffer.length}-byte file`).toBeLessThan(
        buffer.length / 10,
      );

      await shortRunSettings(page, { steps: 2, batch: 2, checkpointEvery: 0, evalEvery: 0 }, LONG);
      await nav(page, /Train/);
      await page.getByTestId('start-training').click();
      await page.waitForSelector('[data-testid="train-finished"]', { timeout: LONG });
      await shot(page, 'trained');
      expect(workers.filter((u) => /tokenize/.test(u)).length, workers.join(' ')).toBeGreaterThan(0);
    });
  }, 600_000);
});
