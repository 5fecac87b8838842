/**
 * `tabtune bench attention`: the attention kernels (forward, and forward + backward) with the tiled
 * kernels (workgroup-memory tiles: every device before issue 12's attention work) and the direct
 * subgroup kernels (CPU drivers' default) pinned in turn, timed round-robin in one process so the
 * ratio holds on a shared machine. Default shape: one SmolLM2-135M layer (9 heads, 3 KV heads,
 * head dim 64).
 */
import type { Gpu, Recorder } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { Workspace } from '../gpu/workspace';
import { recordAttention, recordAttentionBackward, recordAttentionDecode } from '../kernels/attention';
import { attentionDirect } from '../kernels/attention-variants';
import { randomValues } from '../reference/check';
import { timeGpuInterleaved } from './timing';

export interface AttentionBench {
  shape: string;
  /**
   * Per kernel set: forward ms, forward + backward ms and its speed-up over `tiled`, and one decoded
   * token's attention (batch 0's last position against the cache of its S keys, x16 per submit).
   */
  rows: {
    kernels: 'tiled' | 'direct';
    ms_forward: number;
    ms_forward_backward: number;
    speedup: number;
    ms_decode16: number;
  }[];
}

export async function benchAttention(
  gpu: Gpu,
  o: {
    batch: number;
    seq: number;
    heads: number;
    kvHeads: number;
    headDim: number;
    budgetMs: number;
    log: (l: string) => void;
  },
): Promise<AttentionBench> {
  const { batch, seq, heads, kvHeads, headDim } = o;
  const shape = `B=${batch} S=${seq} heads=${heads} kv=${kvHeads} hd=${headDim}`;
  const rows = batch * seq;
  const owned: Tensor[] = [];
  const t = (label: string, shape: number[], seed: number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const x = gpu.tensor(label, shape, 'f32', 'scratch', randomValues(n, seed, 1));
    owned.push(x);
    return x;
  };
  const ws = new Workspace(gpu);
  const before = gpu.kernels.attention;
  try {
    const q = t('q', [rows, heads, headDim], 1);
    const k = t('k', [rows, kvHeads, headDim], 2);
    const v = t('v', [rows, kvHeads, headDim], 3);
    const dO = t('dO', [rows, heads, headDim], 4);
    const out = t('o', [rows, heads, headDim], 5);
    const lse = t('lse', [rows, heads], 6);
    const dq = t('dq', [rows, heads, headDim], 7);
    const dk = t('dk', [rows, kvHeads, headDim], 8);
    const dv = t('dv', [rows, kvHeads, headDim], 9);
    const sh = { batch, seq, heads, kvHeads, headDim };
    const q1 = t('q1', [1, heads, headDim], 10);
    const o1 = t('o1', [1, heads, headDim], 11);
    const pinned =
      (kernels: 'tiled' | 'direct', part: 'f' | 'fb' | 'd') =>
      (rec: Recorder): void => {
        gpu.kernels.attention = kernels;
        try {
          if (part === 'd') {
            const one = { q: q1, kCache: k, vCache: v, o: o1, qLen: 1, past: seq - 1, heads, kvHeads, headDim };
            for (let i = 0; i < 16; i++) recordAttentionDecode(gpu, rec, one);
            return;
          }
          recordAttention(gpu, rec, { q, k, v, o: out, lse, ...sh });
          if (part === 'fb') recordAttentionBackward(gpu, rec, { q, k, v, o: out, lse, dO, dq, dk, dv, ws, ...sh });
        } finally {
          gpu.kernels.attention = before;
        }
      };
    gpu.kernels.attention = 'direct';
    const sets: ('tiled' | 'direct')[] = attentionDirect(gpu, headDim) ? ['tiled', 'direct'] : ['tiled'];
    gpu.kernels.attention = before;
    const variants: Record<string, (rec: Recorder) => void> = {};
    for (const s of sets) {
      for (const part of ['f', 'fb', 'd'] as const) variants[`${s}:${part}`] = pinned(s, part);
    }
    const times = await timeGpuInterleaved(gpu, variants, { budgetMs: o.budgetMs });
    const base = times['tiled:fb']!.medianMs;
    const res: AttentionBench = {
      shape,
      rows: sets.map((s) => ({
        kernels: s,
        ms_forward: times[`${s}:f`]!.medianMs,
        ms_forward_backward: times[`${s}:fb`]!.medianMs,
        speedup: base / times[`${s}:fb`]!.medianMs,
        ms_decode16: times[`${s}:d`]!.medianMs,
      })),
    };
    for (const r of res.rows) {
      o.log(
        `attention ${shape} ${r.kernels}: forward ${r.ms_forward.toFixed(2)} ms, forward + backward ` +
          `${r.ms_forward_backward.toFixed(2)} ms (${r.speedup.toFixed(2)}x tiled); 16 decoded tokens at position ` +
          `${seq - 1}: ${r.ms_decode16.toFixed(2)} ms`,
      );
    }
    return res;
  } finally {
    gpu.kernels.attention = before;
    ws.dispose();
    for (const x of owned) gpu.free(x);
  }
}
