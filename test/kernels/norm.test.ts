import { describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu';
import { type WeightDType } from '../../src/kernels/common';
import { recordLayerNorm, recordLayerNormBackward, recordRmsNorm, recordRmsNormBackward } from '../../src/kernels/norm';
import { layerNormBackwardRef, layerNormRef, rmsNormBackwardRef, rmsNormRef } from '../../src/reference/norm';
import { randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';
import { checkKernel, filled, rand, values } from '../helpers/kernel';

interface Case {
  rows: number;
  dim: number;
  dtype: WeightDType;
  weightOffset?: number;
}

const CASES: Case[] = [
  { rows: 37, dim: 70, dtype: 'f32' },
  { rows: 37, dim: 70, dtype: 'f16' },
  { rows: 37, dim: 69, dtype: 'bf16' }, // odd dim: weights straddle 16-bit word halves
  { rows: 37 * 3, dim: 10, dtype: 'bf16' }, // Qwen3 per-head q/k norm: rows = T*heads, dim = headDim
  { rows: 5, dim: 333, dtype: 'f32', weightOffset: 1 }, // 256-wide workgroups, Gemma-style (1 + w)
];

const TOL = { atol: 1e-5, rtol: 1e-5 };

/**
 * Invocations per row (gpu.kernels.rowWidth): the device's choice (8 on CPU drivers), and 256 and 64
 * pinned, the GPU widths, so both designs are checked on any device.
 */
const WIDTHS = [null, 256, 64] as const;

/** Records with the row width pinned (null: the device's choice), then unpins. */
function withWidth(width: number | null, gpu: Gpu, record: () => void): void {
  gpu.kernels.rowWidth = width;
  try {
    record();
  } finally {
    gpu.kernels.rowWidth = null;
  }
}

describe('RMSNorm kernel', () => {
  for (const [{ rows, dim, dtype, weightOffset }, width] of CASES.flatMap((c) => WIDTHS.map((w) => [c, w] as const))) {
    it(`forward + backward rows=${rows} dim=${dim} w=${dtype}${weightOffset ? ' (1+w)' : ''} width ${width ?? 'auto'}`, async () => {
      const eps = 1e-6;
      const shape = [rows, dim];
      await checkKernel({
        tensors: {
          x: rand(shape, { scale: 2 }),
          w: rand([dim], { dtype, scale: 1.5 }),
          dy: rand(shape),
          y: filled(shape),
          rstd: filled([rows]),
          dx: filled(shape),
          dxAcc: rand(shape),
        },
        record: (gpu, rec, t) =>
          withWidth(width, gpu, () => {
            const common = { x: t.x, w: t.w, rstd: t.rstd, rows, dim, weightOffset };
            recordRmsNorm(gpu, rec, { ...common, y: t.y, eps });
            recordRmsNormBackward(gpu, rec, { ...common, dy: t.dy, dx: t.dx });
            recordRmsNormBackward(gpu, rec, { ...common, dy: t.dy, dx: t.dxAcc, accumulate: true });
          }),
        reference: (v) => {
          const { y, rstd } = rmsNormRef({ x: v.x, w: v.w, rows, dim, eps, weightOffset });
          const back = { dy: v.dy, x: v.x, w: v.w, rstd, rows, dim, weightOffset };
          const dx = rmsNormBackwardRef(back);
          const dxAcc = rmsNormBackwardRef({ ...back, dx: Float64Array.from(v.dxAcc), accumulate: true });
          return { y, rstd, dx, dxAcc };
        },
        tol: TOL,
        tols: { rstd: { atol: 1e-6, rtol: 1e-5 } },
      });
    });
  }

  it('rejects an output aliasing an input', async () => {
    const gpu = await getGpu();
    const x = gpu.tensorF32('x', [2, 4], 'scratch');
    const w = gpu.tensorF32('w', [4], 'scratch');
    const rstd = gpu.tensorF32('rstd', [2], 'scratch');
    expect(() => recordRmsNorm(gpu, gpu.recorder(), { x, w, y: x, rstd, rows: 2, dim: 4, eps: 1e-6 })).toThrow(
      /must not share/,
    );
    for (const t of [x, w, rstd]) gpu.free(t);
  });
});

describe('LayerNorm kernel', () => {
  const lnCases = CASES.slice(0, 3).concat([{ rows: 4, dim: 300, dtype: 'f16' }]);
  for (const [{ rows, dim, dtype }, width] of lnCases.flatMap((c) => WIDTHS.map((w) => [c, w] as const))) {
    it(`forward + backward rows=${rows} dim=${dim} w,b=${dtype} width ${width ?? 'auto'}`, async () => {
      const eps = 1e-5;
      const shape = [rows, dim];
      const n = rows * dim;
      await checkKernel({
        tensors: {
          // a non-zero mean per row
          x: values(
            shape,
            randArray(n, 5, 2).map((v, i) => v + 0.5 + (i % 3)),
          ),
          w: rand([dim], { dtype, scale: 1.5 }),
          b: rand([dim], { dtype }),
          dy: rand(shape),
          y: filled(shape),
          mean: filled([rows]),
          rstd: filled([rows]),
          dx: filled(shape),
          dxAcc: rand(shape),
        },
        record: (gpu, rec, t) =>
          withWidth(width, gpu, () => {
            const common = { x: t.x, w: t.w, mean: t.mean, rstd: t.rstd, rows, dim };
            recordLayerNorm(gpu, rec, { ...common, b: t.b, y: t.y, eps });
            recordLayerNormBackward(gpu, rec, { ...common, dy: t.dy, dx: t.dx });
            recordLayerNormBackward(gpu, rec, { ...common, dy: t.dy, dx: t.dxAcc, accumulate: true });
          }),
        reference: (v) => {
          const { y, mean, rstd } = layerNormRef({ x: v.x, w: v.w, b: v.b, rows, dim, eps });
          const back = { dy: v.dy, x: v.x, w: v.w, mean, rstd, rows, dim };
          const dx = layerNormBackwardRef(back);
          const dxAcc = layerNormBackwardRef({ ...back, dx: Float64Array.from(v.dxAcc), accumulate: true });
          return { y, mean, rstd, dx, dxAcc };
        },
        tol: TOL,
        tols: { mean: { atol: 1e-6, rtol: 1e-5 }, rstd: { atol: 1e-6, rtol: 1e-5 } },
      });
    });
  }
});
