/**
 * The training loop on the GPU. One optimizer step = G micro-batches (gradient accumulation);
 * each micro-batch is one command-buffer submit (forward, loss, backward, and on the last one the
 * gradient norm and the optimizer update). The loss stays on the GPU and is read every
 * `lossEvery` steps.
 *
 * Loss: the mean next-token cross-entropy over all counted tokens of the step's batch (token-weighted
 * across sequences and micro-batches): every micro-batch's gradient is scaled by
 * 1 / (counted tokens of the whole step).
 */

import type { Gpu, Recorder } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { Workspace } from '../gpu/workspace';
import { recordSumSquares } from '../kernels/elementwise';
import { recordAdamW, recordSgd } from '../kernels/optim';
import type { GpuLora } from '../lora/gpu-lora';
import type { GpuModel } from '../model/gpu-model';
import { ModelRunner } from '../model/runner';
import { lossSums } from './evaluate';
import { withVirtualRows } from './virtual-rows';
import { type SchedulerName, learningRateAt } from './schedule';

export type OptimizerName = 'adamw' | 'sgd';

export interface OptimConfig {
  optimizer: OptimizerName;
  lr: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Global gradient-norm clip; 0 = off. */
  maxGradNorm: number;
  scheduler: SchedulerName;
  warmup: number;
  totalSteps: number;
}

/** One micro-batch: B right-padded sequences of length S (or packed rows, with keyStart). */
export interface MicroBatch {
  B: number;
  S: number;
  ids: Uint32Array; // [B*S]
  targets: Uint32Array; // [B*S], 0xFFFFFFFF = not counted
  positions: Uint32Array; // [B*S]
  counted: number;
  /** Packed rows: [B*S], each token's example start in its row (attention stays within it). */
  keyStart?: Uint32Array;
}

export interface StepResult {
  step: number; // 1-based optimizer steps done
  lr: number;
  tokens: number; // counted tokens in this step
  /**
   * Mean loss over the window since the last read (only on steps where the loss was read, and
   * null when that window counted no tokens).
   */
  loss: number | null;
}

export interface TrainerOptions {
  maxTokens: number; // largest B*S of any micro-batch
  /** Read the loss back every N optimizer steps (and always when asked). */
  lossEvery?: number;
  /** Base seed for LoRA dropout masks. */
  seed?: number;
  ceChunk?: number;
  /** Recompute layers in backward (see RunnerOptions.checkpointActivations). */
  checkpointActivations?: boolean;
}

export class Trainer {
  readonly runner: ModelRunner;
  private stepIndex = 0;
  private windowSteps = 0;
  private readonly lossEvery: number;
  private readonly seed: number;
  private readonly normSq: Tensor;
  private wsCache: Workspace | null = null;
  /** Completion of the last step submitted without a readback. */
  private inFlight: Promise<void> | null = null;

  constructor(
    readonly gpu: Gpu,
    readonly model: GpuModel,
    readonly lora: GpuLora,
    readonly optim: OptimConfig,
    opts: TrainerOptions,
  ) {
    if (lora.parameterCount === 0) throw new GpuError('The adapter has nothing to train.');
    this.runner = new ModelRunner(gpu, model, {
      mode: 'train',
      maxTokens: opts.maxTokens,
      ceChunk: opts.ceChunk,
      checkpointActivations: opts.checkpointActivations,
    });
    lora.enableTraining(optim.optimizer === 'adamw' ? 2 : 0);
    this.lossEvery = Math.max(1, opts.lossEvery ?? 1);
    this.seed = opts.seed ?? 0;
    this.normSq = gpu.tensor('gradNormSq', [1], 'f32', 'scratch');
    const rec = gpu.recorder('reset');
    this.runner.recordResetLoss(rec);
    // A prefix trained through its projection MLP: the table from the MLP's parameters on the GPU,
    // here and after every update (src/lora/prefix-mlp.ts), so every step and evaluation sees it.
    lora.recordPrefixTable(rec);
    rec.submit();
  }

  /** Optimizer steps done so far (restored from checkpoints with `setStep`). */
  get step(): number {
    return this.stepIndex;
  }

  setStep(step: number): void {
    this.stepIndex = step;
  }

  lrAt(step: number): number {
    const o = this.optim;
    return learningRateAt(o.scheduler, o.lr, step, o.totalSteps, o.warmup);
  }

