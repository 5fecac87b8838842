/**
 * The GPU memory a training run holds besides the frozen weights, from the model's shape and the
 * run's settings alone: what the engine's estimate (once the model is loaded) and the app's cost
 * check (from config.json, before any download) both report, so the two agree.
 *
 * Activations are counted as the runner keeps them: per layer the tensors backward reads (norms,
 * q/k/v, attention probabilities' row statistics, MLP pre-activations), one rank-r LoRA
 * intermediate per adapted module, and the layer-sized scratch backward works in. With activation
 * checkpointing only one layer's set is alive at a time, plus each layer's input to recompute from.
 */
import type { ModelConfig } from '../model/config';

export type ShapeConfig = Pick<
  ModelConfig,
  'hiddenSize' | 'numLayers' | 'numHeads' | 'numKvHeads' | 'headDim' | 'intermediateSize' | 'vocabSize'
>;

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
  c: ShapeConfig,
  o: {
    /** batch × max sequence length of one micro-batch */
    tokens: number;
    /** trainable LoRA parameters (Σ r·(in + out) over the adapted modules) */
    trainable: number;
    /** Σ r over the adapted modules (the per-token LoRA intermediates) */
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
  const perLayerFloats = 5 * H + 2 * qW + 2 * kvW + c.numHeads + 3 * I + 4;
  const savedLayers = o.checkpoint ? 1 : c.numLayers;
  const layerInputs = o.checkpoint ? (c.numLayers - 1) * H : 0;
  const scratchFloats = 4 * H + 3 * I + 2 * qW + 2 * kvW;
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
