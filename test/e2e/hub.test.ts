/**
 * The Hugging Face Hub from the app, in headless Chromium, with the Hub played by page.route
 * (nothing is downloaded for real): a dataset repo's files listed by split, a Parquet file
 * downloaded with progress and read through the column mapping its columns suggest (then another
 * mapping chosen by hand), a ShareGPT split read as chat, the second download served by the
 * browser's cache, a split in three Parquet files read whole in order as one dataset, and a gated
 * dataset that opens with the access token; a trained adapter merged into the model (the result
 * said) and pushed from the library (refused without a token, then a private repo created and one
 * commit with the PEFT files, the model card and the loss plot). With TABTUNE_DOCS_SCREENSHOTS=1 the
 * README's merge and push screenshots go to docs/screenshots/.
 */
import type { Page, Route } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { type OpenedPage, openPage } from '../browser/harness';
import { writeParquet } from '../fixtures/parquet';
import { appHarnessForFile, docShot, nav, onPage, screenshotter, shortRunSettings } from './app-page';

const LONG = 120_000;
const HUB = 'https://huggingface.co';
const TOKEN = 'hf_e2eTokenForThePrivateDataset0123456';

const harness = appHarnessForFile();

const shot = screenshotter('hub');

const QA = Array.from({ length: 12 }, (_, i) => [`What is ${i} plus one?`, `It is ${i + 1}.`]);

/** Dataset repos (path -> bytes), the private ones with the token that opens them, and every request. */
class PlayedHub {
  readonly datasets = new Map<string, Map<string, Uint8Array>>();
  readonly private = new Set<string>();
  readonly log: { method: string; url: string; auth?: string; body?: string }[] = [];

  gets(part: string): number {
    return this.log.filter((r) => r.method === 'GET' && r.url.includes(part)).length;
  }

  async install(page: Page): Promise<void> {
    await page.route(`${HUB}/**`, (route) => this.serve(route));
  }

  private async serve(route: Route): Promise<void> {
    const req = route.request();
    const url = new URL(req.url());
    const cors = {
      'access-control-allow-origin': '*',
      'access-control-allow-headers': '*',
      'access-control-allow-methods': 'GET, HEAD, POST',
      'access-control-expose-headers': '*',
    };
    if (req.method() === 'OPTIONS') return route.fulfill({ status: 204, headers: cors });
    const auth = req.headers()['authorization'];
    const body = req.postData() ?? undefined;
    this.log.push({ method: req.method(), url: req.url(), ...(auth ? { auth } : {}), ...(body ? { body } : {}) });
    const reply = (status: number, value: unknown) =>
      route.fulfill({ status, headers: { ...cors, 'content-type': 'application/json' }, body: JSON.stringify(value) });
    // Pushing a model repo: the token, the repo, the preupload check and the commit.
    if (url.pathname === '/api/whoami-v2')
      return auth === `Bearer ${TOKEN}`
        ? reply(200, { type: 'user', name: 'me', auth: { type: 'access_token', accessToken: { role: 'write' } } })
        : reply(401, { error: 'Invalid credentials in Authorization header' });
    if (url.pathname === '/api/repos/create') return reply(200, { url: `${HUB}/me/x`, id: 'x' });
    if (/^\/api\/models\/me\/[^/]+\/preupload\/main$/.test(url.pathname)) {
      const files = (JSON.parse(body ?? '{}') as { files: { path: string }[] }).files;
      return reply(200, { files: files.map((f) => ({ path: f.path, uploadMode: 'regular' })) });
    }
    if (/^\/api\/models\/me\/[^/]+\/commit\/main$/.test(url.pathname))
      return reply(200, { commitOid: '0123456789abcdef', commitUrl: `${HUB}/me/x/commit/0123456789abcdef` });
    const tree = /^\/api\/datasets\/([^/]+\/[^/]+)\/tree\/main$/.exec(url.pathname);
    const file = /^\/datasets\/([^/]+\/[^/]+)\/resolve\/main\/(.+)$/.exec(url.pathname);
    const id = tree?.[1] ?? file?.[1] ?? '';
    const files = this.datasets.get(id);
    if (!files) return route.fulfill({ status: 404, headers: cors, body: '{"error":"Repository not found"}' });
    if (this.private.has(id) && auth !== `Bearer ${TOKEN}`)
      return route.fulfill({
        status: 401,
        headers: cors,
        body: '{"error":"Invalid credentials in Authorization header"}',
      });
    if (tree) {
      const list = [{ type: 'directory', path: 'data', oid: 'dir', size: 0 }];
      for (const [path, b] of files) list.push({ type: 'file', path, oid: `oid-${path}`, size: b.byteLength });
      return route.fulfill({
        status: 200,
        headers: { ...cors, 'content-type': 'application/json' },
        body: JSON.stringify(list),
      });
    }
    const bytes = file && files.get(decodeURIComponent(file[2]!));
    if (!bytes) return route.fulfill({ status: 404, headers: cors, body: 'Entry not found' });
    return route.fulfill({
      status: 200,
      headers: { ...cors, 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) },
      body: Buffer.from(bytes),
    });
  }
}

