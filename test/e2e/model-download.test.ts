/**
 * Picking a model end to end in headless Chromium, with the real worker and engine: a Hub model
 * (the Hub is played by page.route, serving tiny models made by test/fixtures/tiny-model.ts), its
 * cost card, the download with progress, a couple of training steps, the browser cache after a
 * reload (no second weight download) and persistent storage; failed downloads (404, 401, a
 * connection dropped mid-file, a truncated safetensors) and the retry after them; a truncated and a
 * random model.safetensors named by the Check (headers read by range requests) before any download;
 * a local folder through the folder input, and a folder without tokenizer.json. Screenshots:
 * test-artifacts/model-*.png. The played Hub is test/e2e/fake-hub.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensors } from '../../src/model/safetensors';
import { formatBytes, formatCount } from '../../src/ui/format';
import { makeTinyModel, writeTinyModel } from '../fixtures/tiny-model';
import { type Harness, type OpenedPage, openPage } from '../browser/harness';
import { nav, onPage, screenshotter, startAppHarness } from './app-page';
import { type Fault, FakeHub } from './fake-hub';

const LONG = 120_000;

let h: Harness;
let tmp: string;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'tabtune-model-e2e-'));
  h = await startAppHarness();
}, 300_000);

afterAll(async () => {
  await h?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const shot = screenshotter('model');

/** Counts navigator.storage.persist() calls in the page (kept in sessionStorage across reloads). */
async function countPersist(page: Page): Promise<void> {
  await page.addInitScript(() => {
    const proto = StorageManager.prototype;
    const orig = proto.persist;
    proto.persist = function persist(this: StorageManager) {
      sessionStorage.setItem('persist-calls', String(Number(sessionStorage.getItem('persist-calls') ?? '0') + 1));
      return orig.call(this);
    };
  });
}

async function checkHubId(page: Page, id: string) {
  await nav(page, /Model/);
  await page.locator('#hub-id').fill(id);
  await page.getByRole('button', { name: 'Check', exact: true }).click();
}

const alerts = async (page: Page) => (await page.getByRole('alert').allInnerTexts()).join('\n');

const costCard = (page: Page) => page.getByRole('region', { name: 'Cost of this model' });

async function startApp(h: Harness): Promise<OpenedPage & { hub: FakeHub }> {
  const opened = await openPage(h);
  const hub = new FakeHub();
  await hub.install(opened.page);
  await countPersist(opened.page);
  await opened.page.goto(`${h.baseUrl}/`);
  await opened.page.waitForSelector('.app[data-model="ready"]', { timeout: LONG });
  return { ...opened, hub };
}

