/**
 * Float64 reference of the frozen linear layer with LoRA (src/kernels/linear.ts), the spec:
 *
 *   S = drop(X)·Aᵀ                     X [M, inF], A [r, inF], S [M, r]
 *   Y (+)= X·Wᵀ + b + scale·S·Bᵀ       W [outF, inF] (or [inF, outF] when transposed), B [outF, r]
 *
 * and its backward for a loss L with dY = dL/dY:
 *   dS = scale·dY·B,  dB (+)= scale·dYᵀ·S,  dA (+)= dSᵀ·drop(X),  dX (+)= dY·W + mask ∘ (dS·A)
 *
 * drop(X)[i, j] = X[i, j] · dropoutMultiplier(seed, p, i, j) (src/reference/dropout.ts), the same
 * mask the GPU generates. Row-major arrays; outputs are updated in place. For 16-bit weights pass
 * the values rounded through the 16-bit type (roundThroughHalf) — what the GPU computes with.
 */
import { dropoutMultiplier } from './dropout';

export interface FrozenLinearRef {
  w: ArrayLike<number>; // [outF, inF], or [inF, outF] when transposed
  bias: ArrayLike<number> | null; // [outF]
  inF: number;
  outF: number;
  transposed: boolean;
}

export interface LoraParamsRef {
  a: ArrayLike<number>; // [r, inF]
  b: ArrayLike<number>; // [outF, r]
  r: number;
  scale: number;
  dropout: number;
}

export interface LinearForwardRefArgs {
  x: ArrayLike<number>; // [M, inF]
  M: number;
  lin: FrozenLinearRef;
  lora?: LoraParamsRef | null;
  seed?: number;
  y: Float64Array; // [M, outF]
  s?: Float64Array; // [M, r], written when given
  accumulate?: boolean;
}

export interface LinearBackwardRefArgs {
  dy: ArrayLike<number>; // [M, outF]
  x: ArrayLike<number>; // [M, inF]
  M: number;
  lin: FrozenLinearRef;
  lora?: LoraParamsRef | null;
  seed?: number;
  /** Saved S; recomputed from x when absent. */
  s?: ArrayLike<number>;
  dx: Float64Array | null; // [M, inF]
  accumulateDx?: boolean;
  dA?: Float64Array; // [r, inF]
  dB?: Float64Array; // [outF, r]
  accumulateGrads?: boolean;
}

/** W[o, i] whichever way the weight is stored. */
function weightAt(lin: FrozenLinearRef, o: number, i: number): number {
  return lin.transposed ? lin.w[i * lin.outF + o]! : lin.w[o * lin.inF + i]!;
}

/** drop(X) [M, inF]. */
export function droppedInput(x: ArrayLike<number>, M: number, inF: number, p: number, seed: number): Float64Array {
  const out = new Float64Array(M * inF);
  for (let m = 0; m < M; m++) {
    for (let i = 0; i < inF; i++) out[m * inF + i] = x[m * inF + i]! * dropoutMultiplier(seed, p, m, i);
  }
  return out;
}

/** S = drop(X)·Aᵀ [M, r]. */
export function loraS(x: ArrayLike<number>, M: number, inF: number, lora: LoraParamsRef, seed: number): Float64Array {
  const xd = droppedInput(x, M, inF, lora.dropout, seed);
  const s = new Float64Array(M * lora.r);
  for (let m = 0; m < M; m++) {
    for (let j = 0; j < lora.r; j++) {
      let acc = 0;
      for (let i = 0; i < inF; i++) acc += xd[m * inF + i]! * lora.a[j * inF + i]!;
      s[m * lora.r + j] = acc;
    }
  }
  return s;
}

export function linearForwardRef(f: LinearForwardRefArgs): void {
  const { x, M, lin, y } = f;
  const { inF, outF } = lin;
  const lora = f.lora ?? null;
  const s = lora ? loraS(x, M, inF, lora, f.seed ?? 0) : null;
  if (s && f.s) f.s.set(s);
  for (let m = 0; m < M; m++) {
    for (let o = 0; o < outF; o++) {
      let acc = lin.bias ? lin.bias[o]! : 0;
      for (let i = 0; i < inF; i++) acc += x[m * inF + i]! * weightAt(lin, o, i);
      if (lora && s) {
        let l = 0;
        for (let j = 0; j < lora.r; j++) l += s[m * lora.r + j]! * lora.b[o * lora.r + j]!;
        acc += lora.scale * l;
      }
      y[m * outF + o] = f.accumulate ? y[m * outF + o]! + acc : acc;
    }
  }
}

export function linearBackwardRef(g: LinearBackwardRefArgs): void {
  const { dy, x, M, lin } = g;
  const { inF, outF } = lin;
  const lora = g.lora ?? null;
  const seed = g.seed ?? 0;
  let dS: Float64Array | null = null;
  if (lora) {
    const r = lora.r;
    const s = g.s ?? loraS(x, M, inF, lora, seed);
    dS = new Float64Array(M * r);
    for (let m = 0; m < M; m++) {
      for (let j = 0; j < r; j++) {
        let acc = 0;
        for (let o = 0; o < outF; o++) acc += dy[m * outF + o]! * lora.b[o * r + j]!;
        dS[m * r + j] = lora.scale * acc;
      }
    }
    if (g.dB) {
      for (let o = 0; o < outF; o++) {
        for (let j = 0; j < r; j++) {
          let acc = 0;
          for (let m = 0; m < M; m++) acc += dy[m * outF + o]! * s[m * r + j]!;
          const v = lora.scale * acc;
          g.dB[o * r + j] = g.accumulateGrads ? g.dB[o * r + j]! + v : v;
        }
      }
    }
    if (g.dA) {
      const xd = droppedInput(x, M, inF, lora.dropout, seed);
      for (let j = 0; j < r; j++) {
        for (let i = 0; i < inF; i++) {
          let acc = 0;
          for (let m = 0; m < M; m++) acc += dS[m * r + j]! * xd[m * inF + i]!;
          g.dA[j * inF + i] = g.accumulateGrads ? g.dA[j * inF + i]! + acc : acc;
        }
      }
    }
  }
  if (g.dx) {
    for (let m = 0; m < M; m++) {
      for (let i = 0; i < inF; i++) {
        let acc = 0;
        for (let o = 0; o < outF; o++) acc += dy[m * outF + o]! * weightAt(lin, o, i);
        if (lora && dS) {
          let l = 0;
          for (let j = 0; j < lora.r; j++) l += dS[m * lora.r + j]! * lora.a[j * inF + i]!;
          acc += dropoutMultiplier(seed, lora.dropout, m, i) * l;
        }
        g.dx[m * inF + i] = g.accumulateDx ? g.dx[m * inF + i]! + acc : acc;
      }
    }
  }
}
