/**
 * Float64 reference of causal grouped-query attention (recordAttention, recordAttentionBackward,
 * recordAttentionDecode). Layouts as in the kernels: q/o [B*S, nH, hd], k/v [B*S, nKV, hd], row-major;
 * head h reads kv head floor(h / (nH / nKV)); query i of a sequence sees keys 0..i of that sequence.
 */

export interface AttentionRefShape {
  batch: number;
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale?: number;
}

function scaleOf(s: { scale?: number; headDim: number }): number {
  return s.scale ?? 1 / Math.sqrt(s.headDim);
}

/**
 * Core: queries qRows at absolute positions pos0 + i against keys 0..pos0+i of `k`/`v` whose rows are
 * `kRow0 + j`. Returns the probabilities too so backward can reuse them.
 */
function rowAttention(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  qIndex: number, // element offset of the query vector
  kBase: (j: number) => number, // element offset of key/value j's vector
  nKeys: number,
  hd: number,
  scale: number,
  out: Float64Array,
  outIndex: number,
): { lse: number; p: Float64Array } {
  const s = new Float64Array(nKeys);
  let m = -Infinity;
  for (let j = 0; j < nKeys; j++) {
    const kb = kBase(j);
    let dot = 0;
    for (let d = 0; d < hd; d++) dot += q[qIndex + d]! * k[kb + d]!;
    s[j] = dot * scale;
    if (s[j]! > m) m = s[j]!;
  }
  let sum = 0;
  for (let j = 0; j < nKeys; j++) sum += Math.exp(s[j]! - m);
  const lse = m + Math.log(sum);
  const p = new Float64Array(nKeys);
  for (let j = 0; j < nKeys; j++) p[j] = Math.exp(s[j]! - lse);
  for (let d = 0; d < hd; d++) {
    let acc = 0;
    for (let j = 0; j < nKeys; j++) acc += p[j]! * v[kBase(j) + d]!;
    out[outIndex + d] = acc;
  }
  return { lse, p };
}

/** Forward: o [B*S, nH, hd] and the row logsumexp lse [B*S, nH] (of the scaled scores). */
export function attentionRef(
  a: { q: ArrayLike<number>; k: ArrayLike<number>; v: ArrayLike<number> } & AttentionRefShape,
): { o: Float64Array; lse: Float64Array } {
  const { batch, seq, heads, kvHeads, headDim: hd } = a;
  const group = heads / kvHeads;
  const scale = scaleOf(a);
  const o = new Float64Array(batch * seq * heads * hd);
  const lse = new Float64Array(batch * seq * heads);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const kvh = Math.floor(h / group);
      for (let i = 0; i < seq; i++) {
        const row = b * seq + i;
        const qi = (row * heads + h) * hd;
        const r = rowAttention(a.q, a.k, a.v, qi, (j) => ((b * seq + j) * kvHeads + kvh) * hd, i + 1, hd, scale, o, qi);
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
        const { p } = rowAttention(a.q, a.k, a.v, qi, kBase, i + 1, hd, scale, o, 0);
        // D = dO . o ; dP_j = dO . v_j ; dS_j = P_j (dP_j - D)
        let D = 0;
        for (let d = 0; d < hd; d++) D += a.dO[qi + d]! * o[d]!;
        for (let j = 0; j <= i; j++) {
          const kb = kBase(j);
          let dp = 0;
          for (let d = 0; d < hd; d++) dp += a.dO[qi + d]! * a.v[kb + d]!;
          const ds = p[j]! * (dp - D);
          for (let d = 0; d < hd; d++) {
            dv[kb + d] = dv[kb + d]! + p[j]! * a.dO[qi + d]!;
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
export function attentionDecodeRef(a: {
  q: ArrayLike<number>;
  kCache: ArrayLike<number>;
  vCache: ArrayLike<number>;
  qLen: number;
  past: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale?: number;
}): Float64Array {
  const { qLen, past, heads, kvHeads, headDim: hd } = a;
  const group = heads / kvHeads;
  const scale = scaleOf(a);
  const o = new Float64Array(qLen * heads * hd);
  for (let i = 0; i < qLen; i++) {
    for (let h = 0; h < heads; h++) {
      const kvh = Math.floor(h / group);
      const qi = (i * heads + h) * hd;
      rowAttention(a.q, a.kCache, a.vCache, qi, (j) => (j * kvHeads + kvh) * hd, past + i + 1, hd, scale, o, qi);
    }
  }
  return o;
}
