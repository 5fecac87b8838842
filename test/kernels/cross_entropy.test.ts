import { describe, expect, it } from 'vitest';
import { type Gpu, type Tensor, packHalf, roundThroughHalf } from '../../src/gpu';
import { Workspace } from '../../src/gpu/workspace';
import {
  IGNORE_TARGET,
  crossEntropyChunk,
  crossEntropyShader,
  recordCrossEntropy,
  recordLogits,
} from '../../src/kernels/cross_entropy';
import { crossEntropyRef, logitsRef } from '../../src/reference/cross_entropy';
import { expectClose, randArray, rng } from '../helpers/close';
import { getGpu } from '../helpers/gpu';
import { numericGrad } from '../helpers/fd';

type WType = 'f32' | 'f16' | 'bf16';

function uploadW(gpu: Gpu, values: Float32Array, V: number, H: number, dtype: WType): { w: Tensor; ref: Float64Array } {
  if (dtype === 'f32') return { w: gpu.tensorF32('w', [V, H], 'weights', values), ref: Float64Array.from(values) };
  return {
    w: gpu.tensor('w', [V, H], dtype, 'weights', packHalf(values, dtype)),
    ref: roundThroughHalf(values, dtype),
  };
}

function makeTargets(T: number, V: number, seed: number): Uint32Array {
  const r = rng(seed);
  const t = new Uint32Array(T);
  for (let i = 0; i < T; i++) t[i] = Math.floor(r() * V);
  // Edges: first / last class, chunk boundaries of Vc = 7, ignored rows (first, middle, last).
  const fixed: [number, number][] = [
    [0, IGNORE_TARGET],
    [1, 0],
    [2, V - 1],
    [3, 7],
    [4, 6],
    [5, 13],
    [9, IGNORE_TARGET],
    [T - 1, IGNORE_TARGET],
  ];
  for (const [i, v] of fixed) if (i < T) t[i] = v >>> 0;
  return t;
}

interface Case {
  dtype: WType;
  T: number;
  H: number;
  V: number;
  chunk?: number;
  maxBindingBytes?: number;
  scratchBytes?: number;
  accumulateDh?: boolean;
  count?: 'f32' | 'u32';
  eval?: boolean;
}

