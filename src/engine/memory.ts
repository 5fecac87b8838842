/**
 * The GPU memory a training run holds besides the frozen weights, from the model's shape and the
 * run's settings alone: what the engine's estimate (once the model is loaded) and the app's cost
 * check (from config.json, before any download) both report, so the two agree.
 *
 * Activations are counted as the runner keeps them: per layer the tensors backward reads (norms,
 * q/k/v, attention probabilities' row statistics, MLP pre-activations), one rank-r LoRA
 * intermediate per adapted module, and the layer-sized scratch backward works in. With activation
 * checkpointing only one layer's set is alive at a time, plus each layer's input to recompute from.
 *
 * frozenWeightBytes gives the frozen weights themselves, 16-bit or 4-bit NF4 (QLoRA).
 */
import { nf4GpuBytes } from '../kernels/nf4';
import { type LoraConfig, loraParameterCount, loraRank } from '../lora/config';
import { resolveTargets } from '../lora/targets';
import type { GpuModel } from '../model/gpu-model';
import type { ModelConfig } from '../model/config';
import { type LinearModule, expectedTensors, linearRoles } from '../model/registry';
import type { MemoryEstimate, TrainSettings } from './types';

/**
 * Floats per token one layer's saved set holds, as src/model/runner-buffers.ts allocates them for
 * this config's flags (norm outputs and statistics, fused projections, q/k norms, the sublayer
 * outputs kept when a norm or a multiplier sits before the residual, the MLP's pre-activations).
 */
function layerFloats(c: ModelConfig): number {
  const H = c.hiddenSize;
  const qW = c.numHeads * c.headDim;
  const kvW = c.numKvHeads * c.headDim;
  const I = c.intermediateSize;
  const b = c.block;
  const stats = c.norm.kind === 'layer' ? 2 : 1; // rstd (+ mean) per row
  const normed = H + stats;
  const qk = c.attention.qkNorm;
  const qkStats = (heads: number) => (qk ? (qk.kind === 'layer' ? 2 : 1) * (qk.over === 'all' ? 1 : heads) : 0);
  const rs = b.residualScale !== 1;
  let f = H + qW + 2 * kvW + qW + c.numHeads; // xIn, q, k, v, o, lse
  if (b.attnNorm && !b.normAfterResidual) f += normed;
  if (linearRoles(c).has('qkv')) f += qW + 2 * kvW; // a fused q/k/v projection's output
  if (qk) f += qW + kvW + qkStats(c.numHeads) + qkStats(c.numKvHeads);
  if (b.attnOutNorm || rs) f += H;
  if (b.attnOutNorm) f += normed;
  if (!b.parallel) f += H + (b.normAfterResidual ? H + stats : 0); // x_mid (+ the sum before its norm)
  if (b.mlpNorm === 'own' && !b.normAfterResidual) f += normed;
  // gate / fc_in (and up, or the fused gate-up), activation; with experts each expert's gate, up,
  // activation and output, and the router's logits and weights
  if (c.moe) f += c.moe.numExperts * (3 * I + H + 2);
  else f += (c.mlp.gated ? 2 : 1) * I + I;
  if (b.mlpOutNorm || rs) f += H;
  if (b.mlpOutNorm) f += normed;
  if (b.normAfterResidual && !b.parallel) f += H + normed;
  return f;
}

export interface TrainingMemory {
  /** LoRA A and B with their gradients and the optimizer's moments. */
  loraBytes: number;
  /** Saved activations and the backward's per-layer scratch. */
  activationBytes: number;
  /** The chunked cross-entropy's logits block. */
  lossScratchBytes: number;
  /** All of the above: what training holds besides the frozen weights. */
  totalBytes: number;
  /** The largest single activation tensor: it has to fit one storage binding. */
  widestActivationBytes: number;
  widestActivationFloats: number;
}

/** Logit rows the cross-entropy keeps at once are capped at this many bytes. */
export const CE_SCRATCH_CAP = 32 * 2 ** 20;

export function trainingMemory(
  c: ModelConfig,
  o: {
    /** batch × max sequence length of one micro-batch */
    tokens: number;
    /** trainable parameters (Σ r·(in + out) over the adapted modules, + out each for DoRA) */
    trainable: number;
    /** Σ r over the adapted modules, + out each for DoRA (the per-token LoRA intermediates) */
    rankSum: number;
    optimizer: 'adamw' | 'sgd';
    checkpoint: boolean;
  },
): TrainingMemory {
  const T = o.tokens;
  const H = c.hiddenSize;
  const qW = c.numHeads * c.headDim;
  const kvW = c.numKvHeads * c.headDim;
  const I = c.intermediateSize;
  const perLayerFloats = layerFloats(c);
  const savedLayers = o.checkpoint ? 1 : c.numLayers;
  const layerInputs = o.checkpoint ? (c.numLayers - 1) * H : 0;
  // backward's workspace: residual, sublayer-input and MLP-input gradients, the MLP's, the
  // attention's and the fused projection's gradients, scaled / out-norm gradients
  // (with experts: one expert's output gradient and the router's two [T, E] gradients)
  const scratchFloats = 6 * H + 4 * I + 3 * qW + 3 * kvW + (c.moe ? H + 2 * c.moe.numExperts : 0);
  const activationBytes = 4 * T * (savedLayers * perLayerFloats + layerInputs + o.rankSum + scratchFloats);
  const moments = o.optimizer === 'adamw' ? 2 : 0;
  const widest = Math.max(I, qW + 2 * kvW);
  const loraBytes = 4 * o.trainable * (2 + moments);
  const lossScratchBytes = Math.min(CE_SCRATCH_CAP, 4 * T * c.vocabSize);
  return {
    loraBytes,
    activationBytes,
    lossScratchBytes,
    totalBytes: loraBytes + activationBytes + lossScratchBytes,
    widestActivationFloats: widest,
    widestActivationBytes: 4 * T * widest,
  };
}

