/**
 * The evaluation pass both the trainer (validation during a run) and the engine (a loaded adapter,
 * or the base model) use: each batch's forward without dropout and its next-token loss, summed on
 * the GPU and read back once. The engine keeps its evaluation runner between calls (EvalRunnerKeeper).
 */

import type { Gpu } from '../gpu/context';
import { InUse } from '../gpu/in-use';
import type { GpuLora } from '../lora/gpu-lora';
import type { GpuModel } from '../model/gpu-model';
import { ModelRunner } from '../model/runner';
import type { Batch } from './batch';
import { withVirtualRows } from './virtual-rows';

/**
 * Summed loss and counted tokens of `batches` through `runner` (and `lora`). Resets the runner's
 * loss sums first; the batches may be made as they are consumed.
 */
export async function lossSums(
  gpu: Gpu,
  runner: ModelRunner,
  batches: Iterable<Batch> | AsyncIterable<Batch>,
  lora: GpuLora | null,
): Promise<{ sum: number; count: number }> {
  let rec = gpu.recorder('eval-reset');
  runner.recordResetLoss(rec);
  rec.submit();
  const P = lora?.virtual()?.P ?? 0;
  for await (const given of batches) {
    const b = withVirtualRows(given, P);
    runner.setBatch(b.ids, b.positions, b.targets, b.keyStart);
    rec = gpu.recorder('eval');
    runner.recordForward(rec, { B: b.B, S: b.S, lora, dropout: false, packed: !!b.keyStart });
    runner.recordLoss(rec, b.B * b.S, null);
    rec.submit();
  }
  return runner.readLoss();
}

/** EvalRunnerKeeper.loss through a runner of its own, freed at the end (a run's baseline loss). */
export async function evalLoss(...args: Parameters<EvalRunnerKeeper['loss']>): Promise<{ sum: number; count: number }> {
  const once = new EvalRunnerKeeper();
  try {
    return await once.loss(...args);
  } finally {
    once.release();
  }
}

/**
 * The engine's evaluation runner, kept between evaluations while the model is the same and it is
 * large enough for the batches (as generation keeps its Generator): a repeated evaluation makes no
 * buffers and, its bind groups kept in the submit cache, none of those either. Nothing in it
 * depends on the adapter's values or the model's weights (read at each dispatch), so a changed
 * adapter or weights are seen; an adapter's own scratch (LoRA S, DoRA Z, (IA)³ outputs) is made on
 * its first use and kept with the runner. `release` frees it all (an adapter forgotten, a training
 * run starting, the model unloaded); during an evaluation, at its end.
 */
export class EvalRunnerKeeper {
  private runner: ModelRunner | null = null;
  private readonly inUse = new InUse();

  /**
   * lossSums through the kept runner, made again when it is for another model or smaller than
   * `maxTokens` (the largest B*S) plus, with a prompt or prefix, `maxRows` rows (the largest B)
   * of its virtual tokens.
   */
  async loss(
    gpu: Gpu,
    model: GpuModel,
    batches: Iterable<Batch> | AsyncIterable<Batch>,
    maxTokens: number,
    lora: GpuLora | null,
    maxRows = 0,
  ): Promise<{ sum: number; count: number }> {
    const need = maxTokens + maxRows * (lora?.virtual()?.P ?? 0);
    if (this.runner && (this.runner.model !== model || this.runner.maxTokens < need)) this.free();
    this.runner ??= new ModelRunner(gpu, model, { mode: 'eval', maxTokens: need });
    const runner = this.runner;
    return this.inUse.during(async () => {
      const r = await lossSums(gpu, runner, batches, lora);
      runner.collect(); // scratch outgrown by a larger adapter (the submits have completed)
      return r;
    });
  }

  /** Frees the runner now, or when the evaluation in progress ends. */
  release(): void {
    this.inUse.whenIdle(() => this.free());
  }

  private free(): void {
    this.runner?.dispose();
    this.runner = null;
  }
}
