/**
 * The browser storage layer on fake-indexeddb: schema, adapter library, runs with leases and
 * checkpoints (two "tabs" on one database), the atomic finish, quota errors, PEFT file checks.
 */
import 'fake-indexeddb/auto';
import { unzipSync } from 'fflate';
import { IDBFactory } from 'fake-indexeddb';
import { beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_LORA, DEFAULT_TRAIN } from '../../src/engine/defaults';
import { AdapterLibrary, type NewAdapter } from '../../src/store/adapters';
import { DB_VERSION, openTabtuneDb } from '../../src/store/db';
import { StorageFullError, guardQuota, isQuotaError } from '../../src/store/errors';
import { PeftFileError, collectPeftFiles, inspectPeft, zipPeft } from '../../src/store/peft-files';
import { LEASE_MS, RunLeaseLostError, RunStore } from '../../src/store/runs';
import { exportIa3 } from '../../src/lora/ia3';
import { exportVirtual } from '../../src/lora/virtual';
import { FakeEngine } from '../ui/fake-engine';

const engine = new FakeEngine();
await engine.loadModel({ kind: 'url', id: 'tabtune/stories260K', baseUrl: 'http://x/' });
const FILES = engine.adapterFor({ ...DEFAULT_LORA, target_modules: ['q_proj', 'v_proj'] }, 3);

const META: NewAdapter = {
  name: 'first',
  baseModel: 'tabtune/stories260K',
  baseSource: { kind: 'demo', id: 'tabtune/stories260K', path: 'models/stories260K/' },
  train: DEFAULT_TRAIN,
  datasetName: 'demo-qa.jsonl',
  finalLoss: 1.25,
  finalValLoss: 1.5,
  steps: 10,
  origin: 'trained',
  runId: null,
  stoppedEarly: false,
  history: [{ step: 1, loss: 2, valLoss: null, lr: 0.01 }],
};

const NEW_RUN = {
  name: 'run',
  model: { kind: 'demo' as const, id: 'tabtune/stories260K', path: 'models/stories260K/' },
  dataset: { fileName: 'd.jsonl', content: '{"text":"hi"}', format: 'auto' as const },
  lora: DEFAULT_LORA,
  train: DEFAULT_TRAIN,
};

beforeEach(() => {
  globalThis.indexedDB = new IDBFactory();
});

describe('database', () => {
  it('creates every store at schema version 1', async () => {
    const db = await openTabtuneDb();
    expect(db.version).toBe(DB_VERSION);
    expect([...db.objectStoreNames].sort()).toEqual(['adapterFiles', 'adapters', 'checkpoints', 'models', 'runs']);
    db.close();
  });
});

