/**
 * The app when things go wrong (issue 4's quality bar), on the fake engine and fake-indexeddb:
 * a lost GPU device mid-run, a full storage quota, failed downloads, wrong folders, two tabs on one
 * run, and an adapter for another base model. Each must give a clear message with what to do, and
 * lose nothing already saved.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_LORA } from '../../src/engine/defaults';
import { guardQuota } from '../../src/store/errors';
import { LEASE_MS, RunStore } from '../../src/store/runs';
import { RemoteError } from '../../src/worker/protocol';
import { FakeEngine } from './fake-engine';
import { FakeLocks, fakeFetch, freshIndexedDb, makeApp, until } from './helpers';

beforeEach(() => freshIndexedDb());

const quotaError = () => Object.assign(new Error('The quota has been exceeded.'), { name: 'QuotaExceededError' });

/** The page's files, with the Hub's answers from `answer`. */
function hub(answer: (url: string) => Response | Promise<Response>): typeof fetch {
  const page = fakeFetch();
  return (async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    return url.startsWith('https://huggingface.co/') ? answer(url) : page(input, init);
  }) as typeof fetch;
}

describe('a lost GPU device', () => {
  it('mid-run: says what happened and what to do, keeps the checkpoint and the library, and resumes after a reload', async () => {
    const locks = new FakeLocks();
    const engine = new FakeEngine();
    const a = await makeApp({ engine, locks, tabId: 'A' });
    a.c.setTrain({ steps: 2 });
    await a.c.startTraining();
    const earlier = a.c.state.run.adapterId!;
    engine.stepMs = 1;
    a.c.setTrain({ steps: 10, checkpointEvery: 3 });
    const done = a.c.startTraining();
    await engine.reached(7);
    const runId = a.c.state.run.runId!;
    engine.loseDevice();
    await done;

    const s = a.c.state;
    expect(s.gpu.status).toBe('lost');
    const notice = s.notices.find((n) => n.title === 'The GPU was lost')!;
    expect(notice.level).toBe('error');
    expect(notice.action).toMatch(/Reload the page.*resumes from its last checkpoint/);
    expect(s.run).toMatchObject({ status: 'failed', error: { title: 'The GPU was lost' } });
    expect(s.resumable.map((r) => [r.id, r.status, r.checkpointStep])).toEqual([[runId, 'interrupted', 6]]);
    expect(s.library.adapters.map((x) => x.id)).toEqual([earlier]); // nothing saved was lost
    const reload = /The GPU was lost: reload the page/;
    expect(a.c.startBlockers().some((b) => reload.test(b))).toBe(true);
    expect(a.c.compareBlocker()).toMatch(reload);
    // Resuming needs a new device: refused here, and the run is left as it was.
    await a.c.resumeRun(runId);
    expect(a.c.state.notices.at(-1)).toMatchObject({ title: 'Cannot resume now' });
    expect(a.c.state.notices.at(-1)!.detail).toMatch(reload);
    expect(a.c.state.resumable.map((r) => r.checkpointStep)).toEqual([6]);

    // The reload: the same tab, a new worker with a new device.
    const b = await makeApp({ locks, tabId: 'A' });
    expect(b.c.state.resumable.map((r) => r.id)).toEqual([runId]);
    await b.c.resumeRun(runId);
    expect(b.engine.lastTrain?.resumedFromStep).toBe(6);
    expect(b.c.state.run.status).toBe('done');
    expect(b.c.state.run.history.map((h) => h.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(b.c.state.library.adapters).toHaveLength(2);
    expect(b.c.state.resumable).toEqual([]);
  });
});

describe('a full storage quota', () => {
  it('when checkpointing: warns once, trains on, and the last checkpoint that fitted stays resumable', async () => {
    const engine = new FakeEngine();
    engine.stepMs = 1;
    const { c } = await makeApp({ engine });
    const runs = c.ctx.stores!.runs;
    const save = runs.saveCheckpoint.bind(runs);
    runs.saveCheckpoint = (id, step, blob, history, total) =>
      step <= 2
        ? save(id, step, blob, history, total)
        : guardQuota(`the checkpoint at step ${step}`, async () => {
            throw quotaError();
          });
    c.setTrain({ steps: 10, checkpointEvery: 2 });
    const done = c.startTraining();
    await engine.reached(7);
    expect(c.state.run.status).toBe('running'); // training went on past the failed checkpoints
    engine.loseDevice();
    await done;
    const warnings = c.state.notices.filter((n) => n.title === 'Browser storage is full');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 'warning' });
    expect(warnings[0]!.detail).toMatch(
      /checkpoint at step 4 could not be saved.*Nothing saved before was lost.*Free space/s,
    );
    expect(warnings[0]!.action).toMatch(/Training goes on/);
    expect(c.state.resumable.map((r) => r.checkpointStep)).toEqual([2]);
    expect((await runs.checkpoint(c.state.resumable[0]!.id))!.step).toBe(2);
  });

  it('when saving the finished adapter: keeps it in memory to download and the run resumable from its checkpoint', async () => {
    const { c } = await makeApp();
    const runs = c.ctx.stores!.runs;
    runs.finish = (id) =>
      guardQuota(`adapter for run ${id}`, async () => {
        throw quotaError();
      });
    c.setTrain({ steps: 6, checkpointEvery: 2 });
    await c.startTraining();
    const s = c.state;
    expect(s.run.status).toBe('done');
    expect(s.run.adapterId).toBeNull();
    expect(s.run.unsaved?.adapterModel.byteLength).toBeGreaterThan(0);
    expect(JSON.parse(s.run.unsaved!.adapterConfig)).toMatchObject({ peft_type: 'LORA' });
    expect(s.notices.at(-1)).toMatchObject({ level: 'error', title: 'Browser storage is full' });
    expect(s.notices.at(-1)!.action).toMatch(/Download it now/);
    expect(s.resumable).toHaveLength(1);
    expect(s.resumable[0]).toMatchObject({ status: 'interrupted', checkpointStep: 6, lease: null }); // the final checkpoint
    expect(s.resumable[0]!.error).toMatch(/could not be saved \(Browser storage is full\)/);
  });
});

