/**
 * Float64 reference of DoRA on the frozen linear layer, written from PEFT 0.21's code
 * (peft/tuners/lora/dora.py DoraLinearLayer.forward, variants.py DoraLinearVariant.forward), the
 * spec src/kernels/dora.ts and src/kernels/linear.ts are tested against:
 *
 *   V = W + s·B·A  [outF, inF] (transposed back for Conv1D),   n_o = ||V_o||  (detached),
 *   g_o = m_o / n_o
 *   without dropout (PEFT passes base_result):  y = base + (g - 1)∘(base - b) + g∘s·B·A·x
 *   with dropout p > 0 (base_result None):       y = base + (g - 1)∘(drop(x)·Wᵀ) + g∘s·B·A·drop(x)
 *   where base = x·Wᵀ + b.
 *
 * Backward, the norm held constant as PEFT's detach does (the gradient is not that of the function
 * with n depending on A and B; test/reference/dora-fd.test.ts differentiates with n frozen):
 *   dm_o = Σ_t dY[t,o]·(drop(x)·Wᵀ + s·drop(x)·Aᵀ·Bᵀ)[t,o] / n_o
 *   dB = s·(g∘dY)ᵀ·S,  dS = s·(g∘dY)·B,  dA = dSᵀ·drop(x),   S = drop(x)·Aᵀ
 *   dX = dY·W + mask∘((g - 1)∘dY·W + dS·A)         (mask = 1 without dropout)
 */
import { dropoutMultiplier } from './dropout';
import { type FrozenLinearRef, type LoraParamsRef, droppedInput, loraS } from './linear';

/** W[o, i] whichever way the weight is stored. */
function w(lin: FrozenLinearRef, o: number, i: number): number {
  return lin.transposed ? lin.w[i * lin.outF + o]! : lin.w[o * lin.inF + i]!;
}

/** n_o = ||W_o + s·(B·A)_o|| for every output row o (PEFT's get_weight_norm). */
export function doraWeightNormRef(
  lin: FrozenLinearRef,
  lora: Pick<LoraParamsRef, 'a' | 'b' | 'r' | 'scale'>,
): Float64Array {
  const n = new Float64Array(lin.outF);
  for (let o = 0; o < lin.outF; o++) {
    let acc = 0;
    for (let i = 0; i < lin.inF; i++) {
      let ba = 0;
      for (let j = 0; j < lora.r; j++) ba += lora.b[o * lora.r + j]! * lora.a[j * lin.inF + i]!;
      const v = w(lin, o, i) + lora.scale * ba;
      acc += v * v;
    }
    n[o] = Math.sqrt(acc);
  }
  return n;
}

export interface DoraRefArgs {
  x: ArrayLike<number>; // [M, inF]
  M: number;
  lin: FrozenLinearRef;
  lora: LoraParamsRef;
  m: ArrayLike<number>; // [outF] lora_magnitude_vector
  seed?: number;
  /** The norm to use (default: computed from lin and lora); tests hold it fixed. */
  norm?: ArrayLike<number>;
}

/** x·Wᵀ [M, outF] for any x [M, inF] (no bias). */
function timesWt(lin: FrozenLinearRef, x: ArrayLike<number>, M: number): Float64Array {
  const y = new Float64Array(M * lin.outF);
  for (let t = 0; t < M; t++) {
    for (let o = 0; o < lin.outF; o++) {
      let acc = 0;
      for (let i = 0; i < lin.inF; i++) acc += x[t * lin.inF + i]! * w(lin, o, i);
      y[t * lin.outF + o] = acc;
    }
  }
  return y;
}

/** s·S·Bᵀ [M, outF]. */
function loraOut(s: Float64Array, M: number, lin: FrozenLinearRef, lora: LoraParamsRef): Float64Array {
  const y = new Float64Array(M * lin.outF);
  for (let t = 0; t < M; t++) {
    for (let o = 0; o < lin.outF; o++) {
      let acc = 0;
      for (let j = 0; j < lora.r; j++) acc += s[t * lora.r + j]! * lora.b[o * lora.r + j]!;
      y[t * lin.outF + o] = lora.scale * acc;
    }
  }
  return y;
}