async function runCase(c: Case): Promise<void> {
  const gpu = await getGpu();
  const ws = new Workspace(gpu);
  const { T, H, V } = c;
  const hv = randArray(T * H, 11 + T);
  const wv = randArray(V * H, 12 + V, 0.5);
  const tv = makeTargets(T, V, 13);
  const counted = tv.filter((x) => x < V).length;
  const gradScale = 1 / counted;
  const h = gpu.tensorF32('h', [T, H], 'activations', hv);
  const { w, ref: wRef } = uploadW(gpu, wv, V, H, c.dtype);
  const targets = gpu.tensor('targets', [T], 'u32', 'io', tv);
  const rowLoss = gpu.tensorF32('rowLoss', [T], 'io', new Float32Array(T).fill(7));
  const lse = gpu.tensorF32('lse', [T], 'io');
  const lossSum = gpu.tensorF32('lossSum', [1], 'io', [1.5]);
  const countType = c.count ?? 'f32';
  const countSum =
    countType === 'u32'
      ? gpu.tensor('countSum', [1], 'u32', 'io', Uint32Array.of(2))
      : gpu.tensorF32('countSum', [1], 'io', [2]);
  const dh0 = randArray(T * H, 14, 3);
  const dh = c.eval ? null : gpu.tensorF32('dh', [T, H], 'activations', dh0);

  const args = {
    h,
    w,
    targets,
    T,
    H,
    V,
    gradScale,
    dh,
    accumulateDh: c.accumulateDh,
    rowLoss,
    lossSum,
    countSum,
    ws,
    lse,
    chunk: c.chunk,
    maxBindingBytes: c.maxBindingBytes,
    scratchBytes: c.scratchBytes,
  };
  // Twice in one submit: the accumulators add, everything else is recomputed identically.
  const rec = gpu.recorder('ce');
  recordCrossEntropy(gpu, rec, args);
  recordCrossEntropy(gpu, rec, { ...args, accumulateDh: true });
  rec.submit();

  const ref = crossEntropyRef({ h: hv, w: wRef, targets: tv, T, H, V, gradScale });
  expect(ref.count).toBe(counted);
  expectClose(ref.lse, await gpu.read(lse), { name: 'lse', atol: 1e-5, rtol: 1e-5 });
  expectClose(ref.rowLoss, await gpu.read(rowLoss), { name: 'rowLoss', atol: 1e-5, rtol: 1e-5 });
  const [sum] = await gpu.read(lossSum);
  expectClose([1.5 + 2 * ref.lossSum], [sum!], { name: 'lossSum', atol: 1e-5, rtol: 1e-5 });
  const [cnt] = await gpu.read(countSum);
  expect(cnt).toBe(2 + 2 * counted);
  if (dh) {
    // First call: dh0 (accumulate) or 0 (overwrite), plus the gradient; second call adds it again.
    const want = new Float64Array(T * H);
    for (let i = 0; i < want.length; i++) want[i] = (c.accumulateDh ? dh0[i]! : 0) + 2 * ref.dh[i]!;
    expectClose(want, await gpu.read(dh), { name: 'dh', atol: 2e-6, rtol: 1e-4 });
    // Ignored rows get exactly zero gradient (overwrite mode).
    if (!c.accumulateDh) {
      const got = await gpu.read(dh);
      for (let k = 0; k < H; k++) expect(got[k]).toBe(0); // row 0 is ignored
    }
  }
  for (const t of [h, w, targets, rowLoss, lse, lossSum, countSum, dh]) gpu.free(t);
  ws.dispose();
}

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
    const fd = numericGrad(h, f, 1e-6);
    expectClose(fd, g, { name: 'dh', atol: 1e-9, rtol: 1e-6 });
    for (let k = 0; k < H; k++) expect(g[1 * H + k]).toBe(0);
  });
});

describe('cross-entropy on the GPU', () => {
  it('compiles every variant', async () => {
    const gpu = await getGpu();
    for (const w of ['f32', 'f16', 'bf16'] as const) {
      for (const g of [
        { wx: 16, wy: 16, tm: 4, tn: 4, bk: 16 },
        { wx: 256, wy: 1, tm: 4, tn: 1, bk: 8 },
      ]) {
        await gpu.compileCheck(`ce_logits_${w}`, crossEntropyShader('ce_logits', { g, w, wBinding: 2 }));
        await gpu.compileCheck(`ce_dh_${w}`, crossEntropyShader('ce_dh', { g, w, wBinding: 4 }));
      }
    }
    await gpu.compileCheck('ce_stats', crossEntropyShader('ce_stats', {}));
    await gpu.compileCheck('ce_finalize', crossEntropyShader('ce_finalize', { count: 'u32' }));
    await gpu.compileCheck('ce_finalize', crossEntropyShader('ce_finalize', { count: 'f32' }));
  });

  it('picks the chunk from the byte budget and the binding limits', async () => {
    const gpu = await getGpu();
    const w = gpu.tensorF32('w', [101, 37], 'weights');
    const base = { T: 19, H: 37, V: 101, w };
    expect(crossEntropyChunk(gpu, { ...base, chunk: 7 })).toBe(7);
    expect(crossEntropyChunk(gpu, base)).toBe(101); // the default budget holds all of V
    expect(crossEntropyChunk(gpu, { ...base, chunk: 500 })).toBe(101);
    // W (14948 bytes) over a 1024-byte limit: windows of (1024 - 256) / 148 = 5 rows.
    expect(crossEntropyChunk(gpu, { ...base, chunk: 7, maxBindingBytes: 1024 })).toBe(5);
    const big = { T: 100, H: 37, V: 100000, w };
    expect(crossEntropyChunk(gpu, { ...big, scratchBytes: 100 * 4 * 200 })).toBe(192); // multiple of 64
    gpu.free(w);
  });

  const cases: Case[] = [
    { dtype: 'f32', T: 19, H: 37, V: 101, chunk: 7 },
    { dtype: 'f32', T: 19, H: 37, V: 101, chunk: 7, maxBindingBytes: 2048, accumulateDh: true },
    { dtype: 'f32', T: 70, H: 37, V: 101 }, // one chunk: pass 2 reuses the pass-1 logits
    { dtype: 'f16', T: 19, H: 37, V: 101, chunk: 7, maxBindingBytes: 1024 },
    { dtype: 'f16', T: 19, H: 37, V: 101, count: 'u32' },
    { dtype: 'bf16', T: 19, H: 37, V: 101, chunk: 7, maxBindingBytes: 1024, accumulateDh: true },
    { dtype: 'bf16', T: 3, H: 37, V: 101, chunk: 7 }, // thin GEMM tiles
    { dtype: 'bf16', T: 19, H: 37, V: 101, chunk: 7, eval: true },
    { dtype: 'f32', T: 40, H: 64, V: 3001, scratchBytes: 40 * 4 * 300, count: 'u32' }, // chunks of 256
  ];
  for (const c of cases) {
    const label = Object.entries(c)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    it(`matches the reference: ${label}`, () => runCase(c));
  }
});