describe('a failed model download', () => {
  const ID = 'org/some-model';
  const CONFIG_URL = `https://huggingface.co/${ID}/resolve/main/config.json`;
  const DEMO_ID = 'tabtune/stories260K';
  const CONFIG = readFileSync(join(process.cwd(), 'public/models/stories260K/config.json'), 'utf8');

  it('no network: names the model and the file, and says what to do', async () => {
    const { c } = await makeApp({
      fetch: hub(() => {
        throw new TypeError('Failed to fetch');
      }),
    });
    await c.chooseModel({ kind: 'hub', id: ID });
    const err = c.state.model.check.error!;
    expect(c.state.model.check.status).toBe('error');
    // A failed Check is a check, not a download.
    expect(err.title).toBe('Checking the model failed');
    expect(err.detail).toContain('"config.json"');
    expect(err.detail).toContain(ID);
    expect(err.detail).toMatch(/Failed to fetch/);
    expect(err.action).toMatch(/connection.*try again.*demo model works offline/);
    expect(c.state.model.info?.id).toBe('tabtune/stories260K'); // the loaded model stays usable
  });

  it('HTTP 401/403 (gated or private): says access was denied, for which file, and how to get the model in', async () => {
    const { c } = await makeApp({ fetch: hub(() => new Response('', { status: 401 })) });
    await c.chooseModel({ kind: 'hub', id: ID });
    const err = c.state.model.check.error!;
    expect(err.title).toBe('Access denied');
    expect(err.detail).toMatch(/HTTP 401.*"config\.json".*org\/some-model.*gated/);
    expect(err.action).toMatch(/accept its license.*save an access token.*drop the folder/);
  });

  it('HTTP 404 for config.json: the model is named and the file it lacks', async () => {
    const { c } = await makeApp({ fetch: hub(() => new Response('', { status: 404 })) });
    await c.chooseModel({ kind: 'hub', id: ID });
    expect(c.state.model.check.error).toMatchObject({ title: 'This model cannot be used' });
    expect(c.state.model.check.error!.detail).toMatch(/org\/some-model has no config\.json/);
  });

  it('a server error: the check failed, try again', async () => {
    const { c } = await makeApp({
      fetch: hub(() => new Response('', { status: 503, statusText: 'Service Unavailable' })),
    });
    await c.chooseModel({ kind: 'hub', id: ID });
    expect(c.state.model.check.error).toMatchObject({ title: 'Checking the model failed' });
    expect(c.state.model.check.error!.detail).toMatch(/"config\.json".*HTTP 503/);
    expect(c.state.model.check.error!.action).toMatch(/try again/);
  });

  it('a download that breaks off in the worker: named file, the choice kept so it can be loaded again', async () => {
    const engine = new FakeEngine();
    const { c } = await makeApp({
      engine,
      fetch: hub((url) => (url === CONFIG_URL ? new Response(CONFIG) : new Response('', { status: 404 }))),
    });
    await c.chooseModel({ kind: 'hub', id: ID });
    expect(c.state.model.check.status).toBe('ready');
    engine.failNext.loadModel = new RemoteError({
      name: 'SourceError',
      code: 'network',
      message: `Download of "model.safetensors" from repo "${ID}" broke off: network error`,
    });
    expect(await c.loadModel()).toBe(false);
    const err = c.state.model.load.error!;
    expect(err.title).toBe('Download failed');
    expect(err.detail).toMatch(/"model\.safetensors" from repo "org\/some-model"/);
    expect(err.action).toMatch(/files already downloaded are kept/);
    expect(c.state.model.choice?.id).toBe(ID);
    expect(c.state.model.check.status).toBe('ready');
    expect(await c.loadModel()).toBe(true); // trying again works
    expect(c.state.model.info?.id).toBe(ID);
  });

  it("a repo that lacks a file Tabtune needs is refused at the check, from the Hub's file list, naming the file", async () => {
    const TREE = `https://huggingface.co/api/models/${ID}/tree/main`;
    const repo = (files: string[]) =>
      hub((url) =>
        url === CONFIG_URL
          ? new Response(CONFIG)
          : url === TREE
            ? Response.json(files.map((path) => ({ type: 'file', path, size: 1000 })))
            : new Response('', { status: 404 }),
      );
    const engine = new FakeEngine();
    let { c } = await makeApp({
      engine,
      fetch: repo(['config.json', 'pytorch_model.bin', 'tokenizer.json', 'tokenizer_config.json']),
    });
    await c.chooseModel({ kind: 'hub', id: ID });
    let err = c.state.model.check.error!;
    expect(c.state.model.check.status).toBe('error');
    expect(err.title).toBe('Not a model Tabtune can load');
    expect(err.detail).toMatch(
      /^"org\/some-model" on the Hub has no safetensors weights .*Found: config\.json, pytorch_model\.bin/,
    );
    expect(err.action).toMatch(/PyTorch files/);

    ({ c } = await makeApp({ engine, fetch: repo(['config.json', 'model.safetensors', 'tokenizer.model']) }));
    await c.chooseModel({ kind: 'hub', id: ID });
    err = c.state.model.check.error!;
    expect(err.detail).toMatch(/has no tokenizer\.json\./);
    expect(err.action).toMatch(/"fast" tokenizer file tokenizer\.json/);
    expect(engine.calls.filter((x) => x.startsWith(`loadModel:${ID}`))).toEqual([]); // nothing downloaded

    // A complete repo passes, with the weights' size from the list (sharded: two files).
    ({ c } = await makeApp({
      engine,
      fetch: repo([
        'config.json',
        'model-00001-of-00002.safetensors',
        'model-00002-of-00002.safetensors',
        'model.safetensors.index.json',
        'tokenizer.json',
      ]),
    }));
    await c.chooseModel({ kind: 'hub', id: ID });
    expect(c.state.model.check.status).toBe('ready');
    expect(c.state.model.check.cost!.downloadBytes).toBe(2000);
  });

  it("download progress: the running total counts the weights, against the weights' size from the check", async () => {
    const engine = new FakeEngine();
    const { c } = await makeApp({
      engine,
      fetch: hub((url) => (url === CONFIG_URL ? new Response(CONFIG) : new Response('', { status: 404 }))),
    });
    await c.chooseModel({ kind: 'hub', id: ID });
    const expected = c.state.model.check.cost!.downloadBytes;
    const seen: { file: string; bytes: number; expected: number | null }[] = [];
    const off = c.store.subscribe(() => {
      const p = c.state.model.load.progress;
      if (p?.phase === 'download') seen.push({ file: p.file, bytes: p.bytes, expected: p.expectedBytes });
    });
    expect(await c.loadModel()).toBe(true);
    off();
    // the fake engine reads config.json, tokenizer.json and model.safetensors, 100 bytes each
    expect(seen.at(-1)).toEqual({ file: 'model.safetensors', bytes: 100, expected });
    expect(seen.filter((x) => x.file !== 'model.safetensors').every((x) => x.bytes === 0)).toBe(true);
  });

  it('a file the loader finds truncated: the message names the model, and says to try again (Hub) or copy the folder again', async () => {
    const engine = new FakeEngine();
    const { c } = await makeApp({
      engine,
      fetch: hub((url) => (url === CONFIG_URL ? new Response(CONFIG) : new Response('', { status: 404 }))),
    });
    await c.chooseModel({ kind: 'hub', id: ID });
    const truncated = () =>
      new RemoteError({
        name: 'SafetensorsError',
        message:
          'model.safetensors: tensor "lm_head.weight" ends at byte 20736, past the end of the file (17760); the file is truncated.',
      });
    engine.failNext.loadModel = truncated();
    expect(await c.loadModel()).toBe(false);
    let err = c.state.model.load.error!;
    expect(err.title).toBe('This model cannot be used');
    expect(err.detail).toMatch(/^org\/some-model: model\.safetensors: tensor .* truncated/);
    expect(err.action).toMatch(/try again to download it afresh/);
    // an error that names the model already is left as it is; a folder is to be copied again
    const files = [new File(['{}'], 'config.json')];
    const { modelError } = await import('../../src/ui/actions/model');
    err = modelError(truncated(), 'Loading the model', { kind: 'files', id: 'MyModel', files });
    expect(err.detail).toMatch(/^MyModel: model\.safetensors/);
    expect(err.action).toMatch(/copy the model folder again/);
    const named = new RemoteError({
      name: 'SourceError',
      code: 'network',
      message: `Download of "x" from repo "${ID}" broke off`,
    });
    expect(modelError(named, 'Loading the model', { kind: 'hub', id: ID }).detail).toBe(named.message);
  });

  it('a failed download keeps the model that was loaded in use (model, dataset, estimate), and says so', async () => {
    const engine = new FakeEngine();
    const { c } = await makeApp({
      engine,
      fetch: hub((url) => (url === CONFIG_URL ? new Response(CONFIG) : new Response('', { status: 404 }))),
    });
    const before = c.state;
    expect(before.model.info?.id).toBe(DEMO_ID);
    expect(before.dataset.summary).not.toBeNull();
    await c.chooseModel({ kind: 'hub', id: ID });
    // The worker failed before letting the demo model go, and says it still holds it.
    engine.failNext.loadModel = new RemoteError({
      name: 'SourceError',
      code: 'network',
      message: `Could not reach https://huggingface.co/${ID}/resolve/main/model.safetensors for "model.safetensors" of repo "${ID}": Failed to fetch.`,
      keptModel: DEMO_ID,
    });
    expect(await c.loadModel()).toBe(false);
    const s = c.state;
    expect(s.model.load.status).toBe('error');
    expect(s.model.load.error!.action).toMatch(/try again.*tabtune\/stories260K is still loaded\./);
    expect(s.model.info).toEqual(before.model.info);
    expect(s.model.source).toEqual(before.model.source);
    expect(s.dataset.summary).toEqual(before.dataset.summary);
    expect(c.startBlockers()).toEqual([]); // training the demo model still works
    expect(s.model.choice?.id).toBe(ID); // and the failed choice can be tried again
    // Picking another model clears the message about this one (it is not shown under the next choice).
    await c.chooseModel({ kind: 'demo', id: DEMO_ID });
    expect(c.state.model.load).toEqual({ status: 'ready', progress: null, error: null });
    await c.chooseModel({ kind: 'hub', id: ID });

    // A failure after the old model was let go (no keptModel): no model is shown as loaded.
    engine.failNext.loadModel = new RemoteError({
      name: 'GpuOutOfMemoryError',
      message: 'Out of memory uploading weights.',
    });
    expect(await c.loadModel()).toBe(false);
    expect(c.state.model.info).toBeNull();
    expect(c.startBlockers().some((b) => /Load a model first/.test(b))).toBe(true);
  });
});

