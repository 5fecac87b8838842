/**
 * Finite-difference check of the float64 DoRA reference (src/reference/dora.ts): dm, dA, dB, dX
 * against central differences of L = sum(Y ∘ G), with the weight norm held at its value at the
 * point (PEFT detaches it, so its gradient is that of the function with n constant). A second
 * check shows the detach matters: with n recomputed per perturbation, dA differs.
 */
import { describe, expect, it } from 'vitest';
import { doraBackwardRef, doraForwardRef, doraWeightNormRef } from '../../src/reference/dora';
import { randArray } from '../helpers/close';
import { expectGradClose, numericGrad, randomLoraLinear } from '../helpers/fd';

const M = 4;
const inF = 5;
const outF = 6;
const r = 2;

describe('DoRA reference: finite differences with the norm detached', () => {
  for (const dropout of [0, 0.4]) {
    for (const transposed of [false, true]) {
      it(`dm, dA, dB, dX (dropout ${dropout}, ${transposed ? 'Conv1D' : 'nn.Linear'})`, () => {
        const x = Float64Array.from(randArray(M * inF, 1));
        const { lin, lora, a, b } = randomLoraLinear({
          inF,
          outF,
          r,
          transposed,
          bias: true,
          scale: 1.5,
          dropout,
          seed: 2,
        });
        const norm = doraWeightNormRef(lin, lora);
        const m = Float64Array.from(norm, (n, o) => n * (1 + 0.1 * (o - 2)));
        const g = Float64Array.from(randArray(M * outF, 6));
        const seed = 4242;
        const loss = (fixed: ArrayLike<number> | undefined) => {
          const y = doraForwardRef({ x, M, lin, lora, m, seed, norm: fixed });
          let s = 0;
          for (let i = 0; i < y.length; i++) s += y[i]! * g[i]!;
          return s;
        };
        const grads = doraBackwardRef({ x, M, lin, lora, m, seed, dy: g });
        expectGradClose(
          'dm',
          grads.dm,
          numericGrad(m, () => loss(norm)),
        );
        expectGradClose(
          'dA',
          grads.dA,
          numericGrad(a, () => loss(norm)),
        );
        expectGradClose(
          'dB',
          grads.dB,
          numericGrad(b, () => loss(norm)),
        );
        expectGradClose(
          'dX',
          grads.dx,
          numericGrad(x, () => loss(norm)),
        );
        // Without the detach (n follows A), the gradient would be different: the check above is not vacuous.
        const undetached = numericGrad(a, () => loss(undefined));
        expect(Math.max(...undetached.map((v, i) => Math.abs(v - grads.dA[i]!)))).toBeGreaterThan(1e-4);
      });
    }
  }

  it('at m = ||W + s·B·A|| without dropout, DoRA equals plain LoRA (the adapter starts where LoRA does)', () => {
    const x = Float64Array.from(randArray(M * inF, 7));
    const { lin, lora } = randomLoraLinear({
      inF,
      outF,
      r,
      transposed: false,
      bias: false,
      scale: 2,
      dropout: 0,
      seed: 8,
    });
    const y = doraForwardRef({ x, M, lin, lora, m: doraWeightNormRef(lin, lora) });
    for (let t = 0; t < M; t++) {
      for (let o = 0; o < outF; o++) {
        let v = 0;
        for (let i = 0; i < inF; i++) {
          let ba = 0;
          for (let j = 0; j < r; j++) ba += lora.b[o * r + j]! * lora.a[j * inF + i]!;
          v += x[t * inF + i]! * (lin.w[o * inF + i]! + 2 * ba);
        }
        expect(y[t * outF + o]).toBeCloseTo(v, 12);
      }
    }
  });
});
