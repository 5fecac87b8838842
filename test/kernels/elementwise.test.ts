import { describe, expect, it } from 'vitest';
import { Workspace } from '../../src/gpu';
import {
  SUMSQ_CHUNK,
  recordAdd,
  recordCopy,
  recordCopyRows,
  recordFill,
  recordScale,
  recordSumSquares,
} from '../../src/kernels/elementwise';
import { weightLoader, wgslModule } from '../../src/kernels/common';
import { sumSquaresRef } from '../../src/reference/optim';
import { expectClose, randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';
import { checkKernel, filled, rand, values } from '../helpers/kernel';

const F32 = { atol: 0, rtol: 1e-7 };
const EXACT = { atol: 0, rtol: 0 };

describe('elementwise kernels', () => {
  it('add (out = a + alpha b, and a += alpha b), scale (out and in place), n = 37·70', async () => {
    const n = 37 * 70;
    const f = Math.fround;
    await checkKernel({
      tensors: { a: rand([n]), b: rand([n]), c: filled([n]), s: filled([n]) },
      record: (gpu, rec, { a, b, c, s }) => {
        recordAdd(gpu, rec, { a, b, out: c, n }); // c = a + b
        recordScale(gpu, rec, { x: c, out: s, n, scale: -3 }); // s = -3 (a + b)
        recordAdd(gpu, rec, { a, b, n, alpha: 0.5 }); // a += b / 2
        recordScale(gpu, rec, { x: b, n: n - 5, scale: 2 }); // b *= 2 except the last 5
      },
      reference: (v) => {
        const c = v.a.map((x, i) => f(x + v.b[i]!));
        return {
          c,
          s: c.map((x) => -3 * x),
          a: v.a.map((x, i) => x + 0.5 * v.b[i]!),
          b: v.b.map((x, i) => (i < n - 5 ? 2 * x : x)),
        };
      },
      tol: F32,
    });
  });

  it('fill f32 and u32 with an offset', async () => {
    await checkKernel({
      tensors: { f: filled([101], 1), u: filled([101], 1, 'u32') },
      record: (gpu, rec, t) => {
        recordFill(gpu, rec, { out: t.f, n: 90, value: -2.5, offset: 7 });
        recordFill(gpu, rec, { out: t.u, n: 101, value: 0xfffffffe });
      },
      reference: () => ({
        f: Float64Array.from({ length: 101 }, (_, i) => (i >= 7 && i < 97 ? -2.5 : 1)),
        u: new Float64Array(101).fill(0xfffffffe),
      }),
      tol: EXACT,
    });
  });

  it('copy rows into a bigger buffer at a row offset (KV-cache append), bit-exact, and accumulate', async () => {
    const T = 37,
      W = 30,
      L = 64,
      past = 19;
    const srcV = randArray(T * W, 3);
    srcV[5] = 1e-40; // a subnormal: must survive a bit copy
    await checkKernel({
      tensors: {
        src: values([T, W], srcV),
        cache: rand([L, W]),
        acc: filled([L, 40], 1),
        ids: values(
          [T, 3],
          Uint32Array.from({ length: T * 3 }, (_, i) => i * 7 + 1),
          'u32',
        ),
        ids2: filled([T], 0, 'u32'),
        flat: filled([50], -1),
      },
      record: (gpu, rec, t) => {
        recordCopyRows(gpu, rec, { src: t.src, dst: t.cache, rows: T, width: W, dstRow0: past });
        // columns 4..13 of rows 2.. of src added into columns 11.. of a [L, 40] matrix from row 3
        const acc = { srcStride: W, srcRow0: 2, srcCol0: 4, dstStride: 40, dstRow0: 3, dstCol0: 11 };
        recordCopyRows(gpu, rec, { src: t.src, dst: t.acc, rows: 20, width: 10, ...acc, accumulate: true });
        // a u32 column
        recordCopyRows(gpu, rec, { src: t.ids, dst: t.ids2, rows: T, width: 1, srcStride: 3, srcCol0: 2 });
        recordCopy(gpu, rec, { src: t.src, dst: t.flat, n: 45, srcOffset: 31, dstOffset: 3 });
      },
      reference: (v) => {
        const cache = Float64Array.from(v.cache);
        cache.set(v.src, past * W);
        const acc = new Float64Array(L * 40).fill(1);
        for (let r = 0; r < 20; r++)
          for (let j = 0; j < 10; j++) acc[(3 + r) * 40 + 11 + j] = Math.fround(1 + v.src[(2 + r) * W + 4 + j]!);
        const flat = new Float64Array(50).fill(-1);
        flat.set(v.src.subarray(31, 31 + 45), 3);
        return { cache, acc, ids2: Float64Array.from({ length: T }, (_, r) => (r * 3 + 2) * 7 + 1), flat };
      },
      tol: EXACT,
    });
  });
});

describe('sum of squares (two-stage, deterministic)', () => {
  it('over tensors of odd sizes, one spanning many workgroups; repeatable bit for bit', async () => {
    const gpu = await getGpu();
    const sizes = [1, 37 * 70, SUMSQ_CHUNK, SUMSQ_CHUNK + 1, 20 * SUMSQ_CHUNK + 333, 0];
    const vals = sizes.map((n, k) => randArray(Math.max(n, 1), 50 + k, k + 0.5));
    const ts = sizes.map((n, k) => gpu.tensorF32(`t${k}`, [Math.max(n, 1)], 'scratch', vals[k]!));
    const out = gpu.tensorF32('out', [3], 'scratch', [7, 7, 7]);
    const ws = new Workspace(gpu);
    const tensors = ts.map((t, k) => ({ t, n: sizes[k]! }));
    for (const outIndex of [0, 2]) {
      const rec = gpu.recorder();
      recordSumSquares(gpu, rec, { tensors, out, ws, outIndex });
      rec.submit();
    }
    const ref = sumSquaresRef(vals.map((t, k) => ({ t, n: sizes[k]! })));
    const got = await gpu.read(out);
    expectClose([ref, 7, ref], got, { name: 'normSq', atol: 0, rtol: 2e-6 });
    expect(got[0]).toBe(got[2]); // same order of additions, same bits
    // empty list: 0
    const rec = gpu.recorder();
    recordSumSquares(gpu, rec, { tensors: [], out, ws });
    rec.submit();
    expect((await gpu.read(out))[0]).toBe(0);
    for (const t of ts) gpu.free(t);
    gpu.free(out);
    ws.dispose();
  });
});

describe('template helpers', () => {
  it('compile every weight loader (core WGSL, no `enable f16`)', async () => {
    const gpu = await getGpu();
    for (const dt of ['f32', 'f16', 'bf16'] as const) {
      const src = `@group(0) @binding(1) var<storage, read> w: array<u32>;\n//#kernel k\n@group(0) @binding(2) var<storage, read_write> o: array<f32>;\n@compute @workgroup_size(1) fn main() { o[0] = wload(3u); }`;
      await gpu.compileCheck(
        `loader_${dt}`,
        wgslModule({ source: src, kernel: 'k', prelude: [weightLoader('wload', 'w', dt)] }),
      );
    }
  });
});
