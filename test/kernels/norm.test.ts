import { describe, expect, it } from 'vitest';
import { type Gpu, type Tensor, packHalf, roundThroughHalf } from '../../src/gpu';
import { recordLayerNorm, recordLayerNormBackward, recordRmsNorm, recordRmsNormBackward } from '../../src/kernels/norm';
import { layerNormBackwardRef, layerNormRef, rmsNormBackwardRef, rmsNormRef } from '../../src/reference/norm';
import { expectClose, randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';
import { numericGrad, dot } from '../helpers/fd';

type WType = 'f32' | 'f16' | 'bf16';

function weight(gpu: Gpu, label: string, values: Float32Array, dtype: WType): [Tensor, Float64Array] {
  if (dtype === 'f32') return [gpu.tensorF32(label, [values.length], 'weights', values), Float64Array.from(values)];
  return [
    gpu.tensor(label, [values.length], dtype, 'weights', packHalf(values, dtype)),
    roundThroughHalf(values, dtype),
  ];
}

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

interface Case {
  rows: number;
  dim: number;
  dtype: WType;
  weightOffset?: number;
}

const CASES: Case[] = [
  { rows: 37, dim: 70, dtype: 'f32' },
  { rows: 37, dim: 70, dtype: 'f16' },
  { rows: 37, dim: 69, dtype: 'bf16' }, // odd dim: weights straddle 16-bit word halves
  { rows: 37 * 3, dim: 10, dtype: 'bf16' }, // Qwen3 per-head q/k norm: rows = T*heads, dim = headDim
  { rows: 5, dim: 333, dtype: 'f32', weightOffset: 1 }, // 256-wide workgroups, Gemma-style (1 + w)
];

describe('RMSNorm kernel', () => {
  for (const c of CASES) {
    it(`forward + backward rows=${c.rows} dim=${c.dim} w=${c.dtype}${c.weightOffset ? ' (1+w)' : ''}`, async () => {
      const gpu = await getGpu();
      const { rows, dim } = c;
      const eps = 1e-6;
      const n = rows * dim;
      const xv = randArray(n, 1, 2);
      const dyv = randArray(n, 2);
      const dx0 = randArray(n, 3);
      const [w, wRef] = weight(gpu, 'w', randArray(dim, 4, 1.5), c.dtype);
      const x = gpu.tensorF32('x', [rows, dim], 'scratch', xv);
      const y = gpu.tensorF32('y', [rows, dim], 'scratch');
      const rstd = gpu.tensorF32('rstd', [rows], 'scratch');
      const dy = gpu.tensorF32('dy', [rows, dim], 'scratch', dyv);
      const dx = gpu.tensorF32('dx', [rows, dim], 'scratch');
      const dxAcc = gpu.tensorF32('dxAcc', [rows, dim], 'scratch', dx0);
      const weightOffset = c.weightOffset;
      const rec = gpu.recorder();
      recordRmsNorm(gpu, rec, { x, w, y, rstd, rows, dim, eps, weightOffset });
      recordRmsNormBackward(gpu, rec, { dy, x, w, rstd, dx, rows, dim, weightOffset });
      recordRmsNormBackward(gpu, rec, { dy, x, w, rstd, dx: dxAcc, rows, dim, accumulate: true, weightOffset });
      rec.submit();
      const ref = rmsNormRef({ x: xv, w: wRef, rows, dim, eps, weightOffset });
      expectClose(ref.y, await gpu.read(y), { name: 'y', atol: 1e-5, rtol: 1e-5 });
      expectClose(ref.rstd, await gpu.read(rstd), { name: 'rstd', atol: 1e-6, rtol: 1e-5 });
      const dxRef = rmsNormBackwardRef({ dy: dyv, x: xv, w: wRef, rstd: ref.rstd, rows, dim, weightOffset });
      expectClose(dxRef, await gpu.read(dx), { name: 'dx', atol: 1e-5, rtol: 1e-5 });
      const accRef = rmsNormBackwardRef({
        dy: dyv,
        x: xv,
        w: wRef,
        rstd: ref.rstd,
        rows,
        dim,
        weightOffset,
        dx: Float64Array.from(dx0),
        accumulate: true,
      });
      expectClose(accRef, await gpu.read(dxAcc), { name: 'dx (accumulate)', atol: 1e-5, rtol: 1e-5 });
      for (const t of [w, x, y, rstd, dy, dx, dxAcc]) gpu.free(t);
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
  for (const c of CASES.slice(0, 3).concat([{ rows: 4, dim: 300, dtype: 'f16' }])) {
    it(`forward + backward rows=${c.rows} dim=${c.dim} w,b=${c.dtype}`, async () => {
      const gpu = await getGpu();
      const { rows, dim } = c;
      const eps = 1e-5;
      const n = rows * dim;
      const xv = randArray(n, 5, 2).map((v, i) => v + 0.5 + (i % 3)); // non-zero mean per row
      const dyv = randArray(n, 6);
      const dx0 = randArray(n, 7);
      const [w, wRef] = weight(gpu, 'w', randArray(dim, 8, 1.5), c.dtype);
      const [b, bRef] = weight(gpu, 'b', randArray(dim, 9), c.dtype);
      const x = gpu.tensorF32('x', [rows, dim], 'scratch', xv);
      const y = gpu.tensorF32('y', [rows, dim], 'scratch');
      const mean = gpu.tensorF32('mean', [rows], 'scratch');
      const rstd = gpu.tensorF32('rstd', [rows], 'scratch');
      const dy = gpu.tensorF32('dy', [rows, dim], 'scratch', dyv);
      const dx = gpu.tensorF32('dx', [rows, dim], 'scratch');
      const dxAcc = gpu.tensorF32('dxAcc', [rows, dim], 'scratch', dx0);
      const rec = gpu.recorder();
      recordLayerNorm(gpu, rec, { x, w, b, y, mean, rstd, rows, dim, eps });
      recordLayerNormBackward(gpu, rec, { dy, x, w, mean, rstd, dx, rows, dim });
      recordLayerNormBackward(gpu, rec, { dy, x, w, mean, rstd, dx: dxAcc, rows, dim, accumulate: true });
      rec.submit();
      const ref = layerNormRef({ x: xv, w: wRef, b: bRef, rows, dim, eps });
      expectClose(ref.y, await gpu.read(y), { name: 'y', atol: 1e-5, rtol: 1e-5 });
      expectClose(ref.mean, await gpu.read(mean), { name: 'mean', atol: 1e-6, rtol: 1e-5 });
      expectClose(ref.rstd, await gpu.read(rstd), { name: 'rstd', atol: 1e-6, rtol: 1e-5 });
      const args = { dy: dyv, x: xv, w: wRef, mean: ref.mean, rstd: ref.rstd, rows, dim };
      expectClose(layerNormBackwardRef(args), await gpu.read(dx), { name: 'dx', atol: 1e-5, rtol: 1e-5 });
      const accRef = layerNormBackwardRef({ ...args, dx: Float64Array.from(dx0), accumulate: true });
      expectClose(accRef, await gpu.read(dxAcc), { name: 'dx (accumulate)', atol: 1e-5, rtol: 1e-5 });
      for (const t of [w, b, x, y, mean, rstd, dy, dx, dxAcc]) gpu.free(t);
    });
  }
});
