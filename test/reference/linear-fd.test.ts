/**
 * Finite-difference check of the float64 LoRA linear reference: the backward's dX, dA, dB against
 * central differences of the scalar loss L = sum(Y ∘ G) for a random G (so dY = G).
 */
import { describe, expect, it } from 'vitest';
import { dropoutMask } from '../../src/reference/dropout';
import {
  type FrozenLinearRef,
  type LoraParamsRef,
  linearBackwardRef,
  linearForwardRef,
} from '../../src/reference/linear';
import { matmulRef } from '../../src/reference/matmul';
import { randArray } from '../helpers/close';
import { expectGradClose, numericGrad, randomLoraLinear } from '../helpers/fd';

const M = 4;
const inF = 5;
const outF = 6;
const r = 3;

function loss(x: Float64Array, lin: FrozenLinearRef, lora: LoraParamsRef, seed: number, g: Float64Array): number {
  const y = new Float64Array(M * outF);
  linearForwardRef({ x, M, lin, lora, seed, y });
  let s = 0;
  for (let i = 0; i < y.length; i++) s += y[i]! * g[i]!;
  return s;
}

describe('LoRA linear reference: finite differences', () => {
  for (const dropout of [0, 0.4]) {
    for (const transposed of [false, true]) {
      it(`dX, dA, dB (dropout ${dropout}, ${transposed ? 'Conv1D' : 'nn.Linear'})`, () => {
        const x = Float64Array.from(randArray(M * inF, 1));
        const { lin, lora, a, b } = randomLoraLinear({
          inF,
          outF,
          r,
          transposed,
          bias: true,
          scale: 1.7,
          dropout,
          seed: 2,
        });
        const seed = 31337;
        const g = Float64Array.from(randArray(M * outF, 6));
        if (dropout > 0) {
          // The mask must actually drop something here, or the check proves nothing about it.
          const mask = dropoutMask(seed, dropout, M, inF);
          expect(mask.some((v) => v === 0)).toBe(true);
          expect(mask.some((v) => v !== 0)).toBe(true);
        }
        const dx = new Float64Array(M * inF);
        const dA = new Float64Array(r * inF);
        const dB = new Float64Array(outF * r);
        linearBackwardRef({ dy: g, x, M, lin, lora, seed, dx, dA, dB });
        const f = () => loss(x, lin, lora, seed, g);
        expectGradClose('dX', dx, numericGrad(x, f, 1e-5));
        expectGradClose('dA', dA, numericGrad(a, f, 1e-5));
        expectGradClose('dB', dB, numericGrad(b, f, 1e-5));
      });
    }
  }

  it('accumulate flags add onto the outputs; saved S equals the recomputed S', () => {
    const x = randArray(M * inF, 11);
    const lin: FrozenLinearRef = { w: randArray(outF * inF, 12), bias: null, inF, outF, transposed: false };
    const lora: LoraParamsRef = { a: randArray(r * inF, 13), b: randArray(outF * r, 14), r, scale: 0.5, dropout: 0.3 };
    const dy = randArray(M * outF, 15);
    const fresh = {
      y: new Float64Array(M * outF),
      dx: new Float64Array(M * inF),
      dA: new Float64Array(r * inF),
      dB: new Float64Array(outF * r),
    };
    const s = new Float64Array(M * r);
    linearForwardRef({ x, M, lin, lora, seed: 5, y: fresh.y, s });
    linearBackwardRef({ dy, x, M, lin, lora, seed: 5, dx: fresh.dx, dA: fresh.dA, dB: fresh.dB });
    const withSaved = { dx: new Float64Array(M * inF), dA: new Float64Array(r * inF), dB: new Float64Array(outF * r) };
    linearBackwardRef({ dy, x, M, lin, lora, seed: 5, s, ...withSaved });
    expect(withSaved.dA).toEqual(fresh.dA);
    expect(withSaved.dB).toEqual(fresh.dB);
    const init = {
      y: Float64Array.from(randArray(M * outF, 16)),
      dx: Float64Array.from(randArray(M * inF, 17)),
      dA: Float64Array.from(randArray(r * inF, 18)),
      dB: Float64Array.from(randArray(outF * r, 19)),
    };
    const acc = {
      y: Float64Array.from(init.y),
      dx: Float64Array.from(init.dx),
      dA: Float64Array.from(init.dA),
      dB: Float64Array.from(init.dB),
    };
    linearForwardRef({ x, M, lin, lora, seed: 5, y: acc.y, accumulate: true });
    linearBackwardRef({
      dy,
      x,
      M,
      lin,
      lora,
      seed: 5,
      dx: acc.dx,
      accumulateDx: true,
      dA: acc.dA,
      dB: acc.dB,
      accumulateGrads: true,
    });
    for (const k of ['y', 'dx', 'dA', 'dB'] as const) {
      for (let i = 0; i < acc[k].length; i++) expect(acc[k][i]).toBeCloseTo(init[k][i]! + fresh[k][i]!, 12);
    }
  });

  it('without LoRA the layer is X·Wᵀ + b, matching matmulRef in both weight layouts', () => {
    const x = randArray(M * inF, 21);
    const w = randArray(outF * inF, 22); // [outF, inF]
    const bias = randArray(outF, 23);
    const y1 = new Float64Array(M * outF);
    linearForwardRef({ x, M, lin: { w, bias, inF, outF, transposed: false }, y: y1 });
    const y2 = new Float64Array(M * outF);
    matmulRef({ a: x, b: w, c: y2, M, N: outF, K: inF, transB: true, bias });
    for (let i = 0; i < y1.length; i++) expect(y1[i]).toBeCloseTo(y2[i]!, 12);
    // The same weight stored [inF, outF] (Conv1D).
    const wt = new Float64Array(inF * outF);
    for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) wt[i * outF + o] = w[o * inF + i]!;
    const y3 = new Float64Array(M * outF);
    linearForwardRef({ x, M, lin: { w: wt, bias, inF, outF, transposed: true }, y: y3 });
    expect(y3).toEqual(y1);
  });
});

