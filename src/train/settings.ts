/** A training run's settings, as the app's form, the CLI's flags and a recipe's train.py name them. */
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
