#!/usr/bin/env -S node --import tsx
// The app's data path at scale, measured in Chromium (the production build, SwiftShader WebGPU, as
// the browser tests run it): a synthetic Alpaca JSON Lines file of N records is uploaded through the
// Data view; reported are the seconds until its preview shows (the early summary, while the file is
// still counted), the seconds until the exact record count shows, the seconds
// until a 2-step run (batch 4) has finished, and how much the browser's processes grew over the
// page with the model loaded (peak resident memory, sampled every 250 ms from /proc: Linux only).
// A benchmark, not a test: nothing here asserts.
//
//   node --import tsx scripts/bench-app-data.ts [RECORDS=1000000]

import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticAlpaca } from '../src/bench/synthetic-data';
import { startBuiltHarness } from '../test/browser/harness';

const records = Number(process.argv[2] ?? 1_000_000);
const LONG = 1_800_000;

/** Resident bytes of every process below this one (the browser's), by /proc. */
function browserRss(): number {
  const parent = new Map<number, number>();
  const rss = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(d), Number(fields[1]));
      rss.set(Number(d), Number(fields[21]) * 4096);
    } catch {
      // (gone meanwhile)
    }
  }
  let total = 0;
  for (const [pid, bytes] of rss) {
    for (let p = parent.get(pid); p !== undefined && p > 1; p = parent.get(p)) {
      if (p === process.pid) {
        total += bytes;
        break;
      }
    }
  }
  return total;
}

async function writeDataset(path: string): Promise<number> {
  const out = createWriteStream(path);
  let bytes = 0;
  let buf = '';
  for (const r of syntheticAlpaca(records)) {
    buf += `${JSON.stringify(r)}\n`;
    if (buf.length > 1 << 20) {
      bytes += Buffer.byteLength(buf);
      if (!out.write(buf)) await new Promise<void>((r) => out.once('drain', () => r()));
      buf = '';
    }
  }
  bytes += Buffer.byteLength(buf);
  out.end(buf);
  await new Promise<void>((r) => out.on('finish', () => r()));
  return bytes;
}

const file = join(tmpdir(), `tabtune-app-bench-${records}.jsonl`);
const fileBytes = await writeDataset(file);
const h = await startBuiltHarness();
try {
  const page = await h.context.newPage();
  const nav = (label: RegExp) =>
    page.getByRole('navigation', { name: 'Steps' }).getByRole('button', { name: label }).click();
  await page.goto(`${h.baseUrl}/`);
  await page.waitForSelector('.app[data-model="ready"]', { timeout: LONG });
  await nav(/Data/);
  await page.waitForSelector('[data-testid="dataset-summary"]', { timeout: LONG });
  await page.locator('input[name="valFraction"]').fill('0');
  await new Promise((r) => setTimeout(r, 2000));
  const base = browserRss();
  let peak = base;
  const sampler = setInterval(() => {
    peak = Math.max(peak, browserRss());
  }, 250);

  const t0 = performance.now();
  await page.locator('#dataset-file').setInputFiles(file);
  // The early summary: the first records' preview while the file is still counted.
  await page.waitForFunction(
    () => !!document.querySelector('[data-testid="dataset-provisional"]') && !!document.querySelector('.example'),
    undefined,
    { timeout: LONG, polling: 50 },
  );
  const firstPreviewS = (performance.now() - t0) / 1000;
  const soFar = await page.getByTestId('dataset-progress').textContent();
  const count = records.toLocaleString('en-US');
  await page.waitForFunction(
    (c) => document.querySelector('[data-testid="dataset-summary"]')?.textContent?.includes(c),
    count,
    { timeout: LONG, polling: 100 },
  );
  const previewS = (performance.now() - t0) / 1000;
  const previewPeak = peak;

  await nav(/Settings/);
  await page.locator('input[name="steps"]').fill('2');
  await page.locator('input[name="batch"]').fill('4');
  await page.getByText('Evaluation and checkpoints').click();
  await page.locator('input[name="evalEvery"]').fill('0');
  await page.locator('input[name="checkpointEvery"]').fill('0');
  await page.waitForSelector('[data-testid="estimate"]', { timeout: LONG });
  await nav(/Train/);
  const t1 = performance.now();
  await page.getByTestId('start-training').click();
  await page.waitForSelector('[data-testid="train-finished"]', { timeout: LONG });
  const trainS = (performance.now() - t1) / 1000;
  clearInterval(sampler);
  const mb = (b: number) => Math.round(b / 2 ** 20);
  const result = {
    records,
    file_mb: mb(fileBytes),
    first_preview_s: Number(firstPreviewS.toFixed(1)),
    first_preview_progress: soFar,
    counts_s: Number(previewS.toFixed(1)),
    two_step_run_s: Number(trainS.toFixed(1)),
    browser_mb_with_model: mb(base),
    growth_to_preview_mb: mb(previewPeak - base),
    growth_to_end_mb: mb(peak - base),
  };
  console.log(
    `app data: ${records} records (${result.file_mb} MB): first preview in ${result.first_preview_s} s ` +
      `("${soFar}"), final counts in ${result.counts_s} s, ` +
      `a 2-step run in ${result.two_step_run_s} s; the browser's processes grew by ${result.growth_to_preview_mb} MB ` +
      `to the preview and ${result.growth_to_end_mb} MB to the end of the run (from ${result.browser_mb_with_model} MB with the model loaded)`,
  );
  console.log(JSON.stringify(result));
} finally {
  await h.close();
  rmSync(file, { force: true });
}
