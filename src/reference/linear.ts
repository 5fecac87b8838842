/**
 * Float64 reference of the frozen linear layer with LoRA (src/kernels/linear.ts), the spec:
 *
 *   S = drop(X)·Aᵀ                     X [M, inF], A [r, inF], S [M, r]
 *   Y (+)= X·Wᵀ + b + scale·S·Bᵀ       W [outF, inF] (or [inF, outF] when transposed), B [outF, r]
 *
 * and its backward for a loss L with dY = dL/dY:
 *   dS = scale·dY·B,  dB (+)= scale·dYᵀ·S,  dA (+)= dSᵀ·drop(X),  dX (+)= dY·W + mask ∘ (dS·A)
 *
 * With an (IA)³ vector l instead of LoRA (PEFT's IA3 Linear): a feed-forward module scales its input,
 * any other its output (bias included):
 *   input:  Y = (X ∘ l)·Wᵀ + b       l [inF];   dl = Σ_rows X ∘ (dY·W),  dX = (dY·W) ∘ l
 *   output: Y = (X·Wᵀ + b) ∘ l       l [outF];  dl = Σ_rows dY ∘ (X·Wᵀ + b),  dX = (dY ∘ l)·W
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

/** An (IA)³ scaling vector: l [inF] scaling the input (feed-forward modules) or l [outF] the output. */
export interface Ia3Ref {
  l: ArrayLike<number>;
  input: boolean;
}

export interface LinearForwardRefArgs {
  x: ArrayLike<number>; // [M, inF]
  M: number;
  lin: FrozenLinearRef;
  lora?: LoraParamsRef | null;
  ia3?: Ia3Ref | null;
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
  ia3?: Ia3Ref | null;
  /** (IA)³ gradient, [inF] or [outF] like `ia3.l`. */
  dl?: Float64Array;
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

/** X ∘ l with l broadcast over the rows of X [rows, cols]. */
function scaleCols(x: ArrayLike<number>, l: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let m = 0; m < rows; m++) for (let j = 0; j < cols; j++) out[m * cols + j] = x[m * cols + j]! * l[j]!;
  return out;
}

/** Σ_rows a ∘ b over [rows, cols] arrays, into dl [cols] (added when `accumulate`). */
function colSumProduct(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  rows: number,
  cols: number,
  dl: Float64Array,
  accumulate: boolean,
) {
  for (let j = 0; j < cols; j++) {
    let acc = 0;
    for (let m = 0; m < rows; m++) acc += a[m * cols + j]! * b[m * cols + j]!;
    dl[j] = accumulate ? dl[j]! + acc : acc;
  }
}

export function linearForwardRef(f: LinearForwardRefArgs): void {
  const ia3 = f.ia3 ?? null;
  if (ia3) {
    if (f.lora) throw new Error('linearForwardRef: a module has LoRA or (IA)³, not both.');
    const { M, lin } = f;
    if (ia3.input) {
      linearForwardRef({ ...f, ia3: null, x: scaleCols(f.x, ia3.l, M, lin.inF) });
      return;
    }
    const base = new Float64Array(M * lin.outF);
    linearForwardRef({ ...f, ia3: null, y: base, accumulate: false });
    const scaled = scaleCols(base, ia3.l, M, lin.outF);
    for (let i = 0; i < scaled.length; i++) f.y[i] = f.accumulate ? f.y[i]! + scaled[i]! : scaled[i]!;
    return;
  }
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
  const ia3 = g.ia3 ?? null;
  if (ia3) {
    if (g.lora) throw new Error('linearBackwardRef: a module has LoRA or (IA)³, not both.');
    const { M, lin } = g;
    const acc = !!g.accumulateGrads;
    if (ia3.input) {
      // dXs = dY·W, the gradient of the scaled input
      const dxs = new Float64Array(M * lin.inF);
      linearBackwardRef({ ...g, ia3: null, dx: dxs, accumulateDx: false });
      if (g.dl) colSumProduct(g.x, dxs, M, lin.inF, g.dl, acc);
      if (g.dx) {
        const d = scaleCols(dxs, ia3.l, M, lin.inF);
        for (let i = 0; i < d.length; i++) g.dx[i] = g.accumulateDx ? g.dx[i]! + d[i]! : d[i]!;
      }
      return;
    }
    if (g.dl) {
      const base = new Float64Array(M * lin.outF);
      linearForwardRef({ x: g.x, M, lin, y: base });
      colSumProduct(g.dy, base, M, lin.outF, g.dl, acc);
    }
    if (g.dx) linearBackwardRef({ ...g, ia3: null, dy: scaleCols(g.dy, ia3.l, M, lin.outF) });
    return;
  }
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
