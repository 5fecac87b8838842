import { describe, expect, it } from 'vitest';
import {
  attentionShader,
  attentionTiles,
  recordAttention,
  recordAttentionBackward,
  recordAttentionDecode,
} from '../../src/kernels/attention';
import { alibiSlopes } from '../../src/reference/alibi';
import {
  type AttentionVariant,
  attentionBackwardRef,
  attentionDecodeRef,
  attentionRef,
} from '../../src/reference/attention';
import { randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';
import { checkKernel, filled, rand, values } from '../helpers/kernel';

interface Case extends AttentionVariant {
  batch: number;
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
}

const BLOOM_ALIBI = { slopes: alibiSlopes(5), bf16: false, mul: 1 };
const FALCON_ALIBI = { slopes: alibiSlopes(3), bf16: true, mul: 1 / 8 };

const CASES: Case[] = [
  { batch: 1, seq: 13, heads: 6, kvHeads: 2, headDim: 8 },
  { batch: 3, seq: 37, heads: 6, kvHeads: 3, headDim: 12 },
  { batch: 1, seq: 37, heads: 6, kvHeads: 6, headDim: 64 },
  { batch: 3, seq: 13, heads: 6, kvHeads: 2, headDim: 64, scale: 0.3 },
  { batch: 2, seq: 21, heads: 4, kvHeads: 1, headDim: 128 },
  { batch: 1, seq: 9, heads: 2, kvHeads: 1, headDim: 256 },
  // sliding windows (shorter than a tile, and across tiles), soft-capping, ALiBi (BLOOM / Falcon)
  { batch: 2, seq: 37, heads: 6, kvHeads: 2, headDim: 12, window: 5 },
  { batch: 1, seq: 45, heads: 4, kvHeads: 4, headDim: 8, window: 20, softcap: 1.5, scale: 0.4 },
  { batch: 2, seq: 23, heads: 5, kvHeads: 5, headDim: 16, alibi: BLOOM_ALIBI },
  { batch: 1, seq: 33, heads: 3, kvHeads: 1, headDim: 64, alibi: FALCON_ALIBI, window: 7 },
];

const name = (c: Case) =>
  `B=${c.batch} S=${c.seq} nH=${c.heads} nKV=${c.kvHeads} hd=${c.headDim}` +
  (c.scale !== undefined ? ` scale=${c.scale}` : '') +
  (c.window ? ` window=${c.window}` : '') +
  (c.softcap ? ` softcap=${c.softcap}` : '') +
  (c.alibi ? ` ALiBi${c.alibi.bf16 ? ' bf16' : ''}` : '');

const O_TOL = { atol: 2e-6, rtol: 1e-4 };
const GRAD_TOL = { atol: 1e-5, rtol: 1e-4 };

/** Forward (o, lse) and backward (dq, dk, dv) in one submit against the float64 reference. */
function forwardBackward(c: Case, repeat = false) {
  const rows = c.batch * c.seq;
  const qShape = [rows, c.heads, c.headDim];
  const kShape = [rows, c.kvHeads, c.headDim];
  return checkKernel({
    seed: rows * 31 + c.headDim,
    repeat,
    label: `attention ${name(c)}`,
    tensors: {
      q: rand(qShape, { scale: 1.5 }),
      k: rand(kShape, { scale: 1.5 }),
      v: rand(kShape),
      dO: rand(qShape),
      o: filled(qShape),
      lse: filled([rows, c.heads]),
      // Outputs start as garbage so a missed write shows up.
      dq: rand(qShape, { scale: 9 }),
      dk: rand(kShape, { scale: 9 }),
      dv: rand(kShape, { scale: 9 }),
    },
    record: (gpu, rec, t, ws) => {
      const { q, k, v, o, lse } = t;
      recordAttention(gpu, rec, { q, k, v, o, lse, ...c });
      recordAttentionBackward(gpu, rec, { q, k, v, o, lse, dO: t.dO, dq: t.dq, dk: t.dk, dv: t.dv, ws, ...c });
    },
    reference: (v) => {
      const d = { q: v.q, k: v.k, v: v.v, dO: v.dO, ...c };
      return { ...attentionRef(d), ...attentionBackwardRef(d) };
    },
    tol: GRAD_TOL,
    tols: { o: O_TOL, lse: { atol: 2e-6, rtol: 1e-5 } },
  });
}

describe('attention on the GPU', () => {
  it('compiles every kernel variant and keeps workgroup storage within 16 KiB', async () => {
    const gpu = await getGpu();
    for (const hd of [8, 12, 64, 128, 256]) {
      for (const k of ['attn_fwd', 'attn_bwd_dq', 'attn_bwd_dkdv'] as const) {
        const t = attentionTiles(gpu, k, hd);
        expect(t.br * t.bc).toBeLessThanOrEqual(256);
        await gpu.compileCheck(`${k}_${hd}`, attentionShader(k, { hd, ...t, lse: true }));
      }
      await gpu.compileCheck(`attn_bwd_d_${hd}`, attentionShader('attn_bwd_d', { hd, br: 1, bc: 1 }));
      await gpu.compileCheck(`attn_decode_rows_${hd}`, attentionShader('attn_decode_rows', { hd, br: 1, bc: 1 }));
    }
    for (const v of [{ softcap: true }, { alibi: true }, { softcap: true, alibi: true }]) {
      const t = attentionTiles(gpu, 'attn_bwd_dkdv', 64);
      await gpu.compileCheck(`dkdv ${JSON.stringify(v)}`, attentionShader('attn_bwd_dkdv', { hd: 64, ...t, ...v }));
      await gpu.compileCheck(
        `rows ${JSON.stringify(v)}`,
        attentionShader('attn_decode_rows', { hd: 64, br: 1, bc: 1, ...v }),
      );
    }
    expect(attentionTiles(gpu, 'attn_fwd', 64)).toEqual({ br: 16, bc: 16 });
  });

  for (const c of CASES) it(`forward and backward match the reference: ${name(c)}`, () => forwardBackward(c));

  it('backward is deterministic (bitwise equal over two runs)', () =>
    forwardBackward({ batch: 2, seq: 29, heads: 6, kvHeads: 2, headDim: 12 }, true));
});

describe('attention decode', () => {
  /** qLen queries at positions past.. against a cache of maxLen rows whose rows past the filled ones hold garbage. */
  function decode(
    c: { heads: number; kvHeads: number; headDim: number } & AttentionVariant,
    past: number,
    qLen: number,
    maxLen: number,
  ) {
    const kvShape = [maxLen, c.kvHeads, c.headDim];
    const cache = (seed: number, scale: number) => {
      const x = randArray(maxLen * c.kvHeads * c.headDim, seed, 50);
      x.set(randArray((past + qLen) * c.kvHeads * c.headDim, seed + 1, scale));
      return x;
    };
    return checkKernel({
      seed: past * 100 + qLen,
      label: `decode ${past}+${qLen}`,
      tensors: {
        q: rand([qLen, c.heads, c.headDim], { scale: 1.5 }),
        kCache: values(kvShape, cache(11, 1.5)),
        vCache: values(kvShape, cache(13, 1)),
        o: filled([qLen, c.heads, c.headDim]),
      },
      record: (gpu, rec, t) => recordAttentionDecode(gpu, rec, { ...t, qLen, past, ...c }),
      reference: (v) => ({ o: attentionDecodeRef({ ...v, qLen, past, ...c }) }),
      tol: O_TOL,
    });
  }

  const c = { heads: 6, kvHeads: 2, headDim: 12 };
  for (const [past, qLen] of [
    [36, 1],
    [0, 1],
    [30, 7],
    [10, 27],
    [0, 37],
  ] as const) {
    it(`matches the reference at positions ${past}..${past + qLen - 1} (qLen=${qLen})`, () =>
      decode(c, past, qLen, 45));
  }

  it('handles head dim 64 and a long context in the row kernel (keys over several tiles)', () =>
    decode({ heads: 4, kvHeads: 2, headDim: 64, scale: 0.2 }, 150, 2, 160));

  const variant = { heads: 3, kvHeads: 1, headDim: 16, window: 70, softcap: 2.5, alibi: FALCON_ALIBI, scale: 0.3 };
  for (const [past, qLen] of [
    [140, 1],
    [100, 13],
  ] as const) {
    it(`window, soft-cap and ALiBi (bf16) with a KV cache: positions ${past}..${past + qLen - 1}`, () =>
      decode(variant, past, qLen, 160));
  }
});