/** How the frozen weights are held: as stored (bytes per weight of the checkpoint) or 4-bit NF4. */
export interface FrozenFormat {
  quantize: 'nf4' | null;
  doubleQuant?: boolean;
  /** Bytes per stored weight: 2 for F16/BF16 checkpoints, 4 for F32. */
  storedBytes: number;
}

/**
 * GPU bytes of the frozen weights of a config, as GpuModel holds them: every tensor in its stored
 * dtype (padded to words), except that with NF4 each linear weight takes its 4-bit form
 * (src/kernels/nf4.ts: n / 2 bytes plus the statistics). The matmuls read 4-bit weights as they
 * are (no dequantized copy), so nothing else is needed.
 */
export function frozenWeightBytes(config: ModelConfig, f: FrozenFormat): { bytes: number } {
  let bytes = 0;
  for (const t of expectedTensors(config)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    bytes +=
      t.kind === 'linear' && f.quantize === 'nf4'
        ? nf4GpuBytes(n, f.doubleQuant ?? true)
        : Math.max(16, Math.ceil((n * f.storedBytes) / 16) * 16); // as Gpu.buffer rounds
  }
  return { bytes };
}

/**
 * What LoRA `cfg` trains on a model's linear modules, as the engine resolves the targets: the
 * trainable parameters (with DoRA's magnitudes) and the sum of the adapters' ranks (trainingMemory's
 * `trainable` and `rankSum`). Engine.estimate and the app's cost card (before download) both use it.
 */
export function loraTrained(cfg: LoraConfig, linears: readonly LinearModule[]): { trainable: number; rankSum: number } {
  const targets = resolveTargets(cfg, linears);
  return {
    trainable: loraParameterCount(cfg, targets),
    // per token: S [r] of each module, and DoRA's saved Z [out]
    rankSum: targets.reduce((n, t) => n + loraRank(cfg, t.path) + (cfg.use_dora ? t.outF : 0), 0),
  };
}

/**
 * Engine.estimate: LoRA `cfg` trained on a loaded model: trainable parameters, memory (the weights
 * as loaded, and what each frozen-weight choice would hold) and the binding-limit blocker.
 */
export function estimateOnModel(
  model: GpuModel,
  totalParams: number,
  /** A LoRA config, or another method's trainable values and virtual tokens per row. */
  cfg: LoraConfig | { trainable: number; virtualTokens: number },
  train: Pick<TrainSettings, 'batch' | 'maxLen' | 'optimizer' | 'activationCheckpointing'>,
  maxBinding: number,
): MemoryEstimate {
  const c = model.config;
  const other = 'trainable' in cfg ? cfg : null;
  const { trainable, rankSum } = other
    ? { trainable: other.trainable, rankSum: 0 }
    : loraTrained(cfg as LoraConfig, model.linears);
  const T = train.batch * (train.maxLen + (other?.virtualTokens ?? 0));
  const mem = trainingMemory(c, {
    tokens: T,
    trainable,
    rankSum,
    optimizer: train.optimizer,
    checkpoint: train.activationCheckpointing,
  });
  const { loraBytes, activationBytes } = mem;
  // The weights as loaded, and what the other frozen-weight choice would hold (from the shapes).
  const q = model.quantization;
  const storedBytes = model.dtypes.includes('F32') ? 4 : 2;
  const nf4: FrozenFormat = { quantize: 'nf4', doubleQuant: q?.doubleQuant ?? true, storedBytes };
  const choices: MemoryEstimate['frozenChoices'] = [];
  if (q?.source !== 'checkpoint') {
    const w = frozenWeightBytes(c, { quantize: null, storedBytes }).bytes;
    choices.push({ quantize: null, weightsBytes: w, totalBytes: w + mem.totalBytes });
  }
  const w4 = frozenWeightBytes(c, nf4).bytes;
  choices.push({ quantize: 'nf4', weightsBytes: w4, totalBytes: w4 + mem.totalBytes });
  const weightsBytes = model.weightBytes;
  const totalBytes = weightsBytes + mem.totalBytes;
  let blocker: string | null = null;
  if (mem.widestActivationBytes > maxBinding) {
    blocker =
      `One activation tensor of ${T} tokens x ${mem.widestActivationFloats} floats needs ` +
      `${mem.widestActivationBytes} bytes, over this GPU's binding limit of ${maxBinding}; lower batch or max length.`;
  }
  return {
    trainableParams: trainable,
    totalParams: totalParams,
    trainablePercent: (100 * trainable) / Math.max(1, totalParams + trainable),
    weightsBytes,
    loraBytes,
    activationBytes,
    totalBytes,
    frozenChoices: choices,
    blocker,
  };
}
