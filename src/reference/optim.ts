/**
 * Float64 references of src/kernels/optim.ts and of recordSumSquares (src/kernels/elementwise.ts):
 * torch.optim.AdamW / torch.optim.SGD (no momentum) steps and torch.nn.utils.clip_grad_norm_'s
 * coefficient, in the order `grad·gradScale -> clip -> step`.
 */

/** Σ over tensors of Σ_{i<n} t[i]². */
export function sumSquaresRef(tensors: { t: ArrayLike<number>; n: number }[]): number {
  let s = 0;
  for (const { t, n } of tensors) for (let i = 0; i < n; i++) s += t[i]! * t[i]!;
  return s;
}

/**
 * Multiplier of the raw gradients: gradScale·min(1, maxNorm / (sqrt(normSq)·|gradScale| + 1e-6)),
 * or gradScale alone when maxNorm is absent or <= 0. normSq is Σ of squared RAW gradients.
 */
export function gradMultiplierRef(normSq: number | undefined, maxNorm: number | undefined, gradScale = 1): number {
  if (maxNorm === undefined || maxNorm <= 0 || normSq === undefined) return gradScale;
  const norm = Math.sqrt(normSq) * Math.abs(gradScale);
  return gradScale * Math.min(1, maxNorm / (norm + 1e-6));
}

export interface AdamWRefArgs {
  param: Float64Array; // updated in place
  grad: ArrayLike<number>;
  m: Float64Array; // updated in place
  v: Float64Array; // updated in place
  n: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  step: number;
  normSq?: number;
  maxNorm?: number;
  gradScale?: number;
}

/** One AdamW step in place (torch.optim.AdamW, amsgrad=False). */
export function adamWRef(a: AdamWRefArgs): void {
  const k = gradMultiplierRef(a.normSq, a.maxNorm, a.gradScale ?? 1);
  const bc1 = 1 - a.beta1 ** a.step;
  const bc2 = 1 - a.beta2 ** a.step;
  for (let i = 0; i < a.n; i++) {
    const g = a.grad[i]! * k;
    a.param[i] = a.param[i]! * (1 - a.lr * a.weightDecay);
    a.m[i] = a.beta1 * a.m[i]! + (1 - a.beta1) * g;
    a.v[i] = a.beta2 * a.v[i]! + (1 - a.beta2) * g * g;
    const mHat = a.m[i]! / bc1;
    const vHat = a.v[i]! / bc2;
    a.param[i] = a.param[i]! - (a.lr * mHat) / (Math.sqrt(vHat) + a.eps);
  }
}

export interface SgdRefArgs {
  param: Float64Array; // updated in place
  grad: ArrayLike<number>;
  n: number;
  lr: number;
  weightDecay?: number;
  normSq?: number;
  maxNorm?: number;
  gradScale?: number;
}

/** One SGD step in place (torch.optim.SGD, momentum 0: d = g + wd·p; p -= lr·d). */
export function sgdRef(a: SgdRefArgs): void {
  const k = gradMultiplierRef(a.normSq, a.maxNorm, a.gradScale ?? 1);
  const wd = a.weightDecay ?? 0;
  for (let i = 0; i < a.n; i++) {
    const d = a.grad[i]! * k + wd * a.param[i]!;
    a.param[i] = a.param[i]! - a.lr * d;
  }
}
