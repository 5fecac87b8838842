/**
 * Float64 reference of causal grouped-query attention (recordAttention, recordAttentionBackward,
 * recordAttentionDecode). Layouts as in the kernels: q/o [B*S, nH, hd], k/v [B*S, nKV, hd], row-major;
 * head h reads kv head floor(h / (nH / nKV)); the query at position i of a sequence sees keys
 * 0..i of that sequence, or with a sliding `window` W only keys i - W < j <= i. With `keyStart`
 * (packed sequences: several examples in one row, none seeing another) it also sees no key before
 * keyStart[b*S + i], the index of its example's first token in the sequence.
 *
 * Score of query i, key j:  s = scale·q·k, then soft-capped (cap·tanh(s / cap), Gemma 2) and plus
 * the ALiBi bias of key position j (src/reference/alibi.ts). Backward passes dS through the cap:
 * d(scale·q·k) = dS·(1 - tanh²).
 */

import { alibiBias } from './alibi';

export interface AttentionVariant {
  /** Score scale; default 1/sqrt(headDim). */
  scale?: number;
  /** Keys visible to position i: i - window < j <= i; null/absent = all j <= i. */
  window?: number | null;
  softcap?: number | null;
  alibi?: { slopes: ArrayLike<number>; bf16: boolean; mul: number } | null;
}

export interface AttentionRefShape extends AttentionVariant {
  batch: number;
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** [B*S]: the first key (index in its sequence) each query row sees; absent = 0 (plain causal). */
  keyStart?: ArrayLike<number>;
}

/** The first key row `row` (= b*S + i) may see by its example; checked to be within 0..i. */
function exampleStart(s: AttentionRefShape, row: number, i: number): number {
  if (!s.keyStart) return 0;
  const f = s.keyStart[row]!;
  if (!Number.isInteger(f) || f < 0 || f > i) {
    throw new Error(`attention reference: keyStart[${row}] = ${f} must be an integer in 0..${i} (the row itself).`);
  }
  return f;
}

function scaleOf(s: { scale?: number; headDim: number }): number {
  return s.scale ?? 1 / Math.sqrt(s.headDim);
}

/** First key position visible to the query at position `pos`. */
function firstKey(pos: number, window: number | null | undefined): number {
  return window ? Math.max(0, pos - window + 1) : 0;
}

/**
 * Core: the query at `qIndex` (position `pos`) against keys j0..pos (key j's vector at kBase(j)).
 * Returns the probabilities p[j - j0] and d(score)/d(scale·q·k) for backward.
 */
function rowAttention(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  qIndex: number,
  kBase: (j: number) => number,
  pos: number,
  hd: number,
  head: number,
  vr: AttentionVariant & { headDim: number },
  out: Float64Array,
  outIndex: number,
  start = 0,
): { lse: number; p: Float64Array; dcap: Float64Array; j0: number } {
  const scale = scaleOf(vr);
  const j0 = Math.max(start, firstKey(pos, vr.window));
  const n = pos + 1 - j0;
  const s = new Float64Array(n);
  const dcap = new Float64Array(n).fill(1);
  let m = -Infinity;
  for (let jj = 0; jj < n; jj++) {
    const j = j0 + jj;
    const kb = kBase(j);
    let dot = 0;
    for (let d = 0; d < hd; d++) dot += q[qIndex + d]! * k[kb + d]!;
    let x = dot * scale;
    if (vr.softcap) {
      const t = Math.tanh(x / vr.softcap);
      x = vr.softcap * t;
      dcap[jj] = 1 - t * t;
    }
    if (vr.alibi) x += alibiBias(vr.alibi, head, j);
    s[jj] = x;
    if (x > m) m = x;
  }
  let sum = 0;
  for (let jj = 0; jj < n; jj++) sum += Math.exp(s[jj]! - m);
  const lse = m + Math.log(sum);
  const p = new Float64Array(n);
  for (let jj = 0; jj < n; jj++) p[jj] = Math.exp(s[jj]! - lse);
  for (let d = 0; d < hd; d++) {
    let acc = 0;
    for (let jj = 0; jj < n; jj++) acc += p[jj]! * v[kBase(j0 + jj) + d]!;
    out[outIndex + d] = acc;
  }
  return { lse, p, dcap, j0 };
}

