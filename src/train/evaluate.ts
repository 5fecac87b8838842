/**
 * The evaluation pass both the trainer (validation during a run) and the engine (a loaded adapter,
 * or the base model) use: each batch's forward without dropout and its next-token loss, summed on
 * the GPU and read back once.
 */

import type { Gpu } from '../gpu/context';
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

/**
 * The same through an evaluation runner of its own, sized for `maxTokens` (the largest B*S) and,
 * with a prompt or prefix, `maxRows` rows (the largest B) of its virtual tokens.
 */
export async function evalLoss(
  gpu: Gpu,
  model: GpuModel,
  batches: Iterable<Batch> | AsyncIterable<Batch>,
  maxTokens: number,
  lora: GpuLora | null,
  maxRows = 0,
): Promise<{ sum: number; count: number }> {
  const P = lora?.virtual()?.P ?? 0;
  const runner = new ModelRunner(gpu, model, { mode: 'eval', maxTokens: maxTokens + maxRows * P });
  try {
    return await lossSums(gpu, runner, batches, lora);
  } finally {
    runner.dispose();
  }
}
