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
  weightLoader,
  wgslKernel,
} from '../../src/kernels/elementwise';
import { sumSquaresRef } from '../../src/reference/optim';
import { expectClose, randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';

const F32 = { atol: 0, rtol: 1e-7 };

describe('elementwise kernels', () => {
  it('add (out = a + alpha b, and a += alpha b), scale (out and in place), n = 37·70', async () => {
    const gpu = await getGpu();
    const n = 37 * 70;
    const av = randArray(n, 1),
      bv = randArray(n, 2);
    const a = gpu.tensorF32('a', [n], 'scratch', av);
    const b = gpu.tensorF32('b', [n], 'scratch', bv);
    const c = gpu.tensorF32('c', [n], 'scratch');
    const s = gpu.tensorF32('s', [n], 'scratch');
    const rec = gpu.recorder();
    recordAdd(gpu, rec, { a, b, out: c, n }); // c = a + b
    recordScale(gpu, rec, { x: c, out: s, n, scale: -3 }); // s = -3 (a + b)
    recordAdd(gpu, rec, { a, b, n, alpha: 0.5 }); // a += b / 2
    recordScale(gpu, rec, { x: b, n: n - 5, scale: 2 }); // b *= 2 except the last 5
    rec.submit();
    const f = Math.fround;
    const sum = Float64Array.from(av, (x, i) => f(x + bv[i]!));
    expectClose(sum, await gpu.read(c), { name: 'c', ...F32 });
    expectClose(
      Float64Array.from(sum, (x) => -3 * x),
      await gpu.read(s),
      { name: 's', ...F32 },
    );
    expectClose(
      Float64Array.from(av, (x, i) => x + 0.5 * bv[i]!),
      await gpu.read(a),
      { name: 'a', ...F32 },
    );
    expectClose(
      Float64Array.from(bv, (x, i) => (i < n - 5 ? 2 * x : x)),
      await gpu.read(b),
      { name: 'b', ...F32 },
    );
    for (const t of [a, b, c, s]) gpu.free(t);
  });

  it('fill f32 and u32 with an offset', async () => {
    const gpu = await getGpu();
    const f = gpu.tensorF32('f', [101], 'scratch', new Float32Array(101).fill(1));
    const u = gpu.tensor('u', [101], 'u32', 'scratch', new Uint32Array(101).fill(1));
    const rec = gpu.recorder();
    recordFill(gpu, rec, { out: f, n: 90, value: -2.5, offset: 7 });
    recordFill(gpu, rec, { out: u, n: 101, value: 0xfffffffe });
    rec.submit();
    const gotF = await gpu.read(f);
    for (let i = 0; i < 101; i++) expect(gotF[i]).toBe(i >= 7 && i < 97 ? -2.5 : 1);
    const gotU = await gpu.readU32(u, 101);
    expect(gotU.every((x) => x === 0xfffffffe)).toBe(true);
    gpu.free(f);
    gpu.free(u);
  });

  it('copy rows into a bigger buffer at a row offset (KV-cache append), bit-exact, and accumulate', async () => {
    const gpu = await getGpu();
    const T = 37,
      W = 30,
      L = 64,
      past = 19;
    const srcV = randArray(T * W, 3);
    srcV[5] = 1e-40; // a subnormal: must survive a bit copy
    const dst0 = randArray(L * W, 4);
    const src = gpu.tensorF32('src', [T, W], 'scratch', srcV);
    const cache = gpu.tensorF32('cache', [L, W], 'scratch', dst0);
    const acc = gpu.tensorF32('acc', [L, 40], 'scratch', new Float32Array(L * 40).fill(1));
    const ids = gpu.tensor(
      'ids',
      [T, 3],
      'u32',
      'io',
      Uint32Array.from({ length: T * 3 }, (_, i) => i * 7 + 1),
    );
    const ids2 = gpu.tensor('ids2', [T], 'u32', 'io', new Uint32Array(T));
    const rec = gpu.recorder();
    recordCopyRows(gpu, rec, { src, dst: cache, rows: T, width: W, dstRow0: past });
    // columns 4..13 of rows 2.. of src added into columns 11.. of a [L, 40] matrix from row 3
    recordCopyRows(gpu, rec, {
      src,
      dst: acc,
      rows: 20,
      width: 10,
      srcStride: W,
      srcRow0: 2,
      srcCol0: 4,
      dstStride: 40,
      dstRow0: 3,
      dstCol0: 11,
      accumulate: true,
    });
    recordCopyRows(gpu, rec, { src: ids, dst: ids2, rows: T, width: 1, srcStride: 3, srcCol0: 2, dstStride: 1 }); // u32 column
    const flat = gpu.tensorF32('flat', [50], 'scratch', new Float32Array(50).fill(-1));
    recordCopy(gpu, rec, { src, dst: flat, n: 45, srcOffset: 31, dstOffset: 3 });
    rec.submit();
    const flatGot = await gpu.read(flat);
    for (let i = 0; i < 50; i++) expect(flatGot[i]).toBe(i >= 3 && i < 48 ? srcV[31 + i - 3] : -1);
    gpu.free(flat);
    const srcBits = new Uint32Array(srcV.buffer);
    const cacheBits = new Uint32Array(await gpu.readBytes(cache.buffer, 0, L * W * 4));
    const dstBits = new Uint32Array(dst0.buffer);
    for (let r = 0; r < L; r++) {
      for (let j = 0; j < W; j++) {
        const want = r >= past && r < past + T ? srcBits[(r - past) * W + j] : dstBits[r * W + j];
        if (cacheBits[r * W + j] !== want) throw new Error(`cache[${r}, ${j}]: ${cacheBits[r * W + j]} != ${want}`);
      }
    }
    const accRef = new Float64Array(L * 40).fill(1);
    for (let t = 0; t < 20; t++)
      for (let j = 0; j < 10; j++) accRef[(3 + t) * 40 + 11 + j] = Math.fround(1 + srcV[(2 + t) * W + 4 + j]!);
    expectClose(accRef, await gpu.read(acc), { name: 'acc', atol: 0, rtol: 0 });
    const col = await gpu.readU32(ids2, T);
    for (let t = 0; t < T; t++) expect(col[t]).toBe((t * 3 + 2) * 7 + 1);
    for (const t of [src, cache, acc, ids, ids2]) gpu.free(t);
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
      const src = `@group(0) @binding(1) var<storage, read> w: array<u32>;\n${weightLoader('wload', 'w', dt)}\n//#kernel k\n@group(0) @binding(2) var<storage, read_write> o: array<f32>;\n@compute @workgroup_size(1) fn main() { o[0] = wload(3u); }`;
      await gpu.compileCheck(`loader_${dt}`, wgslKernel(src, 'k'));
    }
  });
});
