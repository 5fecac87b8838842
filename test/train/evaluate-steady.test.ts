/**
 * The evaluation pass (src/train/evaluate.ts) makes no bind groups once warm, as a training step
 * (test/train/trainer.test.ts) and a generated token (test/generate/greedy-gpu.test.ts) don't: a
 * fresh bind group's native descriptor set lives until the garbage collector finalizes it, and on
 * lavapipe a pile of them crashed the process (src/gpu/recorder.ts). Checked on the trainer's
 * validation (the training runner, between steps) and on lossSums through an evaluation runner
 * kept between calls, with a packed batch and a shorter last batch among the batches; evalLoss
 * (a run's baseline loss) makes its one-time runner's groups per call, the same number however
 * many batches. The engine's evaluate keeps its runner (EvalRunnerKeeper): none from the second
 * call on, the loss bit for bit a fresh runner's, changed LoRA weights and another adapter seen,
 * its memory freed by release (deferred to the end of an evaluation in progress). A deep model's checkpointed steps with validation between
 * them fit the cache together (it once overflowed and made every group again each step). A step
 * that would make more new groups in one submit than the device's budget (lavapipe: below
 * vm.max_map_count, src/gpu/node.ts) stops with GpuLimitError instead of crashing the process.
 */
import { describe, expect, it } from 'vitest';
import { type Gpu, GpuLimitError } from '../../src/gpu';
import { loraScaleInfo } from '../../src/lora/config';
import { GpuLora } from '../../src/lora/gpu-lora';
import { initLoraModules } from '../../src/lora/init';
import { loraConfigFromSettings, resolveTargets } from '../../src/lora/targets';
import { ModelRunner } from '../../src/model/runner';
import { EvalRunnerKeeper, evalLoss, lossSums } from '../../src/train/evaluate';
import { type MicroBatch, Trainer } from '../../src/train/trainer';
import { getGpu } from '../helpers/gpu';
import { type TinyGpuModel, tinyGpuModel } from '../helpers/tiny-gpu-model';

function micro(vocab: number, B: number, S: number, seed: number, packed = false): MicroBatch {
  const T = B * S;
  const ids = new Uint32Array(T);
  const targets = new Uint32Array(T);
  const positions = new Uint32Array(T);
  const keyStart = new Uint32Array(T);
  for (let i = 0; i < T; i++) {
    ids[i] = (i * 29 + seed * 5) % vocab;
    targets[i] = (i * 13 + seed * 3 + 1) % vocab;
    // Packed: two examples per row, the second from column 3 on.
    const col = i % S;
    keyStart[i] = packed && col >= 3 ? 3 : 0;
    positions[i] = packed && col >= 3 ? col - 3 : col;
  }
  return { B, S, ids, targets, positions, counted: T, ...(packed ? { keyStart } : {}) };
}

/** LoRA rank `r` on every linear of `model` (B zero unless `gaussian`: PEFT's random B). */
function loraOn(gpu: Gpu, model: TinyGpuModel['model'], family: string, dropout: number, r = 2, gaussian = false) {
  const cfg = loraConfigFromSettings(
    {
      r,
      lora_alpha: 2 * r,
      lora_dropout: dropout,
      target_modules: 'all-linear',
      use_rslora: false,
      ...(gaussian ? { init_lora_weights: 'gaussian' as const } : {}),
    },
    family,
  );
  return GpuLora.fromArrays(gpu, model.linears, initLoraModules(cfg, resolveTargets(cfg, model.linears), r), (m) =>
    loraScaleInfo(cfg, m),
  );
}

/** LoRA r 2 on every linear of `model` and an AdamW trainer over it (maxTokens 2 x 8). */
function loraTrainer(
  gpu: Gpu,
  model: TinyGpuModel['model'],
  family: string,
  o: { dropout: number; lossEvery: number; checkpointActivations?: boolean },
) {
  const lora = loraOn(gpu, model, family, o.dropout);
  const optimizer = {
    optimizer: 'adamw' as const,
    lr: 1e-3,
    weightDecay: 0,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    maxGradNorm: 1,
    scheduler: 'constant' as const,
    warmup: 0,
    totalSteps: 10,
  };
  const trainer = new Trainer(gpu, model, lora, optimizer, {
    maxTokens: 2 * 8,
    lossEvery: o.lossEvery,
    checkpointActivations: o.checkpointActivations ?? false,
  });
  return { lora, trainer };
}