  /**
   * Runs one optimizer step over `micro` (G micro-batches). Reads the loss when this step completes
   * a window of `lossEvery` steps or when `readLoss` is set.
   */
  async trainStep(micro: MicroBatch[], readLoss = false): Promise<StepResult> {
    const gpu = this.gpu;
    const counted = micro.reduce((n, b) => n + b.counted, 0);
    const lr = this.lrAt(this.stepIndex);
    const gradScale = counted > 0 ? 1 / counted : 0;
    const P = this.lora.virtual()?.P ?? 0;
    micro.forEach((given, g) => {
      const b = withVirtualRows(given, P);
      this.runner.setBatch(b.ids, b.positions, b.targets, b.keyStart);
      const rec = gpu.recorder(`step${this.stepIndex}.${g}`, 'train');
      const f = {
        B: b.B,
        S: b.S,
        lora: this.lora,
        seed: this.seed * 1_000_003 + this.stepIndex * 64 + g,
        dropout: true,
        packed: !!b.keyStart,
      };
      this.runner.recordForward(rec, f);
      this.runner.recordLoss(rec, b.B * b.S, gradScale);
      this.runner.recordBackward(rec, f, g > 0);
      if (g === micro.length - 1) {
        // a projected prefix: the table's gradient through the MLP first, its table renewed after
        this.lora.recordPrefixGrads(rec, this.runnerWorkspace());
        this.recordOptimizer(rec, lr);
        this.lora.recordPrefixTable(rec);
      }
      rec.submit();
    });
    this.stepIndex++;
    this.windowSteps++;
    let loss: number | null = null;
    if (readLoss || this.windowSteps >= this.lossEvery) {
      loss = await this.readWindowLoss();
      this.inFlight = null;
    } else {
      // No readback: the step is only queued. Keep at most two steps in the GPU's queue (this one
      // and the one before), so the CPU never runs far ahead: progress, tokens/s, pause and stop
      // stay true to what the GPU has done, and errors surface within a step.
      const previous = this.inFlight;
      this.inFlight = gpu.device.queue.onSubmittedWorkDone();
      if (previous) {
        await previous;
        gpu.throwIfFailed();
      }
    }
    this.runner.collect();
    return { step: this.stepIndex, lr, tokens: counted, loss };
  }

  private recordOptimizer(rec: Recorder, lr: number): void {
    const o = this.optim;
    const trainables = this.lora.trainables();
    const clip = o.maxGradNorm > 0;
    if (clip) {
      recordSumSquares(this.gpu, rec, {
        tensors: trainables.map((t) => ({ t: t.grad, n: t.n })),
        out: this.normSq,
        ws: this.runnerWorkspace(),
      });
    }
    for (const t of trainables) {
      if (o.optimizer === 'adamw') {
        recordAdamW(this.gpu, rec, {
          param: t.param,
          grad: t.grad,
          m: t.state[0]!,
          v: t.state[1]!,
          n: t.n,
          lr,
          beta1: o.beta1,
          beta2: o.beta2,
          eps: o.eps,
          weightDecay: o.weightDecay,
          step: this.stepIndex + 1,
          normSq: clip ? this.normSq : undefined,
          maxNorm: clip ? o.maxGradNorm : undefined,
        });
      } else {
        recordSgd(this.gpu, rec, {
          param: t.param,
          grad: t.grad,
          n: t.n,
          lr,
          weightDecay: o.weightDecay,
          normSq: clip ? this.normSq : undefined,
          maxNorm: clip ? o.maxGradNorm : undefined,
        });
      }
    }
  }

  /** Scratch of the gradient-norm reduction and the prefix MLP's backward (separate from the runner's). */
  private runnerWorkspace(): Workspace {
    if (!this.wsCache) this.wsCache = new Workspace(this.gpu);
    return this.wsCache;
  }

  /**
   * Reads and resets the loss accumulated since the last read: the mean over counted tokens, or
   * null when the window counted none (nothing to report, which is not a divergence).
   */
  async readWindowLoss(): Promise<number | null> {
    const { sum, count } = await this.runner.readLoss(true);
    this.windowSteps = 0;
    return count > 0 ? sum / count : null;
  }

  /** Mean loss over `batches` without touching gradients or the training loss window. */
  async evaluate(batches: Iterable<MicroBatch>): Promise<{ loss: number; tokens: number }> {
    const gpu = this.gpu;
    // Preserve the training window: read it first so evaluation does not mix into it.
    const before = await this.runner.readLoss();
    const { sum, count } = await lossSums(gpu, this.runner, batches, this.lora);
    // Restore the training window's partial sums.
    gpu.write(this.runner.lossSum, new Float32Array([before.sum]));
    gpu.write(this.runner.countSum, new Float32Array([before.count]));
    return { loss: count > 0 ? sum / count : NaN, tokens: count };
  }

  dispose(): void {
    this.runner.dispose();
    this.wsCache?.dispose();
    this.gpu.free(this.normSq);
  }
}