async function startApp(): Promise<OpenedPage & { hub: PlayedHub }> {
  const h = harness();
  const opened = await openPage(h);
  const hub = new PlayedHub();
  await hub.install(opened.page);
  await opened.page.goto(`${h.baseUrl}/`);
  await opened.page.waitForSelector('.app[data-model="ready"]', { timeout: LONG });
  return { ...opened, hub };
}

const summaryText = (page: Page) =>
  page
    .getByTestId('dataset-summary')
    .innerText()
    .catch(() => '');

const alerts = async (page: Page) => (await page.getByRole('alert').allInnerTexts()).join('\n');

async function listFiles(page: Page, id: string): Promise<void> {
  await page.locator('#hub-dataset-id').fill(id);
  await page.getByRole('button', { name: 'List files' }).click();
}

describe('Hub datasets in Chromium', () => {
  it(
    'lists a dataset by split, downloads a Parquet file, maps its columns, reads ShareGPT turns, caches, opens a private set with the token',
    async () => {
      const opened = await startApp();
      const { page, hub } = opened;
      await onPage(opened, shot, 'data-failed', async () => {
        hub.datasets.set(
          'tiny-org/qa',
          new Map([
            ['README.md', new TextEncoder().encode('# qa')],
            [
              'data/train-00000-of-00001.parquet',
              writeParquet({ question: QA.map((r) => r[0]!), answer: QA.map((r) => r[1]!) }),
            ],
            [
              'data/test-00000-of-00001.parquet',
              writeParquet(
                { id: ['a', 'b'] },
                {
                  turns: {
                    name: 'conversations',
                    rows: [
                      [
                        { from: 'human', value: 'Hello' },
                        { from: 'gpt', value: 'Hi there.' },
                      ],
                      [
                        { from: 'system', value: 'Be short.' },
                        { from: 'human', value: 'Bye' },
                        { from: 'gpt', value: 'Bye.' },
                      ],
                    ],
                  },
                },
              ),
            ],
          ]),
        );
        await nav(page, /Data/);
        await page.locator('[data-testid="hub-dataset"] > summary').click();
        await listFiles(page, 'tiny-org/qa');
        const split = page.locator('select[name="hubSplit"]');
        await expect
          .poll(() => split.locator('option').allInnerTexts(), { timeout: 30_000 })
          .toEqual(['train', 'test']);
        expect(await page.locator('select[name="hubFile"]').inputValue()).toBe('data/train-00000-of-00001.parquet');
        await page.getByRole('button', { name: 'Download and read' }).click();
        await expect
          .poll(() => summaryText(page), { timeout: LONG })
          .toMatch(/tiny-org\/qa\/data\/train-00000-of-00001\.parquet\s*alpaca\s*format\s*12\s*records/);
        // The columns suggested the mapping; the preview shows the records as the model sees them.
        expect(await page.locator('select[name="mappingKind"]').inputValue()).toBe('instruction');
        expect(await page.locator('select[name="mapInstruction"]').inputValue()).toBe('question');
        expect(await page.locator('select[name="mapOutput"]').inputValue()).toBe('answer');
        expect(await page.getByTestId('dataset-preview').innerText()).toMatch(
          /What is \d+ plus one\?[\s\S]*It is \d+\./,
        );
        await shot(page, '1-parquet');
        // Another mapping by hand: the answers as plain text.
        await page.locator('select[name="mappingKind"]').selectOption('text');
        await page.locator('select[name="mapText"]').selectOption('answer');
        await expect.poll(() => summaryText(page), { timeout: LONG }).toMatch(/parquet\s*text\s*format\s*12\s*records/);
        expect(await page.getByTestId('dataset-preview').innerText()).not.toMatch(/plus one/);

        // The test split: ShareGPT turns (human/gpt/system) read as chat.
        await split.selectOption('test');
        await page.getByRole('button', { name: 'Download and read' }).click();
        await expect
          .poll(() => summaryText(page), { timeout: LONG })
          .toMatch(/test-00000-of-00001\.parquet\s*chat\s*format\s*2\s*records/);
        expect(await page.locator('select[name="mapMessages"]').inputValue()).toBe('conversations');
        expect(await page.getByTestId('dataset-preview').innerText()).toMatch(/Hi there\./);

        // Again: the browser's cache answers, nothing is downloaded twice.
        expect(hub.gets('/resolve/main/data/train-00000-of-00001.parquet')).toBe(1);
        await split.selectOption('train');
        await page.getByRole('button', { name: 'Download and read' }).click();
        await expect.poll(() => summaryText(page), { timeout: LONG }).toMatch(/train-00000-of-00001\.parquet/);
        expect(hub.gets('/resolve/main/data/train-00000-of-00001.parquet')).toBe(1);

        // A split in three Parquet files: all of them, in order, as one dataset.
        const third = (k: number) => QA.slice(4 * k, 4 * k + 4);
        hub.datasets.set(
          'tiny-org/sharded',
          new Map(
            [0, 1, 2].map((k) => [
              `data/train-0000${k}-of-00003.parquet`,
              writeParquet({ question: third(k).map((r) => r[0]!), answer: third(k).map((r) => r[1]!) }),
            ]),
          ),
        );
        await listFiles(page, 'tiny-org/sharded');
        await expect.poll(() => page.locator('select[name="hubFile"]').inputValue(), { timeout: 30_000 }).toBe('*');
        expect(await page.locator('select[name="hubFile"] option').first().innerText()).toMatch(/^All 3 files \(/);
        await page.getByRole('button', { name: 'Download and read' }).click();
        await expect
          .poll(() => summaryText(page), { timeout: LONG })
          .toMatch(/tiny-org\/sharded\/train \(3 files\)\s*alpaca\s*format\s*12\s*records/);
        expect(
          hub.log
            .filter((r) => r.method === 'GET' && r.url.includes('/datasets/tiny-org/sharded/resolve/'))
            .map((r) => r.url.split('/').at(-1)),
        ).toEqual(['train-00000-of-00003.parquet', 'train-00001-of-00003.parquet', 'train-00002-of-00003.parquet']);
        // The preview starts with the first file's first record.
        expect(await page.getByTestId('dataset-preview').innerText()).toMatch(/What is 0 plus one\?[\s\S]*It is 1\./);
        await shot(page, '1b-sharded');

        // A private dataset: refused naming its page, then opened with the access token.
        hub.datasets.set(
          'tiny-org/private',
          new Map([['train.jsonl', new TextEncoder().encode('{"text": "secret"}\n')]]),
        );
        hub.private.add('tiny-org/private');
        await listFiles(page, 'tiny-org/private');
        await expect
          .poll(() => alerts(page), { timeout: 30_000 })
          .toMatch(
            /gated or private\. Accept its conditions at https:\/\/huggingface\.co\/datasets\/tiny-org\/private/,
          );
        await shot(page, '2-private');
        await nav(page, /Model/);
        await page.locator('[data-testid="access-token"] > summary').click();
        await page.getByLabel('Access token', { exact: true }).fill(TOKEN);
        await page.getByRole('button', { name: 'Save token' }).click();
        await nav(page, /Data/);
        await listFiles(page, 'tiny-org/private');
        await expect
          .poll(() => page.locator('select[name="hubFile"]').inputValue(), { timeout: 30_000 })
          .toBe('train.jsonl');
        await page.getByRole('button', { name: 'Download and read' }).click();
        await expect
          .poll(() => summaryText(page), { timeout: LONG })
          .toMatch(/tiny-org\/private\/train\.jsonl\s*text\s*format/);
        const privateGets = hub.log.filter((r) => r.url.includes('tiny-org/private') && r.method === 'GET');
        expect(privateGets.at(-1)!.auth).toBe(`Bearer ${TOKEN}`);
      });
    },
    5 * 60_000,
  );

  it(
    'pushes a trained adapter from the library: refused without a token, then created with its card and plot',
    async () => {
      const opened = await startApp();
      const { page, hub } = opened;
      await onPage(opened, shot, 'push-failed', async () => {
        // The browser context is the first test's: forget the token it saved.
        await page.evaluate(() => localStorage.clear());
        await page.reload();
        await page.waitForSelector('.app[data-model="ready"]', { timeout: LONG });
        await shortRunSettings(page, { steps: 2, batch: 2, checkpointEvery: 0, evalEvery: 0 }, LONG);
        await nav(page, /Train/);
        await page.getByTestId('start-training').click();
        await page.waitForSelector('[data-testid="train-finished"]', { timeout: 4 * 60_000 });
        await nav(page, /Adapters/);
        // Merge into the model: the zip downloads and the row says what it holds.
        const [download] = await Promise.all([
          page.waitForEvent('download', { timeout: LONG }),
          page.getByTestId('merge-adapter').first().click(),
        ]);
        expect(download.suggestedFilename()).toMatch(/-merged\.zip$/);
        await expect
          .poll(
            () =>
              page
                .getByTestId('merge-done')
                .innerText()
                .catch(() => ''),
            { timeout: LONG },
          )
          .toMatch(/^Merged into the loaded model and saved as .*-merged\.zip \([\d.]+ [KM]B\): .*model\.safetensors/);
        await shot(page, '3a-merged');
        await docShot(page, 'merge');
        await page.getByTestId('push-adapter').first().click();
        await page.getByLabel('Model repo').fill('me/demo-adapter');
        await page.getByRole('button', { name: 'Push', exact: true }).click();
        await expect.poll(() => alerts(page), { timeout: 30_000 }).toMatch(/needs an access token with write access/);
        expect(hub.log.filter((r) => r.method === 'POST')).toEqual([]);
        await page.getByRole('button', { name: /^Dismiss: Pushing the adapter to the Hub failed/ }).click();

        await nav(page, /Model/);
        await page.locator('[data-testid="access-token"] > summary').click();
        await page.getByLabel('Access token', { exact: true }).fill(TOKEN);
        await page.getByRole('button', { name: 'Save token' }).click();
        await nav(page, /Adapters/);
        await page.getByTestId('push-adapter').first().click();
        await page.getByLabel('Model repo').fill('me/demo-adapter');
        await page.getByRole('button', { name: 'Push', exact: true }).click();
        await expect
          .poll(
            () =>
              page
                .getByTestId('push-done')
                .innerText()
                .catch(() => ''),
            { timeout: 60_000 },
          )
          .toBe('Pushed: https://huggingface.co/me/demo-adapter');
        await shot(page, '3-pushed');
        await docShot(page, 'push');
        const create = hub.log.find((r) => r.url.endsWith('/api/repos/create'))!;
        expect(JSON.parse(create.body!)).toMatchObject({
          name: 'demo-adapter',
          organization: 'me',
          visibility: 'private',
        });
        const commit = hub.log.find((r) => r.url.endsWith('/api/models/me/demo-adapter/commit/main'))!;
        const files = new Map<string, Buffer>();
        for (const line of commit.body!.split('\n')) {
          const o = JSON.parse(line) as { key: string; value: { path: string; content: string } };
          if (o.key === 'file') files.set(o.value.path, Buffer.from(o.value.content, 'base64'));
        }
        expect([...files.keys()]).toEqual([
          'adapter_config.json',
          'adapter_model.safetensors',
          'README.md',
          'loss.png',
        ]);
        expect(JSON.parse(files.get('adapter_config.json')!.toString())).toMatchObject({ peft_type: 'LORA' });
        const card = files.get('README.md')!.toString();
        expect(card).toContain('library_name: peft');
        expect(card).toContain('| Dataset | demo-qa.jsonl |');
        expect(card).toContain('| Steps | 2 |');
        expect(card).toMatch(/\| Final training loss \| \d+\.\d{4} \|/);
        expect(card).toContain('![Loss over training steps](loss.png)');
        expect([...files.get('loss.png')!.subarray(1, 4)]).toEqual([0x50, 0x4e, 0x47]);
        expect(hub.log.filter((r) => r.method === 'POST').every((r) => r.auth === `Bearer ${TOKEN}`)).toBe(true);
      });
    },
    8 * 60_000,
  );
});