describe('a wrong folder dropped as a model', () => {
  const DEMO = join(process.cwd(), 'public/models/stories260K');
  const demoFiles = () => readdirSync(DEMO).map((n) => file(`stories260K/${n}`, readFileSync(join(DEMO, n))));

  function file(path: string, body: string | Uint8Array = '{}'): File {
    const f = new File([typeof body === 'string' ? body : new Uint8Array(body)], path.split('/').pop()!);
    Object.defineProperty(f, 'webkitRelativePath', { value: path });
    return f;
  }

  it('a dataset file: every missing model file is named, with what was found', async () => {
    const { c, engine } = await makeApp();
    await c.chooseModel({ kind: 'files', id: 'local-model', files: [file('train.jsonl', '{"text":"hi"}\n')] });
    const err = c.state.model.check.error!;
    expect(c.state.model.check.status).toBe('error');
    expect(err.title).toBe('Not a model folder');
    expect(err.detail).toBe(
      '"local-model" has no config.json, tokenizer.json and safetensors weights (model.safetensors, or model.safetensors.index.json with its shards). Found: train.jsonl.',
    );
    expect(err.action).toMatch(/folder that holds config\.json/);
    expect(engine.calls.filter((x) => x.startsWith('loadModel:local'))).toEqual([]);
  });

  it('a truncated or random model.safetensors is named by the check, before any load', async () => {
    const { c, engine } = await makeApp();
    const weights = readFileSync(join(DEMO, 'model.safetensors'));
    const others = () => demoFiles().filter((f) => f.name !== 'model.safetensors');
    // Cut short, as an interrupted download leaves it.
    await c.chooseModel({
      kind: 'files',
      id: 'stories260K',
      files: [...others(), file('stories260K/model.safetensors', weights.subarray(0, weights.length - 1000))],
    });
    expect(c.state.model.check).toMatchObject({ status: 'error', cost: null });
    expect(c.state.model.check.error).toEqual({
      title: 'Damaged weights file',
      detail: `stories260K: model.safetensors: its header declares ${weights.length} bytes, but the file has ${weights.length - 1000}; the file is truncated.`,
      action: 'Copy or download that file again (it may be cut short), or choose another folder.',
    });
    // Random bytes.
    const random = Uint8Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24);
    await c.chooseModel({
      kind: 'files',
      id: 'stories260K',
      files: [...others(), file('stories260K/model.safetensors', random)],
    });
    expect(c.state.model.check.error!.detail).toMatch(
      /^stories260K: model\.safetensors: header length \d+ does not fit a file of 4096 bytes; not a safetensors file or truncated\.$/,
    );
    // The whole file passes.
    await c.chooseModel({ kind: 'files', id: 'stories260K', files: demoFiles() });
    expect(c.state.model.check).toMatchObject({ status: 'ready', error: null });
    expect(engine.calls.filter((x) => x.startsWith('loadModel:'))).toHaveLength(1); // the demo's, at start
  });

  it("a folder chosen while the one before is still checked: the later choice's answer stays", async () => {
    // The first check waits in its last step (the storage estimate) until released.
    let release = () => {};
    let waiting = false;
    let hold = false;
    const { c } = await makeApp({
      storageEstimate: async () => {
        if (hold) {
          waiting = true;
          await new Promise<void>((r) => (release = r));
        }
        return { usage: 1_000_000, quota: 10_000_000_000 };
      },
    });
    const noTokenizer = () => demoFiles().filter((f) => f.name !== 'tokenizer.json');
    // Another folder, and then a folder of the same name (the model saved again, now broken).
    for (const id of ['no-tokenizer', 'stories260K']) {
      hold = true;
      waiting = false;
      const first = c.chooseModel({ kind: 'files', id: 'stories260K', files: demoFiles() });
      await until(() => waiting, 5000, "the first folder's check to reach its last step");
      hold = false;
      await c.chooseModel({ kind: 'files', id, files: noTokenizer() });
      expect(c.state.model.check.status).toBe('error');
      release();
      await first;
      expect(c.state.model.choice!.id).toBe(id);
      expect(c.state.model.check).toMatchObject({ status: 'error', config: null, cost: null });
      expect(c.state.model.check.error!.detail).toMatch(new RegExp(`^"${id}" has no tokenizer\\.json\\.`));
    }
  });

  it('a folder dropped while a Hub model loads: the load marks its own model cached, not the folder', async () => {
    // The Hub model's load waits in the worker until released.
    let release = () => {};
    const held = new Promise<void>((r) => (release = r));
    class SlowLoad extends FakeEngine {
      waiting = false;
      override async loadModel(...args: Parameters<FakeEngine['loadModel']>) {
        if (args[0].kind === 'hub') {
          this.waiting = true;
          await held;
        }
        return super.loadModel(...args);
      }
    }
    const engine = new SlowLoad();
    const config = readFileSync(join(DEMO, 'config.json'), 'utf8');
    const { c } = await makeApp({
      engine,
      fetch: hub((url) =>
        url.endsWith('/org/some-model/resolve/main/config.json')
          ? new Response(config)
          : new Response('', { status: 404 }),
      ),
    });
    await c.chooseModel({ kind: 'hub', id: 'org/some-model' });
    const loading = c.loadModel();
    await until(() => engine.waiting, 5000, "the Hub model's load");
    await c.chooseModel({ kind: 'files', id: 'stories260K', files: demoFiles() });
    expect(c.state.model.check).toMatchObject({ status: 'ready', cached: false });
    release();
    expect(await loading).toBe(true);
    expect(c.state.model.info!.id).toBe('org/some-model');
    expect(c.state.model.choice!.kind).toBe('files');
    expect(c.state.model.check).toMatchObject({ status: 'ready', cached: false });
  });

  it('a folder without tokenizer.json, without safetensors weights, or holding an adapter', async () => {
    const { c } = await makeApp();
    const base = () => demoFiles().filter((f) => f.name !== 'tokenizer.json');
    await c.chooseModel({
      kind: 'files',
      id: 'stories260K',
      files: [...base(), file('stories260K/vocab.json'), file('stories260K/merges.txt', '')],
    });
    expect(c.state.model.check.error!.detail).toMatch(/^"stories260K" has no tokenizer\.json\. Found: /);
    expect(c.state.model.check.error!.action).toMatch(/"fast" tokenizer file tokenizer\.json/);

    const noWeights = demoFiles().filter((f) => !f.name.endsWith('.safetensors'));
    await c.chooseModel({
      kind: 'files',
      id: 'stories260K',
      files: [...noWeights, file('stories260K/pytorch_model.bin', 'x')],
    });
    expect(c.state.model.check.error!.detail).toMatch(/has no safetensors weights \(model\.safetensors/);
    expect(c.state.model.check.error!.action).toMatch(/PyTorch files.*safe_serialization=True/);

    await c.chooseModel({
      kind: 'files',
      id: 'my-adapter',
      files: [file('my-adapter/adapter_config.json'), file('my-adapter/adapter_model.safetensors', 'x')],
    });
    expect(c.state.model.check.error!.action).toMatch(/LoRA adapter.*import them in Adapters/);
  });

  it('a complete folder passes the check and shows its cost', async () => {
    const { c } = await makeApp();
    await c.chooseModel({ kind: 'files', id: 'stories260K', files: demoFiles() });
    expect(c.state.model.check.status).toBe('ready');
    expect(c.state.model.check.cost!.parameters).toBeGreaterThan(0);
  });

  it('a broken config.json names the file', async () => {
    const { c } = await makeApp();
    const files = demoFiles().map((f) =>
      f.name === 'config.json' ? file('stories260K/config.json', '{"model_type": "llama",') : f,
    );
    await c.chooseModel({ kind: 'files', id: 'stories260K', files });
    expect(c.state.model.check.error).toMatchObject({ title: 'This model cannot be used' });
    expect(c.state.model.check.error!.detail).toMatch(/config\.json of stories260K is not valid JSON/);
  });
});

