import { describe, expect, it } from 'vitest';
import { recordAttention, recordAttentionBackward, recordAttentionDecode } from '../../src/kernels/attention';
import { attentionDirect, attentionSet, attentionShader, attentionTiles } from '../../src/kernels/attention-variants';
import { alibiSlopes } from '../../src/reference/alibi';
import {
  type AttentionVariant,
  attentionBackwardRef,
  attentionDecodeRef,
  attentionRef,
} from '../../src/reference/attention';
import { randArray } from '../helpers/close';
import type { Gpu } from '../../src/gpu';
import { getGpu } from '../helpers/gpu';
import { checkKernel, filled, rand, values } from '../helpers/kernel';

interface Case extends AttentionVariant {
  batch: number;
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Example lengths packed into each sequence (last one may be cut): keyStart is each row's example start. */
  packed?: number[];
}

/** keyStart [batch*seq] of sequences each holding examples of the given lengths, in turn. */
function keyStarts(c: Case): number[] {
  const out: number[] = [];
  for (let b = 0; b < c.batch; b++) {
    let start = 0;
    let n = 0;
    for (let i = 0; i < c.seq; i++) {
      const len = c.packed![(b + n) % c.packed!.length]!;
      if (i - start >= len) {
        start = i;
        n++;
      }
      out.push(start);
    }
  }
  return out;
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
  // head dims 40 and 44 share one direct module (2 chunks per lane, the last one masked; p.hd at run time)
  { batch: 2, seq: 19, heads: 4, kvHeads: 2, headDim: 40 },
  { batch: 1, seq: 23, heads: 3, kvHeads: 1, headDim: 44, window: 6 },
  // sliding windows (shorter than a tile, and across tiles), soft-capping, ALiBi (BLOOM / Falcon)
  { batch: 2, seq: 37, heads: 6, kvHeads: 2, headDim: 12, window: 5 },
  { batch: 1, seq: 45, heads: 4, kvHeads: 4, headDim: 8, window: 20, softcap: 1.5, scale: 0.4 },
  { batch: 2, seq: 23, heads: 5, kvHeads: 5, headDim: 16, alibi: BLOOM_ALIBI },
  { batch: 1, seq: 33, heads: 3, kvHeads: 1, headDim: 64, alibi: FALCON_ALIBI, window: 7 },
];

const PACKED: Case[] = [
  // examples of 1..19 tokens; tiles of 16 (hd 8-64) cut through examples, and one-token examples
  { batch: 2, seq: 37, heads: 6, kvHeads: 2, headDim: 12, packed: [5, 1, 17, 3] },
  { batch: 1, seq: 41, heads: 4, kvHeads: 4, headDim: 64, packed: [19, 2, 7] },
  // with a sliding window, soft-capping and ALiBi on top
  {
    batch: 1,
    seq: 40,
    heads: 5,
    kvHeads: 5,
    headDim: 16,
    packed: [11, 4, 20],
    window: 6,
    softcap: 2,
    alibi: BLOOM_ALIBI,
  },
];

const name = (c: Case) =>
  `B=${c.batch} S=${c.seq} nH=${c.heads} nKV=${c.kvHeads} hd=${c.headDim}` +
  (c.scale !== undefined ? ` scale=${c.scale}` : '') +
  (c.window ? ` window=${c.window}` : '') +
  (c.softcap ? ` softcap=${c.softcap}` : '') +
  (c.alibi ? ` ALiBi${c.alibi.bf16 ? ' bf16' : ''}` : '') +
  (c.packed ? ` packed ${c.packed.join('+')}` : '');

const O_TOL = { atol: 2e-6, rtol: 1e-4 };
const GRAD_TOL = { atol: 1e-5, rtol: 1e-4 };

type Kernels = 'tiled' | 'direct';

/** Runs `record` with the attention kernels pinned to `kernels`. */
function pinned<A extends unknown[]>(kernels: Kernels, record: (gpu: Gpu, ...a: A) => void) {
  return (gpu: Gpu, ...a: A) => {
    const before = gpu.kernels.attention;
    gpu.kernels.attention = kernels;
    try {
      record(gpu, ...a);
    } finally {
      gpu.kernels.attention = before;
    }
  };
}

/**
 * Forward (o, lse) and backward (dq, dk, dv) in one submit against the float64 reference, with the
 * tiled kernels or the direct ones (which serve head dims divisible by 4 on devices with subgroups).
 */
