/**
 * Learning-rate schedules with linear warmup, as in Hugging Face transformers'
 * get_{constant,linear,cosine}_schedule_with_warmup: during warmup lr grows linearly from 0;
 * afterwards constant stays at lr, linear decays to 0 at the last step, cosine follows
 * 0.5 * (1 + cos(pi * progress)).
 */

export type SchedulerName = 'constant' | 'linear' | 'cosine';

/** lr for 0-based optimizer step `step` of `total` steps. */
export function learningRateAt(
  name: SchedulerName,
  baseLr: number,
  step: number,
  total: number,
  warmup: number,
): number {
  if (warmup > 0 && step < warmup) return (baseLr * step) / warmup;
  if (name === 'constant') return baseLr;
  const span = Math.max(1, total - warmup);
  const progress = Math.min(1, Math.max(0, (step - warmup) / span));
  if (name === 'linear') return baseLr * Math.max(0, 1 - progress);
  return baseLr * 0.5 * (1 + Math.cos(Math.PI * progress));
}