describe('a wrong dataset file', () => {
  it('a Windows-1252 CSV or Latin-1 JSONL is refused naming the line (it used to load with "0 issues" as mojibake)', async () => {
    const { c } = await makeApp();
    await until(() => c.state.dataset.status === 'ready');
    const demo = c.state.dataset.summary;
    // "café" and "naïve" in Windows-1252: é = 0xe9, ï = 0xef.
    const cp1252 = new Uint8Array([
      ...Buffer.from('instruction,output\nWhat is it?,A caf'),
      0xe9,
      ...Buffer.from('\n'),
    ]);
    expect(await c.readDatasetFile(new File([cp1252], 'menu.csv'))).toBe(false);
    expect(c.state.dataset.refused).toMatchObject({ title: 'Not UTF-8 text' });
    expect(c.state.dataset.refused!.detail).toBe(
      'menu.csv: line 2 is not UTF-8 text (it may be Windows-1252 or Latin-1); expected UTF-8 (save the file as UTF-8).',
    );
    expect(c.state.dataset.refused!.action).toBe('The dataset loaded before (demo-qa.jsonl) is still in use.');
    const latin1 = new Uint8Array([...Buffer.from('{"text": "na'), 0xef, ...Buffer.from('ve"}\n')]);
    expect(await c.readDatasetFile(new File([latin1], 'notes.jsonl'))).toBe(false);
    expect(c.state.dataset.refused!.detail).toMatch(/^notes\.jsonl: line 1 is not UTF-8/);
    const utf16 = new Uint8Array([0xff, 0xfe, 0x61, 0]);
    expect(await c.readDatasetFile(new File([utf16], 'u16.txt'))).toBe(false);
    expect(c.state.dataset.refused!.detail).toMatch(/^u16\.txt is UTF-16 text/);
    // The demo dataset is still the one in use.
    expect(c.state.dataset.fileName).toBe('demo-qa.jsonl');
    expect(c.state.dataset.status).toBe('ready');
    expect(c.state.dataset.summary).toBe(demo);
  });

  it('a bad line past the sniffed head (found by the worker reader) is refused too, keeping the dataset loaded before', async () => {
    const engine = new FakeEngine();
    const { c } = await makeApp({ engine });
    await until(() => c.state.dataset.status === 'ready');
    const demo = c.state.dataset.summary;
    engine.failNext.loadDataset = new RemoteError({
      name: 'DatasetReadError',
      message:
        'big.jsonl: line 9000 is not UTF-8 text (it may be Windows-1252 or Latin-1); expected UTF-8 (save the file as UTF-8).',
    });
    expect(await c.readDatasetFile(new File(['{"text": "a"}\n'], 'big.jsonl'))).toBe(false);
    expect(c.state.dataset.refused).toEqual({
      title: 'Not UTF-8 text',
      detail:
        'big.jsonl: line 9000 is not UTF-8 text (it may be Windows-1252 or Latin-1); expected UTF-8 (save the file as UTF-8).',
      action: 'The dataset loaded before (demo-qa.jsonl) is still in use.',
    });
    expect(c.state.dataset).toMatchObject({ fileName: 'demo-qa.jsonl', status: 'ready', error: null });
    expect(c.state.dataset.summary).toBe(demo);
  });

  it('an empty file keeps the dataset loaded before', async () => {
    const { c } = await makeApp();
    await until(() => c.state.dataset.status === 'ready');
    expect(await c.readDatasetFile(new File(['  \n\n'], 'empty.jsonl'))).toBe(false);
    expect(c.state.dataset.refused).toMatchObject({ title: 'Empty file', detail: 'empty.jsonl holds no text.' });
    expect(c.state.dataset).toMatchObject({ fileName: 'demo-qa.jsonl', status: 'ready' });
    // A good file clears the refusal.
    expect(await c.readDatasetFile(new File(['{"text": "a"}\n{"text": "b"}\n'], 'ok.jsonl'))).toBe(true);
    expect(c.state.dataset.refused).toBeNull();
  });

  it('binary, or with bad lines: the file and the line numbers are named', async () => {
    const { c } = await makeApp();
    expect(await c.readDatasetFile(new File([new Uint8Array([0x50, 0x4b, 3, 4, 0, 0])], 'data.zip'))).toBe(false);
    expect(c.state.dataset.refused).toMatchObject({ title: 'Not a text file' });
    expect(c.state.dataset.refused!.detail).toMatch(/^data\.zip looks binary/);
    expect(await c.readDatasetFile(new File(['{"text": "a"}\n{"text": \n{"text": "b"}\n'], 'mine.jsonl'))).toBe(true);
    expect(c.state.dataset.summary!.issues).toEqual([{ line: 2, message: 'not valid JSON' }]);
  });
});

