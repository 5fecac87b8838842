import { describe, expect, it } from 'vitest';
import { recordDropout } from '../../src/kernels/dropout';
import {
  type FrozenLinear,
  type LoraParams,
  recordLinearBackward,
  recordLinearForward,
} from '../../src/kernels/linear';
import type { WeightDType } from '../../src/kernels/matmul';
import { dropoutMask } from '../../src/reference/dropout';
import { linearBackwardRef, linearForwardRef } from '../../src/reference/linear';
import { getGpu } from '../helpers/gpu';
import { checkKernel, filled, rand } from '../helpers/kernel';

interface Case {
  M: number;
  inF: number;
  outF: number;
  r: number | null; // null: no LoRA
  w: WeightDType;
  bias: WeightDType | null;
  transposed: boolean;
  dropout?: number;
  accumulate?: boolean; // y, dx and grads all accumulate
  noDx?: boolean;
  maxBindingBytes?: number;
}

/** Forward and backward in one submit; every output (y, S, dX, dA, dB) against the float64 reference. */
async function runCase(c: Case, seed = 7, repeat = false): Promise<void> {
  const { M, inF, outF } = c;
  const r = c.r ?? 0;
  const acc = !!c.accumulate;
  const dropout = c.dropout ?? 0;
  const dropSeed = (seed * 2654435761) >>> 0;
  const scale = r ? 2 / r : 0;
  // |got - ref| <= 3e-5·max|ref| + 1e-4·|ref| (f32 accumulation of O(100) terms against float64).
  const tol = { atol: 3e-5, rtol: 1e-4, atolOfMax: true };
  await checkKernel({
    seed,
    repeat,
    label: `linear ${JSON.stringify(c)}`,
    tensors: {
      x: rand([M, inF]),
      w: rand(c.transposed ? [inF, outF] : [outF, inF], { dtype: c.w, scale: 1 / Math.sqrt(inF) }),
      bias: c.bias ? rand([outF], { dtype: c.bias }) : undefined,
      A: r ? rand([r, inF], { scale: 1 / Math.sqrt(inF) }) : undefined,
      B: r ? rand([outF, r], { scale: 1 / Math.sqrt(r) }) : undefined,
      dy: rand([M, outF]),
      y: rand([M, outF]),
      s: r ? filled([M, r]) : undefined,
      dx: c.noDx ? undefined : rand([M, inF]),
      dA: r ? rand([r, inF]) : undefined,
      dB: r ? rand([outF, r]) : undefined,
    },
    record: (gpu, rec, t, ws) => {
      const lin: FrozenLinear = { w: t.w, bias: t.bias ?? null, inF, outF, transposed: c.transposed };
      const lora: LoraParams | null = r ? { a: t.A, b: t.B, r, scale, dropout } : null;
      const common = { x: t.x, M, lin, lora, seed: dropSeed, s: t.s, maxBindingBytes: c.maxBindingBytes };
      recordLinearForward(gpu, rec, { ...common, y: t.y, accumulate: acc });
      recordLinearBackward(gpu, rec, {
        ...common,
        dy: t.dy,
        dx: t.dx ?? null,
        accumulateDx: acc,
        dA: t.dA,
        dB: t.dB,
        accumulateGrads: acc,
        ws,
      });
    },
    reference: (v) => {
      const lin = { w: v.w, bias: v.bias ?? null, inF, outF, transposed: c.transposed };
      const lora = r ? { a: v.A, b: v.B, r, scale, dropout } : null;
      const out = {
        y: Float64Array.from(v.y),
        s: new Float64Array(M * r),
        dx: c.noDx ? null : Float64Array.from(v.dx),
        dA: r ? Float64Array.from(v.dA) : undefined,
        dB: r ? Float64Array.from(v.dB) : undefined,
      };
      const common = { x: v.x, M, lin, lora, seed: dropSeed };
      linearForwardRef({ ...common, y: out.y, s: out.s, accumulate: acc });
      linearBackwardRef({
        ...common,
        dy: v.dy,
        dx: out.dx,
        accumulateDx: acc,
        dA: out.dA,
        dB: out.dB,
        accumulateGrads: acc,
      });
      return {
        y: out.y,
        ...(r ? { s: out.s, dA: out.dA, dB: out.dB } : {}),
        ...(out.dx ? { dx: out.dx } : {}),
      };
    },
    tol,
  });
}

