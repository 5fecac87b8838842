/**
 * One training run, from a prepared dataset and an adapter's starting weights to its trained
 * weights: the batch plan, the Trainer, the base model's validation loss, validation every
 * `evalEvery` steps, progress, checkpoints, pause and stop between steps, the divergence checks,
 * and the warnings on a finished run. Engine.train chooses the adapter (new, imported or resumed)
 * and turns the result into PEFT files; nothing here knows the engine, the worker or the UI.
 */

import type { Gpu } from '../gpu/context';
import type { LoraConfig } from '../lora/config';
import { type MutatedBase, gpuAdapter, peftConversion, prepareWeightInit } from '../lora/from-weights';
import type { LoraModuleArrays } from '../lora/gpu-lora';
import type { LoftqBackboneModule } from '../lora/loftq-backbone';
import { initUsesWeights } from '../lora/methods';
import { type OtherAdapter, otherArrays, otherFromGpu, otherOnGpu } from '../lora/other';
import type { GpuModel } from '../model/gpu-model';
import { type Batch, BatchSchedule } from './batch';
import { CHECKPOINT_VERSION, type Checkpoint, type CheckpointRun, encodeCheckpoint } from './checkpoint';
import type { PreparedDataset } from './data/prepared';
import { evalLoss } from './evaluate';
import { Trainer } from './trainer';
import type { TrainProgress, TrainResult, TrainSettings, TrainStage } from './types';

/** Steps whose records are tokenized ahead of the one running. */
const PREFETCH_STEPS = 4;

/** LoRA weights above this size mean the run went wrong (A starts near 1/sqrt(in), B at 0). */
const RUNAWAY_WEIGHT = 100;

/** A run whose loss or weights stopped being finite. */
export class TrainingDivergedError extends Error {
  constructor(what: string, step: number, lr: number) {
    super(
      `Training diverged at step ${step}: ${what}. Nothing from this step on was saved (the last checkpoint, if any, ` +
        `is from before it). Start again with a lower learning rate (now ${lr}) and max grad norm on (e.g. 1).`,
    );
    this.name = 'TrainingDivergedError';
  }
}

/** Pause, resume and stop, asked for from outside while a run awaits its steps. */
export class RunControl {
  private pausedNow = false;
  private stopNow = false;
  private waiters: (() => void)[] = [];

  get paused(): boolean {
    return this.pausedNow;
  }

  get stopRequested(): boolean {
    return this.stopNow;
  }

  pause(): void {
    this.pausedNow = true;
  }

