/**
 * What a model will cost before its weights are downloaded, from config.json alone: parameters,
 * download size, trainable LoRA parameters and GPU memory for training at the chosen settings,
 * and whether it fits this GPU's limits. It follows the engine's own estimate (Engine.estimate),
 * which replaces it once the model is loaded.
 */
import type { GpuSummary, LoraSettings, TrainSettings } from '../engine/types';
import { loraRank } from '../lora/config';
import { loraConfigFromSettings, resolveTargets } from '../lora/targets';
import type { ModelConfig } from '../model/config';
import { estimateModel } from '../model/load';
import { trainingMemory } from '../engine/memory';
import { describeModel, expectedTensors, hasConv1dWeights, linearModuleNames, linearModules } from '../model/registry';

export interface ModelCost {
  parameters: number;
  /** Bytes of weights to download (null when the dtype is unknown and no file sizes are known). */
  downloadBytes: number | null;
  /** Bytes per weight on the GPU (16-bit checkpoints stay 16-bit). */
  weightBytes: number;
  trainableParams: number | null;
  trainablePercent: number | null;
  activationBytes: number;
  loraBytes: number;
  totalBytes: number;
  largestTensorBytes: number;
  largestTensorName: string;
  linearModules: string[];
  /** Reasons the model cannot be trained on this GPU (empty when it can). */
  blockers: string[];
  /** Things that may go wrong (e.g. more memory than typical integrated GPUs have). */
  warnings: string[];
}

/** Memory above which integrated GPUs and phones usually fail. */
export const TYPICAL_GPU_BUDGET = 4 * 2 ** 30;

function bytesPer(dtype: string | null): number {
  return dtype === 'F16' || dtype === 'BF16' ? 2 : 4;
}

const GiB = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;

export function estimateCost(
  config: ModelConfig,
  lora: LoraSettings,
  train: TrainSettings,
  gpu: Pick<GpuSummary, 'maxBufferSize' | 'maxStorageBufferBindingSize'> | null,
  opts: { downloadBytes?: number | null; storageFree?: number | null } = {},
): ModelCost {
  const est = estimateModel(config);
  const per = bytesPer(est.checkpointDtype);
  const weightBytes = est.params * per;
  const expected = expectedTensors(config);
  let largest = expected[0]!;
  for (const t of expected)
    if (t.shape.reduce((a, b) => a * b, 1) > largest.shape.reduce((a, b) => a * b, 1)) largest = t;
  const largestTensorBytes = largest.shape.reduce((a, b) => a * b, 1) * per;

  // LoRA modules, exactly as the engine will resolve them.
  let trainable: number | null = null;
  let loraRankSum = 0;
  const warnings: string[] = [];
  const blockers: string[] = [];
  try {
    const arch = describeModel(config, new Map(expected.map((t) => [t.key, { shape: t.shape }])));
    const linears = linearModules(arch);
    const cfg = loraConfigFromSettings(lora, config.modelType, { fanInFanOut: hasConv1dWeights(config) });
    const targets = resolveTargets(cfg, linears);
    trainable = 0;
    for (const t of targets) {
      const r = loraRank(cfg, t.path);
      trainable += r * (t.inF + t.outF);
      loraRankSum += r;
    }
  } catch (e) {
    warnings.push((e as Error).message);
  }

  const T = train.batch * train.maxLen;
  const run = { tokens: T, trainable: trainable ?? 0, rankSum: loraRankSum, optimizer: train.optimizer };
  const mem = trainingMemory(config, { ...run, checkpoint: train.activationCheckpointing });
  const { activationBytes, loraBytes } = mem;
  const totalBytes = weightBytes + mem.totalBytes;

  if (gpu) {
    if (largestTensorBytes > gpu.maxBufferSize) {
      blockers.push(
        `Its largest weight (${largest.key}, ${GiB(largestTensorBytes)}) is bigger than this GPU's largest buffer ` +
          `(${GiB(gpu.maxBufferSize)}). Pick a smaller model.`,
      );
    }
    const act = mem.widestActivationBytes;
    if (act > gpu.maxStorageBufferBindingSize) {
      blockers.push(
        `At batch ${train.batch} × max length ${train.maxLen}, one activation tensor needs ${GiB(act)}, over this GPU's ` +
          `binding limit of ${GiB(gpu.maxStorageBufferBindingSize)}. Lower the batch size or the max sequence length.`,
      );
    }
  }
  if (totalBytes > TYPICAL_GPU_BUDGET) {
    let lower = 'lower the batch size or max length, or pick a smaller model';
    if (!train.activationCheckpointing) {
      const withCheckpointing = weightBytes + trainingMemory(config, { ...run, checkpoint: true }).totalBytes;
      lower = `turn on activation checkpointing (about ${GiB(withCheckpointing)}), ${lower}`;
    }
    warnings.push(
      `Training needs about ${GiB(totalBytes)} of GPU memory; integrated GPUs often have less. If it fails, ${lower}.`,
    );
  }
  const download = opts.downloadBytes !== undefined ? opts.downloadBytes : est.checkpointBytes;
  if (download !== null && opts.storageFree !== undefined && opts.storageFree !== null && download > opts.storageFree) {
    warnings.push(
      `The download (${GiB(download)}) is larger than the free browser storage (${GiB(opts.storageFree)}): it will work, ` +
        'but will not be kept and is downloaded again next time.',
    );
  }
  return {
    parameters: est.params,
    downloadBytes: download,
    weightBytes,
    trainableParams: trainable,
    trainablePercent: trainable === null ? null : (100 * trainable) / Math.max(1, est.params + trainable),
    activationBytes,
    loraBytes,
    totalBytes,
    largestTensorBytes,
    largestTensorName: largest.key,
    linearModules: linearModuleNames(config),
    blockers,
    warnings,
  };
}
