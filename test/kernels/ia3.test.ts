/**
 * The (IA)³ linear (src/kernels/linear.ts with `ia3`, shaders/ia3.wgsl) against the float64
 * reference: forward Y, backward dX and dl, for input (feed-forward) and output vectors, nn.Linear
 * and Conv1D weights, 16-bit weights, with and without accumulation, on odd shapes.
 */
import { describe, it } from 'vitest';
import { type FrozenLinear, recordLinearBackward, recordLinearForward } from '../../src/kernels/linear';
import type { WeightDType } from '../../src/kernels/matmul';
import { linearBackwardRef, linearForwardRef } from '../../src/reference/linear';
import { checkKernel, filled, rand } from '../helpers/kernel';

interface Case {
  M: number;
  inF: number;
  outF: number;
  input: boolean;
  w: WeightDType;
  bias: boolean;
  transposed: boolean;
  accumulate?: boolean;
}

async function runCase(c: Case, repeat = false): Promise<void> {
  const { M, inF, outF, input } = c;
  const acc = !!c.accumulate;
  const n = input ? inF : outF;
  await checkKernel({
    seed: 5,
    repeat,
    label: `ia3 ${JSON.stringify(c)}`,
    tensors: {
      x: rand([M, inF]),
      w: rand(c.transposed ? [inF, outF] : [outF, inF], { dtype: c.w, scale: 1 / Math.sqrt(inF) }),
      bias: c.bias ? rand([outF]) : undefined,
      l: rand([n]),
      save: filled([M, n]),
      dy: rand([M, outF]),
      y: rand([M, outF]),
      dx: rand([M, inF]),
      dl: rand([n]),
    },
    record: (gpu, rec, t, ws) => {
      const lin: FrozenLinear = { w: t.w, bias: t.bias ?? null, inF, outF, transposed: c.transposed };
      const common = { x: t.x, M, lin, ia3: { l: t.l, input }, ia3Save: t.save };
      recordLinearForward(gpu, rec, { ...common, y: t.y, accumulate: acc });
      recordLinearBackward(gpu, rec, {
        ...common,
        dy: t.dy,
        dx: t.dx,
        accumulateDx: acc,
        dl: t.dl,
        accumulateGrads: acc,
        ws,
      });
    },
    reference: (v) => {
      const lin = { w: v.w, bias: v.bias ?? null, inF, outF, transposed: c.transposed };
      const out = { y: Float64Array.from(v.y), dx: Float64Array.from(v.dx), dl: Float64Array.from(v.dl) };
      const common = { x: v.x, M, lin, ia3: { l: v.l, input } };
      linearForwardRef({ ...common, y: out.y, accumulate: acc });
      linearBackwardRef({ ...common, dy: v.dy, dx: out.dx, accumulateDx: acc, dl: out.dl, accumulateGrads: acc });
      return out;
    },
    tol: { atol: 3e-5, rtol: 1e-4, atolOfMax: true },
  });
}

describe('(IA)³ linear vs float64 reference', () => {
  const cases: [string, Case][] = [
    [
      'output vector, f32 nn.Linear with bias',
      { M: 37, inF: 70, outF: 129, input: false, w: 'f32', bias: true, transposed: false },
    ],
    [
      'input vector (feed-forward), bf16 Conv1D, accumulate',
      { M: 29, inF: 131, outF: 45, input: true, w: 'bf16', bias: true, transposed: true, accumulate: true },
    ],
    [
      'output vector, f16 Conv1D, accumulate',
      { M: 3, inF: 33, outF: 67, input: false, w: 'f16', bias: false, transposed: true, accumulate: true },
    ],
    [
      'input vector, f32 nn.Linear, one row',
      { M: 1, inF: 17, outF: 9, input: true, w: 'f32', bias: false, transposed: false },
    ],
  ];
  for (const [name, c] of cases) it(name, () => runCase(c));
  it('reruns are bit-identical', () =>
    runCase({ M: 41, inF: 23, outF: 19, input: false, w: 'f32', bias: true, transposed: false }, true));
});