describe('a dataset chosen while the one before is still read', () => {
  it('a file uploaded while the demo set is fetched stays the dataset when the fetch ends', async () => {
    // The demo dataset's response waits until released.
    let release = () => {};
    let hold = false;
    let waiting = false;
    const served = fakeFetch();
    const fetchFn = (async (input: RequestInfo | URL, init?: RequestInit) => {
      const res = await served(input, init);
      if (hold && String(input).endsWith('/demo-qa.jsonl')) {
        waiting = true;
        await new Promise<void>((r) => (release = r));
      }
      return res;
    }) as typeof fetch;
    const { c } = await makeApp({ fetch: fetchFn });
    await until(() => c.state.dataset.status === 'ready');
    hold = true;
    const demo = c.useDemoDataset();
    await until(() => waiting, 5000, "the demo dataset's fetch");
    hold = false;
    expect(await c.readDatasetFile(new File(['{"text": "a"}\n{"text": "b"}\n'], 'mine.jsonl'))).toBe(true);
    release();
    expect(await demo).toBe(false);
    expect(c.state.dataset).toMatchObject({ fileName: 'mine.jsonl', status: 'ready', error: null });
    expect(c.state.dataset.summary!.fileName).toBe('mine.jsonl');
  });

  it('a file uploaded while the app starts is not replaced by the demo set, even when read after it', async () => {
    const { c } = await makeApp({ autoDemo: false });
    // The upload's first bytes are read only when released.
    let release = () => {};
    const held = new Promise<void>((r) => (release = r));
    class SlowFile extends File {
      override slice(...args: Parameters<File['slice']>): Blob {
        const part = super.slice(...args);
        return Object.assign(part, { arrayBuffer: () => held.then(() => Blob.prototype.arrayBuffer.call(part)) });
      }
    }
    const upload = c.readDatasetFile(new SlowFile(['{"text": "a"}\n{"text": "b"}\n'], 'mine.jsonl'));
    await c.loadDemo(); // the demo model, and the demo set as the default
    release();
    expect(await upload).toBe(true);
    expect(c.state.dataset).toMatchObject({ fileName: 'mine.jsonl', status: 'ready', error: null });
  });

  it("a file that fails in the worker after another was chosen and read: the later file's summary stays", async () => {
    const engine = new FakeEngine();
    const { c } = await makeApp({ engine });
    await until(() => c.state.dataset.status === 'ready');
    // The first file's text reaches the (fake) worker's reader only when released; it has no records.
    let release = () => {};
    const held = new Promise<void>((r) => (release = r));
    class SlowFile extends File {
      override async text(): Promise<string> {
        await held;
        return super.text();
      }
    }
    const first = c.readDatasetFile(new SlowFile(['{"other": 1}\n'], 'first.jsonl'));
    await until(() => engine.calls.includes('loadDataset:first.jsonl'), 5000, "the first file's read");
    expect(await c.readDatasetFile(new File(['{"text": "a"}\n{"text": "b"}\n'], 'second.jsonl'))).toBe(true);
    release();
    expect(await first).toBe(false);
    expect(c.state.dataset).toMatchObject({ fileName: 'second.jsonl', status: 'ready', error: null, refused: null });
    expect(c.state.dataset.summary!.fileName).toBe('second.jsonl');
  });
});

