/**
 * Float64 reference of the fused LM-head cross-entropy (recordCrossEntropy) and of recordLogits.
 * h [T, H], w [V, H] (already widened: feed roundThroughHalf values to compare with 16-bit weights),
 * targets [T] with any value >= V (e.g. 0xFFFFFFFF) ignored.
 */

export interface CrossEntropyRef {
  /** logsumexp of each row's logits [T]. */
  lse: Float64Array;
  /** lse - logit[target] for counted rows, 0 for ignored rows [T]. */
  rowLoss: Float64Array;
  /** Σ rowLoss. */
  lossSum: number;
  /** Number of counted rows. */
  count: number;
  /** d(gradScale · lossSum)/dh [T, H]. */
  dh: Float64Array;
}

export function logitsRef(a: {
  h: ArrayLike<number>;
  w: ArrayLike<number>;
  T: number;
  H: number;
  V: number;
}): Float64Array {
  const { T, H, V } = a;
  const out = new Float64Array(T * V);
  for (let t = 0; t < T; t++) {
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let k = 0; k < H; k++) s += a.h[t * H + k]! * a.w[v * H + k]!;
      out[t * V + v] = s;
    }
  }
  return out;
}

export function crossEntropyRef(a: {
  h: ArrayLike<number>;
  w: ArrayLike<number>;
  targets: ArrayLike<number>;
  T: number;
  H: number;
  V: number;
  gradScale: number;
}): CrossEntropyRef {
  const { T, H, V, gradScale } = a;
  const logits = logitsRef(a);
  const lse = new Float64Array(T);
  const rowLoss = new Float64Array(T);
  const dh = new Float64Array(T * H);
  let lossSum = 0;
  let count = 0;
  for (let t = 0; t < T; t++) {
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, logits[t * V + v]!);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(logits[t * V + v]! - m);
    lse[t] = m + Math.log(s);
    const tg = a.targets[t]!;
    if (!(tg >= 0 && tg < V)) continue;
    rowLoss[t] = lse[t]! - logits[t * V + tg]!;
    lossSum += rowLoss[t]!;
    count++;
    for (let v = 0; v < V; v++) {
      const g = (Math.exp(logits[t * V + v]! - lse[t]!) - (v === tg ? 1 : 0)) * gradScale;
      for (let k = 0; k < H; k++) dh[t * H + k] = dh[t * H + k]! + g * a.w[v * H + k]!;
    }
  }
  return { lse, rowLoss, lossSum, count, dh };
}
