import { describe, expect, it } from 'vitest';
import { recordDropout } from '../../src/kernels/dropout';
import {
  type FrozenLinear,
  type LoraParams,
  recordLinearBackward,
  recordLinearForward,
} from '../../src/kernels/linear';
import type { WeightDType } from '../../src/kernels/matmul';
import { type Nf4Tensor, freeNf4, uploadNf4 } from '../../src/kernels/nf4';
import { dropoutMask } from '../../src/reference/dropout';
import { linearBackwardRef, linearForwardRef } from '../../src/reference/linear';
import { dequantizeNf4Ref, quantizeNf4Ref } from '../../src/reference/nf4';
import { randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';
import { checkKernel, filled, rand } from '../helpers/kernel';

interface Case {
  M: number;
  inF: number;
  outF: number;
  r: number | null; // null: no LoRA
  /** 'nf4' / 'nf4-dq': a 4-bit NF4 weight (without / with double quantization), read by the fused loader. */
  w: WeightDType | 'nf4' | 'nf4-dq';
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
  // An NF4 weight: quantized by the float64 reference, uploaded in its GPU layout; the reference
  // multiplies by its float64 dequantization.
  const nf4 = c.w === 'nf4' || c.w === 'nf4-dq';
  const host = nf4 ? quantizeNf4Ref(randArray(outF * inF, seed + 101, 1 / Math.sqrt(inF)), c.w === 'nf4-dq') : null;
  let nf4W: Nf4Tensor | null = null;
  try {
    await checkKernel({
      seed,
      repeat,
      label: `linear ${JSON.stringify(c)}`,
      tensors: {
        x: rand([M, inF]),
        w: host
          ? undefined
          : rand(c.transposed ? [inF, outF] : [outF, inF], { dtype: c.w as WeightDType, scale: 1 / Math.sqrt(inF) }),
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
        const w = host ? (nf4W ??= uploadNf4(gpu, 'w', host, outF, inF)) : t.w;
        const lin: FrozenLinear = { w, bias: t.bias ?? null, inF, outF, transposed: c.transposed };
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
        const lin = {
          w: host ? dequantizeNf4Ref(host) : v.w,
          bias: v.bias ?? null,
          inF,
          outF,
          transposed: c.transposed,
        };
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
  } finally {
    if (nf4W) freeNf4(await getGpu(), nf4W);
  }
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

  // QLoRA: the frozen weight in 4-bit NF4, dequantized inside the matmuls' loads (forward X·Wᵀ with
  // the LoRA segment, backward dY·W with the dropout of the LoRA part, and the small-M kernel of
  // generation). Odd shapes: n = outF·inF leaves a last block shorter than 64; [130, 129] has 263
  // blocks, so double quantization has a second nested block of 7.
  const nf4Cases: [string, Case][] = [
    [
      'NF4 nn.Linear, r=8, f32 bias, dropout 0.1',
      { M: 37, inF: 70, outF: 129, r: 8, w: 'nf4', bias: 'f32', transposed: false, dropout: 0.1 },
    ],
    [
      'NF4 double-quant [130, 129], r=3, bf16 bias, accumulate',
      { M: 19, inF: 129, outF: 130, r: 3, w: 'nf4-dq', bias: 'bf16', transposed: false, accumulate: true },
    ],
    ['NF4 double-quant, no LoRA', { M: 37, inF: 33, outF: 65, r: null, w: 'nf4-dq', bias: null, transposed: false }],
    [
      'NF4 small-M (1 token), r=4, dropout 0.3',
      { M: 1, inF: 70, outF: 129, r: 4, w: 'nf4-dq', bias: 'f16', transposed: false, dropout: 0.3 },
    ],
    ['NF4 small-M (3 tokens), r=2', { M: 3, inF: 129, outF: 130, r: 2, w: 'nf4', bias: null, transposed: false }],
  ];
  for (const [name, c] of nf4Cases) it(name, () => runCase(c));

  it('an NF4 weight is [out, in]: marked transposed or of another shape, it is refused', async () => {
    const gpu = await getGpu();
    const w = uploadNf4(gpu, 'w', quantizeNf4Ref(randArray(12, 1), true), 3, 4);
    const x = gpu.tensor('x', [2, 4], 'f32', 'scratch');
    const y = gpu.tensor('y', [2, 3], 'f32', 'scratch');
    const run = (lin: FrozenLinear) => () => recordLinearForward(gpu, gpu.recorder(), { x, M: 2, lin, y });
    expect(run({ w, bias: null, inF: 4, outF: 3, transposed: true })).toThrow(/cannot be marked transposed/);
    expect(run({ w, bias: null, inF: 3, outF: 4, transposed: false })).toThrow(/is \[3, 4\]; the layer is \[4, 3\]/);
    freeNf4(gpu, w);
    gpu.free(x);
    gpu.free(y);
  });

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
