import { describe, expect, it } from 'vitest';
import type { Gpu, Tensor } from '../../src/gpu';
import { Workspace } from '../../src/gpu/workspace';
import {
  attentionShader,
  attentionTiles,
  recordAttention,
  recordAttentionBackward,
  recordAttentionDecode,
} from '../../src/kernels/attention';
import { attentionBackwardRef, attentionDecodeRef, attentionRef } from '../../src/reference/attention';
import { expectClose, randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';
import { numericGrad } from '../helpers/fd';

interface Case {
  batch: number;
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale?: number;
}

const CASES: Case[] = [
  { batch: 1, seq: 13, heads: 6, kvHeads: 2, headDim: 8 },
  { batch: 3, seq: 37, heads: 6, kvHeads: 3, headDim: 12 },
  { batch: 1, seq: 37, heads: 6, kvHeads: 6, headDim: 64 },
  { batch: 3, seq: 13, heads: 6, kvHeads: 2, headDim: 64, scale: 0.3 },
  { batch: 2, seq: 21, heads: 4, kvHeads: 1, headDim: 128 },
  { batch: 1, seq: 9, heads: 2, kvHeads: 1, headDim: 256 },
];

const name = (c: Case) =>
  `B=${c.batch} S=${c.seq} nH=${c.heads} nKV=${c.kvHeads} hd=${c.headDim}${c.scale !== undefined ? ` scale=${c.scale}` : ''}`;

function data(c: Case, seed: number) {
  const rows = c.batch * c.seq;
  return {
    q: randArray(rows * c.heads * c.headDim, seed + 1, 1.5),
    k: randArray(rows * c.kvHeads * c.headDim, seed + 2, 1.5),
    v: randArray(rows * c.kvHeads * c.headDim, seed + 3),
    dO: randArray(rows * c.heads * c.headDim, seed + 4),
  };
}

function up(gpu: Gpu, label: string, shape: number[], values: Float32Array): Tensor {
  return gpu.tensorF32(label, shape, 'scratch', values);
}

// ------------------------------------------------------------------ the reference itself

describe('attention reference', () => {
  it('matches central finite differences in float64 (GQA, 2 sequences)', () => {
    const c: Case = { batch: 2, seq: 5, heads: 4, kvHeads: 2, headDim: 3, scale: 0.7 };
    const d = data(c, 100);
    const q = Float64Array.from(d.q);
    const k = Float64Array.from(d.k);
    const v = Float64Array.from(d.v);
    const R = Float64Array.from(d.dO); // loss = sum(o * R), so dO = R
    const loss = () => {
      const { o } = attentionRef({ q, k, v, ...c });
      let s = 0;
      for (let i = 0; i < o.length; i++) s += o[i]! * R[i]!;
      return s;
    };
    const g = attentionBackwardRef({ q, k, v, dO: R, ...c });
    const eps = 1e-6;
    for (const [x, grad, label] of [
      [q, g.dq, 'dq'],
      [k, g.dk, 'dk'],
      [v, g.dv, 'dv'],
    ] as const) {
      const fd = numericGrad(x, loss, eps);
      expectClose(fd, grad, { name: label, atol: 1e-8, rtol: 1e-6 });
    }
  });

  it('sees only the first key at position 0 and ignores other sequences', () => {
    const c: Case = { batch: 2, seq: 4, heads: 2, kvHeads: 1, headDim: 3 };
    const d = data(c, 7);
    const { o, lse } = attentionRef({ ...d, ...c });
    for (let b = 0; b < 2; b++) {
      for (let h = 0; h < 2; h++) {
        for (let dd = 0; dd < 3; dd++) {
          expect(o[(b * 4 * 2 + h) * 3 + dd]).toBeCloseTo(d.v[b * 4 * 3 + dd]!, 6);
        }
        let dot = 0;
        for (let dd = 0; dd < 3; dd++) dot += d.q[(b * 4 * 2 + h) * 3 + dd]! * d.k[b * 4 * 3 + dd]!;
        expect(lse[b * 4 * 2 + h]).toBeCloseTo(dot / Math.sqrt(3), 6);
      }
    }
  });
});

// ------------------------------------------------------------------ GPU vs reference

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
    expect(attentionTiles(gpu, 'attn_fwd', 64)).toEqual({ br: 16, bc: 16 });
  });

  for (const c of CASES) {
    it(`forward and backward match the reference: ${name(c)}`, async () => {
      const gpu = await getGpu();
      const ws = new Workspace(gpu);
      const rows = c.batch * c.seq;
      const d = data(c, rows * 31 + c.headDim);
      const qShape = [rows, c.heads, c.headDim];
      const kShape = [rows, c.kvHeads, c.headDim];
      const q = up(gpu, 'q', qShape, d.q);
      const k = up(gpu, 'k', kShape, d.k);
      const v = up(gpu, 'v', kShape, d.v);
      const dO = up(gpu, 'dO', qShape, d.dO);
      const o = gpu.tensorF32('o', qShape, 'scratch');
      const lse = gpu.tensorF32('lse', [rows, c.heads], 'scratch');
      // Outputs start as garbage so a missed write shows up.
      const dq = up(gpu, 'dq', qShape, randArray(d.q.length, 5, 9));
      const dk = up(gpu, 'dk', kShape, randArray(d.k.length, 6, 9));
      const dv = up(gpu, 'dv', kShape, randArray(d.v.length, 7, 9));
      const rec = gpu.recorder('attention');
      recordAttention(gpu, rec, { q, k, v, o, lse, ...c });
      recordAttentionBackward(gpu, rec, { q, k, v, o, lse, dO, dq, dk, dv, ws, ...c });
      rec.submit();

      const ref = attentionRef({ ...d, ...c });
      expectClose(ref.o, await gpu.read(o), { name: 'o', atol: 2e-6, rtol: 1e-4 });
      expectClose(ref.lse, await gpu.read(lse), { name: 'lse', atol: 2e-6, rtol: 1e-5 });
      const g = attentionBackwardRef({ ...d, ...c });
      expectClose(g.dq, await gpu.read(dq), { name: 'dq', atol: 1e-5, rtol: 1e-4 });
      expectClose(g.dk, await gpu.read(dk), { name: 'dk', atol: 1e-5, rtol: 1e-4 });
      expectClose(g.dv, await gpu.read(dv), { name: 'dv', atol: 1e-5, rtol: 1e-4 });
      for (const t of [q, k, v, dO, o, lse, dq, dk, dv]) gpu.free(t);
      ws.dispose();
    });
  }

  it('backward is deterministic (bitwise equal over two runs)', async () => {
    const gpu = await getGpu();
    const c: Case = { batch: 2, seq: 29, heads: 6, kvHeads: 2, headDim: 12 };
    const ws = new Workspace(gpu);
    const rows = c.batch * c.seq;
    const d = data(c, 55);
    const qShape = [rows, c.heads, c.headDim];
    const kShape = [rows, c.kvHeads, c.headDim];
    const q = up(gpu, 'q', qShape, d.q);
    const k = up(gpu, 'k', kShape, d.k);
    const v = up(gpu, 'v', kShape, d.v);
    const dO = up(gpu, 'dO', qShape, d.dO);
    const o = gpu.tensorF32('o', qShape, 'scratch');
    const lse = gpu.tensorF32('lse', [rows, c.heads], 'scratch');
    const outs = [0, 1].map(() => ({
      dq: gpu.tensorF32('dq', qShape, 'scratch'),
      dk: gpu.tensorF32('dk', kShape, 'scratch'),
      dv: gpu.tensorF32('dv', kShape, 'scratch'),
    }));
    const rec = gpu.recorder('attention');
    recordAttention(gpu, rec, { q, k, v, o, lse, ...c });
    for (const g of outs) recordAttentionBackward(gpu, rec, { q, k, v, o, lse, dO, ws, ...g, ...c });
    rec.submit();
    for (const key of ['dq', 'dk', 'dv'] as const) {
      const a = await gpu.readU32(outs[0]![key]);
      const b = await gpu.readU32(outs[1]![key]);
      expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer)), key).toBe(true);
    }
    for (const t of [q, k, v, dO, o, lse, ...outs.flatMap((g) => [g.dq, g.dk, g.dv])]) gpu.free(t);
    ws.dispose();
  });
});