/** A tiny llama, a LoRA trainer over it, and a validation set: full batches, a packed one and a shorter last one. */
async function llamaWithVal(o: { dropout: number; lossEvery: number }) {
  const gpu = await getGpu();
  const model = (await tinyGpuModel(gpu, { modelType: 'llama', dtype: 'BF16', seed: 8 })).model;
  const V = model.config.vocabSize;
  const val = [micro(V, 2, 8, 1), micro(V, 2, 8, 2, true), micro(V, 1, 5, 3)];
  return { gpu, model, V, val, ...loraTrainer(gpu, model, 'llama', o) };
}

describe('evaluation: no bind groups once warm', () => {
  it("the trainer's validation between steps, and lossSums through an evaluation runner", async () => {
    const { gpu, model, V, lora, trainer, val } = await llamaWithVal({ dropout: 0.1, lossEvery: 2 });
    const runner = new ModelRunner(gpu, model, { mode: 'eval', maxTokens: 2 * 8 });
    try {
      const made = (before: number) => gpu.counters.bindGroups - before;
      const validation: number[] = [];
      const losses: number[] = [];
      for (let step = 0; step < 4; step++) {
        await trainer.trainStep([micro(V, 2, 8, 10 + step)], true);
        const before = gpu.counters.bindGroups;
        const r = await trainer.evaluate(val);
        validation.push(made(before));
        losses.push(r.loss);
      }
      expect(validation[0]).toBeGreaterThan(0);
      expect(validation.slice(1)).toEqual([0, 0, 0]);
      expect(losses.every(Number.isFinite)).toBe(true);

      // The engine's evaluate path: the same batches through one evaluation runner, a few times.
      const sums: { sum: number; count: number }[] = [];
      const evals: number[] = [];
      for (let i = 0; i < 3; i++) {
        const before = gpu.counters.bindGroups;
        sums.push(await lossSums(gpu, runner, val, lora));
        evals.push(made(before));
      }
      expect(evals[0]).toBeGreaterThan(0);
      expect(evals.slice(1)).toEqual([0, 0]);
      expect(sums[1]).toEqual(sums[0]);
      expect(sums[0]!.count).toBe(2 * 8 * 2 + 5);

      // evalLoss (the engine's evaluate, the run's baseline loss) sizes a runner for the data and
      // frees it at the end, so each call binds new activation buffers: a fixed number of bind
      // groups per call (those of the one-time runner, forgotten with its buffers), the same
      // for twice the batches, never one more per batch.
      const perCall: number[] = [];
      for (const batches of [val, val, [...val, ...val]]) {
        const before = gpu.counters.bindGroups;
        await evalLoss(gpu, model, batches, 2 * 8, lora);
        perCall.push(made(before));
      }
      expect(perCall[0]).toBeGreaterThan(0);
      expect(perCall[1]).toBe(perCall[0]);
      expect(perCall[2]).toBe(perCall[0]);
    } finally {
      runner.dispose();
      trainer.dispose();
      lora.dispose();
      model.dispose();
    }
  });

  it("the engine's kept evaluation runner: none from the second call, a fresh runner's loss, changes seen, memory freed", async () => {
    const { gpu, model, V, lora, trainer, val } = await llamaWithVal({ dropout: 0, lossEvery: 1 });
    const other = loraOn(gpu, model, 'llama', 0, 3, true); // another rank: other scratch, a bigger workspace
    const keeper = new EvalRunnerKeeper();
    const made = (before: number) => gpu.counters.bindGroups - before;
    const fresh = (l: GpuLora | null, batches = val) => evalLoss(gpu, model, batches, 2 * 8, l);
    const kept = (l: GpuLora | null, batches = val, maxTokens = 2 * 8) =>
      keeper.loss(gpu, model, batches, maxTokens, l);
    try {
      await trainer.trainStep([micro(V, 2, 8, 10)], true); // B no longer zero: the adapter counts
      const held = gpu.memory().total;
      const groups: number[] = [];
      const sums: { sum: number; count: number }[] = [];
      for (let i = 0; i < 3; i++) {
        const before = gpu.counters.bindGroups;
        sums.push(await kept(lora));
        groups.push(made(before));
      }
      expect(groups[0]).toBeGreaterThan(0);
      expect(groups.slice(1)).toEqual([0, 0]);
      expect(sums[1]).toEqual(sums[0]);
      expect(sums[2]).toEqual(sums[0]);
      expect(sums[0]).toEqual(await fresh(lora));
      expect(gpu.memory().total, 'the runner stays between calls').toBeGreaterThan(held);

      // The base model and another adapter through the same runner: a fresh runner's losses;
      // base, adapter, base again make no new groups (Compare's columns in turn).
      const base = await kept(null);
      expect(base).toEqual(await fresh(null));
      expect(base.sum).not.toBe(sums[0]!.sum);
      expect(await kept(other)).toEqual(await fresh(other));
      const before = gpu.counters.bindGroups;
      expect(await kept(null)).toEqual(base);
      expect(await kept(lora)).toEqual(sums[0]);
      expect(made(before)).toBe(0);

      // A training step changes the adapter's weights in place: the next evaluation sees them.
      await trainer.trainStep([micro(V, 2, 8, 11)], true);
      const trained = await kept(lora);
      expect(trained.sum).not.toBe(sums[0]!.sum);
      expect(trained).toEqual(await fresh(lora));

      // Longer batches make the runner again, larger; the first batches through it give the same sums.
      const long = [micro(V, 2, 12, 4)];
      expect(await kept(lora, long, 2 * 12)).toEqual(await evalLoss(gpu, model, long, 2 * 12, lora));
      expect(await kept(lora)).toEqual(trained);

      // release frees the runner (and every adapter's scratch); during an evaluation, at its end.
      keeper.release();
      expect(gpu.memory().total).toBe(held);
      const running = kept(lora);
      keeper.release();
      expect(await running).toEqual(trained);
      expect(gpu.memory().total).toBe(held);
    } finally {
      keeper.release();
      other.dispose();
      trainer.dispose();
      lora.dispose();
      model.dispose();
    }
  });

  it('a deep model (36 layers, activation checkpointing): steps with validation between them, none once warm', async () => {
    // The submit cache must hold a step's groups and the validation's together: 36 layers of
    // checkpointed training make ~3700, the validation ~700 more (src/gpu/recorder.ts). With less
    // room it dropped them all when full, and every step + validation made ~4500 again.
    const gpu = await getGpu();
    const tiny = await tinyGpuModel(gpu, { modelType: 'llama', seed: 9, overrides: { num_hidden_layers: 36 } });
    const model = tiny.model;
    const V = model.config.vocabSize;
    const { lora, trainer } = loraTrainer(gpu, model, 'llama', {
      dropout: 0.1,
      lossEvery: 2,
      checkpointActivations: true,
    });
    try {
      const made: number[] = [];
      for (let step = 0; step < 4; step++) {
        const before = gpu.counters.bindGroups;
        await trainer.trainStep([micro(V, 2, 8, 20 + step)], true);
        await trainer.evaluate([micro(V, 2, 8, 4)]);
        made.push(gpu.counters.bindGroups - before);
      }
      expect(made[0]).toBeGreaterThan(4096);
      expect(made.slice(1)).toEqual([0, 0, 0]);
    } finally {
      trainer.dispose();
      lora.dispose();
      model.dispose();
    }
  });

  it('a mixture-of-experts step over the bind-group budget stops with GpuLimitError, and fits once the budget allows', async () => {
    // 16 layers x 64 experts made ~62K groups in one step, past lavapipe's 65,530 mappings: Dawn
    // crashed the worker. The budget (here lowered so a small MoE meets it) turns that into an error.
    const gpu = await getGpu();
    const tiny = await tinyGpuModel(gpu, {
      modelType: 'mixtral',
      seed: 4,
      overrides: { num_hidden_layers: 3, num_local_experts: 6 },
    });
    const model = tiny.model;
    const { lora, trainer } = loraTrainer(gpu, model, 'mixtral', { dropout: 0, lossEvery: 1 });
    const before = gpu.submitCache.budget;
    try {
      gpu.submitCache.budget = 100;
      const V = model.config.vocabSize;
      await expect(trainer.trainStep([micro(V, 2, 8, 1)], true)).rejects.toThrow(GpuLimitError);
      await expect(trainer.trainStep([micro(V, 2, 8, 1)], true)).rejects.toThrow(/vm\.max_map_count/);
      gpu.submitCache.budget = null;
      const loss = await trainer.trainStep([micro(V, 2, 8, 1)], true);
      expect(Number.isFinite(loss?.loss)).toBe(true);
    } finally {
      gpu.submitCache.budget = before;
      trainer.dispose();
      lora.dispose();
      model.dispose();
    }
  });
});