function forwardBackward(c: Case, kernels: Kernels, repeat = false) {
  const rows = c.batch * c.seq;
  const starts = c.packed ? keyStarts(c) : null;
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
      keyStart: values([rows], starts ?? new Array<number>(rows).fill(0), 'u32'),
    },
    record: pinned(kernels, (gpu, rec, t, ws) => {
      const { q, k, v, o, lse } = t;
      const keyStart = starts ? t.keyStart : undefined;
      recordAttention(gpu, rec, { q, k, v, o, lse, ...c, keyStart });
      recordAttentionBackward(gpu, rec, {
        q,
        k,
        v,
        o,
        lse,
        dO: t.dO,
        dq: t.dq,
        dk: t.dk,
        dv: t.dv,
        ws,
        ...c,
        keyStart,
      });
    }),
    reference: (v) => {
      const d = { q: v.q, k: v.k, v: v.v, dO: v.dO, ...c, keyStart: starts ?? undefined };
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

  it('runs the direct kernels on this CPU driver by default, for head dims divisible by 4', async () => {
    const gpu = await getGpu();
    expect(gpu.features.subgroupLanes).toBeGreaterThanOrEqual(4);
    expect(attentionDirect(gpu, 64)).toEqual({ fwd: { wl: 8, tq: 8, tk: 4 }, bwd: { wl: 8, tq: 4, tk: 4 } });
    expect(attentionDirect(gpu, 128)).toEqual({ fwd: { wl: 8, tq: 8, tk: 4 }, bwd: { wl: 8, tq: 2, tk: 2 } });
    expect(attentionDirect(gpu, 256)).toEqual({ fwd: { wl: 8, tq: 4, tk: 4 }, bwd: { wl: 8, tq: 1, tk: 1 } });
    expect(attentionDirect(gpu, 10)).toBeNull();
    gpu.kernels.attention = 'tiled';
    try {
      expect(attentionDirect(gpu, 64)).toBeNull();
    } finally {
      gpu.kernels.attention = null;
    }
  });

  it('which set runs where, and why: auto by device class; a pinned direct without usable subgroups runs tiled', () => {
    const device = (description: string, subgroups: boolean, lanes: number, pin: 'tiled' | 'direct' | null) =>
      ({
        info: { vendor: '', architecture: '', device: '', description },
        features: { subgroups, subgroupLanes: lanes },
        kernels: { attention: pin },
      }) as unknown as Gpu;
    const gpu = device('NVIDIA GeForce RTX 4090', true, 32, null);
    expect(attentionSet(gpu)).toEqual({ set: 'tiled', why: expect.stringMatching(/^this device is a GPU/) });
    expect(attentionSet(gpu, 'direct')).toEqual({ set: 'direct', why: 'pinned' });
    expect(attentionSet(device('llvmpipe (LLVM 15)', true, 8, null))).toEqual({
      set: 'direct',
      why: expect.stringMatching(/^this device is a CPU driver with subgroups/),
    });
    // Subgroups the probe found unusable (no aligned runs), or none at all.
    const unaligned = device('SwiftShader Device', true, 0, null);
    expect(attentionSet(unaligned)).toEqual({
      set: 'tiled',
      why: 'this device is a CPU driver but has subgroups that do not form aligned runs of 4 or more lanes (none usable), which the direct kernels need',
    });
    const none = device('SwiftShader Device', false, 0, 'direct');
    expect(attentionSet(none)).toEqual({
      set: 'tiled',
      why: 'pinned, but this device has no subgroups, which the direct kernels need, so the tiled kernels run instead',
    });
    expect(attentionDirect(none, 64)).toBeNull();
    expect(attentionSet(none, 'tiled')).toEqual({ set: 'tiled', why: 'pinned' });
  });

  for (const kernels of ['tiled', 'direct'] as const) {
    for (const c of CASES) {
      it(`${kernels}: forward and backward match the reference: ${name(c)}`, () => forwardBackward(c, kernels));
    }
    it(`${kernels}: backward is deterministic (bitwise equal over two runs)`, () =>
      forwardBackward({ batch: 2, seq: 29, heads: 6, kvHeads: 2, headDim: 12 }, kernels, true));
  }
});