describe('adapter library', () => {
  it('saves, lists newest first, renames, reads files back, deletes both records', async () => {
    const lib = new AdapterLibrary(await openTabtuneDb());
    const a = await lib.save({ ...META, createdAt: '2025-01-01T00:00:00Z' }, FILES);
    const b = await lib.save({ ...META, name: 'second', createdAt: '2025-02-01T00:00:00Z' }, FILES);
    expect((await lib.list()).map((x) => x.name)).toEqual(['second', 'first']);
    expect(a.config).toMatchObject({ r: 8, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'] });
    expect(a.sizeBytes).toBe(FILES.adapterModel.byteLength + new TextEncoder().encode(FILES.adapterConfig).byteLength);
    await lib.rename(a.id, '  renamed ');
    expect((await lib.get(a.id))!.name).toBe('renamed');
    await expect(lib.rename(a.id, '   ')).rejects.toThrow(/cannot be empty/);
    await expect(lib.rename(a.id, ' Second')).rejects.toThrow(
      'An adapter named "Second" is already in the library; choose another name.',
    );
    expect((await lib.get(a.id))!.name).toBe('renamed');
    await lib.rename(a.id, 'Renamed'); // its own name in another case is fine
    expect((await lib.get(a.id))!.name).toBe('Renamed');
    const files = await lib.files(b.id);
    expect(files.adapterConfig).toBe(FILES.adapterConfig);
    expect(Buffer.from(files.adapterModel).equals(Buffer.from(FILES.adapterModel))).toBe(true);
    await lib.remove(b.id);
    expect((await lib.list()).map((x) => x.id)).toEqual([a.id]);
    await expect(lib.files(b.id)).rejects.toThrow(/missing/);
  });

  it('imports PEFT files made elsewhere, refusing files that are not a LoRA adapter', async () => {
    const lib = new AdapterLibrary(await openTabtuneDb());
    const rec = await lib.import(FILES, 'from python');
    expect(rec).toMatchObject({
      origin: 'imported',
      baseModel: 'tabtune/stories260K',
      name: 'from python',
      finalLoss: null,
    });
    await expect(lib.import({ ...FILES, adapterConfig: '{"peft_type": "IA3"}' }, 'x')).rejects.toThrow(/IA3/);
    await expect(lib.import({ ...FILES, adapterModel: new Uint8Array([1, 2, 3]) }, 'x')).rejects.toThrow(
      /not a valid safetensors/,
    );
    expect(await lib.list()).toHaveLength(1);
  });

  it('keeps a LoftQ adapter with its backbone recipe, and says so in its record', async () => {
    const lib = new AdapterLibrary(await openTabtuneDb());
    expect(FILES.adapterConfig).toContain('"loftq_config": {}');
    const adapterConfig = FILES.adapterConfig.replace(
      '"loftq_config": {}',
      '"loftq_config": {\n    "loftq_bits": 4,\n    "loftq_iter": 2\n  }',
    );
    const loftqBackbone = Uint8Array.from([1, 2, 3, 4, 5]);
    const rec = await lib.save(META, { ...FILES, adapterConfig, loftqBackbone });
    expect(rec.config.loftq).toEqual({ loftq_iter: 2, backbone: true });
    expect(rec.sizeBytes).toBe(
      FILES.adapterModel.byteLength + new TextEncoder().encode(adapterConfig).byteLength + loftqBackbone.byteLength,
    );
    expect((await lib.files(rec.id)).loftqBackbone).toEqual(loftqBackbone);
    // PEFT files of a LoftQ adapter made elsewhere: marked, without a backbone
    const imported = await lib.import({ ...FILES, adapterConfig }, 'peft loftq');
    expect(imported.config.loftq).toEqual({ loftq_iter: 2, backbone: false });
    expect((await lib.files(imported.id)).loftqBackbone).toBeUndefined();
    expect((await lib.save(META, FILES)).config.loftq).toBeUndefined();
  });
});

describe('the methods beyond LoRA in the library', () => {
  it('imports (IA)³, prompt and prefix adapters saved in PEFT format, with their method and options', async () => {
    const lib = new AdapterLibrary(await openTabtuneDb());
    const baseModel = 'tabtune/stories260K';
    const ia3 = exportIa3({
      config: {
        target_modules: ['k_proj', 'down_proj'],
        feedforward_modules: ['down_proj'],
        fan_in_fan_out: false,
        init_ia3_weights: true,
      },
      baseModel,
      vectors: [
        { path: 'model.layers.0.self_attn.k_proj', input: false, l: new Float32Array(16).fill(1.5) },
        { path: 'model.layers.0.mlp.down_proj', input: true, l: new Float32Array(40).fill(0.5) },
      ],
      fanInFanOut: false,
    });
    const shape = { num_layers: 2, token_dim: 16, num_attention_heads: 2 };
    const prompt = exportVirtual({
      config: { ...shape, num_virtual_tokens: 3, prompt_tuning_init: 'RANDOM', prompt_tuning_init_text: null, tokenizer_name_or_path: null }, // prettier-ignore
      kind: 'prompt',
      baseModel,
      table: new Float32Array(3 * 16).fill(0.25),
    });
    const prefix = exportVirtual({
      config: { ...shape, num_virtual_tokens: 2, prefix_projection: false, encoder_hidden_size: 16 },
      kind: 'prefix',
      baseModel,
      table: new Float32Array(2 * 2 * 2 * 16).fill(0.25),
    });
    expect((await lib.import(ia3, 'ia3')).config).toMatchObject({ method: 'ia3' });
    expect((await lib.import(prompt, 'prompt')).config).toMatchObject({
      method: 'prompt-tuning',
      num_virtual_tokens: 3,
    });
    expect((await lib.import(prefix, 'prefix')).config).toMatchObject({
      method: 'prefix-tuning',
      num_virtual_tokens: 2,
    });
    const listed = await lib.list();
    expect(listed.map((r) => [r.name, r.baseModel])).toEqual(
      expect.arrayContaining([
        ['ia3', baseModel],
        ['prompt', baseModel],
        ['prefix', baseModel],
      ]),
    );
  });
});

describe('runs, leases and checkpoints', () => {
  it('lets the owning tab write checkpoints and keeps another tab out until the lease expires', async () => {
    const db = await openTabtuneDb();
    let now = 1_000_000;
    const tabA = new RunStore(db, 'A', () => now);
    const tabB = new RunStore(db, 'B', () => now);
    const run = await tabA.create(NEW_RUN);
    await tabA.saveCheckpoint(run.id, 4, new Uint8Array([4]), [{ step: 4, loss: 1, valLoss: null, lr: 0.1 }]);
    expect((await tabA.get(run.id))!.checkpointStep).toBe(4);
    // B cannot take it or write to it while A's lease is live.
    expect(await tabB.acquire(run.id)).toBeNull();
    await expect(tabB.saveCheckpoint(run.id, 5, new Uint8Array([5]), [])).rejects.toBeInstanceOf(RunLeaseLostError);
    expect((await tabA.checkpoint(run.id))!.blob).toEqual(new Uint8Array([4]));
    expect(await tabB.resumable()).toEqual([]);
    // A goes quiet; after the lease runs out B may resume it, and then A is locked out.
    now += LEASE_MS + 1;
    expect((await tabB.resumable()).map((r) => r.id)).toEqual([run.id]);
    expect(await tabB.acquire(run.id)).not.toBeNull();
    await expect(tabA.saveCheckpoint(run.id, 6, new Uint8Array([6]), [])).rejects.toBeInstanceOf(RunLeaseLostError);
    await expect(tabA.renew(run.id)).rejects.toBeInstanceOf(RunLeaseLostError);
    await tabB.saveCheckpoint(run.id, 6, new Uint8Array([6]), []);
    expect((await tabB.checkpoint(run.id))!.step).toBe(6);
  });

  it('a tab holding the Web Lock takes a run even from an unexpired lease (the old tab is gone)', async () => {
    const db = await openTabtuneDb();
    const tabA = new RunStore(db, 'A');
    const tabB = new RunStore(db, 'B');
    const run = await tabA.create(NEW_RUN);
    expect(await tabB.acquire(run.id)).toBeNull();
    expect((await tabB.acquire(run.id, { force: true }))!.lease!.owner).toBe('B');
  });

  it('finishing saves the adapter, marks the run finished and drops its checkpoint in one step', async () => {
    const db = await openTabtuneDb();
    const runs = new RunStore(db, 'A');
    const run = await runs.create(NEW_RUN);
    await runs.saveCheckpoint(run.id, 2, new Uint8Array([2]), []);
    const rec = await runs.finish(run.id, META, FILES, { status: 'finished', step: 10, history: META.history });
    const after = (await runs.get(run.id))!;
    expect(after).toMatchObject({ status: 'finished', adapterId: rec.id, checkpointStep: null, lease: null, step: 10 });
    expect(await runs.checkpoint(run.id)).toBeUndefined();
    expect(rec.runId).toBe(run.id);
    expect((await new AdapterLibrary(db).list()).map((a) => a.id)).toEqual([rec.id]);
    expect(await runs.resumable()).toEqual([]);
  });

  it("a tab that lost the run still saves its adapter but leaves the new owner's run and checkpoint alone", async () => {
    const db = await openTabtuneDb();
    let now = 1_000_000;
    const tabA = new RunStore(db, 'A', () => now);
    const tabB = new RunStore(db, 'B', () => now);
    const run = await tabA.create(NEW_RUN);
    await tabA.saveCheckpoint(run.id, 4, new Uint8Array([4]), []);
    now += LEASE_MS + 1; // A froze; B took the run over and trains on
    expect(await tabB.acquire(run.id)).not.toBeNull();
    await tabB.saveCheckpoint(run.id, 6, new Uint8Array([6]), [{ step: 6, loss: 1, valLoss: null, lr: 0.1 }]);
    // A wakes up and finishes: its adapter is kept, B's run is not touched.
    const rec = await tabA.finish(run.id, META, FILES, { status: 'stopped', step: 5, history: [] });
    expect((await new AdapterLibrary(db).list()).map((a) => a.id)).toEqual([rec.id]);
    expect(rec.runId).toBe(run.id);
    const after = (await tabB.get(run.id))!;
    expect(after).toMatchObject({
      status: 'running',
      adapterId: null,
      checkpointStep: 6,
      step: 6,
      lease: { owner: 'B' },
    });
    expect((await tabB.checkpoint(run.id))!.blob).toEqual(new Uint8Array([6]));
    // B finishes normally afterwards.
    const recB = await tabB.finish(run.id, { ...META, name: 'b' }, FILES, {
      status: 'finished',
      step: 10,
      history: [],
    });
    expect((await tabB.get(run.id))!).toMatchObject({ status: 'finished', adapterId: recB.id, lease: null });
  });

  it('a failed run stays resumable with its error; discarding removes it and its checkpoint', async () => {
    const db = await openTabtuneDb();
    const runs = new RunStore(db, 'A');
    const run = await runs.create(NEW_RUN);
    await runs.saveCheckpoint(run.id, 2, new Uint8Array([2]), []);
    await runs.release(run.id, 'interrupted', 'The GPU device was lost');
    const [r] = await new RunStore(db, 'B').resumable();
    expect(r).toMatchObject({
      id: run.id,
      status: 'interrupted',
      error: 'The GPU device was lost',
      lease: null,
      checkpointStep: 2,
    });
    await runs.discard(run.id);
    expect(await runs.get(run.id)).toBeUndefined();
    expect(await runs.checkpoint(run.id)).toBeUndefined();
  });
});

describe('quota errors', () => {
  it('turn into a StorageFullError that says nothing saved was lost and what to do', async () => {
    const quota = Object.assign(new Error('quota'), { name: 'QuotaExceededError' });
    expect(isQuotaError(quota)).toBe(true);
    expect(isQuotaError({ name: 'AbortError', inner: { name: 'QuotaExceededError' } })).toBe(true);
    const err = await guardQuota('the checkpoint at step 3', async () => {
      throw quota;
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageFullError);
    expect((err as Error).message).toMatch(
      /checkpoint at step 3 could not be saved.*Nothing saved before was lost.*deleting adapters/s,
    );
    await expect(guardQuota('x', async () => Promise.reject(new Error('other')))).rejects.toThrow('other');
  });
});

describe('PEFT files', () => {
  it('inspects an adapter: config summary, modules, size', () => {
    const info = inspectPeft(FILES);
    expect(info).toMatchObject({ baseModel: 'tabtune/stories260K', modules: 4, tensors: 8 });
    expect(info.config).toEqual({
      method: 'lora',
      r: 8,
      lora_alpha: 16,
      lora_dropout: 0.05,
      target_modules: ['q_proj', 'v_proj'],
      use_rslora: false,
    });
  });

  it('finds the two files among what was chosen, or inside a zip, with clear errors otherwise', () => {
    const enc = new TextEncoder();
    const named = [
      { name: 'x/adapter_model.safetensors', bytes: FILES.adapterModel },
      { name: 'x/adapter_config.json', bytes: enc.encode(FILES.adapterConfig) },
    ];
    expect(collectPeftFiles(named).adapterConfig).toBe(FILES.adapterConfig);
    const zip = zipPeft(FILES, '# readme');
    expect(Object.keys(unzipSync(zip)).sort()).toEqual([
      'README.md',
      'adapter_config.json',
      'adapter_model.safetensors',
    ]);
    const fromZip = collectPeftFiles([{ name: 'a.zip', bytes: zip }]);
    expect(Buffer.from(fromZip.adapterModel).equals(Buffer.from(FILES.adapterModel))).toBe(true);
    expect(() => collectPeftFiles([named[0]!])).toThrow(/missing adapter_config\.json/);
    expect(() => collectPeftFiles([{ name: 'adapter_model.bin', bytes: new Uint8Array(4) }, named[1]!])).toThrow(
      /safe_serialization=True/,
    );
    expect(() => collectPeftFiles([{ name: 'bad.zip', bytes: new Uint8Array([1, 2, 3]) }])).toThrow(PeftFileError);
  });

  it('refuses a safetensors file without LoRA tensors, naming the expected key form', async () => {
    const { writeSafetensors } = await import('../../src/model/safetensors');
    const other = writeSafetensors(
      [{ name: 'model.embed_tokens.weight', dtype: 'F32', shape: [2], data: new Float32Array(2) }],
      { format: 'pt' },
    );
    expect(() => inspectPeft({ adapterConfig: FILES.adapterConfig, adapterModel: other })).toThrow(
      /no LoRA tensors.*base_model\.model\..*lora_A\.weight/,
    );
  });
});
