/** Finite-difference check of the float64 LM-head cross-entropy reference. */
import { describe, expect, it } from 'vitest';
import { IGNORE_TARGET } from '../../src/kernels/cross_entropy';
import { crossEntropyRef } from '../../src/reference/cross_entropy';
import { expectClose, randArray } from '../helpers/close';
import { numericGrad } from '../helpers/fd';

describe('cross-entropy reference', () => {
  it('dh matches central finite differences of gradScale * lossSum (float64)', () => {
    const T = 6;
    const H = 5;
    const V = 9;
    const h = Float64Array.from(randArray(T * H, 1));
    const w = Float64Array.from(randArray(V * H, 2));
    const targets = [3, IGNORE_TARGET, 0, 8, 8, 5];
    const gradScale = 0.2;
    const f = () => gradScale * crossEntropyRef({ h, w, targets, T, H, V, gradScale }).lossSum;
    const g = crossEntropyRef({ h, w, targets, T, H, V, gradScale }).dh;
    expectClose(numericGrad(h, f, 1e-6), g, { name: 'dh', atol: 1e-9, rtol: 1e-6 });
    for (let k = 0; k < H; k++) expect(g[1 * H + k]).toBe(0);
  });
});
