/**
 * PEFT's prefix projection MLP (src/reference/prefix-projection.ts) against finite differences on
 * odd shapes: the gradient of L = Σ G∘T (G a fixed random upstream gradient) with respect to the
 * embedding and both linears' weights and biases, and the forward against a plain composition.
 */
import { describe, expect, it } from 'vitest';
import { type PrefixMlpRef, prefixMlpBackwardRef, prefixMlpForwardRef } from '../../src/reference/prefix-projection';
import { randArray } from '../helpers/close';
import { dot, expectGradClose, numericGrad } from '../helpers/fd';

describe('prefix projection MLP: float64 reference', () => {
  for (const [P, D, E, O] of [
    [3, 5, 7, 2 * 2 * 5],
    [1, 4, 3, 3 * 2 * 4],
  ] as const) {
    it(`P ${P}, token_dim ${D}, encoder_hidden_size ${E}, out ${O}: gradients match central differences`, () => {
      const m: PrefixMlpRef = {
        P,
        D,
        E,
        O,
        x: Float64Array.from(randArray(P * D, 1)),
        w1: Float64Array.from(randArray(E * D, 2)),
        b1: Float64Array.from(randArray(E, 3)),
        w2: Float64Array.from(randArray(O * E, 4)),
        b2: Float64Array.from(randArray(O, 5)),
      };
      const g = Float64Array.from(randArray(P * O, 6));
      const loss = () => dot(g, prefixMlpForwardRef(m).table);
      const { h, table } = prefixMlpForwardRef(m);
      // T[p, o] = b2[o] + Σ_e tanh(b1[e] + Σ_d x[p, d]·w1[e, d])·w2[o, e]
      const p0 = P - 1;
      let t = m.b2[O - 1]!;
      for (let e = 0; e < E; e++) {
        let z = m.b1[e]!;
        for (let d = 0; d < D; d++) z += m.x[p0 * D + d]! * m.w1[e * D + d]!;
        t += Math.tanh(z) * m.w2[(O - 1) * E + e]!;
      }
      expect(table[p0 * O + O - 1]).toBeCloseTo(t, 12);
      const grads = prefixMlpBackwardRef(m, h, g);
      expectGradClose('embedding', grads.dx, numericGrad(m.x, loss));
      expectGradClose('W1', grads.dw1, numericGrad(m.w1, loss));
      expectGradClose('b1', grads.db1, numericGrad(m.b1, loss));
      expectGradClose('W2', grads.dw2, numericGrad(m.w2, loss));
      expectGradClose('b2', grads.db2, numericGrad(m.b2, loss));
    });
  }
});
