/** Finite-difference checks of the float64 activation references (SiLU, GELU-tanh, gated). */
import { describe, it } from 'vitest';
import { actGradRef, actRef, swiGluBackwardRef, swiGluRef } from '../../src/reference/activation';
import { expectClose, randArray } from '../helpers/close';
import { dot, numericGrad } from '../helpers/fd';

describe('activation references: finite differences', () => {
  for (const act of ['silu', 'gelu_tanh'] as const) {
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
