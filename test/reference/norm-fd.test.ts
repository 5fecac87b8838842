/** Finite-difference checks of the float64 RMSNorm / LayerNorm references (dX; weights frozen). */
import { describe, it } from 'vitest';
import { layerNormBackwardRef, layerNormRef, rmsNormBackwardRef, rmsNormRef } from '../../src/reference/norm';
import { expectClose, randArray } from '../helpers/close';
import { dot, numericGrad } from '../helpers/fd';

describe('norm references: finite differences', () => {
  const rows = 3,
    dim = 7,
    eps = 1e-5;
  const x = Float64Array.from(randArray(rows * dim, 11, 1.5));
  const w = Float64Array.from(randArray(dim, 12));
  const b = Float64Array.from(randArray(dim, 13));
  const g = Float64Array.from(randArray(rows * dim, 14));

  for (const weightOffset of [0, 1]) {
    it(`RMSNorm dX (weightOffset ${weightOffset})`, () => {
      const loss = () => dot(rmsNormRef({ x, w, rows, dim, eps, weightOffset }).y, g);
      const { rstd } = rmsNormRef({ x, w, rows, dim, eps, weightOffset });
      const dx = rmsNormBackwardRef({ dy: g, x, w, rstd, rows, dim, weightOffset });
      expectClose(numericGrad(x, loss), dx, { name: 'dx', atol: 1e-8, rtol: 1e-7 });
    });
  }

  it('LayerNorm dX', () => {
    const loss = () => dot(layerNormRef({ x, w, b, rows, dim, eps }).y, g);
    const { mean, rstd } = layerNormRef({ x, w, b, rows, dim, eps });
    const dx = layerNormBackwardRef({ dy: g, x, w, mean, rstd, rows, dim });
    expectClose(numericGrad(x, loss), dx, { name: 'dx', atol: 1e-8, rtol: 1e-7 });
  });
});
