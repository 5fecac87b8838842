/** Finite-difference checks of the float64 activation references (SiLU, GELU-tanh, exact GELU, ReLU, gated). */
import { describe, expect, it } from 'vitest';
import { actGradRef, actRef, erfRef, swiGluBackwardRef, swiGluRef } from '../../src/reference/activation';
import { expectClose, randArray } from '../helpers/close';
import { dot, numericGrad } from '../helpers/fd';

describe('activation references: finite differences', () => {
  it('erf in float64 (tabulated values, symmetry, tails)', () => {
    const table: [number, number][] = [
      [0.1, 0.1124629160182849],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [2, 0.9953222650189527],
      [3, 0.9999779095030014],
      [4.5, 0.9999999998033839],
    ];
    for (const [x, e] of table) {
      expectClose([erfRef(x), erfRef(-x)], [e, -e], { name: `erf(${x})`, atol: 1e-15, rtol: 1e-14 });
    }
    expect(erfRef(0)).toBe(0);
    expect(erfRef(7)).toBe(1);
  });

  for (const act of ['silu', 'gelu_tanh', 'gelu', 'relu'] as const) {
    it(`${act}' matches central differences`, () => {
      const h = 1e-6;
      for (let x = -9; x <= 9; x += 0.37) {
        const num = (actRef(x + h, act) - actRef(x - h, act)) / (2 * h);
        expectClose([num], [actGradRef(x, act)], { name: `${act}'(${x.toFixed(2)})`, atol: 1e-8, rtol: 1e-7 });
      }
    });

    it(`gated ${act}: dg, du match central differences of Σ h·dh`, () => {
      const n = 9;
      const g = Float64Array.from(randArray(n, 1, 4));
      const u = Float64Array.from(randArray(n, 2, 2));
      const dh = Float64Array.from(randArray(n, 3));
      const loss = () => dot(swiGluRef(g, u, act), dh);
      const { dg, du } = swiGluBackwardRef(dh, g, u, act);
      expectClose(numericGrad(g, loss), dg, { name: 'dg', atol: 1e-8, rtol: 1e-7 });
      expectClose(numericGrad(u, loss), du, { name: 'du', atol: 1e-8, rtol: 1e-7 });
    });
  }
});
