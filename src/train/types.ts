/** A training run's settings (as the app's form, the CLI's flags and a recipe's train.py name them) and what it reports. */
export interface TrainSettings {
  optimizer: 'adamw' | 'sgd';
  lr: number;
  weightDecay: number;
  /** Exactly one of steps / epochs is used: steps when > 0, else epochs. */
  steps: number;
  epochs: number;
  batch: number;
  gradAccum: number;
  maxLen: number;
  scheduler: 'constant' | 'linear' | 'cosine';
  warmup: number;
  /** 0 = no clipping. */
  maxGradNorm: number;
  shuffle: boolean;
  seed: number;
  /** Read the loss back every N steps. */
  lossEvery: number;
  /** Evaluate on the validation split every N steps (0 = only at the end). */
  evalEvery: number;
  /** Save a checkpoint every N steps (0 = never). */
  checkpointEvery: number;
  /** Fraction (0..0.5) of records held out for validation. */
  valFraction: number;
  /** Recompute each layer during backward instead of keeping its activations (less memory, ~1.3x compute). */
  activationCheckpointing: boolean;
  /**
   * Lay each micro-batch's examples end to end in one row, none attending to another, positions
   * restarting per example (TRL's padding-free packing): no padding is computed, the loss is the same.
   */
  packing: boolean;
}

export interface TrainProgress {
  step: number;
  totalSteps: number;
  epoch: number;
  lr: number;
  /** Loss of the latest window (null on steps where it was not read). */
  loss: number | null;
  valLoss: number | null;
  tokensPerSecond: number;
  etaSeconds: number;
  gpuBytes: number;
  elapsedSeconds: number;
}

export interface TrainResult {
  steps: number;
  finalLoss: number | null;
  finalValLoss: number | null;
  tokens: number;
  seconds: number;
  stoppedEarly: boolean;
  history: { step: number; loss: number | null; valLoss: number | null; lr: number }[];
  /** The base model's loss on the validation split (null without one), for comparison. */
  baseValLoss: number | null;
  /**
   * What looks wrong with a finished run although it ran (weights that ran away, a validation loss
   * above the base model's). The adapter is saved all the same; the CLI and the app show these.
   */
  warnings: string[];
}

/**
 * What a run is doing before its first step reports: measuring the base model's validation loss,
 * then the first step (which compiles the GPU kernels, seconds on a cold start). The app shows it
 * instead of blank stats.
 */
export interface TrainStage {
  /** tuning-kernels: after the first step, timing the matmul kernels for this GPU (first run only). */
  stage: 'baseline' | 'first-step' | 'tuning-kernels';
  /** tuning-kernels: the shape class being timed (done + 1 of total). */
  tune?: { done: number; total: number };
  /** The step the run starts from (a resumed run's checkpoint step, else 0). */
  step: number;
  totalSteps: number;
}
