/**
 * What a model will cost before its weights are downloaded, from config.json alone: parameters,
 * download size, trainable LoRA parameters and GPU memory for training at the chosen settings,
 * and whether it fits this GPU's limits. It follows the engine's own estimate (Engine.estimate),
 * which replaces it once the model is loaded. The frozen weights are costed 16-bit or 4-bit NF4 as
 * chosen, and when 16-bit ones would not fit, the card offers 4-bit (nf4Offer).
 */
import type { FrozenWeightsSettings, GpuSummary, LoraSettings, TrainSettings } from '../engine/types';
import { loraConfigFromSettings } from '../lora/targets';
import type { ModelConfig } from '../model/config';
import { estimateModel } from '../model/load';
import { type FrozenFormat, frozenWeightBytes, loraTrained, trainingMemory } from '../engine/memory';
import { describeModel, expectedTensors, hasConv1dWeights, linearModuleNames, linearModules } from '../model/registry';

export interface ModelCost {
  parameters: number;
  /** Bytes of weights to download (null when the dtype is unknown and no file sizes are known). */
  downloadBytes: number | null;
  /** GPU bytes of the frozen weights in the format costed (16-bit stays 16-bit; NF4 is ~4.1 bits). */
  weightBytes: number;
  /** The frozen-weight format costed: 'nf4' when chosen or when the checkpoint is a 4-bit one. */
  quantize: 'nf4' | null;
  /** The checkpoint is a bitsandbytes 4-bit one (no 16-bit choice). */
  prequantized: boolean;
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
  /**
   * With 16-bit weights that would not fit (over the typical budget, or blocked by a buffer limit):
   * what 4-bit NF4 frozen weights would need instead, when they fit this GPU's limits.
   */
  nf4Offer: { totalBytes: number; weightBytes: number } | null;
}

/** Memory above which integrated GPUs and phones usually fail. */
export const TYPICAL_GPU_BUDGET = 4 * 2 ** 30;

function bytesPer(dtype: string | null): number {
  return dtype === 'F16' || dtype === 'BF16' ? 2 : 4;
}

const GiB = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;

type Gpu = Pick<GpuSummary, 'maxBufferSize' | 'maxStorageBufferBindingSize'>;

/** The weights in one frozen format: their bytes, the largest buffer, and what the GPU's limits refuse. */
function frozenCost(config: ModelConfig, f: FrozenFormat, gpu: Gpu | null) {
  const { bytes } = frozenWeightBytes(config, f);
  let largest = { key: '', bytes: 0 };
  for (const t of expectedTensors(config)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    // A 4-bit weight is two buffers; the packed indices are the bigger one.
    const b = t.kind === 'linear' && f.quantize === 'nf4' ? Math.ceil(n / 2) : n * f.storedBytes;
    if (b > largest.bytes) largest = { key: t.key, bytes: b };
  }
  const blockers: string[] = [];
  if (gpu && largest.bytes > gpu.maxBufferSize) {
    blockers.push(
      `Its largest weight (${largest.key}, ${GiB(largest.bytes)}) is bigger than this GPU's largest buffer ` +
        `(${GiB(gpu.maxBufferSize)}). Pick a smaller model.`,
    );
  }
  return { bytes, largest, blockers };
}

export function estimateCost(
  config: ModelConfig,
  lora: LoraSettings,
  train: TrainSettings,
  gpu: Gpu | null,
  opts: { downloadBytes?: number | null; storageFree?: number | null; frozen?: FrozenWeightsSettings } = {},
): ModelCost {
  const est = estimateModel(config);
  const storedBytes = bytesPer(est.checkpointDtype);
  const prequantized = config.quantization !== null;
  const nf4: FrozenFormat = {
    quantize: 'nf4',
    doubleQuant: config.quantization?.doubleQuant ?? opts.frozen?.doubleQuant ?? true,
    storedBytes,
  };
  const sixteen: FrozenFormat = { quantize: null, storedBytes };
  const chosen = prequantized || opts.frozen?.quantize === 'nf4' ? nf4 : sixteen;
  const weights = frozenCost(config, chosen, gpu);
  const weightBytes = weights.bytes;

  // LoRA modules, exactly as the engine will resolve them.
  let trainable: number | null = null;
  let loraRankSum = 0;
  const warnings: string[] = [];
  const blockers: string[] = [...weights.blockers];
  try {
    const expected = expectedTensors(config);
    const arch = describeModel(config, new Map(expected.map((t) => [t.key, { shape: t.shape }])));
    const linears = linearModules(arch);
    const cfg = loraConfigFromSettings(lora, config.modelType, { fanInFanOut: hasConv1dWeights(config) });
    ({ trainable, rankSum: loraRankSum } = loraTrained(cfg, linears));
  } catch (e) {
    warnings.push((e as Error).message);
  }

  const T = train.batch * train.maxLen;
  const run = { tokens: T, trainable: trainable ?? 0, rankSum: loraRankSum, optimizer: train.optimizer };
  const mem = trainingMemory(config, { ...run, checkpoint: train.activationCheckpointing });
  const { activationBytes, loraBytes } = mem;
  const totalBytes = weightBytes + mem.totalBytes;

  if (gpu) {
    const act = mem.widestActivationBytes;
    if (act > gpu.maxStorageBufferBindingSize) {
      blockers.push(
        `At batch ${train.batch} × max length ${train.maxLen}, one activation tensor needs ${GiB(act)}, over this GPU's ` +
          `binding limit of ${GiB(gpu.maxStorageBufferBindingSize)}. Lower the batch size or the max sequence length.`,
      );
    }
  }
  // 16-bit weights that would not fit: what 4-bit NF4 ones would take, if this GPU's limits allow them.
  let nf4Offer: ModelCost['nf4Offer'] = null;
  if (chosen === sixteen && (totalBytes > TYPICAL_GPU_BUDGET || weights.blockers.length)) {
    const q = frozenCost(config, nf4, gpu);
    if (!q.blockers.length && q.bytes < weightBytes)
      nf4Offer = { totalBytes: q.bytes + mem.totalBytes, weightBytes: q.bytes };
  }
  if (totalBytes > TYPICAL_GPU_BUDGET) {
    let lower = 'lower the batch size or max length, or pick a smaller model';
    if (!train.activationCheckpointing) {
      const withCheckpointing = weightBytes + trainingMemory(config, { ...run, checkpoint: true }).totalBytes;
      lower = `turn on activation checkpointing (about ${GiB(withCheckpointing)}), ${lower}`;
    }
    if (nf4Offer) lower = `use 4-bit NF4 frozen weights (about ${GiB(nf4Offer.totalBytes)}), ${lower}`;
    warnings.push(
      `Training needs about ${GiB(totalBytes)} of GPU memory; integrated GPUs often have less. If it fails, ${lower}.`,
    );
  }
  // A 4-bit checkpoint's files hold the packed weights (torch_dtype names the compute dtype).
  const fromConfig = prequantized ? frozenWeightBytes(config, nf4).bytes : est.checkpointBytes;
  const download = opts.downloadBytes !== undefined ? opts.downloadBytes : fromConfig;
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
    quantize: chosen.quantize,
    prequantized,
    trainableParams: trainable,
    trainablePercent: trainable === null ? null : (100 * trainable) / Math.max(1, est.params + trainable),
    activationBytes,
    loraBytes,
    totalBytes,
    largestTensorBytes: weights.largest.bytes,
    largestTensorName: weights.largest.key,
    linearModules: linearModuleNames(config),
    blockers,
    warnings,
    nf4Offer,
  };
}