describe('two tabs on one run', () => {
  it("without Web Locks: a tab whose lease was taken over stops, keeps its adapter, and does not touch the other tab's run", async () => {
    const engine = new FakeEngine();
    engine.stepMs = 2;
    const a = await makeApp({ engine, tabId: 'A', webLocks: false });
    a.c.setTrain({ steps: 200, checkpointEvery: 2 });
    const done = a.c.startTraining();
    await engine.reached(5);
    const runId = a.c.state.run.runId!;
    // Tab A froze past its lease; tab B (same database) takes the run over.
    const tabB = new RunStore(a.c.ctx.stores!.runs.db, 'B', () => Date.now() + LEASE_MS + 1);
    expect(await tabB.acquire(runId)).not.toBeNull();
    await done;
    const s = a.c.state;
    expect(s.notices.some((n) => n.level === 'error' && n.title === 'Another tab took over this run')).toBe(true);
    expect(s.run.status).toBe('done');
    expect(s.library.adapters).toHaveLength(1); // A's adapter is kept...
    expect(s.library.adapters[0]).toMatchObject({ stoppedEarly: true, runId });
    expect(s.library.adapters[0]!.steps).toBeLessThan(200);
    const run = (await tabB.get(runId))!; // ...and B's run is as B left it
    expect(run).toMatchObject({ status: 'running', adapterId: null, checkpointStep: 4, lease: { owner: 'B' } });
    expect((await tabB.checkpoint(runId))!.step).toBe(4);
    expect(s.resumable).toEqual([]);
    // Nor can A take it back while B's lease is live (no Web Lock proves B is gone).
    await a.c.resumeRun(runId);
    expect(a.c.state.notices.at(-1)).toMatchObject({ title: 'Run is open in another tab' });
    expect((await tabB.get(runId))!.lease!.owner).toBe('B');
  });
});