describe('attention over packed examples (keyStart)', () => {
  for (const kernels of ['tiled', 'direct'] as const) {
    for (const c of PACKED) {
      it(`${kernels}: forward and backward match the reference: ${name(c)}`, () => forwardBackward(c, kernels));
    }
    it(`${kernels}: one example per row gives exactly the plain causal kernels (bitwise)`, async () => {
      const c = { batch: 2, seq: 23, heads: 4, kvHeads: 2, headDim: 12 };
      const plain = await forwardBackward(c, kernels);
      const packed = await forwardBackward({ ...c, packed: [23] }, kernels);
      for (const k of ['o', 'lse', 'dq', 'dk', 'dv'] as const) expect(packed[k]).toEqual(plain[k]);
    });
  }

  it('each packed example gives what it gives alone (reference): no attention across boundaries', () => {
    const hd = 4;
    const lens = [3, 5, 2];
    const S = 10;
    const q = randArray(S * hd, 1, 1.5);
    const k = randArray(S * hd, 2, 1.5);
    const v = randArray(S * hd, 3, 1);
    const dO = randArray(S * hd, 4, 1);
    const keyStart = [0, 0, 0, 3, 3, 3, 3, 3, 8, 8];
    const one = { batch: 1, heads: 1, kvHeads: 1, headDim: hd };
    const packed = attentionRef({ q, k, v, seq: S, keyStart, ...one });
    const grads = attentionBackwardRef({ q, k, v, dO, seq: S, keyStart, ...one });
    let at = 0;
    for (const len of lens) {
      const cut = (x: Float32Array | Float64Array) => x.slice(at * hd, (at + len) * hd);
      const alone = attentionRef({ q: cut(q), k: cut(k), v: cut(v), seq: len, ...one });
      const g = attentionBackwardRef({ q: cut(q), k: cut(k), v: cut(v), dO: cut(dO), seq: len, ...one });
      expect(Array.from(cut(packed.o))).toEqual(Array.from(alone.o));
      expect(Array.from(cut(grads.dk))).toEqual(Array.from(g.dk));
      expect(Array.from(cut(grads.dq))).toEqual(Array.from(g.dq));
      at += len;
    }
    expect(() => attentionRef({ q, k, v, seq: S, keyStart: [0, 2, 0, 0, 0, 0, 0, 0, 0, 0], ...one })).toThrow(
      /keyStart\[1\] = 2 must be an integer in 0..1/,
    );
  });

  it('compiles the packed variants', async () => {
    const gpu = await getGpu();
    for (const hd of [8, 128, 256]) {
      for (const k of ['attn_fwd', 'attn_bwd_dq', 'attn_bwd_dkdv'] as const) {
        const t = attentionTiles(gpu, k, hd);
        await gpu.compileCheck(`${k}_${hd}_seg`, attentionShader(k, { hd, ...t, lse: true, seg: true }));
      }
    }
  });
});

describe('attention decode', () => {
  /** qLen queries at positions past.. against a cache of maxLen rows whose rows past the filled ones hold garbage. */
  function decode(
    c: { heads: number; kvHeads: number; headDim: number } & AttentionVariant,
    past: number,
    qLen: number,
    maxLen: number,
    kernels: Kernels = 'tiled',
    lse = false,
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
        // scratch for the logsumexp (lets the direct forward run training's module); longer than needed
        scratch: filled([qLen + 3, c.heads]),
      },
      record: pinned(kernels, (gpu, rec, t) =>
        recordAttentionDecode(gpu, rec, { ...t, qLen, past, ...c, lse: lse ? t.scratch : undefined }),
      ),
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

  // The direct forward serves both short blocks (one row per workgroup) and prompt blocks, with or
  // without an lse scratch (with one, a prompt block runs training's forward module).
  for (const [past, qLen, lse] of [
    [36, 1, false],
    [30, 7, true],
    [10, 27, false],
    [10, 27, true],
    [0, 37, true],
  ] as const) {
    it(`direct: matches the reference at positions ${past}..${past + qLen - 1} (qLen=${qLen}${lse ? ', lse scratch' : ''})`, () =>
      decode(c, past, qLen, 45, 'direct', lse));
  }

  for (const kernels of ['tiled', 'direct'] as const) {
    it(`${kernels}: handles head dim 64 and a long context with one query row (keys over several tiles)`, () =>
      decode({ heads: 4, kvHeads: 2, headDim: 64, scale: 0.2 }, 150, 2, 160, kernels));
  }

  const variant = { heads: 3, kvHeads: 1, headDim: 16, window: 70, softcap: 2.5, alibi: FALCON_ALIBI, scale: 0.3 };
  for (const [past, qLen] of [
    [140, 1],
    [100, 13],
  ] as const) {
    it(`window, soft-cap and ALiBi (bf16) with a KV cache: positions ${past}..${past + qLen - 1}`, () =>
      decode(variant, past, qLen, 160));
  }
  for (const [past, qLen] of [
    [140, 1],
    [100, 13],
  ] as const) {
    it(`direct: window, soft-cap and ALiBi (bf16) with a KV cache: positions ${past}..${past + qLen - 1}`, () =>
      decode(variant, past, qLen, 160, 'direct', qLen > 1));
  }
});
