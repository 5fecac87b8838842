/**
 * LoftQ (src/lora/loftq.ts, the float32 / bitsandbytes-exact form the training run uses) against its
 * float64 spec (src/reference/loftq.ts) on odd shapes (weights whose size is no multiple of NF4's
 * 64-element blocks, wide and tall): the same quantized base Q, the same low-rank product B·A, both
 * factors carrying √S (‖A_j‖ = ‖B_:j‖ = √s_j), and an error ‖W - Q - B·A‖ below plain NF4's that
 * the alternating iterations do not make worse.
 */
import { describe, expect, it } from 'vitest';
import { loftqInit } from '../../src/lora/loftq';
import { loftqRef } from '../../src/reference/loftq';
import { randArray } from '../helpers/close';

function product(b: ArrayLike<number>, a: ArrayLike<number>, outF: number, inF: number, r: number): Float64Array {
  const p = new Float64Array(outF * inF);
  for (let o = 0; o < outF; o++)
    for (let j = 0; j < r; j++) for (let i = 0; i < inF; i++) p[o * inF + i]! += b[o * r + j]! * a[j * inF + i]!;
  return p;
}

const norm = (x: ArrayLike<number>) => Math.sqrt(Array.from(x).reduce((s, v) => s + v * v, 0));

describe('LoftQ: float32 engine form against the float64 spec', () => {
  const shapes: [outF: number, inF: number, r: number][] = [
    [37, 29, 3],
    [19, 70, 5],
  ];
  for (const [outF, inF, r] of shapes) {
    for (const iters of [1, 3]) {
      it(`W ${outF}x${inF}, r ${r}, loftq_iter ${iters}`, () => {
        const w = Float32Array.from(randArray(outF * inF, outF * 1000 + inF, 0.5));
        const got = loftqInit(w, outF, inF, r, iters);
        const ref = loftqRef(w, outF, inF, r, iters);
        // Q: on the NF4 grid of each block; equal up to float32 rounding of the scaled values
        let qBad = 0;
        for (let k = 0; k < w.length; k++) if (Math.abs(got.q[k]! - ref.q[k]!) > 1e-6) qBad++;
        expect(qBad, 'quantized weights that differ').toBe(0);
        const pGot = product(got.b, got.a, outF, inF, r);
        const pRef = product(ref.b, ref.a, outF, inF, r);
        const diff = pGot.map((v, k) => v - pRef[k]!);
        expect(norm(diff) / norm(pRef), 'B·A').toBeLessThan(1e-5);
        // √S on both factors
        for (let j = 0; j < r; j++) {
          const aj = norm(got.a.subarray(j * inF, (j + 1) * inF));
          const bj = norm(Array.from({ length: outF }, (_, o) => got.b[o * r + j]!));
          expect(Math.abs(aj - bj) / bj).toBeLessThan(1e-9);
        }
        // better than NF4 alone (the first iteration's Q with no low-rank part)
        const q1 = loftqRef(w, outF, inF, r, 1).q;
        const plain = norm(w.map((v, k) => v - q1[k]!));
        const final = ref.errors[ref.errors.length - 1]!;
        expect(final).toBeLessThan(plain);
        expect(final).toBeLessThanOrEqual(ref.errors[0]! * (1 + 1e-9));
        const err = norm(w.map((v, k) => v - got.q[k]! - pGot[k]!));
        expect(Math.abs(err - final) / final).toBeLessThan(1e-4);
      });
    }
  }
});
