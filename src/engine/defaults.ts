/** Default hyperparameters shared by the CLI and the app's forms. */
import type { FrozenWeightsSettings, LoraSettings, SamplingSettings, TrainSettings } from './types';

export const DEFAULT_TRAIN: TrainSettings = {
  optimizer: 'adamw',
  lr: 2e-4,
  weightDecay: 0,
  steps: 0,
  epochs: 1,
  batch: 4,
  gradAccum: 1,
  maxLen: 256,
  scheduler: 'linear',
  warmup: 0,
  maxGradNorm: 1,
  shuffle: true,
  seed: 42,
  lossEvery: 1,
  evalEvery: 0,
  checkpointEvery: 0,
  valFraction: 0.1,
  activationCheckpointing: false,
  packing: false,
};

/** Frozen weights as stored (16-bit stays 16-bit); 4-bit NF4 with bitsandbytes' double quantization when chosen. */
export const DEFAULT_FROZEN: FrozenWeightsSettings = { quantize: null, doubleQuant: true };

/** LoRA defaults; target_modules is filled from the model family's defaults when a model loads. */
export const DEFAULT_LORA: LoraSettings = {
  method: 'lora',
  r: 8,
  lora_alpha: 16,
  lora_dropout: 0.05,
  target_modules: [],
  use_rslora: false,
};

export const DEFAULT_SAMPLING: SamplingSettings = {
  maxNewTokens: 64,
  temperature: 0,
  topK: 0,
  topP: 1,
  seed: 0,
  repetitionPenalty: 1,
  chat: false,
};
