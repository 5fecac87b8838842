/**
 * The engine's kernel tuning (src/engine/device.ts KernelTuning) with the app's IndexedDB store
 * (src/store/kernel-choices.ts, on fake-indexeddb): 'auto' tunes the classes met once and saves the
 * choices, a second run loads them and tunes nothing; 'off' and a pin neither load nor tune; Forget
 * drops one device's choices (this device's stop applying, so its next run tunes again). The
 * engine's attention mode pins gpu.kernels.attention, and the bench names the attention set in use.
 */
import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { benchInUse } from '../../src/bench/kernels-bench';
import { DEFAULT_TRAIN } from '../../src/engine/defaults';
import { Engine } from '../../src/engine/engine';
import { KernelTuning } from '../../src/engine/device';
import { attentionDirect } from '../../src/kernels/attention-variants';
import { deviceKey, untunedClasses } from '../../src/kernels/matmul/tune';
import { BASELINE, candidatesFor, chooseConfig } from '../../src/kernels/matmul/variants';
import { IndexedDbKernelStore } from '../../src/store/kernel-choices';
import { writeTinyModel, tinyCorpusJsonl } from '../fixtures/tiny-model';
import { getGpu } from '../helpers/gpu';

beforeEach(() => {
  globalThis.indexedDB = new IDBFactory();
});

describe('IndexedDbKernelStore', () => {
  it('keeps choices per device key with the time, lists the newest first and forgets one', async () => {
    let clock = 100;
    const store = await IndexedDbKernelStore.open('k', () => clock++);
    expect(await store.load('gpu-a')).toBeNull();
    await store.save('gpu-a', { c1: 'direct8x4' });
    await store.save('gpu-b', { c1: 'tile64', c2: 'gemv' });
    store.close();
    const again = await IndexedDbKernelStore.open('k', () => clock++);
    expect(await again.load('gpu-a')).toEqual({ c1: 'direct8x4' });
    expect((await again.list()).map((d) => [d.deviceKey, d.savedAt])).toEqual([
      ['gpu-b', 101],
      ['gpu-a', 100],
    ]);
    await again.forget('gpu-b');
    expect((await again.list()).map((d) => d.deviceKey)).toEqual(['gpu-a']);
    again.close();
  });
});

