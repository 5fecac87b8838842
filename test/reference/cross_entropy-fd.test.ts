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

  it('transformed logits: dh matches central finite differences (bias, scale, soft-cap)', () => {
    const T = 4;
    const H = 5;
    const V = 9;
    const h = Float64Array.from(randArray(T * H, 3, 2));
    const w = Float64Array.from(randArray(V * H, 4, 1));
    const transform = { bias: Float64Array.from(randArray(V, 5, 1)), scale: 0.7, softcap: 1.5 };
    const targets = [1, 8, IGNORE_TARGET, 0];
    const r = crossEntropyRef({ h, w, targets, T, H, V, gradScale: 0.3, transform });
    const f = () => 0.3 * crossEntropyRef({ h, w, targets, T, H, V, gradScale: 1, transform }).lossSum;
    expectClose(numericGrad(h, f, 1e-6), r.dh, { name: 'dh', atol: 1e-9, rtol: 1e-6 });
  });
});
