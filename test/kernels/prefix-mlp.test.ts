/**
 * PEFT's prefix projection MLP on the GPU (src/lora/prefix-mlp.ts: the matmul family with its bias
 * epilogue, the activation family's tanh, 1ᵀ·dY bias sums) against its float64 spec
 * (src/reference/prefix-projection.ts) on odd shapes: the table, the saved Z and H, and the five
 * gradients from a random table gradient, twice for bit-identical results. The second shape's
 * O = layers·2·D is long enough that dH = dT·W2 runs split-K.
 */
import { describe, it } from 'vitest';
import { type PrefixMlpDims, recordPrefixMlpBackward, recordPrefixMlpForward } from '../../src/lora/prefix-mlp';
import { prefixMlpBackwardRef, prefixMlpForwardRef } from '../../src/reference/prefix-projection';
import { checkKernel, filled, rand } from '../helpers/kernel';

const shapes: PrefixMlpDims[] = [
  { P: 7, D: 13, E: 37, O: 3 * 2 * 13 },
  { P: 5, D: 9, E: 11, O: 31 * 2 * 9 },
];

describe('prefix projection MLP kernels', () => {
  for (const dims of shapes) {
    const { P, D, E, O } = dims;
    it(`forward + backward, P=${P} D=${D} E=${E} O=${O}`, async () => {
      await checkKernel({
        tensors: {
          x: rand([P * D], { scale: 1.5 }),
          w1: rand([E * D], { scale: 0.6 }),
          b1: rand([E], { scale: 0.5 }),
          w2: rand([O * E], { scale: 0.3 }),
          b2: rand([O], { scale: 0.3 }),
          dT: rand([P * O]),
          table: filled([P * O]),
          z: filled([P * E]),
          h: filled([P * E]),
          gx: filled([P * D]),
          gw1: filled([E * D]),
          gb1: filled([E]),
          gw2: filled([O * E]),
          gb2: filled([O]),
        },
        record: (gpu, rec, t, ws) => {
          const params = { x: t.x, w1: t.w1, b1: t.b1, w2: t.w2, b2: t.b2 };
          const saved = { z: t.z, h: t.h };
          recordPrefixMlpForward(gpu, rec, { dims, params, saved, table: t.table });
          const grads = { x: t.gx, w1: t.gw1, b1: t.gb1, w2: t.gw2, b2: t.gb2 };
          recordPrefixMlpBackward(gpu, rec, { dims, params, saved, dTable: t.dT, grads, ws });
        },
        reference: (v) => {
          const m = { ...dims, x: v.x, w1: v.w1, b1: v.b1, w2: v.w2, b2: v.b2 };
          const { h, table } = prefixMlpForwardRef(m);
          // Z = X·W1ᵀ + b1, the pre-activation the forward keeps
          const z = new Float64Array(P * E);
          for (let p = 0; p < P; p++)
            for (let e = 0; e < E; e++) {
              let s = v.b1[e]!;
              for (let d = 0; d < D; d++) s += v.x[p * D + d]! * v.w1[e * D + d]!;
              z[p * E + e] = s;
            }
          const g = prefixMlpBackwardRef(m, h, v.dT);
          return { table, z, h, gx: g.dx, gw1: g.dw1, gb1: g.db1, gw2: g.dw2, gb2: g.db2 };
        },
        tol: { atol: 2e-6, rtol: 1e-5, atolOfMax: true },
        repeat: true,
      });
    });
  }
});