describe('KernelTuning', () => {
  it('auto tunes and saves once, loads on the next run; off and a pin do neither; forget', async () => {
    const gpu = await getGpu();
    gpu.kernels.choices.clear();
    gpu.kernels.seen.clear();
    const store = await IndexedDbKernelStore.open('k');
    // A first step meeting one shape (tiny: the tuner compiles every candidate for it).
    const shape = { M: 40, N: 20, K: 24, transA: false, transB: true, bType: 'f32' as const, lora: false };
    const step = () => chooseConfig(gpu, shape).name;
    const stages: string[] = [];
    const onStage = (p: { done: number; total: number }) => stages.push(`${p.done}/${p.total}`);
    try {
      const run = new KernelTuning();
      run.setStore(store);
      run.setMode(gpu, 'off');
      await run.load(gpu);
      expect(step()).toBe(BASELINE);
      await run.tune(gpu, onStage);
      expect(stages).toEqual([]);
      expect(await store.list()).toEqual([]);

      run.setMode(gpu, { pin: 'direct4x4' });
      expect(step()).toBe('direct4x4');
      await run.tune(gpu, onStage);
      expect(stages).toEqual([]);

      run.setMode(gpu, 'auto');
      await run.load(gpu);
      // Nothing saved yet: the prior (the device class's likely best, not the baseline), and the
      // class is noted.
      const prior = candidatesFor(gpu, shape)[0]!.name;
      expect(gpu.kernels.prior).toBe(true);
      expect(step()).toBe(prior);
      expect(untunedClasses(gpu)).toHaveLength(1);
      expect(await run.tune(gpu, onStage)).toBe(1);
      expect(stages).toEqual(['0/1', '1/1']);
      const saved = await store.load(deviceKey(gpu));
      expect(untunedClasses(gpu)).toEqual([]);
      expect(Object.keys(saved ?? {})).toHaveLength(1);
      expect(saved).toEqual(Object.fromEntries(gpu.kernels.choices));

      // A new engine on this device (the next page load): the choices apply, nothing is tuned.
      gpu.kernels.choices.clear();
      gpu.kernels.seen.clear();
      const next = new KernelTuning();
      next.setStore(store);
      await next.load(gpu);
      expect(gpu.kernels.choices.size).toBe(1);
      step();
      expect(untunedClasses(gpu)).toEqual([]);
      expect(await next.tune(gpu, onStage)).toBe(0);
      expect(stages).toEqual(['0/1', '1/1']);
      expect((await next.list(gpu)).map((d) => d.current)).toEqual([true]);

      await next.forget(gpu, deviceKey(gpu));
      expect(await next.list(gpu)).toEqual([]);
      expect(gpu.kernels.choices.size).toBe(0);
      expect(step()).toBe(prior);
      expect(untunedClasses(gpu)).toHaveLength(1); // the next run tunes it again
      run.setMode(gpu, 'off');
      expect(gpu.kernels.prior).toBe(false);
      expect(step()).toBe(BASELINE);
    } finally {
      gpu.kernels.prior = false;
      gpu.kernels.pin = null;
      gpu.kernels.choices.clear();
      gpu.kernels.seen.clear();
      store.close();
    }
  });

  it('a run tunes between its steps, class by class, and the next run on the device tunes nothing', async () => {
    const gpu = await getGpu();
    gpu.kernels.choices.clear();
    gpu.kernels.seen.clear();
    const dir = await mkdtemp(join(tmpdir(), 'tabtune-tune-'));
    const saved = new Map<string, Record<string, string>>();
    const store = {
      load: async (k: string) => saved.get(k) ?? null,
      save: async (k: string, c: Record<string, string>) => void saved.set(k, { ...c }),
    };
    try {
      await writeTinyModel(dir, { modelType: 'llama', dtype: 'BF16', seed: 1 });
      const engine = new Engine(gpu);
      engine.setKernelTuning(store);
      await engine.loadModel({ kind: 'dir', id: 'tiny', path: dir });
      const data = tinyCorpusJsonl();
      await engine.loadDataset('c.jsonl', data, { maxLen: 32, valFraction: 0, seed: 0 });
      const train = {
        ...DEFAULT_TRAIN,
        steps: 12,
        epochs: 0,
        batch: 4,
        maxLen: 32,
        valFraction: 0,
        seed: 3,
        lossEvery: 1,
      };
      const lora = { r: 4, lora_alpha: 8, lora_dropout: 0, target_modules: 'all-linear' as const, use_rslora: false };
      const events: string[] = [];
      const hooks = {
        onProgress: (p: { step: number }) => events.push(`step ${p.step}`),
        onStage: (st: { stage: string; tune?: { done: number; total: number } }) =>
          st.tune && events.push(`tune ${st.tune.done}/${st.tune.total}`),
      };
      const packed = { ...train, packing: true };
      const tuning = (engine as unknown as { kernels: KernelTuning }).kernels;
      // gapMs 0: one class per gap, so tuning spreads over the steps while training goes on.
      tuning.gapMs = 0;
      tuning.gapShare = 0;
      const first = await engine.train(lora, { ...packed, steps: 3 }, hooks);
      expect(Number.isFinite(first.finalLoss)).toBe(true);
      // One class per gap between steps; after the last step every class left, so the next run on
      // the device tunes nothing.
      // (Classes first met in a later step join the total.)
      expect(events.slice(0, 5).map((e) => e.replace(/\/\d+$/, ''))).toEqual([
        'step 1',
        'tune 0',
        'step 2',
        'tune 1',
        'step 3',
      ]);
      expect(Number(events[1]!.split('/')[1])).toBeGreaterThan(3);
      const total = Number(events.at(-1)!.split('/')[1]);
      expect(events.at(-1)).toBe(`tune ${total}/${total}`);
      expect(events.slice(5).every((e) => e.startsWith('tune '))).toBe(true);
      const kept = Object.keys([...saved.values()][0]!).length;
      expect(kept).toBe(total);
      expect(kept).toBe(gpu.kernels.choices.size);
      expect(untunedClasses(gpu)).toEqual([]);

      // The same run again on this engine: its classes are all tuned.
      events.length = 0;
      await engine.train(lora, { ...packed, steps: 2 }, hooks);
      expect(events).toEqual(['step 1', 'step 2']);

      // Another engine on this device (the next page load): the saved choices apply, nothing is tuned.
      events.length = 0;
      gpu.kernels.choices.clear();
      gpu.kernels.seen.clear();
      const again = new Engine(gpu);
      again.setKernelTuning(store);
      await again.loadModel({ kind: 'dir', id: 'tiny', path: dir });
      await again.loadDataset('c.jsonl', data, { maxLen: 32, valFraction: 0, seed: 0 });
      await again.train(lora, { ...packed, steps: 2 }, hooks);
      expect(events).toEqual(['step 1', 'step 2']);
      expect(gpu.kernels.choices.size).toBe(kept);
    } finally {
      gpu.kernels.prior = false;
      gpu.kernels.choices.clear();
      gpu.kernels.seen.clear();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the kernel bench on a device in use (Diagnostics) measures every member and leaves the tuned choices as they were', async () => {
    const gpu = await getGpu();
    gpu.kernels.choices.clear();
    gpu.kernels.choices.set('nt_f32_mm_nm_km', 'direct4x4');
    const lines: string[] = [];
    try {
      const r = await benchInUse(gpu, { M: 40, K: 72, N: 56, r: 4, budgetMs: 50, ceilingScale: 0.05 }, (l) =>
        lines.push(l),
      );
      expect(r.fma_gflops).toBeGreaterThan(0);
      expect(r.copy_gbps).toBeGreaterThan(0);
      expect(new Set(r.matmul.map((m) => m.member))).toEqual(new Set(['tile64', 'direct8x4', 'direct4x4']));
      expect(r.lora.map((l) => l.member)).toContain('tuned');
      expect(lines[0]).toMatch(/^device ceilings: FMA [\d.]+ GFLOP\/s, copy [\d.]+ GB\/s$/);
      expect(lines.some((l) => /^matmul 40x72x56 X·Wᵀ direct8x4: [\d.]+ GFLOP\/s/.test(l))).toBe(true);
      // The attention set in use beside the matmul choices (lavapipe: a CPU driver with subgroups).
      expect(lines[1]).toMatch(/^attention kernels: direct \(this device is a CPU driver with subgroups, /);
      expect(r.attention.set).toBe('direct');
      expect([...gpu.kernels.choices]).toEqual([['nt_f32_mm_nm_km', 'direct4x4']]);
      expect(gpu.kernels.pin).toBeNull();
    } finally {
      gpu.kernels.choices.clear();
      gpu.kernels.seen.clear();
    }
  });

  it("the engine's attention mode (the app's setting, through the worker) sets gpu.kernels.attention; gpuInfo says what each mode runs", async () => {
    const gpu = await getGpu();
    const engine = new Engine(gpu);
    try {
      const info = await engine.gpuInfo();
      expect(info.attention.auto).toEqual({ set: 'direct', why: expect.stringMatching(/CPU driver with subgroups/) });
      expect(info.attention.tiled).toEqual({ set: 'tiled', why: 'pinned' });
      expect(info.attention.direct).toEqual({ set: 'direct', why: 'pinned' });
      await engine.setAttentionMode('tiled');
      expect(gpu.kernels.attention).toBe('tiled');
      expect(attentionDirect(gpu, 64)).toBeNull();
      await engine.setAttentionMode('direct');
      expect(gpu.kernels.attention).toBe('direct');
      expect(attentionDirect(gpu, 64)).not.toBeNull();
      await engine.setAttentionMode('auto');
      expect(gpu.kernels.attention).toBeNull();
    } finally {
      gpu.kernels.attention = null;
    }
  });
});
