/**
 * Float64 spec of LoftQ's alternating iteration (PEFT 0.21 utils/loftq_utils.loftq_init; the engine's
 * float32 form is src/lora/loftq.ts): Q_t = dequant(NF4(W - L_{t-1}·R_{t-1})) with L_0·R_0 = 0, and
 * L_t·R_t the best rank-r approximation of W - Q_t, split as L = U·√S, R = √S·Vᵀ. NF4 here rounds to
 * the nearest code in exact arithmetic (src/reference/nf4.ts), in blocks of 64 without double
 * quantization; the rank-r step is the exact SVD (src/numerics/lowrank.ts, itself checked against
 * its own references). Returns Q, A = R [r, in], B = L [out, r] and ||W - Q - B·A||_F after each
 * iteration.
 */
import { topSingular } from '../numerics/lowrank';
import { dequantizeNf4Ref, quantizeNf4Ref } from './nf4';

export function loftqRef(
  w: ArrayLike<number>,
  outF: number,
  inF: number,
  r: number,
  iters: number,
): { q: Float64Array; a: Float64Array; b: Float64Array; errors: number[] } {
  const n = outF * inF;
  const lowRank = new Float64Array(n); // L·R of the previous iteration
  let q: Float64Array = new Float64Array(n);
  const a = new Float64Array(r * inF);
  const b = new Float64Array(outF * r);
  const errors: number[] = [];
  for (let t = 0; t < iters; t++) {
    const target = Float64Array.from({ length: n }, (_, k) => w[k]! - lowRank[k]!);
    q = dequantizeNf4Ref(quantizeNf4Ref(target, false));
    const e = Float64Array.from({ length: n }, (_, k) => w[k]! - q[k]!);
    const svd = topSingular(e, outF, inF, r, { exact: true });
    for (let j = 0; j < r; j++) {
      const root = Math.sqrt(svd.s[j]!);
      for (let i = 0; i < inF; i++) a[j * inF + i] = root * svd.vt[j * inF + i]!;
      for (let o = 0; o < outF; o++) b[o * r + j] = root * svd.u[o * r + j]!;
    }
    let err = 0;
    for (let o = 0; o < outF; o++) {
      for (let i = 0; i < inF; i++) {
        let s = 0;
        for (let j = 0; j < r; j++) s += b[o * r + j]! * a[j * inF + i]!;
        lowRank[o * inF + i] = s;
        err += (w[o * inF + i]! - q[o * inF + i]! - s) ** 2;
      }
    }
    errors.push(Math.sqrt(err));
  }
  return { q, a, b, errors };
}