describe('logits for generation', () => {
  const cases: { dtype: WType; T: number; H: number; V: number; hRowOffset?: number; maxBindingBytes?: number }[] = [
    { dtype: 'f32', T: 1, H: 37, V: 101 },
    { dtype: 'f16', T: 1, H: 37, V: 1001, maxBindingBytes: 1024 },
    { dtype: 'bf16', T: 3, H: 37, V: 101, hRowOffset: 2, maxBindingBytes: 2048 },
    { dtype: 'f32', T: 9, H: 20, V: 77, hRowOffset: 1, maxBindingBytes: 1000 },
    // T = 1 (the decode step) in windows of W: paired 16-bit words (even H), odd H, f32.
    { dtype: 'bf16', T: 1, H: 64, V: 1000, hRowOffset: 3, maxBindingBytes: 1024 },
    { dtype: 'f16', T: 1, H: 70, V: 999, maxBindingBytes: 4096 },
    { dtype: 'bf16', T: 1, H: 37, V: 500, maxBindingBytes: 2048 },
    { dtype: 'f32', T: 1, H: 70, V: 1000, hRowOffset: 1, maxBindingBytes: 2048 },
    { dtype: 'bf16', T: 8, H: 64, V: 300, maxBindingBytes: 4096 },
  ];
  for (const c of cases) {
    it(`matches the reference: ${JSON.stringify(c)}`, async () => {
      const gpu = await getGpu();
      const r0 = c.hRowOffset ?? 0;
      const rows = r0 + c.T;
      const hv = randArray(rows * c.H, 21);
      const wv = randArray(c.V * c.H, 22, 0.5);
      const h = gpu.tensorF32('h', [rows, c.H], 'activations', hv);
      const { w, ref: wRef } = uploadW(gpu, wv, c.V, c.H, c.dtype);
      const logits = gpu.tensorF32('logits', [c.T, c.V], 'io', new Float32Array(c.T * c.V).fill(NaN));
      const rec = gpu.recorder('logits');
      recordLogits(gpu, rec, {
        h,
        w,
        logits,
        T: c.T,
        H: c.H,
        V: c.V,
        hRowOffset: c.hRowOffset,
        maxBindingBytes: c.maxBindingBytes,
      });
      if (c.maxBindingBytes) expect(rec.length, 'dispatches, one per window of W').toBeGreaterThan(1);
      rec.submit();
      const ref = logitsRef({ h: hv.subarray(r0 * c.H), w: wRef, T: c.T, H: c.H, V: c.V });
      expectClose(ref, await gpu.read(logits), { name: 'logits', atol: 1e-5, rtol: 1e-5 });
      for (const t of [h, w, logits]) gpu.free(t);
    });
  }
});
