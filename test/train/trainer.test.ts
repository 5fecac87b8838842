/**
 * A training step's GPU traffic, counted on the device's own counters: one command-buffer submit
 * per micro-batch (forward, loss, backward and, on the last one, the optimizer), no GPU→CPU readback
 * inside a step, and the loss read only every `lossEvery` steps (or when asked), with and without
 * activation checkpointing.
 */
import { describe, expect, it } from 'vitest';
import { loraScaleInfo } from '../../src/lora/config';
import { GpuLora } from '../../src/lora/gpu-lora';
import { initLoraModules } from '../../src/lora/init';
import { loraConfigFromSettings, resolveTargets } from '../../src/lora/targets';
import { type MicroBatch, Trainer } from '../../src/train/trainer';
import { getGpu } from '../helpers/gpu';
import { tinyGpuModel } from '../helpers/tiny-gpu-model';

function micro(vocab: number, B: number, S: number, seed: number): MicroBatch {
  const T = B * S;
  const ids = new Uint32Array(T);
  const targets = new Uint32Array(T);
  const positions = new Uint32Array(T);
  for (let i = 0; i < T; i++) {
    ids[i] = (i * 31 + seed * 7) % vocab;
    targets[i] = (i * 17 + seed * 3 + 1) % vocab;
    positions[i] = i % S;
  }
  return { B, S, ids, targets, positions, counted: T };
}

describe('trainer: a window without counted tokens', () => {
  it('reports no loss (not NaN) and leaves the adapter finite', async () => {
    const gpu = await getGpu();
    const tiny = await tinyGpuModel(gpu, { modelType: 'llama', dtype: 'F32', seed: 4 });
    const model = tiny.model;
    const cfg = loraConfigFromSettings(
      { r: 2, lora_alpha: 4, lora_dropout: 0, target_modules: 'all-linear', use_rslora: false },
      'llama',
    );
    const lora = GpuLora.fromArrays(
      gpu,
      model.linears,
      initLoraModules(cfg, resolveTargets(cfg, model.linears), 1),
      (m) => loraScaleInfo(cfg, m),
    );
    const trainer = new Trainer(
      gpu,
      model,
      lora,
      {
        optimizer: 'adamw',
        lr: 1e-2,
        weightDecay: 0,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        maxGradNorm: 1,
        scheduler: 'constant',
        warmup: 0,
        totalSteps: 2,
      },
      { maxTokens: 10, lossEvery: 1 },
    );
    try {
      const b = micro(model.config.vocabSize, 2, 5, 1);
      const none = { ...b, targets: new Uint32Array(10).fill(0xffffffff), counted: 0 };
      const r1 = await trainer.trainStep([none]);
      expect(r1.loss).toBeNull();
      expect(r1.tokens).toBe(0);
      const r2 = await trainer.trainStep([b]);
      expect(Number.isFinite(r2.loss)).toBe(true);
      for (const m of await lora.toArrays()) {
        expect(m.a.every(Number.isFinite) && m.b.every(Number.isFinite), m.path).toBe(true);
      }
    } finally {
      trainer.dispose();
      lora.dispose();
      model.dispose();
    }
  });
});

describe('trainer: GPU traffic per step', () => {
  for (const checkpoint of [false, true]) {
    it(`one submit per micro-batch, no readback except the loss every 3 steps${checkpoint ? ' (activation checkpointing)' : ''}`, async () => {
      const gpu = await getGpu();
      const tiny = await tinyGpuModel(gpu, { modelType: 'llama', dtype: 'BF16', seed: 3 });
      const model = tiny.model;
      const cfg = loraConfigFromSettings(
        { r: 3, lora_alpha: 6, lora_dropout: 0.1, target_modules: 'all-linear', use_rslora: false },
        'llama',
      );
      const lora = GpuLora.fromArrays(
        gpu,
        model.linears,
        initLoraModules(cfg, resolveTargets(cfg, model.linears), 1),
        (m) => loraScaleInfo(cfg, m),
      );
      const B = 2;
      const S = 7;
      const trainer = new Trainer(
        gpu,
        model,
        lora,
        {
          optimizer: 'adamw',
          lr: 1e-3,
          weightDecay: 0.01,
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          maxGradNorm: 1,
          scheduler: 'cosine',
          warmup: 1,
          totalSteps: 7,
        },
        { maxTokens: B * S, lossEvery: 3, seed: 5, checkpointActivations: checkpoint },
      );
      try {
        const V = model.config.vocabSize;
        const accum = 2;
        const traffic: { submits: number; readbacks: number; bindGroups: number; loss: number | null }[] = [];
        for (let step = 0; step < 7; step++) {
          const batches = Array.from({ length: accum }, (_, g) => micro(V, B, S, step * accum + g));
          const c0 = { ...gpu.counters };
          // The last step asks for the loss although its window is not complete.
          const res = await trainer.trainStep(batches, step === 6);
          traffic.push({
            submits: gpu.counters.submits - c0.submits,
            readbacks: gpu.counters.readbacks - c0.readbacks,
            bindGroups: gpu.counters.bindGroups - c0.bindGroups,
            loss: res.loss,
          });
        }
        const reads = traffic.map((t) => t.loss !== null);
        expect(reads).toEqual([false, false, true, false, false, true, true]);
        // The steady state makes no bind groups: every step's submits reuse the first step's (and
        // the first loss read's). Fresh ones per step pile up native descriptor sets until the
        // garbage collector runs; on lavapipe that crashed the process (src/gpu/recorder.ts).
        expect(traffic[0]!.bindGroups).toBeGreaterThan(0);
        expect(traffic.slice(3).map((t) => t.bindGroups)).toEqual([0, 0, 0, 0]);
        for (const [i, t] of traffic.entries()) {
          if (!reads[i]) {
            expect(t, `step ${i + 1}`).toMatchObject({ submits: accum, readbacks: 0 });
          } else {
            // The loss read: one more submit copies the loss sum and token count out and zeroes
            // them, and one readback brings both back.
            expect(t, `step ${i + 1}`).toMatchObject({ submits: accum + 1, readbacks: 1 });
            expect(Number.isFinite(t.loss)).toBe(true);
            expect(t.loss!).toBeGreaterThan(0);
          }
        }
      } finally {
        trainer.dispose();
        lora.dispose();
        model.dispose();
      }
    });
  }
});
