import { describe, expect, it } from 'vitest';
import { type WeightDType } from '../../src/kernels/common';
import {
  IGNORE_TARGET,
  crossEntropyChunk,
  crossEntropyShader,
  recordCrossEntropy,
  recordLogits,
} from '../../src/kernels/cross_entropy';
import { crossEntropyRef, logitsRef } from '../../src/reference/cross_entropy';
import { rng } from '../helpers/close';
import { getGpu } from '../helpers/gpu';
import { checkKernel, filled, rand, values } from '../helpers/kernel';

type WType = WeightDType;

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
  /** The head's transform (src/kernels/logits.ts): a bias of this dtype, a scale, a soft-cap. */
  transform?: { bias?: WType; scale?: number; softcap?: number };
  /** Pins ce_stats' invocations per row (gpu.kernels.rowWidth); default: the device's choice. */
  rowWidth?: number;
}

/** Two calls in one submit: the accumulators add, everything else is recomputed identically. */
async function runCase(c: Case): Promise<void> {
  const { T, H, V } = c;
  const tv = makeTargets(T, V, 13);
  const counted = tv.filter((x) => x < V).length;
  const gradScale = 1 / counted;
  const countType = c.count ?? 'f32';
  const got = await checkKernel({
    seed: T + V,
    label: `cross-entropy ${JSON.stringify(c)}`,
    tensors: {
      h: rand([T, H]),
      w: rand([V, H], { dtype: c.dtype, scale: 0.5 }),
      targets: values([T], tv, 'u32'),
      rowLoss: filled([T], 7),
      lse: filled([T]),
      lossSum: filled([1], 1.5),
      countSum: filled([1], 2, countType),
      dh: c.eval ? undefined : rand([T, H], { scale: 3 }),
      bias: c.transform?.bias ? rand([V], { dtype: c.transform.bias, scale: 2 }) : undefined,
    },
    record: (gpu, rec, t, ws) => {
      const { bias, ...rest } = t;
      const args = {
        ...rest,
        transform: c.transform && { bias: bias ?? null, scale: c.transform.scale, softcap: c.transform.softcap },
        dh: t.dh ?? null,
        T,
        H,
        V,
        gradScale,
        accumulateDh: c.accumulateDh,
        ws,
        chunk: c.chunk,
        maxBindingBytes: c.maxBindingBytes,
        scratchBytes: c.scratchBytes,
      };
      gpu.kernels.rowWidth = c.rowWidth ?? null;
      try {
        recordCrossEntropy(gpu, rec, args);
        recordCrossEntropy(gpu, rec, { ...args, accumulateDh: true });
      } finally {
        gpu.kernels.rowWidth = null;
      }
    },
    reference: (v) => {
      const transform = c.transform && { bias: v.bias ?? null, scale: c.transform.scale, softcap: c.transform.softcap };
      const ref = crossEntropyRef({ h: v.h, w: v.w, targets: tv, T, H, V, gradScale, transform });
      expect(ref.count).toBe(counted);
      const out = {
        lse: ref.lse,
        rowLoss: ref.rowLoss,
        lossSum: [1.5 + 2 * ref.lossSum],
        countSum: [2 + 2 * counted],
      };
      if (c.eval) return out;
      // First call: dh0 (accumulate) or 0 (overwrite), plus the gradient; the second adds it again.
      return { ...out, dh: ref.dh.map((g, i) => (c.accumulateDh ? v.dh[i]! : 0) + 2 * g) };
    },
    tol: { atol: 1e-5, rtol: 1e-5 },
    tols: { dh: { atol: 2e-6, rtol: 1e-4 }, countSum: { atol: 0, rtol: 0 } },
  });
  // Ignored rows get exactly zero gradient (overwrite mode; row 0 is ignored).
  if (got.dh && !c.accumulateDh) for (let k = 0; k < H; k++) expect(got.dh[k]).toBe(0);
}

describe('cross-entropy on the GPU', () => {
  it('compiles every variant', async () => {
    const gpu = await getGpu();
    await gpu.compileCheck('ce_stats', crossEntropyShader('ce_stats', {}));
    await gpu.compileCheck('ce_stats', crossEntropyShader('ce_stats', { ws: 8 }));
    await gpu.compileCheck('ce_grad', crossEntropyShader('ce_grad', {}));
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
    // W (14960 bytes) over a 1024-byte limit: windows of (1024 - 256 - 16) / 148 = 5 rows.
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
    // ce_stats 256 and 8 invocations per row (GPUs' and CPU drivers' widths) on any device
    { dtype: 'f32', T: 40, H: 64, V: 3001, scratchBytes: 40 * 4 * 300, rowWidth: 256 },
    { dtype: 'bf16', T: 19, H: 37, V: 101, chunk: 7, rowWidth: 8 },
    // transformed heads: Phi / GPT-J bias, Granite scale, Gemma 2 soft-cap
    { dtype: 'f32', T: 19, H: 37, V: 101, chunk: 7, transform: { bias: 'f32' } },
    { dtype: 'bf16', T: 19, H: 37, V: 101, chunk: 7, transform: { bias: 'bf16', scale: 0.4 } },
    { dtype: 'f16', T: 19, H: 37, V: 101, transform: { softcap: 0.8 } },
    {
      dtype: 'f32',
      T: 19,
      H: 37,
      V: 101,
      chunk: 13,
      transform: { bias: 'f16', scale: 2.5, softcap: 1.1 },
      accumulateDh: true,
    },
  ];
  for (const c of cases) {
    const label = Object.entries(c)
      .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`)
      .join(' ');
    it(`matches the reference: ${label}`, () => runCase(c));
  }
});

describe('logits for generation', () => {
  const cases: {
    dtype: WType;
    T: number;
    H: number;
    V: number;
    hRowOffset?: number;
    maxBindingBytes?: number;
    transform?: Case['transform'];
  }[] = [
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
    { dtype: 'f32', T: 1, H: 37, V: 101, transform: { bias: 'bf16', scale: 0.5, softcap: 2 } },
    { dtype: 'f16', T: 9, H: 20, V: 77, transform: { bias: 'f32', softcap: 1 } },
  ];
  for (const c of cases) {
    it(`matches the reference: ${JSON.stringify(c)}`, async () => {
      const r0 = c.hRowOffset ?? 0;
      const { T, H, V } = c;
      await checkKernel({
        tensors: {
          h: rand([r0 + T, H]),
          w: rand([V, H], { dtype: c.dtype, scale: 0.5 }),
          logits: filled([T, V], NaN),
          bias: c.transform?.bias ? rand([V], { dtype: c.transform.bias, scale: 2 }) : undefined,
        },
        record: (gpu, rec, t) => {
          const { bias, ...rest } = t;
          const transform = c.transform && {
            bias: bias ?? null,
            scale: c.transform.scale,
            softcap: c.transform.softcap,
          };
          recordLogits(gpu, rec, {
            ...rest,
            T,
            H,
            V,
            hRowOffset: c.hRowOffset,
            maxBindingBytes: c.maxBindingBytes,
            transform,
          });
          if (c.maxBindingBytes) expect(rec.length, 'dispatches, one per window of W').toBeGreaterThan(1);
        },
        reference: (v) => {
          const transform = c.transform && {
            bias: v.bias ?? null,
            scale: c.transform.scale,
            softcap: c.transform.softcap,
          };
          return { logits: logitsRef({ h: v.h.subarray(r0 * H), w: v.w, T, H, V, transform }) };
        },
      });
    });
  }
});