describe('picking a model in Chromium', () => {
  it(
    'checks, downloads with progress, trains, and after a reload loads from the browser cache',
    async () => {
      const t0 = Date.now();
      const { page, errors, hub } = await startApp(h);
      console.log(`[tabtune] model e2e: app ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      await onPage({ page, errors }, shot, 'failed-1', async () => {
        const id = 'tiny-org/tiny-llama';
        const tiny = makeTinyModel({ modelType: 'llama', seed: 3 });
        hub.add(id, tiny.files);
        const weights = tiny.files.get('model.safetensors')!.byteLength;
        const params = parseSafetensors(tiny.files.get('model.safetensors')!, 'model.safetensors');
        let count = 0;
        for (const t of params.tensors.values()) count += t.shape.reduce((a, b) => a * b, 1);

        // The cost before anything but config.json (and the Hub's file list) is downloaded.
        await checkHubId(page, id);
        await expect.poll(() => costCard(page).count(), { timeout: 30_000 }).toBe(1);
        const card = (await costCard(page).innerText()).replace(/\s+/g, ' ');
        console.log(`[tabtune] model e2e: cost card ${card}`);
        expect(card).toContain(`Parameters ${formatCount(count)}`);
        expect(card).toContain(`Download ${formatBytes(weights)}`);
        expect(card).toMatch(/GPU memory to train \(est\.\) [\d.]+ [KM]B/);
        expect(card).toMatch(/Trainable LoRA parameters [\d.]+K \([\d.]+%\)/);
        expect(hub.gets(id, 'model.safetensors')).toBe(0);
        expect(await page.getByTestId('load-model').innerText()).toBe(`Download ${formatBytes(weights)} and load`);
        await shot(page, '1-cost');

        // Download with progress (the weights are held back until the progress has been seen).
        let release!: () => void;
        hub.holds.set('model.safetensors', new Promise<void>((r) => (release = r)));
        await page.getByTestId('load-model').click();
        await page.getByRole('progressbar', { name: 'Model loading progress' }).waitFor({ timeout: 30_000 });
        await expect
          .poll(() => page.locator('.load-status').innerText())
          .toMatch(
            new RegExp(`Reading model\\.safetensors: 0 B[\\s\\S]*\\b0 B of about ${formatBytes(weights)} in all`),
          );
        await shot(page, '2-progress');
        release();
        hub.holds.clear();
        await expect
          .poll(
            () =>
              page
                .getByTestId('model-loaded')
                .innerText()
                .catch(() => ''),
            { timeout: LONG },
          )
          .toMatch(/tiny-org\/tiny-llama · llama/);
        expect(hub.gets(id, 'model.safetensors')).toBe(1);
        expect(
          Number(await page.evaluate(() => sessionStorage.getItem('persist-calls'))),
          'persistent storage is asked for',
        ).toBeGreaterThan(0);
        await shot(page, '3-loaded');

        const tTrain = Date.now();
        console.log(`[tabtune] model e2e: start to loaded in ${((tTrain - t0) / 1000).toFixed(1)} s`);
        // Two training steps on it, on the shipped dataset tokenized by its tokenizer.
        await nav(page, /Data/);
        await expect
          .poll(
            () =>
              page
                .getByTestId('dataset-summary')
                .innerText()
                .catch(() => ''),
            { timeout: LONG },
          )
          .toContain('alpaca');
        await nav(page, /Settings/);
        await page.getByRole('radio', { name: 'steps' }).check();
        await page.locator('input[name="steps"]').fill('2');
        await page.locator('input[name="batch"]').fill('2');
        await page.locator('input[name="maxLen"]').fill('32');
        await page.waitForSelector('[data-testid="estimate"]', { timeout: LONG });
        await nav(page, /Train/);
        await page.getByTestId('start-training').click();
        await page.waitForSelector('[data-testid="train-finished"]', { timeout: LONG });
        expect(await page.getByTestId('step').innerText()).toBe('2');
        const losses = JSON.parse(
          (await page.getByTestId('loss-chart').getAttribute('data-losses')) ?? '[]',
        ) as number[];
        expect(losses).toHaveLength(2);
        expect(losses.every((l) => Number.isFinite(l) && l > 0)).toBe(true);
        await shot(page, '3b-trained');
        console.log(
          `[tabtune] model e2e: data, settings and 2 steps in ${((Date.now() - tTrain) / 1000).toFixed(1)} s`,
        );

        // After a reload the model comes from the browser cache: no request for any of its files.
        const requests = hub.log.length;
        await page.reload();
        await page.waitForSelector('.app[data-model="ready"]', { timeout: LONG });
        await checkHubId(page, id);
        await expect
          .poll(
            () =>
              costCard(page)
                .innerText()
                .catch(() => ''),
            { timeout: 30_000 },
          )
          .toMatch(/Cached in this browser\s+[\d.]+ KB \(no download\)/);
        expect(await page.getByTestId('load-model').innerText()).toBe('Load model');
        await shot(page, '4-cached');
        await page.getByTestId('load-model').click();
        await expect
          .poll(
            () =>
              page
                .getByTestId('model-loaded')
                .innerText()
                .catch(() => ''),
            { timeout: LONG },
          )
          .toContain(id);
        expect(hub.gets(id, 'model.safetensors')).toBe(1);
        expect(hub.log.slice(requests)).toEqual([]);
        expect(errors, `page console errors:\n${errors.join('\n')}`).toEqual([]);
      });
    },
    5 * 60_000,
  );

  it(
    'says which file of which model failed and what to do (404, 401, dropped, cut short, truncated), keeps nothing broken, then loads',
    async () => {
      const { page, errors, hub } = await startApp(h);
      await onPage({ page, errors }, shot, 'failed-2', async () => {
        // A gated repo fails at once, at its config.json.
        hub.add('tiny-org/gated', makeTinyModel({ modelType: 'llama' }).files);
        hub.faults.set('tiny-org/gated/config.json', '401');
        await checkHubId(page, 'tiny-org/gated');
        await expect
          .poll(() => alerts(page), { timeout: 30_000 })
          .toMatch(/Access denied[\s\S]*config\.json[\s\S]*tiny-org\/gated[\s\S]*accept its license/);
        await shot(page, '5-gated');
        // With the user's access token (kept in the browser, sent to the Hub only) the gated repo opens.
        const token = 'hf_e2eTokenForTheGatedRepo0123456789';
        hub.tokens.set('tiny-org/gated', token);
        await page.locator('[data-testid="access-token"] > summary').click();
        await page.getByLabel('Access token', { exact: true }).fill(token);
        await page.getByRole('button', { name: 'Save token' }).click();
        await expect
          .poll(() => page.getByText(/kept in this browser and sent only to huggingface\.co/).count())
          .toBe(1);
        await page.getByRole('button', { name: 'Check', exact: true }).click();
        await expect.poll(() => costCard(page).count(), { timeout: 30_000 }).toBe(1);
        const gatedGets = hub.log.filter((r) => r.url.includes('tiny-org/gated'));
        expect(gatedGets.at(-1)!.auth).toBe(`Bearer ${token}`);
        await shot(page, '5b-gated-with-token');
        await page.getByRole('button', { name: 'Remove token' }).click();

        // A repo with PyTorch weights only is refused from the Hub's file list, before any download.
        const pt = new Map(makeTinyModel({ modelType: 'llama' }).files);
        pt.set('pytorch_model.bin', pt.get('model.safetensors')!);
        pt.delete('model.safetensors');
        hub.add('tiny-org/pytorch-only', pt);
        await checkHubId(page, 'tiny-org/pytorch-only');
        await expect
          .poll(() => alerts(page), { timeout: 30_000 })
          .toMatch(/"tiny-org\/pytorch-only" on the Hub has no safetensors weights[\s\S]*PyTorch files/);
        expect(hub.gets('tiny-org/pytorch-only', 'pytorch_model.bin')).toBe(0);
        expect(await page.getByTestId('load-model').isDisabled()).toBe(true);
        await shot(page, '5b-pytorch-only');

        // A truncated and a random model.safetensors on the Hub are named by the Check from their
        // headers, read by range requests (8 bytes, then the header), before any download.
        const whole = makeTinyModel({ modelType: 'llama' }).files;
        const w = whole.get('model.safetensors')!;
        let x = 12345;
        const noise = Uint8Array.from(
          { length: w.byteLength },
          () => ((x = (x * 1103515245 + 12345) >>> 0) >>> 24) & 0xff,
        );
        const damaged: [string, Uint8Array, RegExp][] = [
          [
            'tiny-org/truncated',
            w.subarray(0, Math.floor(w.byteLength * 0.6)),
            /Damaged weights file[\s\S]*tiny-org\/truncated: model\.safetensors: its header declares \d+ bytes, but the file has \d+; the file is truncated/,
          ],
          [
            'tiny-org/random',
            noise,
            /Damaged weights file[\s\S]*tiny-org\/random: model\.safetensors: header length \d+ does not fit a file of \d+ bytes; not a safetensors file/,
          ],
        ];
        for (const [repo, bytes, message] of damaged) {
          hub.add(repo, new Map([...whole, ['model.safetensors', bytes]]));
          await checkHubId(page, repo);
          await expect.poll(() => alerts(page), { timeout: 30_000 }).toMatch(message);
          console.log(`[tabtune] model e2e: ${repo}: ${(await alerts(page)).replace(/\s+/g, ' ')}`);
          expect(hub.gets(repo, 'model.safetensors')).toBe(0);
          expect(hub.ranges(repo, 'model.safetensors')[0]).toBe('bytes=0-7');
          expect(await page.getByTestId('load-model').isDisabled()).toBe(true);
          await shot(page, `5c-${repo.split('/')[1]}`);
        }

        // A suggested model, picked from the list (the Hub serves a sharded tiny model under its id).
        const id = 'HuggingFaceTB/SmolLM2-135M';
        const tiny = makeTinyModel({ modelType: 'llama', seed: 4, sharded: true });
        hub.add(id, tiny.files);
        const suggested = page
          .locator('.catalog')
          .getByRole('button')
          .filter({ hasText: /HuggingFaceTB\/SmolLM2-135M(?!-)/ });
        await suggested.click();
        expect(await suggested.getAttribute('aria-pressed')).toBe('true');
        await expect.poll(() => costCard(page).count(), { timeout: 30_000 }).toBe(1);
        expect(await suggested.innerText()).not.toMatch(/cached/);
        const shards = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
        // Each message differs from the one before it, so a stale message cannot pass for the next.
        const cases: [string, Fault, RegExp][] = [
          ['tokenizer.json', '404', /HuggingFaceTB\/SmolLM2-135M has no tokenizer\.json/],
          [
            shards[0]!,
            '401',
            /Access denied[\s\S]*model-00001-of-00002\.safetensors[\s\S]*HuggingFaceTB\/SmolLM2-135M/,
          ],
          [
            shards[1]!,
            'drop',
            /Download failed[\s\S]*Could not reach[\s\S]*model-00002-of-00002\.safetensors[\s\S]*HuggingFaceTB\/SmolLM2-135M[\s\S]*try again/,
          ],
          [
            shards[1]!,
            'short',
            /Download failed[\s\S]*model-00002-of-00002\.safetensors[\s\S]*HuggingFaceTB\/SmolLM2-135M[\s\S]*ended after \d+ of \d+ bytes[\s\S]*try again/,
          ],
          // (the first shard is whole by now, and kept: the truncated file is the second)
          [
            shards[1]!,
            'truncate',
            /HuggingFaceTB\/SmolLM2-135M: model-00002-of-00002\.safetensors[\s\S]*truncated[\s\S]*try again to download it afresh/,
          ],
        ];
        for (const [file, fault, message] of cases) {
          hub.faults.clear();
          hub.faults.set(`${id}/${file}`, fault);
          await page.getByTestId('load-model').click();
          await expect.poll(() => alerts(page), { timeout: 30_000 }).toMatch(message);
          console.log(`[tabtune] model e2e: ${fault} on ${file}: ${(await alerts(page)).replace(/\s+/g, ' ')}`);
          // the model loaded before (the shipped demo) stays in use, and the message says so
          expect(await alerts(page)).toContain('tabtune/stories260K is still loaded.');
          expect(await page.getByRole('navigation', { name: 'Steps' }).innerText()).toMatch(
            /stories260K[\s\S]*24 records/,
          );
          await shot(page, `6-${fault}`);
        }
        // The server is fine again: the next try loads, reading no broken copy from the cache.
        hub.faults.clear();
        const before = shards.map((f) => hub.gets(id, f));
        await page.getByTestId('load-model').click();
        await expect
          .poll(
            () =>
              page
                .getByTestId('model-loaded')
                .innerText()
                .catch(() => ''),
            { timeout: LONG },
          )
          .toContain(id);
        expect(await page.getByRole('alert').count()).toBe(0);
        const after = shards.map((f) => hub.gets(id, f));
        console.log(`[tabtune] model e2e: shard downloads before the good try ${before}, after ${after}`);
        // the first shard, whole since the 'drop' try, came from the cache; the second from the
        // server again (the cut-short and the truncated copies were not kept)
        expect(after[0]).toBe(before[0]);
        expect(after[1]).toBe(before[1]! + 1);
        await expect.poll(() => suggested.innerText()).toMatch(/cached[\s\S]*loaded/);
        await shot(page, '7-sharded-loaded');

        // Loading it again (a reload) reads both shards from the browser cache.
        await page.reload();
        await page.waitForSelector('.app[data-model="ready"]', { timeout: LONG });
        await expect.poll(() => suggested.innerText(), { timeout: 30_000 }).toMatch(/cached/);
        await suggested.click();
        await expect
          .poll(
            () =>
              costCard(page)
                .innerText()
                .catch(() => ''),
            { timeout: 30_000 },
          )
          .toMatch(/Cached in this browser/);
        await page.getByTestId('load-model').click();
        await expect
          .poll(
            () =>
              page
                .getByTestId('model-loaded')
                .innerText()
                .catch(() => ''),
            { timeout: LONG },
          )
          .toContain(id);
        expect(shards.map((f) => hub.gets(id, f))).toEqual(after);

        // Only the deliberately failed requests may be logged.
        const unexpected = errors.filter((e) => !/Failed to load resource|net::ERR_/.test(e));
        expect(unexpected, `page console errors:\n${errors.join('\n')}`).toEqual([]);
      });
    },
    5 * 60_000,
  );

  it(
    'loads a local folder through the folder input, and refuses one without tokenizer.json',
    async () => {
      const { page, errors, hub } = await startApp(h);
      await onPage({ page, errors }, shot, 'failed-3', async () => {
        const dir = join(tmp, 'my-tiny-model');
        await writeTinyModel(dir, { modelType: 'qwen2', seed: 5, sharded: true });
        await page.locator('#folder-input').setInputFiles(dir);
        await expect
          .poll(
            () =>
              costCard(page)
                .innerText()
                .catch(() => ''),
            { timeout: 30_000 },
          )
          .toMatch(/Read from disk/);
        await page.getByTestId('load-model').click();
        await expect
          .poll(
            () =>
              page
                .getByTestId('model-loaded')
                .innerText()
                .catch(() => ''),
            { timeout: LONG },
          )
          .toMatch(/my-tiny-model · qwen2/);
        await shot(page, '8-folder');
        expect(await page.getByTestId('load-model').innerText()).toBe('Loaded');
        // The same folder chosen again (e.g. saved again) can be loaded again: it is known by its files.
        await page.locator('#folder-input').setInputFiles(dir);
        await expect.poll(() => page.getByTestId('load-model').innerText(), { timeout: 30_000 }).toBe('Load model');

        const bad = join(tmp, 'no-tokenizer');
        await writeTinyModel(bad, { modelType: 'llama' });
        rmSync(join(bad, 'tokenizer.json'));
        await page.locator('#folder-input').setInputFiles(bad);
        await expect
          .poll(() => alerts(page), { timeout: 30_000 })
          .toMatch(/Not a model folder[\s\S]*"no-tokenizer" has no tokenizer\.json\./);
        await shot(page, '9-folder-refused');
        // the loaded folder model stays loaded
        expect(await page.getByTestId('model-loaded').innerText()).toMatch(/my-tiny-model/);
        expect(hub.log).toEqual([]);
        expect(errors, `page console errors:\n${errors.join('\n')}`).toEqual([]);
      });
    },
    5 * 60_000,
  );
});
