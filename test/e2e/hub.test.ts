/**
 * The Hugging Face Hub from the app, in headless Chromium, with the Hub played by page.route
 * (nothing is downloaded for real): a dataset repo's files listed by split, a Parquet file
 * downloaded with progress and read through the column mapping its columns suggest (then another
 * mapping chosen by hand), a ShareGPT split read as chat, the second download served by the
 * browser's cache, a split in three Parquet files read whole in order as one dataset, and a gated
 * dataset that opens with the access token; a trained adapter merged into the model (the result
 * said) and pushed from the library (refused without a token, then a private repo created and one
 * commit with the PEFT files, the model card and the loss plot; the safetensors file through the LFS
 * batch API's basic transfer, as the Hub's default .gitattributes routes it). With TABTUNE_DOCS_SCREENSHOTS=1 the
 * README's merge and push screenshots go to docs/screenshots/.
 */
import { createHash } from 'node:crypto';
import type { Page, Route } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { type OpenedPage, openPage } from '../browser/harness';
import { parseSafetensors } from '../../src/model/safetensors';
import { writeParquet } from '../fixtures/parquet';
import { appHarnessForFile, docShot, nav, onPage, screenshotter, shortRunSettings } from './app-page';

const LONG = 120_000;
const HUB = 'https://huggingface.co';
const TOKEN = 'hf_e2eTokenForThePrivateDataset0123456';

const harness = appHarnessForFile();

const shot = screenshotter('hub');

const QA = Array.from({ length: 12 }, (_, i) => [`What is ${i} plus one?`, `It is ${i + 1}.`]);

/** Where the played Hub's LFS batch API sends large files (the real one answers with storage URLs on other hosts). */
const STORAGE = 'https://lfs-storage.hub.test';
/** The played Xet content-addressed store (the real Hub names its own in the batch answer's headers). */
const CAS = 'https://cas.hub.test';

/**
 * Dataset repos (path -> bytes), the private ones with the token that opens them, every request, and
 * the large files uploaded through the LFS batch API's "basic" transfer (oid -> bytes).
 */
class PlayedHub {
  readonly datasets = new Map<string, Map<string, Uint8Array>>();
  readonly private = new Set<string>();
  readonly log: { method: string; url: string; auth?: string; body?: string }[] = [];
  readonly stored = new Map<string, Buffer>();
  /** The transfer the LFS batch API answers with: basic (PUT to storage) or xet (xorbs and a shard to CAS). */
  lfsTransfer: 'basic' | 'xet' = 'basic';
  readonly cas: { method: string; path: string; auth?: string; session?: string; bytes: number }[] = [];

  gets(part: string): number {
    return this.log.filter((r) => r.method === 'GET' && r.url.includes(part)).length;
  }

  async install(page: Page): Promise<void> {
    await page.route(`${HUB}/**`, (route) => this.serve(route));
    await page.route(`${STORAGE}/**`, (route) => this.store(route));
    await page.route(`${CAS}/**`, (route) => this.casServe(route));
  }

  /** Xet's CAS: no chunk known for global dedup (404), xorbs and shards accepted. */
  private async casServe(route: Route): Promise<void> {
    const req = route.request();
    const cors = {
      'access-control-allow-origin': '*',
      'access-control-allow-headers': '*',
      'access-control-allow-methods': 'GET, POST',
    };
    if (req.method() === 'OPTIONS') return route.fulfill({ status: 204, headers: cors });
    const h = req.headers();
    this.cas.push({
      method: req.method(),
      path: new URL(req.url()).pathname,
      ...(h['authorization'] ? { auth: h['authorization'] } : {}),
      ...(h['x-xet-session-id'] ? { session: h['x-xet-session-id'] } : {}),
      bytes: req.postDataBuffer()?.length ?? 0,
    });
    if (req.method() === 'GET') return route.fulfill({ status: 404, headers: cors, body: '' });
    return route.fulfill({
      status: 200,
      headers: { ...cors, 'content-type': 'application/json' },
      body: '{"was_inserted": true}',
    });
  }

