/**
 * Help for every setting: what it does and its typical values (as LoRA practice and PEFT / TRL
 * documentation give them), and a warning when a value is far outside them. Warnings never block a
 * run (validate.ts says what is not allowed); they say what is unusual and what tends to happen.
 */
import type { LoraSettings, TrainSettings } from '../engine/types';
import type { FieldErrors } from './validate';

export const HELP: Record<string, string> = {
  method:
    'LoRA trains a low-rank update per layer; DoRA adds a learned magnitude per output row (PEFT use_dora); IA³ learns one scaling vector per targeted layer; prompt tuning learns virtual-token embeddings before every sequence; prefix tuning learns keys and values every attention layer sees first. Saved in PEFT’s own format in every case.',
  num_virtual_tokens:
    'Virtual tokens before every sequence (PEFT num_virtual_tokens): their embeddings (prompt tuning) or per-layer keys and values (prefix tuning) are what trains. Typical 8–30.',
  prefix_projection:
    'Train the prefix through PEFT’s projection MLP (prefix_projection): a small embedding → Linear → tanh → Linear makes every layer’s keys and values, which often trains more stably than the raw prefix; saved, as PEFT saves it, as the table the MLP gives.',
  encoder_hidden_size:
    'Hidden size of the projection MLP (PEFT encoder_hidden_size); typically the model’s hidden size (the default here).',
  prompt_tuning_init_text:
    'Start the prompt from this text’s token embeddings, cut or repeated to the number of virtual tokens (PEFT’s TEXT init, e.g. “Classify the sentiment of this review:”); empty starts from random values.',
  init_lora_weights:
    'How A and B start: default (PEFT’s kaiming-uniform A, B = 0), gaussian (A ~ N(0, 1/r)), or from the weights: PiSSA (top-r SVD) and OLoRA (QR) train on W minus that part; the saved adapter is converted (rank doubled) to apply to the untouched base, as PEFT does. LoftQ (with 16-bit frozen weights) replaces the base by its 4-bit NF4 quantization Q and fits A·B to W − Q; the adapter then works on Q only: Compare, Chat and evaluation put Q in place for it, and its download is the adapter plus Q as a model folder (PEFT’s LoftQ workflow).',
  loftq_iter:
    'LoftQ’s alternating iterations (PEFT loftq_iter): each quantizes W − A·B again and refits A·B; 1 is PEFT’s default, 5 is common.',
  r: 'Rank of the update: its capacity and trainable parameters grow with it. Typical 8–64.',
  lora_alpha: 'Scales the update by alpha / r (alpha / √r with rsLoRA). Usually r or 2r.',
  lora_dropout: 'Drops LoRA inputs at random while training, against overfitting small datasets. Typical 0–0.1.',
  use_rslora: 'Scale by alpha / √r instead of alpha / r: keeps high ranks learning. Useful from r ≈ 64.',
  lr: 'How far each optimizer step moves the adapter. LoRA usually 1e-4 – 5e-4.',
  epochs: 'Passes over the training data. Typical 1–3; more overfits small datasets.',
  steps: 'Optimizer steps in all (instead of epochs).',
  batch: 'Examples per micro-batch; memory grows with it. Typical 1–16.',
  gradAccum: 'Micro-batches per optimizer step: a larger effective batch at the memory of one. Typical 1–16.',
  maxLen: 'Tokens per example; longer ones are cut. Memory grows with it. Typical 256–2048.',
  scheduler: 'How the learning rate changes over the run: linear or cosine decay to 0, or constant.',
  warmup: 'Steps over which the learning rate rises from 0 at the start. Typical 0–10% of the steps.',
  weightDecay: 'AdamW pulls the weights toward 0 by this much. Typical 0–0.1.',
  maxGradNorm: 'Clips the gradient to this length against loss spikes; 0 = off. Typical 0.3–1.',
  seed: 'Fixes the adapter’s initialisation, the shuffling, the split and dropout: same seed, same run.',
  evalEvery: 'Validation loss every N steps (and at the end); 0 = only at the end.',
  checkpointEvery: 'Saved in this browser for resuming after a crash or reload; 0 = only at the end.',
  lossEvery: 'Each read waits for the GPU; the chart gets one point per read (the mean since the last).',
  valFraction: 'Share of the records held out to measure overfitting. Typical 0.05–0.2.',
  optimizer: 'AdamW (the usual choice) or plain SGD.',
};

const fmt = (x: number) => (Math.abs(x) >= 0.01 && Math.abs(x) < 1000 ? String(+x.toPrecision(3)) : x.toExponential(1));

/** Warnings for values far outside the typical ranges (fields with a validation error are left to it). */
export function settingWarnings(lora: LoraSettings, t: TrainSettings, errors: FieldErrors = {}): FieldErrors {
  const w: FieldErrors = {};
  const ok = (field: string, v: number) => Number.isFinite(v) && !errors[field];
  if (ok('r', lora.r) && lora.r > 256)
    w.r = `r ${lora.r} is far above the usual 8–64: many more parameters and memory for rarely more quality.`;
  if (ok('lora_alpha', lora.lora_alpha) && ok('r', lora.r)) {
    const ratio = lora.lora_alpha / lora.r;
    if (ratio > 8 || ratio < 0.125)
      w.lora_alpha = `alpha / r is ${fmt(ratio)}; it is usually 1–2 (alpha = r or 2r): the update is scaled ${ratio > 1 ? 'up' : 'down'} strongly, as if the learning rate were ${ratio > 1 ? 'much higher' : 'much lower'}.`;
  }
  if (ok('lora_dropout', lora.lora_dropout) && lora.lora_dropout > 0.3)
    w.lora_dropout = `Dropout ${lora.lora_dropout} is far above the usual 0–0.1: learning slows a lot.`;
  if (ok('lr', t.lr) && t.lr > 1e-2)
    w.lr = `${fmt(t.lr)} is far above LoRA's usual 1e-4 – 5e-4: the loss may jump or diverge.`;
  else if (ok('lr', t.lr) && t.lr > 0 && t.lr < 1e-6)
    w.lr = `${fmt(t.lr)} is far below LoRA's usual 1e-4 – 5e-4: the adapter will barely move.`;
  if (t.steps <= 0 && ok('epochs', t.epochs) && t.epochs > 10)
    w.epochs = `${t.epochs} epochs is far more than the usual 1–3: a small dataset will be learned by heart.`;
  if (ok('batch', t.batch) && ok('gradAccum', t.gradAccum) && t.batch * t.gradAccum > 256)
    w.gradAccum = `An effective batch of ${t.batch * t.gradAccum} is far above the usual 8–64: few steps per epoch.`;
  if (t.steps > 0 && ok('warmup', t.warmup) && t.warmup > 0.5 * t.steps)
    w.warmup = `${t.warmup} warmup steps is over half of the ${t.steps} steps (usually 0–10%).`;
  if (ok('weightDecay', t.weightDecay) && t.weightDecay > 0.3)
    w.weightDecay = `${t.weightDecay} is far above the usual 0–0.1: the adapter is pulled hard toward 0.`;
  if (ok('maxGradNorm', t.maxGradNorm) && t.maxGradNorm > 0 && t.maxGradNorm < 0.05)
    w.maxGradNorm = `Clipping at ${t.maxGradNorm} is far below the usual 0.3–1: every step becomes tiny.`;
  if (ok('valFraction', t.valFraction) && t.valFraction > 0.3)
    w.valFraction = `${t.valFraction} holds out far more than the usual 0.05–0.2 of the data from training.`;
  return w;
}
