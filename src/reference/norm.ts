/**
 * Float64 references of src/kernels/norm.ts (the spec): RMSNorm as in transformers' LlamaRMSNorm
 * (y = w · (x · rsqrt(mean(x²) + eps))) and LayerNorm as in torch.nn.LayerNorm (biased variance).
 * Backward passes give dX only (weights frozen). Row-major [rows, dim].
 */

export interface RmsNormRefArgs {
  x: ArrayLike<number>;
  w: ArrayLike<number>;
  rows: number;
  dim: number;
  eps: number;
  weightOffset?: number;
}

export function rmsNormRef(a: RmsNormRefArgs): { y: Float64Array; rstd: Float64Array } {
  const { rows, dim } = a;
  const off = a.weightOffset ?? 0;
  const y = new Float64Array(rows * dim);
  const rstd = new Float64Array(rows);
  for (let t = 0; t < rows; t++) {
    let ss = 0;
    for (let j = 0; j < dim; j++) ss += a.x[t * dim + j]! ** 2;
    const r = 1 / Math.sqrt(ss / dim + a.eps);
    rstd[t] = r;
    for (let j = 0; j < dim; j++) y[t * dim + j] = a.x[t * dim + j]! * r * (a.w[j]! + off);
  }
  return { y, rstd };
}

export interface RmsNormBackwardRefArgs {
  dy: ArrayLike<number>;
  x: ArrayLike<number>;
  w: ArrayLike<number>;
  rstd: ArrayLike<number>;
  rows: number;
  dim: number;
  /** Existing dx to add into (accumulate); omitted = overwrite. */
  dx?: Float64Array;
  accumulate?: boolean;
  weightOffset?: number;
}

/** dx = r·w'·dy − x·r³/dim·Σ dy·w'·x per row (w' = w + weightOffset). */
export function rmsNormBackwardRef(a: RmsNormBackwardRefArgs): Float64Array {
  const { rows, dim } = a;
  const off = a.weightOffset ?? 0;
  const dx = a.dx ?? new Float64Array(rows * dim);
  for (let t = 0; t < rows; t++) {
    const r = a.rstd[t]!;
    let dot = 0;
    for (let j = 0; j < dim; j++) dot += a.dy[t * dim + j]! * (a.w[j]! + off) * a.x[t * dim + j]!;
    const c = (dot * r * r * r) / dim;
    for (let j = 0; j < dim; j++) {
      const i = t * dim + j;
      const g = r * (a.w[j]! + off) * a.dy[i]! - c * a.x[i]!;
      dx[i] = a.accumulate ? dx[i]! + g : g;
    }
  }
  return dx;
}

export interface LayerNormRefArgs {
  x: ArrayLike<number>;
  w: ArrayLike<number>;
  /** null: a LayerNorm without bias. */
  b: ArrayLike<number> | null;
  rows: number;
  dim: number;
  eps: number;
  weightOffset?: number;
}

export function layerNormRef(a: LayerNormRefArgs): { y: Float64Array; mean: Float64Array; rstd: Float64Array } {
  const { rows, dim } = a;
  const off = a.weightOffset ?? 0;
  const y = new Float64Array(rows * dim);
  const mean = new Float64Array(rows);
  const rstd = new Float64Array(rows);
  for (let t = 0; t < rows; t++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += a.x[t * dim + j]!;
    const mu = s / dim;
    let q = 0;
    for (let j = 0; j < dim; j++) q += (a.x[t * dim + j]! - mu) ** 2;
    const r = 1 / Math.sqrt(q / dim + a.eps);
    mean[t] = mu;
    rstd[t] = r;
    for (let j = 0; j < dim; j++) y[t * dim + j] = (a.x[t * dim + j]! - mu) * r * (a.w[j]! + off) + (a.b ? a.b[j]! : 0);
  }
  return { y, mean, rstd };
}

export interface LayerNormBackwardRefArgs {
  dy: ArrayLike<number>;
  x: ArrayLike<number>;
  w: ArrayLike<number>;
  mean: ArrayLike<number>;
  rstd: ArrayLike<number>;
  rows: number;
  dim: number;
  dx?: Float64Array;
  accumulate?: boolean;
  weightOffset?: number;
}

/** dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·w', x̂ = (x − mean)·rstd. */
export function layerNormBackwardRef(a: LayerNormBackwardRefArgs): Float64Array {
  const { rows, dim } = a;
  const off = a.weightOffset ?? 0;
  const dx = a.dx ?? new Float64Array(rows * dim);
  for (let t = 0; t < rows; t++) {
    const mu = a.mean[t]!;
    const r = a.rstd[t]!;
    let sg = 0;
    let sgx = 0;
    for (let j = 0; j < dim; j++) {
      const i = t * dim + j;
      const g = a.dy[i]! * (a.w[j]! + off);
      sg += g;
      sgx += g * (a.x[i]! - mu) * r;
    }
    sg /= dim;
    sgx /= dim;
    for (let j = 0; j < dim; j++) {
      const i = t * dim + j;
      const g = a.dy[i]! * (a.w[j]! + off);
      const d = r * (g - sg - (a.x[i]! - mu) * r * sgx);
      dx[i] = a.accumulate ? dx[i]! + d : d;
    }
  }
  return dx;
}