  /** The storage a basic LFS transfer PUTs a file to (cross-origin, as the real one is). */
  private async store(route: Route): Promise<void> {
    const req = route.request();
    const cors = {
      'access-control-allow-origin': '*',
      'access-control-allow-headers': '*',
      'access-control-allow-methods': 'PUT',
    };
    if (req.method() === 'OPTIONS') return route.fulfill({ status: 204, headers: cors });
    this.log.push({ method: req.method(), url: req.url() });
    this.stored.set(req.url().split('/').at(-1)!, req.postDataBuffer() ?? Buffer.alloc(0));
    return route.fulfill({ status: 200, headers: cors, body: '' });
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
      // As the Hub's default .gitattributes says: *.safetensors go to LFS storage, the rest in the commit.
      const files = (JSON.parse(body ?? '{}') as { files: { path: string }[] }).files;
      return reply(200, {
        files: files.map((f) => ({ path: f.path, uploadMode: f.path.endsWith('.safetensors') ? 'lfs' : 'regular' })),
      });
    }
    if (/^\/me\/[^/]+\.git\/info\/lfs\/objects\/batch$/.test(url.pathname)) {
      // Git LFS's batch API, answered with the "basic" transfer: one PUT per file to storage.
      const asked = JSON.parse(body ?? '{}') as { objects: { oid: string; size: number }[] };
      if (this.lfsTransfer === 'xet')
        return reply(200, {
          transfer: 'xet',
          objects: asked.objects.map((o) => ({
            oid: o.oid,
            size: o.size,
            actions: {
              upload: {
                href: `${HUB}/api/models/me/x/xet-write-token/main`,
                header: {
                  'X-Xet-Cas-Url': CAS,
                  'X-Xet-Access-Token': 'xet-write-token',
                  'X-Xet-Token-Expiration': String(Math.floor(Date.now() / 1000) + 3600),
                  'X-Xet-Session-Id': 'session-1',
                },
              },
            },
          })),
        });
      return reply(200, {
        transfer: 'basic',
        objects: asked.objects.map((o) => ({
          oid: o.oid,
          size: o.size,
          actions: { upload: { href: `${STORAGE}/upload/${o.oid}` } },
        })),
      });
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
        // The preview renders after the summary: wait for it rather than read it once.
        await expect
          .poll(() => page.getByTestId('dataset-preview').innerText(), { timeout: LONG })
          .not.toMatch(/plus one/);

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
        const lfs = new Map<string, { oid: string; size: number; algo: string }>();
        for (const line of commit.body!.split('\n')) {
          const o = JSON.parse(line) as {
            key: string;
            value: { path: string; content: string; oid: string; size: number; algo: string };
          };
          if (o.key === 'file') files.set(o.value.path, Buffer.from(o.value.content, 'base64'));
          if (o.key === 'lfsFile') lfs.set(o.value.path, o.value);
        }
        expect([...files.keys()]).toEqual(['adapter_config.json', 'README.md', 'loss.png']);
        // The weights went the LFS way: hashed in the page, announced to the batch API (which was
        // offered basic, multipart and xet transfers), PUT to storage, then named by hash in the commit.
        const batch = hub.log.find((r) => r.url.endsWith('/me/demo-adapter.git/info/lfs/objects/batch'))!;
        const asked = JSON.parse(batch.body!) as { transfers: string[]; objects: { oid: string; size: number }[] };
        expect(asked.transfers).toEqual(['basic', 'multipart', 'xet']);
        expect(batch.auth).toBe(`Bearer ${TOKEN}`);
        const weights = lfs.get('adapter_model.safetensors')!;
        expect(weights.algo).toBe('sha256');
        expect(asked.objects).toEqual([{ oid: weights.oid, size: weights.size }]);
        const put = hub.stored.get(weights.oid)!;
        expect(put.length).toBe(weights.size);
        expect(createHash('sha256').update(put).digest('hex')).toBe(weights.oid);
        const st = parseSafetensors(new Uint8Array(put));
        expect([...st.tensors.keys()].every((k) => /\.lora_[AB]\.weight$/.test(k))).toBe(true);

        // Pushed again, with the Hub answering the Xet transfer: the page chunks the file, uploads its
        // xorb(s) and a shard to the CAS named in the answer, with its token and session, then commits
        // the same file by the same hash.
        hub.lfsTransfer = 'xet';
        const commits = () => hub.log.filter((r) => r.url.endsWith('/api/models/me/demo-adapter/commit/main'));
        await page.getByRole('button', { name: 'Push', exact: true }).click();
        await expect.poll(() => commits().length, { timeout: 60_000 }).toBe(2);
        const xorbs = hub.cas.filter((r) => r.method === 'POST' && r.path.startsWith('/v1/xorbs/default/'));
        const shards = hub.cas.filter((r) => r.method === 'POST' && r.path === '/v1/shards');
        expect(xorbs.length).toBeGreaterThanOrEqual(1);
        expect(shards).toHaveLength(1);
        expect(xorbs.reduce((n, x) => n + x.bytes, 0)).toBeGreaterThan(0);
        for (const r of [...xorbs, ...shards])
          expect(r).toMatchObject({ auth: 'Bearer xet-write-token', session: 'session-1' });
        const second = commits()[1]!
          .body!.split('\n')
          .map((l) => JSON.parse(l) as { key: string; value: { path: string; oid?: string } });
        expect(second.find((o) => o.key === 'lfsFile')?.value).toMatchObject({
          path: 'adapter_model.safetensors',
          oid: weights.oid,
        });
        await expect.poll(() => page.getByTestId('push-done').count(), { timeout: 60_000 }).toBe(1);
        expect(JSON.parse(files.get('adapter_config.json')!.toString())).toMatchObject({ peft_type: 'LORA' });
        const card = files.get('README.md')!.toString();
        expect(card).toContain('library_name: peft');
        expect(card).toContain('| Dataset | demo-qa.jsonl |');
        expect(card).toContain('| Steps | 2 |');
        expect(card).toMatch(/\| Final training loss \| \d+\.\d{4} \|/);
        expect(card).toContain('![Loss over training steps](loss.png)');
        expect([...files.get('loss.png')!.subarray(1, 4)]).toEqual([0x50, 0x4e, 0x47]);
        expect(
          hub.log
            .filter((r) => r.method === 'POST' && r.url.startsWith(HUB))
            .every((r) => r.auth === `Bearer ${TOKEN}`),
        ).toBe(true);
      });
    },
    8 * 60_000,
  );
});
