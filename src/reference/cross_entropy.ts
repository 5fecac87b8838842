/**
 * Float64 reference of the fused LM-head cross-entropy (recordCrossEntropy) and of recordLogits.
 * h [T, H], w [V, H] (already widened: feed roundThroughHalf values to compare with 16-bit weights),
 * targets [T] with any value >= V (e.g. 0xFFFFFFFF) ignored.
 *
 * The logits can be transformed as transformers' heads do (LogitTransform):
 *   z = h·wᵀ + bias                      (Phi, GPT-J: the head has a bias)
 *   z = scale · z                        (Granite: logits / logits_scaling)
 *   z = softcap · tanh(z / softcap)      (Gemma 2: final_logit_softcapping)
 */

export interface LogitTransform {
  /** [V] */
  bias?: ArrayLike<number> | null;
  scale?: number;
  softcap?: number | null;
}

/** The transformed logit and d(transformed)/d(h·wᵀ) for one raw product `z` of column v. */
export function transformLogit(z: number, v: number, t: LogitTransform): { y: number; dy: number } {
  const s = t.scale ?? 1;
  const x = (z + (t.bias ? t.bias[v]! : 0)) * s;
  if (!t.softcap) return { y: x, dy: s };
  const th = Math.tanh(x / t.softcap);
  return { y: t.softcap * th, dy: s * (1 - th * th) };
}

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
  transform?: LogitTransform;
}): Float64Array {
  const { T, H, V } = a;
  const out = new Float64Array(T * V);
  for (let t = 0; t < T; t++) {
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let k = 0; k < H; k++) s += a.h[t * H + k]! * a.w[v * H + k]!;
      out[t * V + v] = a.transform ? transformLogit(s, v, a.transform).y : s;
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
  transform?: LogitTransform;
}): CrossEntropyRef {
  const { T, H, V, gradScale } = a;
  const raw = logitsRef({ ...a, transform: undefined });
  const logits = a.transform ? raw.map((z, i) => transformLogit(z, i % V, a.transform!).y) : raw;
  const dz = (i: number) => (a.transform ? transformLogit(raw[i]!, i % V, a.transform).dy : 1);
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
      const g = (Math.exp(logits[t * V + v]! - lse[t]!) - (v === tg ? 1 : 0)) * gradScale * dz(t * V + v);
      for (let k = 0; k < H; k++) dh[t * H + k] = dh[t * H + k]! + g * a.w[v * H + k]!;
    }
  }
  return { lse, rowLoss, lossSum, count, dh };
}
