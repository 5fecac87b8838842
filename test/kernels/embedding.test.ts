import { describe, it } from 'vitest';
import { type Gpu, type Tensor, packHalf, roundThroughHalf } from '../../src/gpu';
import { recordEmbedding } from '../../src/kernels/embedding';
import { embeddingRef } from '../../src/reference/embedding';
import { expectClose, randArray, rng } from '../helpers/close';
import { getGpu } from '../helpers/gpu';

type WType = 'f32' | 'f16' | 'bf16';

function table(gpu: Gpu, label: string, V: number, H: number, dtype: WType, seed: number): [Tensor, Float64Array] {
  const v = randArray(V * H, seed, 2);
  if (dtype === 'f32') return [gpu.tensorF32(label, [V, H], 'weights', v), Float64Array.from(v)];
  return [gpu.tensor(label, [V, H], dtype, 'weights', packHalf(v, dtype)), roundThroughHalf(v, dtype)];
}

/** Random ids in [0, V) with repeats, the first and last row, and out-of-range ids. */
function idsFor(T: number, V: number, seed: number): Uint32Array {
  const r = rng(seed);
  const ids = Uint32Array.from({ length: T }, () => Math.floor(r() * V));
  ids[0] = 0;
  ids[1] = V - 1;
  ids[2] = V; // out of range
  ids[3] = 0xffffffff; // out of range (e.g. an ignored / padding marker)
  ids[4] = ids[5]!; // repeat
  return ids;
}

interface Case {
  dtype: WType;
  V: number;
  H: number;
  scale?: number;
  maxBindingBytes?: number;
}

const CASES: Case[] = [
  { dtype: 'f32', V: 101, H: 70 },
  { dtype: 'f16', V: 101, H: 70, scale: 1.5 },
  { dtype: 'bf16', V: 101, H: 69 }, // odd H: rows start in either half of a 16-bit word pair
  { dtype: 'bf16', V: 101, H: 37, maxBindingBytes: 1024 }, // bound in 11 windows of rows
  { dtype: 'f32', V: 101, H: 69, maxBindingBytes: 4096, scale: 0.5 }, // windows, f32
];

describe('embedding kernel', () => {
  for (const c of CASES) {
    it(`gather T=37 from [${c.V}, ${c.H}] ${c.dtype}${c.scale ? ` scale ${c.scale}` : ''}${c.maxBindingBytes ? ` in windows of ${c.maxBindingBytes} B` : ''}, then += a position table`, async () => {
      const gpu = await getGpu();
      const T = 37,
        { V, H } = c;
      const [wte, wteRef] = table(gpu, 'wte', V, H, c.dtype, 1);
      const P = 50;
      const [wpe, wpeRef] = table(gpu, 'wpe', P, H, c.dtype, 2);
      const idv = idsFor(T, V, 3);
      const posv = Uint32Array.from({ length: T }, (_, t) => (t < 20 ? t : t - 20)); // two packed sequences
      posv[7] = P + 3; // out of range: adds nothing
      const ids = gpu.tensor('ids', [T], 'u32', 'io', idv);
      const pos = gpu.tensor('pos', [T], 'u32', 'io', posv);
      const out = gpu.tensorF32('out', [T, H], 'scratch', new Float32Array(T * H).fill(9)); // stale contents
      const only = gpu.tensorF32('only', [T, H], 'scratch', new Float32Array(T * H).fill(9));
      const rec = gpu.recorder();
      const common = { T, H, maxBindingBytes: c.maxBindingBytes };
      recordEmbedding(gpu, rec, { ...common, table: wte, ids, out, scale: c.scale });
      recordEmbedding(gpu, rec, { ...common, table: wte, ids, out: only, scale: c.scale });
      recordEmbedding(gpu, rec, { ...common, table: wpe, ids: pos, out, accumulate: true });
      rec.submit();
      const refOnly = embeddingRef({ table: wteRef, ids: idv, T, H, V, scale: c.scale });
      expectClose(refOnly, await gpu.read(only), { name: 'tok', atol: 0, rtol: 1e-7 });
      const ref = embeddingRef({
        table: wpeRef,
        ids: posv,
        T,
        H,
        V: P,
        out: Float64Array.from(refOnly),
        accumulate: true,
      });
      expectClose(ref, await gpu.read(out), { name: 'tok + pos', atol: 1e-6, rtol: 1e-6 });
      for (const t of [wte, wpe, ids, pos, out, only]) gpu.free(t);
    });
  }
});
