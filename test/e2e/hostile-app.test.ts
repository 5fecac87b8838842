/**
 * Hostile or odd input in the app, in headless Chromium: a Windows-1252 CSV upload is refused
 * naming the line while the loaded dataset stays in use; a Hub id with ".." is refused with the
 * reason before anything is fetched; an adapter whose files the browser renamed on download
 * ("adapter_config (1).json") imports by content; an adapter_config.json with a catastrophic regex
 * imports at once instead of freezing the tab. Screenshots go to test-artifacts/hostile-*.png.
 */
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { exportPeft } from '../../src/lora/peft';
import { openPage } from '../browser/harness';
import { appHarnessForFile, nav, onPage, screenshotter } from './app-page';

const LONG = 240_000;
const harness = appHarnessForFile();

const shot = screenshotter('hostile');

/** A q_proj/v_proj adapter for the shipped demo model, stories260K (hidden 64, 8 heads, 4 KV heads of 8). */
function demoAdapter(targets: string[] | string) {
  const modules = [0, 1].flatMap((l) => [
    { path: `model.layers.${l}.self_attn.q_proj`, r: 2, inF: 64, outF: 64 },
    { path: `model.layers.${l}.self_attn.v_proj`, r: 2, inF: 64, outF: 32 },
  ]);
  return exportPeft({
    config: {
      r: 2,
      lora_alpha: 4,
      lora_dropout: 0,
      target_modules: targets,
      use_rslora: false,
      bias: 'none',
      fan_in_fan_out: false,
      init_lora_weights: true,
    },
    baseModel: 'tabtune/stories260K',
    modules: modules.map((m) => ({
      ...m,
      a: Float32Array.from({ length: m.r * m.inF }, (_, i) => Math.sin(i) * 0.01),
      b: Float32Array.from({ length: m.outF * m.r }, (_, i) => Math.cos(i) * 0.01),
    })),
    fanInFanOut: false,
  });
}

async function importFiles(page: Page, files: { name: string; buffer: Buffer }[]) {
  await nav(page, /Adapters/);
  await page.locator('#import-files').setInputFiles(files.map((f) => ({ ...f, mimeType: 'application/octet-stream' })));
}

describe('hostile input in the app', () => {
  it('refuses what it cannot use, saying why, and keeps what it has', async () => {
    const h = harness();
    const opened = await openPage(h);
    await onPage(opened, shot, 'failed', async () => {
      const { page } = opened;
      await page.goto(`${h.baseUrl}/`);
      await page.waitForSelector('.app[data-model="ready"]', { timeout: LONG });

      // Data: a Windows-1252 CSV ("café" with é = 0xe9).
      await nav(page, /Data/);
      await page.waitForSelector('text=demo-qa.jsonl', { timeout: LONG });
      const cp1252 = Buffer.concat([Buffer.from('instruction,output\nWhat is it?,A caf'), Buffer.from([0xe9, 0x0a])]);
      await page.locator('#dataset-file').setInputFiles({ name: 'menu.csv', mimeType: 'text/csv', buffer: cp1252 });
      const alert = page.getByRole('alert').filter({ hasText: 'Not UTF-8 text' });
      await expect.poll(() => alert.innerText(), { timeout: 30_000 }).toMatch(/menu\.csv: line 2 is not UTF-8 text/);
      expect(await alert.innerText()).toMatch(/The dataset loaded before \(demo-qa\.jsonl\) is still in use/);
      await shot(page, 'not-utf8');
      // An empty file is refused the same way.
      await page
        .locator('#dataset-file')
        .setInputFiles({ name: 'empty.jsonl', mimeType: 'text/plain', buffer: Buffer.from('') });
      const empty = page.getByRole('alert').filter({ hasText: 'Empty file' });
      await expect.poll(() => empty.innerText(), { timeout: 30_000 }).toMatch(/empty\.jsonl holds no text/);
      expect(await empty.innerText()).toMatch(/The dataset loaded before \(demo-qa\.jsonl\) is still in use/);
      // A record longer than max length is said to be cut; a last line cut off is named as truncated.
      const long = JSON.stringify({ text: 'word '.repeat(400) });
      const cut = `{"text": "fine"}\n${long}\n{"text": "the end was cu`;
      await page
        .locator('#dataset-file')
        .setInputFiles({ name: 'cut.jsonl', mimeType: 'text/plain', buffer: Buffer.from(cut) });
      await expect
        .poll(() => page.getByTestId('dataset-truncated').innerText(), { timeout: 60_000 })
        .toMatch(/^1 example is longer than max length \d+ and cut to it.*\(line 2\)/);
      expect(await page.getByTestId('dataset-summary').innerText()).toMatch(
        /line 3\s*expected a JSON object, got a last line cut off at the end of the file \(the file looks truncated/,
      );
      await shot(page, 'odd-data');

      // Model: ".." is not a repo id.
      await nav(page, /Model/);
      await page.locator('#hub-id').fill('../config');
      await expect
        .poll(() => page.locator('#hub-hint').innerText())
        .toMatch(/is not a name: it would point the download/);
      expect(await page.getByRole('button', { name: 'Check' }).isDisabled()).toBe(true);

      // Adapters: renamed downloads import by content; a catastrophic regex does not freeze the tab.
      const renamed = demoAdapter(['q_proj', 'v_proj']);
      await importFiles(page, [
        { name: 'adapter_config (1).json', buffer: Buffer.from(renamed.adapterConfig) },
        { name: 'adapter_model (1).safetensors', buffer: Buffer.from(renamed.adapterModel) },
      ]);
      await expect.poll(() => page.getByText('Adapter imported').count(), { timeout: 30_000 }).toBeGreaterThan(0);
      const evil = demoAdapter('(.*.*)*X|.*\\.(q_proj|v_proj)');
      const t0 = Date.now();
      await importFiles(page, [
        { name: 'adapter_config.json', buffer: Buffer.from(evil.adapterConfig) },
        { name: 'adapter_model.safetensors', buffer: Buffer.from(evil.adapterModel) },
      ]);
      await expect.poll(() => page.getByTestId('adapter-row').count(), { timeout: 30_000 }).toBeGreaterThanOrEqual(2);
      // The page answered while importing (a frozen tab would not evaluate this).
      expect(await page.evaluate(() => 1 + 1)).toBe(2);
      expect(Date.now() - t0).toBeLessThan(30_000);
      await shot(page, 'imported');
      expect(opened.errors).toEqual([]);
    });
  }, 420_000);
});
