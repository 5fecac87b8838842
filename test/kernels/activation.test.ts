import { describe, it } from 'vitest';
import {
  type Activation,
  recordActivation,
  recordActivationBackward,
  recordSwiGlu,
  recordSwiGluBackward,
} from '../../src/kernels/activation';
import {
  activationBackwardRef,
  activationRef,
  splitGateUp,
  swiGluBackwardRef,
  swiGluRef,
} from '../../src/reference/activation';
import { randArray } from '../helpers/close';
import { checkKernel, filled, rand, values } from '../helpers/kernel';

const TOL = { atol: 1e-6, rtol: 1e-5 };

/** Inputs over [-8, 8] plus a few extremes and exact zeros. */
function inputs(n: number, seed: number): Float32Array {
  const x = randArray(n, seed, 8);
  [0, -0, 30, -30, 90, -90, 1e-4, -1e-4].forEach((v, i) => {
    if (i * 7 < n) x[i * 7] = v;
  });
  return x;
}

describe('activation kernels', () => {
  for (const act of ['silu', 'gelu_tanh', 'gelu', 'relu', 'tanh'] as const) {
    it(`${act} forward + backward (n = 37·70, overwrite and accumulate)`, async () => {
      const n = 37 * 70;
      await checkKernel({
        tensors: { x: values([n], inputs(n, 10)), dy: rand([n]), y: filled([n]), dx: filled([n]), dxAcc: rand([n]) },
        record: (gpu, rec, t) => {
          recordActivation(gpu, rec, { x: t.x, y: t.y, n, act });
          recordActivationBackward(gpu, rec, { dy: t.dy, x: t.x, dx: t.dx, n, act });
          recordActivationBackward(gpu, rec, { dy: t.dy, x: t.x, dx: t.dxAcc, n, accumulate: true, act });
        },
        reference: (v) => ({
          y: activationRef(v.x, act),
          dx: activationBackwardRef(v.dy, v.x, act),
          dxAcc: activationBackwardRef(v.dy, v.x, act, Float64Array.from(v.dxAcc), true),
        }),
        tol: TOL,
      });
    });
  }

  const gated: { act: Activation; fused: boolean }[] = [
    { act: 'silu', fused: false },
    { act: 'silu', fused: true },
    { act: 'gelu_tanh', fused: false },
    { act: 'gelu_tanh', fused: true },
  ];
  for (const { act, fused } of gated) {
    it(`gated ${act} (${fused ? 'fused [T, 2I]' : 'separate g, u'}) forward + backward, T=37 I=70`, async () => {
      const rows = 37,
        cols = 70,
        n = rows * cols;
      if (fused) {
        await checkKernel({
          tensors: {
            gu: values([rows, 2 * cols], inputs(2 * n, 21)),
            dh: rand([n]),
            h: filled([n]),
            dgu: filled([2 * n]),
          },
          record: (gpu, rec, t) => {
            recordSwiGlu(gpu, rec, { gu: t.gu, h: t.h, rows, cols, act });
            recordSwiGluBackward(gpu, rec, { dh: t.dh, gu: t.gu, dgu: t.dgu, rows, cols, act });
          },
          reference: (v) => {
            const { g, u } = splitGateUp(v.gu, rows, cols);
            const { dg, du } = swiGluBackwardRef(v.dh, g, u, act);
            // dgu holds d gate in columns [0, cols) and d up in [cols, 2·cols) of each row.
            const dgu = new Float64Array(2 * n);
            for (let r = 0; r < rows; r++) {
              dgu.set(dg.subarray(r * cols, (r + 1) * cols), 2 * r * cols);
              dgu.set(du.subarray(r * cols, (r + 1) * cols), (2 * r + 1) * cols);
            }
            return { h: swiGluRef(g, u, act), dgu };
          },
          tol: TOL,
        });
        return;
      }
      await checkKernel({
        tensors: {
          g: values([n], inputs(n, 22)),
          u: rand([n], { scale: 3 }),
          dh: rand([n]),
          h: filled([n]),
          dg: filled([n]),
          du: filled([n]),
        },
        record: (gpu, rec, t) => {
          recordSwiGlu(gpu, rec, { g: t.g, u: t.u, h: t.h, n, act });
          recordSwiGluBackward(gpu, rec, { dh: t.dh, g: t.g, u: t.u, dg: t.dg, du: t.du, n, act });
        },
        reference: (v) => ({ h: swiGluRef(v.g, v.u, act), ...swiGluBackwardRef(v.dh, v.g, v.u, act) }),
        tol: TOL,
      });
    });
  }
});