// ------------------------------------------------------------------ generation with a KV cache

describe('attention decode', () => {
  const c = { heads: 6, kvHeads: 2, headDim: 12 };
  const S = 37;
  const maxLen = 45;

  for (const [past, qLen] of [
    [36, 1],
    [0, 1],
    [30, 7],
    [10, 27],
    [0, 37],
  ] as const) {
    it(`matches the training forward at positions ${past}..${past + qLen - 1} (qLen=${qLen})`, async () => {
      const gpu = await getGpu();
      const d = data({ batch: 1, seq: S, ...c }, 900);
      const kvRow = c.kvHeads * c.headDim;
      const qRow = c.heads * c.headDim;
      // Training forward over the whole sequence.
      const q = up(gpu, 'q', [S, c.heads, c.headDim], d.q);
      const k = up(gpu, 'k', [S, c.kvHeads, c.headDim], d.k);
      const v = up(gpu, 'v', [S, c.kvHeads, c.headDim], d.v);
      const o = gpu.tensorF32('o', [S, c.heads, c.headDim], 'scratch');
      const lse = gpu.tensorF32('lse', [S, c.heads], 'scratch');
      // Cache rows past the filled ones hold garbage that must never be read.
      const kc = randArray(maxLen * kvRow, 11, 50);
      const vc = randArray(maxLen * kvRow, 12, 50);
      kc.set(d.k.subarray(0, (past + qLen) * kvRow));
      vc.set(d.v.subarray(0, (past + qLen) * kvRow));
      const kCache = up(gpu, 'kCache', [maxLen, c.kvHeads, c.headDim], kc);
      const vCache = up(gpu, 'vCache', [maxLen, c.kvHeads, c.headDim], vc);
      const qd = up(gpu, 'qd', [qLen, c.heads, c.headDim], d.q.slice(past * qRow, (past + qLen) * qRow));
      const od = gpu.tensorF32('od', [qLen, c.heads, c.headDim], 'scratch');
      const rec = gpu.recorder('decode');
      recordAttention(gpu, rec, { q, k, v, o, lse, batch: 1, seq: S, ...c });
      recordAttentionDecode(gpu, rec, { q: qd, kCache, vCache, o: od, qLen, past, ...c });
      rec.submit();
      const got = await gpu.read(od);
      const full = await gpu.read(o);
      expectClose(full.subarray(past * qRow, (past + qLen) * qRow), got, {
        name: 'o decode vs forward',
        atol: 2e-6,
        rtol: 1e-4,
      });
      const ref = attentionDecodeRef({
        q: d.q.slice(past * qRow, (past + qLen) * qRow),
        kCache: kc,
        vCache: vc,
        qLen,
        past,
        ...c,
      });
      expectClose(ref, got, { name: 'o decode vs reference', atol: 2e-6, rtol: 1e-4 });
      for (const t of [q, k, v, o, lse, kCache, vCache, qd, od]) gpu.free(t);
    });
  }

  it('handles head dim 64 and a long context in the row kernel (keys over several tiles)', async () => {
    const gpu = await getGpu();
    const cc = { heads: 4, kvHeads: 2, headDim: 64 };
    const past = 150;
    const qLen = 2;
    const kvRow = cc.kvHeads * cc.headDim;
    const kc = randArray(160 * kvRow, 21);
    const vc = randArray(160 * kvRow, 22);
    const qv = randArray(qLen * cc.heads * cc.headDim, 23, 2);
    const kCache = up(gpu, 'kCache', [160, cc.kvHeads, cc.headDim], kc);
    const vCache = up(gpu, 'vCache', [160, cc.kvHeads, cc.headDim], vc);
    const q = up(gpu, 'q', [qLen, cc.heads, cc.headDim], qv);
    const o = gpu.tensorF32('o', [qLen, cc.heads, cc.headDim], 'scratch');
    const rec = gpu.recorder('decode');
    recordAttentionDecode(gpu, rec, { q, kCache, vCache, o, qLen, past, ...cc, scale: 0.2 });
    rec.submit();
    const ref = attentionDecodeRef({ q: qv, kCache: kc, vCache: vc, qLen, past, ...cc, scale: 0.2 });
    expectClose(ref, await gpu.read(o), { name: 'o', atol: 2e-6, rtol: 1e-4 });
    for (const t of [kCache, vCache, q, o]) gpu.free(t);
  });
});
