/**
 * The app's controller in Node, on the fake engine and fake-indexeddb: start-up with the shipped
 * demo, the cost check before a download, training to a saved adapter, pause/stop, resume after a
 * "crash", two tabs on one run, storage failures, the library and compare.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { unzipSync } from 'fflate';
import { DEMO_MODEL_ID } from '../../src/ui/catalog';
import { zipPeft } from '../../src/store/peft-files';
import type { AppController } from '../../src/ui/controller';
import { FakeEngine } from './fake-engine';
import { FakeLocks, PAGE, fakeFetch, freshIndexedDb, makeApp, until } from './helpers';
import { describeError } from '../../src/ui/errors';

beforeEach(() => freshIndexedDb());

describe('start-up', () => {
  it('loads the shipped demo model and dataset and applies the demo presets', async () => {
    const { c, engine } = await makeApp();
    const s = c.state;
    expect(s.gpu.status).toBe('ready');
    expect(s.model.info?.id).toBe(DEMO_MODEL_ID);
    expect(engine.calls).toContain(`loadModel:${DEMO_MODEL_ID}`);
    // the cost came from the real shipped config.json
    expect(s.model.check.cost?.parameters).toBe(260_032);
    expect(s.model.check.cost?.linearModules).toEqual([
      'q_proj',
      'k_proj',
      'v_proj',
      'o_proj',
      'gate_proj',
      'up_proj',
      'down_proj',
    ]);
    expect(s.dataset.fileName).toBe('demo-qa.jsonl');
    expect(s.dataset.summary?.records).toBe(24);
    expect(s.train).toMatchObject({ lr: 0.01, steps: 16, batch: 8, maxLen: 64, scheduler: 'cosine' });
    expect(s.lora.target_modules).toBe('all-linear');
    expect(s.estimate.value?.trainableParams).toBeGreaterThan(0);
    expect(c.startBlockers()).toEqual([]);
    expect(s.compare.prompts).toBe("What was the little girl's name?\nWhat did Lily see one day?");
    expect(s.compare.sampling.chat).toBe(true);
  });

  it('without WebGPU says so, loads nothing, and explains why training cannot start', async () => {
    const engine = new FakeEngine();
    engine.noWebGpu = true;
    const { c } = await makeApp({ engine });
    expect(c.state.gpu.status).toBe('unavailable');
    expect(c.state.gpu.error?.title).toBe('WebGPU is not available');
    expect(c.state.gpu.error?.action).toMatch(/Chrome or Edge/);
    expect(engine.calls.some((x) => x.startsWith('loadModel'))).toBe(false);
    expect(c.startBlockers()).toContain('WebGPU is not available in this browser.');
    // When the runtime's message already names the browsers to use, the advice is not repeated.
    const own = describeError(
      Object.assign(new Error('This browser has no WebGPU (navigator.gpu is missing). Use a recent Chrome or Edge.'), {
        name: 'WebGpuUnavailableError',
      }),
    );
    expect(own.detail).toMatch(/Chrome or Edge/);
    expect(own.action).toBeUndefined();
    const div = describeError(
      Object.assign(new Error('Training diverged at step 2: the training loss is NaN. …'), {
        name: 'TrainingDivergedError',
      }),
      'Training',
    );
    expect(div.title).toBe('Training diverged');
  });

  it('without IndexedDB still works and warns that nothing is kept', async () => {
    const { c } = await makeApp({ noDb: true });
    expect(c.state.storageOk).toBe(false);
    expect(c.state.notices[0]?.action).toMatch(/not kept/);
    c.setTrain({ steps: 3 });
    await c.startTraining();
    expect(c.state.run.status).toBe('done');
    expect(c.state.run.unsaved?.adapterModel.byteLength).toBeGreaterThan(0); // still downloadable
  });
});

describe('model check before download', () => {
  const SMOL = `https://huggingface.co/HuggingFaceTB/SmolLM2-135M/resolve/main/config.json`;
  const SMOL_CONFIG = JSON.stringify({
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: 576,
    intermediate_size: 1536,
    num_attention_heads: 9,
    num_key_value_heads: 3,
    num_hidden_layers: 30,
    vocab_size: 49152,
    max_position_embeddings: 8192,
    rms_norm_eps: 1e-5,
    rope_theta: 100000,
    tie_word_embeddings: true,
    torch_dtype: 'bfloat16',
    bos_token_id: 0,
    eos_token_id: 0,
  });

  it('shows parameters, download size and training memory from config.json alone', async () => {
    const { c, engine } = await makeApp({ fetch: fakeFetch({ [SMOL]: SMOL_CONFIG }) });
    await c.chooseModel({ kind: 'hub', id: 'HuggingFaceTB/SmolLM2-135M' });
    const { check } = c.state.model;
    expect(check.status).toBe('ready');
    expect(check.cost!.parameters).toBeGreaterThan(134e6);
    expect(check.cost!.parameters).toBeLessThan(135e6);
    expect(check.cost!.downloadBytes).toBe(check.cost!.parameters * 2); // bf16, tree listing unavailable
    expect(check.cost!.blockers).toEqual([]);
    // PEFT default targets q_proj, v_proj at r 8: 30 layers x r(576+576 + 576+192)
    expect(check.cost!.trainableParams).toBe(30 * 8 * (576 + 576 + 576 + 192));
    expect(check.cached).toBe(false);
    expect(engine.calls.filter((x) => x.includes('SmolLM2'))).toEqual([]); // nothing downloaded yet
  });

  it('long sequences: the memory warning offers activation checkpointing, and turning it on lowers the estimate', async () => {
    const { c } = await makeApp({ fetch: fakeFetch({ [SMOL]: SMOL_CONFIG }) });
    await c.chooseModel({ kind: 'hub', id: 'HuggingFaceTB/SmolLM2-135M' });
    c.setTrain({ batch: 8, maxLen: 2048, activationCheckpointing: false });
    const before = c.state.model.check.cost!;
    expect(before.totalBytes).toBeGreaterThan(4 * 2 ** 30);
    const warning = before.warnings.find((w) => /integrated GPUs/.test(w))!;
    const offered = Number(/activation checkpointing \(about ([\d.]+) GiB\)/.exec(warning)![1]);
    c.setTrain({ activationCheckpointing: true });
    const after = c.state.model.check.cost!;
    // 30 layers' saved activations become one layer's plus each layer's input.
    expect(after.activationBytes).toBeLessThan(before.activationBytes / 4);
    expect(after.loraBytes).toBe(before.loraBytes);
    expect(Math.abs(after.totalBytes / 2 ** 30 - offered)).toBeLessThan(0.01);
    expect(after.warnings.some((w) => /activation checkpointing/.test(w))).toBe(false);
  });

  it("keeps the user's settings across a model change, says what had to change, and shows the card's numbers for them", async () => {
    const { c, engine } = await makeApp({ fetch: fakeFetch({ [SMOL]: SMOL_CONFIG }) });
    await until(() => c.state.model.info !== null);
    c.setLora({ r: 16, lora_alpha: 7, target_modules: ['q_proj', 'k_proj', 'fused_qkv'] });
    c.setTrain({ lr: 0.003, maxLen: 256, steps: 77 });
    await c.chooseModel({ kind: 'hub', id: 'HuggingFaceTB/SmolLM2-135M' });
    // Before the download: r 16 on SmolLM2's defaults (fused_qkv does not exist there), not the preset's r 8.
    expect(c.state.model.check.cost!.trainableParams).toBe(30 * 16 * (576 + 576 + 576 + 192));
    expect(await c.loadModel()).toBe(true);
    expect(engine.calls).toContain('loadModel:HuggingFaceTB/SmolLM2-135M');
    expect(c.state.lora).toMatchObject({ r: 16, lora_alpha: 7, target_modules: ['q_proj', 'v_proj'] });
    expect(c.state.train).toMatchObject({ lr: 0.003, steps: 77, maxLen: 128 });
    const note = c.state.notices.at(-1)!;
    expect(note.title).toBe('Your settings are kept for HuggingFaceTB/SmolLM2-135M');
    expect(note.detail).toMatch(
      /has no fused_qkv modules .*targets are now q_proj, v_proj\..*Max length 256 is past .*128 positions: now 128\./,
    );
  });

  it('keeps the settings across a reload', async () => {
    const storage = new Map<string, string>();
    const a = await makeApp({ settingsStorage: storage });
    await until(() => a.c.state.model.info !== null);
    a.c.setLora({ r: 4, lora_dropout: 0.2 });
    a.c.setTrain({ lr: 0.0005, batch: 2 });
    const b = await makeApp({ settingsStorage: storage });
    await until(() => b.c.state.model.info !== null);
    expect(b.c.state.lora).toMatchObject({ r: 4, lora_dropout: 0.2 });
    expect(b.c.state.train).toMatchObject({ lr: 0.0005, batch: 2 });
    // A damaged entry is ignored.
    storage.set('tabtune-settings', '{"lora": {"r": "many"}, "train": 5');
    const d = await makeApp({ settingsStorage: storage });
    await until(() => d.c.state.model.info !== null);
    expect(d.c.state.lora.r).toBe(8);
  });

  it('a model with a shorter context than the default max length starts within it', async () => {
    const { c, engine } = await makeApp({ fetch: fakeFetch({ [SMOL]: SMOL_CONFIG }) });
    await c.chooseModel({ kind: 'hub', id: 'HuggingFaceTB/SmolLM2-135M' });
    expect(await c.loadModel()).toBe(true);
    const positions = c.state.model.info!.maxPositions;
    expect(positions).toBe(128); // the fake engine's model
    expect(c.state.train.maxLen).toBe(positions);
    expect(engine.calls).toContain('loadModel:HuggingFaceTB/SmolLM2-135M');
  });

  it('refuses a model whose largest tensor does not fit this GPU', async () => {
    const engine = new FakeEngine();
    const gpuInfo = engine.gpuInfo.bind(engine);
    engine.gpuInfo = async () => ({ ...(await gpuInfo()), maxBufferSize: 32 * 2 ** 20 });
    const { c } = await makeApp({ engine, fetch: fakeFetch({ [SMOL]: SMOL_CONFIG }) });
    await c.chooseModel({ kind: 'hub', id: 'HuggingFaceTB/SmolLM2-135M' });
    expect(c.state.model.check.cost!.blockers[0]).toMatch(
      /model\.embed_tokens\.weight.*bigger than this GPU's largest buffer/,
    );
    expect(await c.loadModel()).toBe(false);
  });

  it('a model that does not fit in 16 bits is offered 4-bit NF4 frozen weights, which load in 4 bits', async () => {
    const LLAMA3B = 'https://huggingface.co/meta-llama/Llama-3.2-3B/resolve/main/config.json';
    const json = readFileSync(join(import.meta.dirname, '..', '..', 'bench', 'configs', 'llama-3.2-3b.json'), 'utf8');
    const { c, engine } = await makeApp({ fetch: fakeFetch({ [LLAMA3B]: json }) });
    await c.chooseModel({ kind: 'hub', id: 'meta-llama/Llama-3.2-3B' });
    const sixteen = c.state.model.check.cost!;
    expect(sixteen.quantize).toBeNull();
    expect(sixteen.totalBytes).toBeGreaterThan(6 * 2 ** 30);
    // 3.2B weights: 6 GiB in bf16, about 2.2 GiB with 4-bit linear weights (the embedding stays bf16).
    expect(sixteen.weightBytes).toBeGreaterThan(5.9 * 2 ** 30);
    expect(sixteen.nf4Offer!.weightBytes).toBeLessThan(2.4 * 2 ** 30);
    expect(sixteen.totalBytes - sixteen.nf4Offer!.totalBytes).toBe(sixteen.weightBytes - sixteen.nf4Offer!.weightBytes);
    expect(sixteen.warnings.join(' ')).toMatch(/use 4-bit NF4 frozen weights \(about [\d.]+ GiB\)/);
    expect(await c.setFrozen({ quantize: 'nf4' })).toBe(false); // nothing loaded to reload yet
    const four = c.state.model.check.cost!;
    expect(four).toMatchObject({ quantize: 'nf4', nf4Offer: null, weightBytes: sixteen.nf4Offer!.weightBytes });
    expect(await c.loadModel()).toBe(true);
    expect(engine.lastFrozen).toEqual({ quantize: 'nf4', doubleQuant: true });
    expect(c.state.model.info!.quantization?.format).toBe('nf4');
  });

  it('a model id that does not exist gives a clear error', async () => {
    const { c } = await makeApp();
    await c.chooseModel({ kind: 'hub', id: 'nobody/nothing' });
    expect(c.state.model.check.status).toBe('error');
    expect(c.state.model.check.error?.title).toBe('This model cannot be used');
    expect(c.state.model.check.error?.detail).toMatch(/config\.json/);
  });
});

describe('settings: frozen weights', () => {
  it('switching a loaded model to 4-bit NF4 (or back) loads it again that way and keeps the settings', async () => {
    const { c, engine } = await makeApp();
    c.setLora({ r: 4 });
    const loads = () => engine.calls.filter((x) => x.startsWith('loadModel')).length;
    const before = loads();
    expect(await c.setFrozen({ quantize: 'nf4' })).toBe(true);
    expect(loads()).toBe(before + 1);
    expect(engine.lastFrozen).toEqual({ quantize: 'nf4', doubleQuant: true });
    expect(c.state.model.info!.quantization).toMatchObject({ format: 'nf4', doubleQuant: true });
    expect(c.state.lora.r).toBe(4);
    expect(c.state.dataset.summary?.records).toBe(24);
    await until(() => c.state.estimate.status === 'ready', 2000, 'the estimate');
    expect(c.state.estimate.value!.frozenChoices.map((x) => x.quantize)).toEqual([null, 'nf4']);
    expect(await c.setFrozen({ quantize: 'nf4' })).toBe(false); // already so: no reload
    expect(await c.setFrozen({ doubleQuant: false })).toBe(true);
    expect(engine.lastFrozen).toEqual({ quantize: 'nf4', doubleQuant: false });
    expect(await c.setFrozen({ quantize: null })).toBe(true);
    expect(c.state.model.info!.quantization).toBeNull();
    expect(loads()).toBe(before + 3);
  });
});

describe('training', () => {
  it('trains, saves the adapter with its run in the library, and preselects it for compare', async () => {
    const { c, engine } = await makeApp();
    c.setTrain({ steps: 6, checkpointEvery: 2, evalEvery: 3 });
    await c.startTraining();
    const s = c.state;
    expect(s.run.status).toBe('done');
    expect(s.run.history.map((h) => h.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(s.run.history.filter((h) => h.valLoss !== null).map((h) => h.step)).toEqual([3, 6]);
    expect(engine.lastTrain?.train.steps).toBe(6);
    const [a] = s.library.adapters;
    expect(a).toMatchObject({
      baseModel: DEMO_MODEL_ID,
      steps: 6,
      origin: 'trained',
      stoppedEarly: false,
      datasetName: 'demo-qa.jsonl',
    });
    expect(a!.name).toBe('stories260K · demo-qa · r8');
    expect(a!.finalLoss).toBeCloseTo(5 / (1 + 0.3 * 6));
    expect(s.run.adapterId).toBe(a!.id);
    expect(s.compare.adapterIds).toEqual([a!.id]);
    expect(s.resumable).toEqual([]);
    // a second run gets a distinct name
    await c.startTraining();
    expect(c.state.library.adapters.map((x) => x.name).sort()).toEqual([
      'stories260K · demo-qa · r8',
      'stories260K · demo-qa · r8 (2)',
    ]);
  });

  it("shows the engine's warnings about a finished run (runaway weights, validation worse than the base model)", async () => {
    const { c, engine } = await makeApp();
    engine.trainWarnings = [
      "The adapter's weights ran away: model.layers.0.self_attn.q_proj.lora_B holds 1.00e+9.",
      "The final validation loss (3.0000) is above the base model's (2.0000): on held-out data the adapter makes the model worse.",
    ];
    c.setTrain({ steps: 2 });
    await c.startTraining();
    expect(c.state.run.status).toBe('done');
    expect(c.state.library.adapters).toHaveLength(1);
    const warned = c.state.notices.filter((n) => n.level === 'warning').map((n) => [n.title, n.detail]);
    expect(warned).toEqual([
      ['The adapter looks broken', engine.trainWarnings[0]],
      ['Worse than the base model', engine.trainWarnings[1]],
    ]);
  });

  it('pauses, resumes, and stop saves the adapter trained so far', async () => {
    const engine = new FakeEngine();
    engine.stepMs = 5;
    const { c } = await makeApp({ engine });
    c.setTrain({ steps: 1000 });
    const done = c.startTraining();
    await engine.reached(3);
    c.pause();
    expect(c.state.run.status).toBe('paused');
    const at = c.state.run.progress!.step;
    await new Promise((r) => setTimeout(r, 40));
    expect(c.state.run.progress!.step).toBeLessThanOrEqual(at + 1);
    c.resume();
    await engine.reached(at + 3);
    // From the first moment the run is done it is known as stopped early (the heading used to read
    // "Finished" until the library had reloaded).
    const doneStates: boolean[] = [];
    const unsubscribe = c.store.subscribe(() => {
      if (c.state.run.status === 'done') doneStates.push(c.state.run.stoppedEarly);
    });
    c.stop();
    expect(c.state.run.status).toBe('stopping');
    await done;
    unsubscribe();
    expect(doneStates.length).toBeGreaterThan(0);
    expect(doneStates.every(Boolean)).toBe(true);
    expect(c.state.run.status).toBe('done');
    expect(c.state.library.adapters[0]).toMatchObject({ stoppedEarly: true });
    expect(c.state.library.adapters[0]!.steps).toBeLessThan(1000);
  });

  it('refuses to start with invalid settings and says which', async () => {
    const { c } = await makeApp();
    c.setLora({ r: 0 });
    expect(c.startBlockers()).toContain('Fix the highlighted settings (Settings).');
    await c.startTraining();
    expect(c.state.run.status).toBe('failed');
    expect(c.state.run.error?.detail).toMatch(/highlighted settings/);
  });

  it('a failed run keeps its checkpoint and can be resumed; the resumed run ends where it should', async () => {
    const engine = new FakeEngine();
    const { c } = await makeApp({ engine });
    c.setTrain({ steps: 8, checkpointEvery: 2 });
    // the GPU dies after step 5 (the checkpoint at step 4 is saved)
    engine.deviceLostAtStep = 5;
    await c.startTraining();
    expect(c.state.run.status).toBe('failed');
    expect(c.state.run.error?.title).toBe('The GPU was lost');
    expect(c.state.resumable).toHaveLength(1);
    expect(c.state.resumable[0]).toMatchObject({ status: 'interrupted', checkpointStep: 4 });
    await c.resumeRun(c.state.resumable[0]!.id);
    expect(engine.lastTrain?.resumedFromStep).toBe(4);
    expect(c.state.run.status).toBe('done');
    expect(c.state.run.history.map((h) => h.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(c.state.resumable).toEqual([]);
    expect(c.state.library.adapters).toHaveLength(1);
  });

  it('Resume clicked twice (before the run shows as preparing) resumes once, without saying another tab has it', async () => {
    const engine = new FakeEngine();
    const { c } = await makeApp({ engine });
    c.setTrain({ steps: 4, checkpointEvery: 2 });
    engine.deviceLostAtStep = 3;
    await c.startTraining();
    const id = c.state.resumable[0]!.id;
    engine.calls.length = 0;
    await Promise.all([c.resumeRun(id), c.resumeRun(id)]);
    expect(c.state.notices.map((n) => n.title)).not.toContain('Run is open in another tab');
    expect(engine.calls.filter((x) => x.startsWith('train'))).toHaveLength(1);
    expect(c.state.run.status).toBe('done');
    expect(c.state.resumable).toEqual([]);
  });

  it("after a tab dies mid-run, a new tab resumes it from the last checkpoint with the run's own settings and data", async () => {
    const locks = new FakeLocks();
    const engineA = new FakeEngine();
    engineA.stepMs = 2;
    const a = await makeApp({ engine: engineA, locks, tabId: 'A' });
    a.c.setTrain({ steps: 10, checkpointEvery: 3 });
    a.c.setLora({ r: 4 });
    await a.c.setFrozen({ quantize: 'nf4' }); // QLoRA: the resumed run must train on 4-bit weights too
    a.c.setTrain({ steps: 10, checkpointEvery: 3 });
    void a.c.startTraining();
    await engineA.reached(7);
    engineA.pause(); // tab A freezes...
    // ...while it is alive, another tab sees the run as busy and cannot take it
    const b = await makeApp({ locks, tabId: 'B' });
    expect(b.c.state.resumable).toEqual([]);
    locks.held.clear(); // ...then tab A is closed: the browser drops its locks
    await b.c.refreshLibrary();
    await b.c.go('train');
    await until(() => b.c.state.resumable.length === 1, 2000, 'the run to become resumable');
    b.c.setTrain({ steps: 99 }); // the form's settings do not matter for a resume
    await b.c.resumeRun(b.c.state.resumable[0]!.id);
    expect(b.engine.lastTrain).toMatchObject({ resumedFromStep: 6, train: { steps: 10 }, lora: { r: 4 } });
    expect(b.engine.lastFrozen).toEqual({ quantize: 'nf4', doubleQuant: true });
    expect(b.c.state.frozen.quantize).toBe('nf4');
    expect(b.c.state.run.status).toBe('done');
    expect(b.c.state.library.adapters[0]).toMatchObject({ steps: 10 });
    expect(b.c.state.library.adapters[0]!.config.r).toBe(4);
  });

  it('a run another live tab holds cannot be resumed or discarded here', async () => {
    const locks = new FakeLocks();
    const a = await makeApp({ locks, tabId: 'A' });
    a.c.setTrain({ steps: 4, checkpointEvery: 2 });
    a.engine.failNext.train = Object.assign(new Error('boom'), { name: 'EngineError' });
    await a.c.startTraining();
    const runId = a.c.state.resumable[0]!.id;
    locks.lock(runId); // tab A (or a third tab) holds the run's lock again
    const b = await makeApp({ locks, tabId: 'B' });
    await b.c.resumeRun(runId);
    expect(b.c.state.notices.at(-1)?.title).toBe('Run is open in another tab');
    await b.c.discardRun(runId);
    expect(b.c.state.notices.at(-1)?.title).toBe('Run is open in another tab');
  });

  it('keeps the adapter downloadable when the browser storage is full', async () => {
    const { c } = await makeApp();
    const runs = c.ctx.stores!.runs;
    runs.finish = async () => {
      const { StorageFullError } = await import('../../src/store/errors');
      throw new StorageFullError('adapter "x"');
    };
    c.setTrain({ steps: 2 });
    await c.startTraining();
    expect(c.state.run.status).toBe('done');
    expect(c.state.run.unsaved).not.toBeNull();
    expect(c.state.notices.at(-1)).toMatchObject({ level: 'error', title: 'Browser storage is full' });
    expect(c.state.notices.at(-1)?.action).toMatch(/Download it now/);
  });
});

describe('dataset', () => {
  it('lists invalid lines with their numbers and still trains on the rest', async () => {
    const { c } = await makeApp();
    await c.setDatasetText('mine.jsonl', '{"text": "one"}\nnot json\n{"text": "two"}\n{"foo": 1}\n');
    const d = c.state.dataset;
    expect(d.status).toBe('ready');
    expect(d.summary!.records).toBe(2);
    expect(d.summary!.issues.map((i) => i.line)).toEqual([2, 4]);
  });

  it('re-tokenizes when max length or the validation fraction change', async () => {
    const { c, engine } = await makeApp();
    const before = engine.calls.filter((x) => x.startsWith('loadDataset')).length;
    c.setTrain({ valFraction: 0.25 });
    await until(
      () => engine.calls.filter((x) => x.startsWith('loadDataset')).length > before,
      3000,
      'a new loadDataset',
    );
    await until(() => c.state.dataset.status === 'ready');
    expect(c.state.dataset.summary!.valRecords).toBe(6);
  });

  it('refuses a binary file with a message', async () => {
    const { c } = await makeApp();
    const ok = await c.readDatasetFile(new File([new Uint8Array([0, 1, 2, 0])], 'weights.bin'));
    expect(ok).toBe(false);
    expect(c.state.dataset.refused?.title).toBe('Not a text file');
  });
});

describe('library and compare', () => {
  /** Imports a rank-4 adapter on q_proj as its two files. */
  const importTiny = async (c: AppController, engine: FakeEngine, useRslora = false) => {
    const files = engine.adapterFor({
      r: 4,
      lora_alpha: 8,
      lora_dropout: 0,
      target_modules: ['q_proj'],
      use_rslora: useRslora,
    });
    const rec = await c.importAdapter([
      { name: 'adapter_config.json', bytes: async () => new TextEncoder().encode(files.adapterConfig) },
      { name: 'adapter_model.safetensors', bytes: async () => files.adapterModel },
    ]);
    return { files, rec };
  };

  it('imports, renames, exports as zip and as two files, deletes (and frees it on the GPU)', async () => {
    const { c, engine } = await makeApp();
    const { files, rec } = await importTiny(c, engine, true);
    expect(rec).toMatchObject({ origin: 'imported', config: { r: 4, lora_alpha: 8, use_rslora: true } });
    expect(await c.renameAdapter(rec!.id, 'python one')).toBe(true);
    expect(c.state.library.adapters[0]!.name).toBe('python one');
    const zip = await c.adapterDownload(rec!.id, 'zip');
    expect(zip!.name).toBe('python-one.zip');
    const entries = unzipSync(zip!.bytes);
    expect(new TextDecoder().decode(entries['adapter_config.json']!)).toBe(files.adapterConfig);
    expect(new TextDecoder().decode(entries['README.md']!)).toMatch(/PeftModel\.from_pretrained/);
    const cfg = await c.adapterDownload(rec!.id, 'config');
    expect(cfg!.name).toBe('adapter_config.json');
    const model = await c.adapterDownload(rec!.id, 'model');
    expect(Buffer.from(model!.bytes).equals(Buffer.from(files.adapterModel))).toBe(true);
    await c.deleteAdapter(rec!.id);
    expect(c.state.library.adapters).toEqual([]);
    expect(engine.forgotten).toEqual([rec!.id]);
  });

  it('an adapter deleted while the rename before it still reads the library stays deleted', async () => {
    // The library read after the rename waits in its storage estimate until released.
    let release = () => {};
    let hold = false;
    let waiting = false;
    const { c, engine } = await makeApp({
      storageEstimate: async () => {
        if (hold) {
          hold = false;
          waiting = true;
          await new Promise<void>((r) => (release = r));
        }
        return { usage: 1_000_000, quota: 10_000_000_000 };
      },
    });
    const { rec } = await importTiny(c, engine);
    hold = true;
    const renaming = c.renameAdapter(rec!.id, 'python one');
    await until(() => waiting, 5000, "the rename's library read");
    await c.deleteAdapter(rec!.id);
    expect(c.state.library.adapters).toEqual([]);
    release();
    expect(await renaming).toBe(true);
    expect(c.state.library.adapters).toEqual([]);
  });

  it('the "Adapter imported" note stays in Adapters and does not follow the user to other views', async () => {
    const { c, engine } = await makeApp();
    await until(() => c.state.model.info !== null);
    c.go('library');
    await importTiny(c, engine);
    expect(c.state.notices.map((n) => n.title)).toContain('Adapter imported');
    c.notify({ level: 'warning', title: 'Something to keep', detail: 'x' });
    c.go('compare');
    expect(c.state.notices.map((n) => n.title)).toEqual(['Something to keep']);
  });

  it('an import of the wrong files says what is missing', async () => {
    const { c } = await makeApp();
    await c.importAdapter([{ name: 'notes.txt', bytes: async () => new Uint8Array([1]) }]);
    expect(c.state.library.importError?.title).toBe('Not a usable PEFT adapter');
    expect(c.state.library.importError?.detail).toMatch(
      /missing adapter_config\.json \(or a \.json file holding a PEFT config\) and adapter_model\.safetensors/,
    );
  });

  it('importing the same files twice gives the copies names that tell them apart', async () => {
    const { c, engine } = await makeApp();
    const files = engine.adapterFor({ ...c.state.lora, target_modules: ['q_proj', 'v_proj'] });
    const pair = [
      { name: 'adapter_config.json', bytes: async () => new TextEncoder().encode(files.adapterConfig) },
      { name: 'adapter_model.safetensors', bytes: async () => files.adapterModel },
    ];
    const zip = [{ name: 'mine.zip', bytes: async () => zipPeft(files) }];
    for (const f of [pair, pair, zip, zip, pair]) expect(await c.importAdapter(f)).not.toBeNull();
    expect(c.state.library.adapters.map((a) => a.name).sort()).toEqual(
      ['imported adapter', 'imported adapter (2)', 'imported adapter (3)', 'mine', 'mine (2)'].sort(),
    );
    // one "Adapter imported" card, about the latest, not five piled up above every view
    const done = c.state.notices.filter((n) => n.title === 'Adapter imported');
    expect(done).toHaveLength(1);
    expect(done[0]!.detail).toContain('"imported adapter (3)"');
  });

  it('an import whose config and weights do not belong together (another rank) is refused, naming both files', async () => {
    const { c, engine } = await makeApp();
    const files = engine.adapterFor({ ...c.state.lora, r: 4, target_modules: ['q_proj', 'v_proj'] });
    const cfg = JSON.parse(files.adapterConfig) as Record<string, unknown>;
    const pick = (config: string) => [
      { name: 'adapter_config.json', bytes: async () => new TextEncoder().encode(config) },
      { name: 'adapter_model.safetensors', bytes: async () => files.adapterModel },
    ];
    expect(await c.importAdapter(pick(JSON.stringify({ ...cfg, r: 16 })))).toBeNull();
    expect(c.state.library.importError?.title).toBe('Not a usable PEFT adapter');
    expect(c.state.library.importError?.detail).toMatch(
      /adapter_config\.json and adapter_model\.safetensors do not belong together.*rank 16.*rank 4/,
    );
    expect(c.state.library.adapters).toHaveLength(0);
    // a rank_pattern that gives these modules their rank is fine, as is the matching r
    expect(
      await c.importAdapter(pick(JSON.stringify({ ...cfg, r: 16, rank_pattern: { q_proj: 4, v_proj: 4 } }))),
    ).not.toBeNull();
    expect(await c.importAdapter(pick(files.adapterConfig))).not.toBeNull();
    expect(c.state.library.adapters).toHaveLength(2);
  });

  it('generates every prompt through the base model and each adapter, and evaluates them', async () => {
    const { c } = await makeApp();
    c.setTrain({ steps: 2 });
    await c.startTraining();
    c.setPrompts('What did the cat watch?\n\n  Where?  ');
    await c.runCompare();
    const cmp = c.state.compare;
    expect(cmp.status).toBe('done');
    expect(cmp.promptList).toEqual(['What did the cat watch?', 'Where?']);
    expect(cmp.columns.map((x) => x.key)).toEqual(['base', c.state.run.adapterId]);
    expect(cmp.outputs[0]!.base!.text).toBe('\n\n');
    expect(cmp.outputs[0]![c.state.run.adapterId!]!.text).toBe('The cat watched the rain.');
    await c.runEvaluation();
    expect(c.state.compare.evals.base).toMatchObject({ status: 'done', loss: 3 });
    expect(c.state.compare.evals[c.state.run.adapterId!]).toMatchObject({ status: 'done', loss: 1.5 });
    expect(c.state.compare.evalSplit).toBe('validation');
  });

  it('Compare or Evaluate clicked twice while the adapters are read runs once', async () => {
    // The first generation (or evaluation) after `held` is set waits for it.
    class HeldEngine extends FakeEngine {
      held: Promise<void> | null = null;
      private async wait() {
        const h = this.held;
        this.held = null;
        await h;
      }
      override async generate(...args: Parameters<FakeEngine['generate']>) {
        await this.wait();
        return super.generate(...args);
      }
      override async evaluate(...args: Parameters<FakeEngine['evaluate']>) {
        await this.wait();
        return super.evaluate(...args);
      }
    }
    const engine = new HeldEngine();
    const { c } = await makeApp({ engine });
    c.setTrain({ steps: 2 });
    await c.startTraining();
    const id = c.state.run.adapterId!;
    c.setPrompts('What did the cat watch?\nWhere?');
    for (const [op, run] of [
      ['generate', () => c.runCompare()],
      ['evaluate', () => c.runEvaluation()],
    ] as const) {
      engine.calls.length = 0;
      let release = () => {};
      engine.held = new Promise<void>((r) => (release = r));
      const first = run();
      await run(); // the second click: its read of the adapter ends while the first one runs
      release();
      await first;
      const per = op === 'generate' ? 2 : 1; // prompts
      expect(engine.calls.filter((x) => x.startsWith(`${op}:`)).sort()).toEqual(
        [...Array<string>(per).fill(`${op}:${id}`), ...Array<string>(per).fill(`${op}:base`)].sort(),
      );
    }
    expect(c.state.compare).toMatchObject({ status: 'done', evalStatus: 'done', error: null });
    expect(c.state.compare.outputs[1]![id]).toMatchObject({ status: 'done', text: 'The cat watched the rain.' });
    expect(c.state.compare.evals[id]).toMatchObject({ status: 'done', loss: 1.5 });
  });

  it('deleting an adapter takes it out of Compare: the pick, its outputs column and its loss row', async () => {
    const { c } = await makeApp();
    c.setTrain({ steps: 2 });
    await c.startTraining();
    await c.startTraining();
    const [a, b] = c.state.library.adapters;
    c.toggleCompareAdapter(a!.id, true);
    c.toggleCompareAdapter(b!.id, true);
    await c.runCompare();
    await c.runEvaluation();
    expect(c.state.compare.columns.map((x) => x.key).sort()).toEqual(['base', a!.id, b!.id].sort());
    await c.deleteAdapter(a!.id);
    const cmp = c.state.compare;
    expect(cmp.adapterIds).toEqual([b!.id]);
    expect(cmp.columns.map((x) => x.key)).toEqual(['base', b!.id]);
    expect(cmp.evalColumns.map((x) => x.key)).toEqual(['base', b!.id]);
    expect(cmp.columns.map((x) => x.label)).not.toContain(a!.name);
  });

  it('a failed generation shows in its cell and the others still run', async () => {
    const { c, engine } = await makeApp();
    c.setPrompts('a\nb');
    engine.failNext.generate = Object.assign(new Error('Out of memory while allocating'), {
      name: 'GpuOutOfMemoryError',
    });
    await c.runCompare();
    expect(c.state.compare.outputs[0]!.base).toMatchObject({ status: 'error' });
    expect(c.state.compare.outputs[1]!.base).toMatchObject({ status: 'done' });
  });
});

describe('page URL handling', () => {
  it('serves the demo files relative to the page', () => {
    expect(PAGE.endsWith('/')).toBe(true);
  });
});