describe('LoRA linear vs float64 reference', () => {
  const cases: [string, Case][] = [
    ['r=8 f32 nn.Linear, f32 bias', { M: 37, inF: 70, outF: 129, r: 8, w: 'f32', bias: 'f32', transposed: false }],
    [
      'r=8 f16 nn.Linear, f16 bias, dropout 0.1, accumulate',
      { M: 37, inF: 70, outF: 129, r: 8, w: 'f16', bias: 'f16', transposed: false, dropout: 0.1, accumulate: true },
    ],
    [
      'r=8 bf16 Conv1D, bf16 bias, dropout 0.25',
      { M: 37, inF: 70, outF: 129, r: 8, w: 'bf16', bias: 'bf16', transposed: true, dropout: 0.25 },
    ],
    [
      'r=1 f32 Conv1D, no bias, accumulate',
      { M: 37, inF: 70, outF: 129, r: 1, w: 'f32', bias: null, transposed: true, accumulate: true },
    ],
    [
      'r=3 bf16 nn.Linear, no bias, dropout 0.5',
      { M: 19, inF: 129, outF: 33, r: 3, w: 'bf16', bias: null, transposed: false, dropout: 0.5 },
    ],
    [
      'r=64 f16 Conv1D, f16 bias, dropout 0.1, accumulate',
      { M: 37, inF: 70, outF: 129, r: 64, w: 'f16', bias: 'f16', transposed: true, dropout: 0.1, accumulate: true },
    ],
    [
      'r=64 f32 nn.Linear, f32 bias, no dX',
      { M: 5, inF: 70, outF: 129, r: 64, w: 'f32', bias: 'f32', transposed: false, noDx: true },
    ],
    [
      'no LoRA, f16 nn.Linear, f16 bias',
      { M: 37, inF: 70, outF: 129, r: null, w: 'f16', bias: 'f16', transposed: false },
    ],
    [
      'no LoRA, bf16 Conv1D, accumulate',
      { M: 37, inF: 70, outF: 129, r: null, w: 'bf16', bias: null, transposed: true, accumulate: true },
    ],
    ['1 token, r=3 f32', { M: 1, inF: 3, outF: 5, r: 3, w: 'f32', bias: 'f32', transposed: false, dropout: 0.3 }],
    [
      'M=600 (split-K dA/dB), r=8 bf16, dropout 0.2, accumulate',
      { M: 600, inF: 40, outF: 24, r: 8, w: 'bf16', bias: 'bf16', transposed: false, dropout: 0.2, accumulate: true },
    ],
    [
      'chunked weight bindings, r=8 f16 nn.Linear',
      {
        M: 37,
        inF: 70,
        outF: 129,
        r: 8,
        w: 'f16',
        bias: 'f16',
        transposed: false,
        dropout: 0.1,
        maxBindingBytes: 4096,
      },
    ],
  ];
  for (const [name, c] of cases) it(name, () => runCase(c));

  it('backward is bit-identical from run to run (split-K without atomics)', () =>
    runCase({ M: 600, inF: 40, outF: 24, r: 8, w: 'bf16', bias: null, transposed: false, dropout: 0.2 }, 3, true));

  it('requires s for a LoRA forward', async () => {
    const gpu = await getGpu();
    const t = gpu.tensor('t', [4, 4], 'f32', 'scratch');
    const lin: FrozenLinear = { w: t, bias: null, inF: 4, outF: 4, transposed: false };
    const lora: LoraParams = { a: t, b: t, r: 4, scale: 1, dropout: 0 };
    expect(() => recordLinearForward(gpu, gpu.recorder(), { x: t, M: 4, lin, lora, y: t })).toThrow(/needs `s`/);
    gpu.free(t);
  });
});

describe('dropout mask', () => {
  it('the GPU mask equals the TypeScript mask bit for bit, and keeps about 1 - p', async () => {
    const rows = 67,
      cols = 131,
      p = 0.3,
      seed = 123456789;
    const ref = dropoutMask(seed, p, rows, cols);
    const kept = ref.filter((v) => v !== 0).length;
    expect(Math.abs(kept / ref.length - (1 - p))).toBeLessThan(0.02);
    // Different seeds give different masks.
    expect(dropoutMask(seed + 1, p, rows, cols).some((v, i) => v !== ref[i])).toBe(true);
    await checkKernel({
      tensors: { x: filled([rows, cols], 1), y: filled([rows, cols]) },
      record: (gpu, rec, t) => recordDropout(gpu, rec, { ...t, rows, cols, seed, p }),
      reference: () => ({ y: ref.map(Math.fround) }),
      tol: { atol: 0, rtol: 0 },
    });
  });
});
