/**
 * `tabtune eval/train --data hf:owner/name[:split]` against a local server standing in for the Hub
 * (HF_ENDPOINT): the file list from the Hub's tree API, the split's Parquet file downloaded once
 * into TABTUNE_CACHE, read through --columns; the loss equals that of the same records uploaded as
 * JSON Lines. Errors: no such dataset, a gated one without a token, a split it lacks.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTinyModel } from '../fixtures/tiny-model';
import { writeParquet } from '../fixtures/parquet';
import { type FakeHub, json, startFakeHub } from '../helpers/fake-hub';
import { type ProcResult, runCommand } from '../helpers/proc';

const ROOT = join(import.meta.dirname, '..', '..');
let dir = '';
let hub: FakeHub;

const QA = [
  ['What did the cat watch?', 'The cat watched the rain.'],
  ['Where did the children play?', 'In the garden.'],
  ['What color was the sea?', 'Deep and blue.'],
];

function run(args: string[], env: Record<string, string> = {}): Promise<ProcResult> {
  return runCommand(process.execPath, [join(ROOT, 'bin', 'tabtune.mjs'), ...args], ROOT, {
    HF_ENDPOINT: hub.url,
    TABTUNE_CACHE: join(dir, 'cache'),
    HF_TOKEN: '',
    ...env,
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-hubdata-'));
  await writeTinyModel(join(dir, 'model'), { modelType: 'llama', seed: 2 });
  await writeFile(join(dir, 'qa.jsonl'), QA.map(([q, a]) => JSON.stringify({ instruction: q, output: a })).join('\n'));
  const parquet = writeParquet({ question: QA.map((r) => r[0]!), answer: QA.map((r) => r[1]!) });
  hub = await startFakeHub();
  hub.on('GET', '/api/datasets/owner/qa/tree/main', (_req, res) =>
    json(res, 200, [
      { type: 'directory', path: 'data', oid: 'd1', size: 0 },
      { type: 'file', path: 'README.md', oid: 'r1', size: 10 },
      { type: 'file', path: 'data/test-00000-of-00001.parquet', oid: 't1', size: parquet.length },
      {
        type: 'file',
        path: 'data/train-00000-of-00001.parquet',
        oid: 'p1',
        size: 134,
        lfs: { oid: 'a'.repeat(64), size: parquet.length, pointerSize: 134 },
      },
    ]),
  );
  for (const split of ['train', 'test'])
    hub.on('GET', `/datasets/owner/qa/resolve/main/data/${split}-00000-of-00001.parquet`, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(parquet.length) });
      res.end(parquet);
    });
  hub.on('GET', '/api/datasets/owner/gated/tree/main', (_req, res) =>
    json(res, 401, { error: 'Access to dataset owner/gated is restricted.' }),
  );
});

afterAll(async () => {
  await hub?.close();
  await rm(dir, { recursive: true, force: true });
});

const evalArgs = (data: string, more: string[] = []) => [
  'eval',
  '--model',
  join(dir, 'model'),
  '--data',
  data,
  '--max-len',
  '48',
  '--json',
  ...more,
];

describe('--data hf:owner/name', () => {
  it('downloads the split once, reads it through --columns, and gives the loss of the same records as JSONL', async () => {
    const local = await run(evalArgs(join(dir, 'qa.jsonl')));
    expect(local.code, local.stderr).toBe(0);
    const first = await run(evalArgs('hf:owner/qa:train', ['--columns', 'prompt=question,response=answer']));
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/downloading owner\/qa\/data\/train-00000-of-00001\.parquet: /);
    expect(JSON.parse(first.stdout.trim().split('\n').at(-1)!)).toEqual(
      JSON.parse(local.stdout.trim().split('\n').at(-1)!),
    );
    const downloads = () => hub.requests.filter((r) => r.url.includes('/resolve/')).length;
    expect(downloads()).toBe(1);
    // Again: from the cache (keyed by the LFS hash); the column names suggest the same mapping.
    const again = await run(evalArgs('hf:owner/qa'));
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/from the cache/);
    expect(downloads()).toBe(1);
    expect(again.stdout).toBe(first.stdout);
  });

  it('says what is wrong: a split the dataset lacks, a mapped column it lacks, no such dataset, a gated one', async () => {
    const split = await run(evalArgs('hf:owner/qa:validation'));
    expect(split.code).toBe(1);
    expect(split.stderr).toMatch(/No "validation" split in the dataset: it has train, test\./);
    const column = await run(evalArgs('hf:owner/qa:test', ['--columns', 'text=body']));
    expect(column.code).toBe(1);
    expect(column.stderr).toMatch(
      /--data file "hf:owner\/qa:test" \(owner\/qa\/data\/test-00000-of-00001\.parquet\) has no column "body" .*"question", "answer"/,
    );
    const missing = await run(evalArgs('hf:owner/nothing'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/No dataset owner\/nothing on the Hub \(HTTP 404\)/);
    const gated = await run(evalArgs('hf:owner/gated'));
    expect(gated.code).toBe(1);
    expect(gated.stderr).toMatch(
      /gated or private\. Accept its conditions at http:\/\/127\.0\.0\.1:\d+\/datasets\/owner\/gated/,
    );
    expect((await run(evalArgs('hf:owner'))).stderr).toMatch(/"hf:owner" is not a Hub dataset: expected "owner\/name"/);
  });
});
