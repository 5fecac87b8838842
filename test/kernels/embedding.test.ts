import { describe, it } from 'vitest';
import { type WeightDType } from '../../src/kernels/common';
import { recordEmbedding } from '../../src/kernels/embedding';
import { embeddingRef } from '../../src/reference/embedding';
import { rng } from '../helpers/close';
import { checkKernel, filled, rand, values } from '../helpers/kernel';

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
  dtype: WeightDType;
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
  for (const { dtype, V, H, scale, maxBindingBytes } of CASES) {
    it(`gather T=37 from [${V}, ${H}] ${dtype}${scale ? ` scale ${scale}` : ''}${maxBindingBytes ? ` in windows of ${maxBindingBytes} B` : ''}, then += a position table`, async () => {
      const T = 37;
      const P = 50;
      const pos = Uint32Array.from({ length: T }, (_, t) => (t < 20 ? t : t - 20)); // two packed sequences
      pos[7] = P + 3; // out of range: adds nothing
      await checkKernel({
        tensors: {
          wte: rand([V, H], { dtype, scale: 2 }),
          wpe: rand([P, H], { dtype, scale: 2 }),
          ids: values([T], idsFor(T, V, 3), 'u32'),
          pos: values([T], pos, 'u32'),
          out: filled([T, H], 9), // stale contents
          only: filled([T, H], 9),
        },
        record: (gpu, rec, t) => {
          const common = { T, H, maxBindingBytes };
          recordEmbedding(gpu, rec, { ...common, table: t.wte, ids: t.ids, out: t.out, scale });
          recordEmbedding(gpu, rec, { ...common, table: t.wte, ids: t.ids, out: t.only, scale });
          recordEmbedding(gpu, rec, { ...common, table: t.wpe, ids: t.pos, out: t.out, accumulate: true });
        },
        reference: (v) => {
          const only = embeddingRef({ table: v.wte, ids: v.ids, T, H, V, scale });
          const out = embeddingRef({
            table: v.wpe,
            ids: v.pos,
            T,
            H,
            V: P,
            out: Float64Array.from(only),
            accumulate: true,
          });
          return { only, out };
        },
        tols: { only: { atol: 0, rtol: 1e-7 }, out: { atol: 1e-6, rtol: 1e-6 } },
      });
    });
  }
});