describe('an adapter for another base model', () => {
  it('import warns, naming both models; compare and evaluation say why it does not fit', async () => {
    const { c, engine } = await makeApp();
    const files = engine.adapterFor({ ...DEFAULT_LORA, target_modules: ['q_proj', 'v_proj'] }, 1, {
      hidden: 32,
      baseModel: 'org/other-model',
    });
    const rec = await c.importAdapter([
      { name: 'adapter_config.json', bytes: async () => new TextEncoder().encode(files.adapterConfig) },
      { name: 'adapter_model.safetensors', bytes: async () => files.adapterModel },
    ]);
    expect(rec).toMatchObject({ baseModel: 'org/other-model', origin: 'imported' });
    const n = c.state.notices.at(-1)!;
    expect(n).toMatchObject({ level: 'warning', title: 'Adapter imported, for another base model' });
    expect(n.detail).toMatch(/trained on org\/other-model, but the loaded model is tabtune\/stories260K/);
    expect(n.action).toMatch(/Load org\/other-model in Model/);
    c.toggleCompareAdapter(rec!.id, true);
    c.setPrompts('What did the cat watch?');
    await c.runCompare();
    const row = c.state.compare.outputs[0]!;
    expect(row.base).toMatchObject({ status: 'done' });
    expect(row[rec!.id]).toMatchObject({ status: 'error' });
    expect(row[rec!.id]!.error).toMatch(/should have shape \[8, 16\].*got \[8, 32\].*trained for another base model/);
    await c.runEvaluation();
    expect(c.state.compare.evals.base).toMatchObject({ status: 'done' });
    expect(c.state.compare.evals[rec!.id]!.error).toMatch(/trained for another base model/);
  });

  it('an adapter for the same model under another id (org/Name vs a local folder Name) imports quietly', async () => {
    const { c, engine } = await makeApp();
    const files = engine.adapterFor({ ...DEFAULT_LORA, target_modules: ['q_proj'] }, 1, {
      baseModel: '/home/me/models/stories260K/',
    });
    await c.importAdapter([
      { name: 'adapter_config.json', bytes: async () => new TextEncoder().encode(files.adapterConfig) },
      { name: 'adapter_model.safetensors', bytes: async () => files.adapterModel },
    ]);
    expect(c.state.notices.at(-1)).toMatchObject({ level: 'info', title: 'Adapter imported' });
  });
});