/** y [M, outF] of a DoRA layer, as PEFT computes it (see the file comment). */
export function doraForwardRef(f: DoraRefArgs): Float64Array {
  const { x, M, lin, lora } = f;
  const seed = f.seed ?? 0;
  const n = f.norm ?? doraWeightNormRef(lin, lora);
  const base = timesWt(lin, x, M);
  const xd = lora.dropout > 0 ? droppedInput(x, M, lin.inF, lora.dropout, seed) : Float64Array.from(x);
  const dropBase = lora.dropout > 0 ? timesWt(lin, xd, M) : base; // (base - b): base has no bias yet
  const l = loraOut(loraS(x, M, lin.inF, lora, seed), M, lin, lora);
  const y = new Float64Array(M * lin.outF);
  for (let t = 0; t < M; t++) {
    for (let o = 0; o < lin.outF; o++) {
      const e = t * lin.outF + o;
      const g = f.m[o]! / n[o]!;
      y[e] = base[e]! + (lin.bias ? lin.bias[o]! : 0) + (g - 1) * dropBase[e]! + g * l[e]!;
    }
  }
  return y;
}

export interface DoraGradsRef {
  dm: Float64Array; // [outF]
  dA: Float64Array; // [r, inF]
  dB: Float64Array; // [outF, r]
  dx: Float64Array; // [M, inF]
}

/** The gradients PEFT's autograd gives a DoRA layer for dY = dL/dy (norm detached). */
export function doraBackwardRef(f: DoraRefArgs & { dy: ArrayLike<number> }): DoraGradsRef {
  const { x, M, lin, lora, dy } = f;
  const { inF, outF } = lin;
  const r = lora.r;
  const seed = f.seed ?? 0;
  const n = f.norm ?? doraWeightNormRef(lin, lora);
  const g = Float64Array.from({ length: outF }, (_, o) => f.m[o]! / n[o]!);
  const xd = lora.dropout > 0 ? droppedInput(x, M, inF, lora.dropout, seed) : Float64Array.from(x);
  const s = loraS(x, M, inF, lora, seed);
  const z = timesWt(lin, xd, M);
  const l = loraOut(s, M, lin, lora);
  const dm = new Float64Array(outF);
  for (let o = 0; o < outF; o++) {
    let acc = 0;
    for (let t = 0; t < M; t++) acc += dy[t * outF + o]! * (z[t * outF + o]! + l[t * outF + o]!);
    dm[o] = acc / n[o]!;
  }
  const dB = new Float64Array(outF * r);
  const dS = new Float64Array(M * r);
  for (let o = 0; o < outF; o++) {
    for (let j = 0; j < r; j++) {
      let acc = 0;
      for (let t = 0; t < M; t++) acc += g[o]! * dy[t * outF + o]! * s[t * r + j]!;
      dB[o * r + j] = lora.scale * acc;
    }
  }
  for (let t = 0; t < M; t++) {
    for (let j = 0; j < r; j++) {
      let acc = 0;
      for (let o = 0; o < outF; o++) acc += g[o]! * dy[t * outF + o]! * lora.b[o * r + j]!;
      dS[t * r + j] = lora.scale * acc;
    }
  }
  const dA = new Float64Array(r * inF);
  for (let j = 0; j < r; j++) {
    for (let i = 0; i < inF; i++) {
      let acc = 0;
      for (let t = 0; t < M; t++) acc += dS[t * r + j]! * xd[t * inF + i]!;
      dA[j * inF + i] = acc;
    }
  }
  const dx = new Float64Array(M * inF);
  for (let t = 0; t < M; t++) {
    for (let i = 0; i < inF; i++) {
      let direct = 0;
      let dropped = 0;
      for (let o = 0; o < outF; o++) {
        direct += dy[t * outF + o]! * w(lin, o, i);
        dropped += (g[o]! - 1) * dy[t * outF + o]! * w(lin, o, i);
      }
      for (let j = 0; j < r; j++) dropped += dS[t * r + j]! * lora.a[j * inF + i]!;
      dx[t * inF + i] = direct + dropoutMultiplier(seed, lora.dropout, t, i) * dropped;
    }
  }
  return { dm, dA, dB, dx };
}