/** Forward: o [B*S, nH, hd] and the row logsumexp lse [B*S, nH] (of the scaled scores). */
export function attentionRef(
  a: { q: ArrayLike<number>; k: ArrayLike<number>; v: ArrayLike<number> } & AttentionRefShape,
): { o: Float64Array; lse: Float64Array } {
  const { batch, seq, heads, kvHeads, headDim: hd } = a;
  const group = heads / kvHeads;
  const o = new Float64Array(batch * seq * heads * hd);
  const lse = new Float64Array(batch * seq * heads);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const kvh = Math.floor(h / group);
      for (let i = 0; i < seq; i++) {
        const row = b * seq + i;
        const qi = (row * heads + h) * hd;
        const kBase = (j: number) => ((b * seq + j) * kvHeads + kvh) * hd;
        const r = rowAttention(a.q, a.k, a.v, qi, kBase, i, hd, h, a, o, qi, exampleStart(a, row, i));
        lse[row * heads + h] = r.lse;
      }
    }
  }
  return { o, lse };
}

/** Backward: dq, dk, dv given dO (the gradient of a loss with respect to o). */
export function attentionBackwardRef(
  a: { q: ArrayLike<number>; k: ArrayLike<number>; v: ArrayLike<number>; dO: ArrayLike<number> } & AttentionRefShape,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { batch, seq, heads, kvHeads, headDim: hd } = a;
  const group = heads / kvHeads;
  const scale = scaleOf(a);
  const dq = new Float64Array(batch * seq * heads * hd);
  const dk = new Float64Array(batch * seq * kvHeads * hd);
  const dv = new Float64Array(batch * seq * kvHeads * hd);
  const o = new Float64Array(hd);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const kvh = Math.floor(h / group);
      const kBase = (j: number) => ((b * seq + j) * kvHeads + kvh) * hd;
      for (let i = 0; i < seq; i++) {
        const qi = ((b * seq + i) * heads + h) * hd;
        const start = exampleStart(a, b * seq + i, i);
        const { p, dcap, j0 } = rowAttention(a.q, a.k, a.v, qi, kBase, i, hd, h, a, o, 0, start);
        // D = dO . o ; dP_j = dO . v_j ; dS_j = P_j (dP_j - D), through the soft-cap
        let D = 0;
        for (let d = 0; d < hd; d++) D += a.dO[qi + d]! * o[d]!;
        for (let j = j0; j <= i; j++) {
          const kb = kBase(j);
          let dp = 0;
          for (let d = 0; d < hd; d++) dp += a.dO[qi + d]! * a.v[kb + d]!;
          const pj = p[j - j0]!;
          const ds = pj * (dp - D) * dcap[j - j0]!;
          for (let d = 0; d < hd; d++) {
            dv[kb + d] = dv[kb + d]! + pj * a.dO[qi + d]!;
            dq[qi + d] = dq[qi + d]! + scale * ds * a.k[kb + d]!;
            dk[kb + d] = dk[kb + d]! + scale * ds * a.q[qi + d]!;
          }
        }
      }
    }
  }
  return { dq, dk, dv };
}

/** Generation: o [qLen, nH, hd] of queries at positions past..past+qLen-1 against a KV cache. */
export function attentionDecodeRef(
  a: {
    q: ArrayLike<number>;
    kCache: ArrayLike<number>;
    vCache: ArrayLike<number>;
    qLen: number;
    past: number;
    heads: number;
    kvHeads: number;
    headDim: number;
  } & AttentionVariant,
): Float64Array {
  const { qLen, past, heads, kvHeads, headDim: hd } = a;
  const group = heads / kvHeads;
  const o = new Float64Array(qLen * heads * hd);
  for (let i = 0; i < qLen; i++) {
    for (let h = 0; h < heads; h++) {
      const kvh = Math.floor(h / group);
      const qi = (i * heads + h) * hd;
      rowAttention(a.q, a.kCache, a.vCache, qi, (j) => (j * kvHeads + kvh) * hd, past + i, hd, h, a, o, qi);
    }
  }
  return o;
}