  resume(): void {
    this.pausedNow = false;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Stops after the current step (a paused run stops at once). */
  stop(): void {
    this.stopNow = true;
    this.resume();
  }

  /** Neither paused nor stopping (at a run's start and end). */
  reset(): void {
    this.pausedNow = false;
    this.stopNow = false;
  }

  /** Resolves once the run is resumed or stopped. */
  async waitWhilePaused(): Promise<void> {
    while (this.pausedNow && !this.stopNow) await new Promise<void>((r) => this.waiters.push(r));
  }
}

export interface TrainRunInput {
  gpu: Gpu;
  model: GpuModel;
  /** What checkpoints record of the run: the base model's id, the LoRA config, the settings, the frozen weights. */
  run: CheckpointRun;
  /** The token that pads training batches. */
  padId: number;
  data: PreparedDataset;
  maxLen: number;
  /** The adapter's starting weights (new, imported, or the checkpoint's); empty with `other`. */
  modules: LoraModuleArrays[];
  /** An adapter of another method ((IA)³, prompt or prefix tuning) instead of LoRA modules. */
  other?: OtherAdapter | null;
  /** The checkpoint this run goes on from (its modules are `modules`). */
  resume: Checkpoint | null;
  control: RunControl;
  /** Before the base model's loss and the first step (the engine loads its saved kernel choices). */
  prepare?: () => Promise<void>;
  /**
   * After each step has reported its progress (the engine tunes the matmul kernels of the shapes
   * met without a choice, a time budget at a time, so training goes on with the current kernels
   * meanwhile and switches class by class; it calls `stage` with its progress; after the last step
   * too, `last` true, when it tunes every class left, so what a run met is tuned for the next). Its
   * time is not training time.
   */
  afterStep?: (stage: (tune: { done: number; total: number }) => void, last: boolean) => Promise<void>;
  onProgress?: (p: TrainProgress) => void;
  /** Called before the base model's validation loss is measured, and before the first step. */
  onStage?: (s: TrainStage) => void;
  onCheckpoint?: (blob: Uint8Array, step: number) => Promise<void> | void;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** The adapter's arrays, or a divergence error when any value is NaN or infinite. */
function finiteModules<T extends { path: string; a: Float32Array; b: Float32Array }>(
  modules: T[],
  step: number,
  lr: number,
): T[] {
  for (const m of modules) {
    for (const [name, arr] of [
      ['lora_A', m.a],
      ['lora_B', m.b],
    ] as const) {
      for (let i = 0; i < arr.length; i++) {
        if (!Number.isFinite(arr[i]!)) throw new TrainingDivergedError(`${m.path}.${name} holds ${arr[i]}`, step, lr);
      }
    }
  }
  return modules;
}

/** An (IA)³ / prompt / prefix adapter's values, or a divergence error when any is NaN or infinite. */
function finiteOther(o: OtherAdapter, step: number, lr: number): OtherAdapter {
  for (const { name, data } of otherArrays(o)) {
    const bad = data.find((v) => !Number.isFinite(v));
    if (bad !== undefined) throw new TrainingDivergedError(`${name} holds ${bad}`, step, lr);
  }
  return o;
}

/** What looks wrong with a finished run: weights that ran away, validation worse than the base model. */
function runWarnings(
  modules: { path: string; a: Float32Array; b: Float32Array }[],
  train: TrainSettings,
  finalVal: number | null,
  baseVal: number | null,
): string[] {
  const out: string[] = [];
  let max = 0;
  let where = '';
  for (const m of modules) {
    for (const [name, arr] of [
      ['lora_A', m.a],
      ['lora_B', m.b],
    ] as const) {
      for (let i = 0; i < arr.length; i++) {
        const v = Math.abs(arr[i]!);
        if (v > max) {
          max = v;
          where = `${m.path}.${name}`;
        }
      }
    }
  }
  if (max > RUNAWAY_WEIGHT) {
    out.push(
      `The adapter's weights ran away: ${where} holds ${max.toPrecision(3)} (trained LoRA weights are usually below 1). ` +
        `The learning rate (${train.lr}) is probably far too high${train.maxGradNorm > 0 ? '' : ' and gradient clipping is off'}; ` +
        `its outputs are likely garbage. Train again with a lower learning rate${train.maxGradNorm > 0 ? '' : ' and max grad norm 1'}.`,
    );
  }
  if (finalVal !== null && baseVal !== null && finalVal > baseVal) {
    out.push(
      `The final validation loss (${finalVal.toFixed(4)}) is above the base model's (${baseVal.toFixed(4)}): on held-out ` +
        'data the adapter makes the model worse (overfitting, or a learning rate too high). Try fewer steps or a lower learning rate.',
    );
  }
  return out;
}

/**
 * What a run saves: a LoRA as trained; PiSSA / OLoRA converted to apply to the untouched base;
 * LoftQ as trained with init_lora_weights true (PEFT's LoftQ example sets it so that loading does
 * not quantize the base again) and the quantized base weights its adapter needs, by checkpoint key.
 */
function savedAdapter(
  linears: readonly { path: string; weightKey: string }[],
  cfg: LoraConfig,
  modules: LoraModuleArrays[],
  mutated: MutatedBase | null,
): {
  config: LoraConfig;
  modules: LoraModuleArrays[];
  quantizedBase?: Map<string, Float32Array>;
  backbone?: LoftqBackboneModule[];
} {
  if (!mutated) return { config: cfg, modules };
  if (cfg.init_lora_weights === 'loftq') {
    const key = new Map(linears.map((l) => [l.path, l.weightKey]));
    const quantizedBase = new Map([...mutated.quantizedBase].map(([path, q]) => [key.get(path)!, q]));
    return { config: { ...cfg, init_lora_weights: true }, modules, quantizedBase, backbone: mutated.backbone };
  }
  return peftConversion(cfg, modules, mutated.initial);
}

/**
 * Runs the training to its end (or a stop) and returns the result with the trained weights, which
 * are checked finite. The adapter and the trainer live on the GPU for the run only.
 */
export async function trainRun(input: TrainRunInput): Promise<
  TrainResult & {
    modules: LoraModuleArrays[];
    other: OtherAdapter | null;
    saved: ReturnType<typeof savedAdapter>;
  }
> {
  const { gpu, data, resume, control } = input;
  const { train, lora: cfg } = input.run;
  const plan = new BatchSchedule(data.train.length, {
    batchSize: train.batch,
    gradAccum: train.gradAccum,
    shuffle: train.shuffle,
    seed: train.seed,
    steps: train.steps > 0 ? train.steps : undefined,
    epochs: train.steps > 0 ? undefined : train.epochs,
  });
  const shape = { batchSize: train.batch, maxLen: input.maxLen, padId: input.padId, packing: train.packing === true };
  // Validation batches (padded with 0, as they always were) are made for the base model's loss.
  let valBatches: Batch[] | null = null;
  const valShape = { batchSize: train.batch, maxLen: input.maxLen };
  const other = input.other ?? null;
  // prompt / prefix tuning: each row of a micro-batch also carries the P virtual tokens
  const virtualRows = other && other.method !== 'ia3' ? train.batch * other.config.num_virtual_tokens : 0;
  const maxTokens =
    Math.max(data.maxTokens(shape), data.val.length ? data.maxTokens(valShape, 'validation') : 0) + virtualRows;
  // PiSSA / OLoRA: A0, B0 from the frozen weights, which become W - s·B0·A0 after the base model's
  // loss is measured and go back when the run ends; DoRA: the magnitude and ||W||² (src/lora/from-weights.ts).
  const start = input.modules.map((m) => ({ ...m }));
  const mutated =
    !other && initUsesWeights(cfg.init_lora_weights)
      ? await prepareWeightInit(gpu, input.model, cfg, start, train.seed, resume !== null)
      : null;
  const gpuLora = other ? otherOnGpu(gpu, input.model.linears, other) : await gpuAdapter(gpu, input.model, cfg, start);
  const trainer = new Trainer(
    gpu,
    input.model,
    gpuLora,
    {
      optimizer: train.optimizer,
      lr: train.lr,
      weightDecay: train.weightDecay,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      maxGradNorm: train.maxGradNorm,
      scheduler: train.scheduler,
      warmup: train.warmup,
      totalSteps: plan.totalSteps,
    },
    { maxTokens, lossEvery: train.lossEvery, seed: train.seed, checkpointActivations: train.activationCheckpointing },
  );
  const history: TrainResult['history'] = [];
  if (resume) {
    plan.restore(resume.meta.dataPosition);
    trainer.setStep(resume.meta.step);
    gpuLora.loadState(resume.optimizerState);
    if (Array.isArray(resume.meta.history)) history.push(...resume.meta.history);
  }
  let baseValLoss: number | null = null;
  const prior = resume?.meta.elapsedSeconds;
  const priorSeconds = typeof prior === 'number' && Number.isFinite(prior) && prior > 0 ? prior : 0;
  control.reset();
  const started = performance.now();
  let tokens = 0;
  let pausedMs = 0;
  let lastLoss: number | null = null;
  let lastVal: number | null = null;
  const checkpoint = async () => {
    if (!input.onCheckpoint) return;
    const blob = encodeCheckpoint({
      meta: {
        version: CHECKPOINT_VERSION,
        step: trainer.step,
        dataPosition: plan.position,
        run: input.run,
        history,
        elapsedSeconds: priorSeconds + (performance.now() - started - pausedMs) / 1000,
        savedAt: new Date().toISOString(),
      },
      modules: finiteModules(await gpuLora.toArrays(), trainer.step, train.lr),
      other: other ? finiteOther(await otherFromGpu(gpuLora, other), trainer.step, train.lr) : null,
      optimizerState: await gpuLora.stateArrays(),
    });
    await input.onCheckpoint(blob, trainer.step);
  };
  try {
    const stage = (s: TrainStage['stage'], tune?: TrainStage['tune']) =>
      input.onStage?.({ stage: s, step: trainer.step, totalSteps: plan.totalSteps, ...(tune ? { tune } : {}) });
    await input.prepare?.();
    if (data.val.length) {
      stage('baseline');
      // The base model's validation loss, to compare the adapter's with at the end.
      valBatches = await collect(data.evalBatches('validation', valShape));
      const base = await evalLoss(gpu, input.model, valBatches, Math.max(...valBatches.map((b) => b.B * b.S)), null);
      baseValLoss = base.count > 0 ? base.sum / base.count : null;
    }
    mutated?.apply();
    stage('first-step');
    for (;;) {
      if (control.paused) {
        const t0 = performance.now();
        await control.waitWhilePaused();
        pausedMs += performance.now() - t0;
      }
      if (control.stopRequested) break;
      const planned = plan.next();
      if (!planned) break;
      const micro = await data.stepBatches(planned, shape);
      // The records of the next steps are tokenized while this one runs (lazily tokenized data).
      data.prefetch(plan.peek(PREFETCH_STEPS).map((p) => data.train[p]!));
      const last = planned.step >= plan.totalSteps;
      const evalDue = data.val.length > 0 && (last || (train.evalEvery > 0 && planned.step % train.evalEvery === 0));
      const ckptDue = train.checkpointEvery > 0 && planned.step % train.checkpointEvery === 0;
      // A step whose records all turned out unusable (lazily tokenized data) has nothing to run.
      if (micro.length === 0) continue;
      // The loss is also read before a checkpoint, so a diverged run never writes one.
      const res = await trainer.trainStep(micro, last || evalDue || ckptDue);
      tokens += res.tokens;
      if (res.loss !== null && !Number.isFinite(res.loss))
        throw new TrainingDivergedError(`the training loss is ${res.loss}`, res.step, train.lr);
      if (res.loss !== null) lastLoss = res.loss;
      let valLoss: number | null = null;
      if (evalDue) {
        valBatches ??= await collect(data.evalBatches('validation', valShape));
        valLoss = (await trainer.evaluate(valBatches)).loss;
        lastVal = valLoss;
      }
      history.push({ step: res.step, loss: res.loss, valLoss, lr: res.lr });
      const elapsed = (performance.now() - started - pausedMs) / 1000;
      const remaining = plan.totalSteps - res.step;
      input.onProgress?.({
        step: res.step,
        totalSteps: plan.totalSteps,
        epoch: planned.epoch,
        lr: res.lr,
        loss: res.loss,
        valLoss,
        tokensPerSecond: tokens / Math.max(elapsed, 1e-6),
        etaSeconds: (elapsed / Math.max(1, tokens)) * (res.tokens || 1) * remaining,
        gpuBytes: gpu.memory().total,
        // The whole run's time: a resumed run goes on from where its checkpoint was.
        elapsedSeconds: priorSeconds + elapsed,
      });
      if (ckptDue && !last) await checkpoint();
      if (input.afterStep) {
        const t0 = performance.now();
        await input.afterStep((tune) => stage('tuning-kernels', tune), last);
        pausedMs += performance.now() - t0; // not training time
      }
    }
    if (control.stopRequested && trainer.step > 0 && lastLoss === null) lastLoss = await trainer.readWindowLoss();
    await checkpoint();
    const modules = finiteModules(await gpuLora.toArrays(), trainer.step, train.lr);
    const trained = other ? finiteOther(await otherFromGpu(gpuLora, other), trainer.step, train.lr) : null;
    return {
      baseValLoss,
      warnings: runWarnings(modules, train, lastVal, baseValLoss),
      steps: trainer.step,
      finalLoss: lastLoss,
      finalValLoss: lastVal,
      tokens,
      seconds: priorSeconds + (performance.now() - started - pausedMs) / 1000,
      stoppedEarly: control.stopRequested,
      history,
      modules,
      other: trained,
      // What is saved: PiSSA / OLoRA converted to a LoRA on the untouched base, as PEFT does; LoftQ
      // as trained, with its quantized base (src/lora/from-weights.ts).
      saved: savedAdapter(input.model.linears, cfg, modules, mutated),
    };
  } finally {
    mutated?.restore();
    await data.stopPrefetch();
    trainer.dispose();
    gpuLora.dispose();
    control.reset();
  }
}