describe('(IA)³ linear reference: finite differences', () => {
  for (const input of [false, true]) {
    for (const transposed of [false, true]) {
      it(`dX, dl (${input ? 'input (feed-forward)' : 'output'} vector, ${transposed ? 'Conv1D' : 'nn.Linear'})`, () => {
        const x = Float64Array.from(randArray(M * inF, 41));
        const lin: FrozenLinearRef = {
          w: Float64Array.from(randArray(inF * outF, 42)),
          bias: Float64Array.from(randArray(outF, 43)),
          inF,
          outF,
          transposed,
        };
        const l = Float64Array.from(randArray(input ? inF : outF, 44));
        const ia3 = { l, input };
        const g = Float64Array.from(randArray(M * outF, 45));
        const f = () => {
          const y = new Float64Array(M * outF);
          linearForwardRef({ x, M, lin, ia3, y });
          return y.reduce((s, v, i) => s + v * g[i]!, 0);
        };
        const dx = new Float64Array(M * inF);
        const dl = new Float64Array(l.length);
        linearBackwardRef({ dy: g, x, M, lin, ia3, dx, dl });
        expectGradClose('dX', dx, numericGrad(x, f, 1e-5));
        expectGradClose('dl', dl, numericGrad(l, f, 1e-5));
        // All-ones vectors (PEFT's init) leave the layer unchanged; an output vector scales the bias too.
        const plain = new Float64Array(M * outF);
        linearForwardRef({ x, M, lin, y: plain });
        const ones = new Float64Array(M * outF);
        linearForwardRef({ x, M, lin, ia3: { l: l.map(() => 1), input }, y: ones });
        for (let i = 0; i < plain.length; i++) expect(ones[i]).toBeCloseTo(plain[i]!, 12);
      });
    }
  }
});
