/**
 * `tabtune eval/train --data hf:owner/name[:split]` against a local server standing in for the Hub
 * (HF_ENDPOINT): the file list from the Hub's tree API, the split's Parquet file downloaded once
 * into TABTUNE_CACHE, read through --columns; the loss equals that of the same records uploaded as
 * JSON Lines. A split in several files (Parquet shards, JSON Lines shards) is read whole, its files
 * in order as one dataset (--data-file picks one). Errors: no such dataset, a gated one without a
 * token, a split it lacks. `export-recipe --data hf:...` writes the recipe data files of the same
 * records as a local file and names the Hub dataset.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
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

const SHARDED_MORE = [
  ['Who baked the bread?', 'The old baker.'],
  ['When did the owl wake?', 'At night.'],
  ['What did the fox find?', 'A red ball.'],
  ['Why was the boy happy?', 'He found his kite.'],
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
  // owner/sharded: train in three Parquet shards (3 + 2 + 2 records), validation in two JSON Lines
  // shards (the second with a broken line); together the QA records above and SHARDED_MORE.
  const all = [...QA, ...SHARDED_MORE];
  const pq = (rows: string[][]) => writeParquet({ question: rows.map((r) => r[0]!), answer: rows.map((r) => r[1]!) });
  const jl = (rows: string[][]) => rows.map(([q, a]) => JSON.stringify({ instruction: q, output: a })).join('\n');
  const sharded = new Map<string, Uint8Array>([
    ['data/train-00000-of-00003.parquet', pq(all.slice(0, 3))],
    ['data/train-00001-of-00003.parquet', pq(all.slice(3, 5))],
    ['data/train-00002-of-00003.parquet', pq(all.slice(5, 7))],
    ['data/validation-00000-of-00002.jsonl', new TextEncoder().encode(`${jl(all.slice(0, 4))}\n`)],
    [
      'data/validation-00001-of-00002.jsonl',
      new TextEncoder().encode(`${jl(all.slice(4, 5))}\n{"instruction": "cut\n${jl(all.slice(5, 7))}\n`),
    ],
  ]);
  await writeFile(join(dir, 'all.jsonl'), jl(all));
  // Listed out of order: the split is read in path order all the same.
  hub.on('GET', '/api/datasets/owner/sharded/tree/main', (_req, res) =>
    json(
      res,
      200,
      [...sharded].reverse().map(([path, b], k) => ({ type: 'file', path, oid: `s${k}`, size: b.length })),
    ),
  );
  for (const [path, bytes] of sharded)
    hub.on('GET', `/datasets/owner/sharded/resolve/main/${path}`, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) });
      res.end(bytes);
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

  it('reads a split in several files whole, in order, as one dataset: Parquet shards and JSON Lines shards', async () => {
    const local = await run(evalArgs(join(dir, 'all.jsonl')));
    expect(local.code, local.stderr).toBe(0);
    const want = JSON.parse(local.stdout.trim().split('\n').at(-1)!) as { loss: number; tokens: number };
    const parquet = await run(evalArgs('hf:owner/sharded:train'));
    expect(parquet.code, parquet.stderr).toBe(0);
    for (const k of [1, 2, 3])
      expect(parquet.stderr).toContain(
        `downloading owner/sharded/data/train-0000${k - 1}-of-00003.parquet (file ${k} of 3)`,
      );
    // The same records, all of them: the same tokens and loss as the one local file.
    expect(JSON.parse(parquet.stdout.trim().split('\n').at(-1)!)).toEqual(want);
    const resolves = hub.requests.filter((r) => r.url.includes('/datasets/owner/sharded/resolve/')).map((r) => r.url);
    expect(resolves.map((u) => u.split('/').at(-1))).toEqual([
      'train-00000-of-00003.parquet',
      'train-00001-of-00003.parquet',
      'train-00002-of-00003.parquet',
    ]);
    // JSON Lines shards: the broken line is skipped, named by its line through the split and in its file.
    const jsonl = await run(evalArgs('hf:owner/sharded:validation'));
    expect(jsonl.code, jsonl.stderr).toBe(0);
    expect(jsonl.stderr).toMatch(
      /owner\/sharded\/validation \(2 files\):6: .*\(owner\/sharded\/data\/validation-00001-of-00002\.jsonl, line 2\) \(skipped\)/,
    );
    expect(JSON.parse(jsonl.stdout.trim().split('\n').at(-1)!)).toEqual(want);
    // --data-file: one shard only, fewer tokens.
    const one = await run(evalArgs('hf:owner/sharded:train', ['--data-file', 'data/train-00001-of-00003.parquet']));
    expect(one.code, one.stderr).toBe(0);
    expect((JSON.parse(one.stdout.trim().split('\n').at(-1)!) as { tokens: number }).tokens).toBeLessThan(want.tokens);
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

describe('export-recipe --data hf:owner/name', () => {
  const recipe = async (name: string, data: string, more: string[] = []) => {
    const out = join(dir, 'recipes', name);
    const r = await run([
      'export-recipe',
      '--model',
      join(dir, 'model'),
      '--data',
      data,
      '--out',
      out,
      '--max-len',
      '48',
      '--val-fraction',
      '0.3',
      '--seed',
      '4',
      '--json',
      ...more,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
      out: string;
      files: string[];
      trainExamples: number;
      valExamples: number;
      countedTokens: number;
    };
    const dataFiles: Record<string, string> = {};
    for (const f of summary.files.filter((x) => x.startsWith('data/')))
      dataFiles[f] = await readFile(join(out, f), 'utf8');
    const runFile = JSON.parse(await readFile(join(out, 'tabtune_run.json'), 'utf8')) as { data: { source: string } };
    const readme = await readFile(join(out, 'README.md'), 'utf8');
    const { files: _, out: __, ...counts } = summary;
    return { counts, dataFiles, source: runFile.data.source, readme };
  };

  it('writes the data files and counted tokens of the same records as a local file, one Hub file or several', async () => {
    for (const [local, hub, more, name] of [
      [
        'qa.jsonl',
        'hf:owner/qa:train',
        ['--columns', 'prompt=question,response=answer'],
        'owner/qa/data/train-00000-of-00001.parquet',
      ],
      ['all.jsonl', 'hf:owner/sharded:train', [], 'owner/sharded/train (3 files)'],
    ] as const) {
      const want = await recipe(`local-${local}`, join(dir, local));
      const got = await recipe(`hub-${local}`, hub, [...more]);
      expect(Object.keys(got.dataFiles)).toEqual(['data/train.jsonl', 'data/validation.jsonl']);
      expect(got.dataFiles).toEqual(want.dataFiles);
      expect(got.counts).toEqual(want.counts);
      expect(got.counts.countedTokens).toBeGreaterThan(0);
      // The recipe names the Hub dataset where it names a local file.
      expect(want.source).toBe(local);
      expect(got.source).toBe(name);
      expect(got.readme).toContain(`Data: \`${name}\``);
    }
  });

  it("gives train's errors for a Hub dataset that is not there, and writes nothing", async () => {
    const out = join(dir, 'recipes', 'missing');
    const args = ['--model', join(dir, 'model'), '--data', 'hf:owner/nothing', '--out', out];
    const recipeRun = await run(['export-recipe', ...args]);
    const trainRun = await run(['train', ...args]);
    expect(recipeRun.code).toBe(1);
    expect(recipeRun.stderr).toMatch(/No dataset owner\/nothing on the Hub \(HTTP 404\)/);
    expect(recipeRun.stderr.replace('export-recipe', 'train')).toBe(trainRun.stderr);
    expect(existsSync(out)).toBe(false);
  });
});
