/**
 * Float64 reference of mixture-of-experts routing (transformers' MixtralTopKRouter): the spec of
 * src/kernels/moe.ts. Row-major [T, E] router logits and weights.
 */

/**
 * w[t, e]: softmax over the E logits of token t, the K largest probabilities (ties: the lower
 * index) divided by their sum; 0 for the experts not chosen.
 */
export function routerRef(logits: ArrayLike<number>, T: number, E: number, K: number): Float64Array {
  const w = new Float64Array(T * E);
  for (let t = 0; t < T; t++) {
    const row = Array.from({ length: E }, (_, e) => logits[t * E + e]!);
    const m = Math.max(...row);
    const ex = row.map((x) => Math.exp(x - m));
    const s = ex.reduce((a, b) => a + b, 0);
    const p = ex.map((x) => x / s);
    const order = p.map((_, e) => e).sort((a, b) => p[b]! - p[a]! || a - b);
    const chosen = order.slice(0, K);
    const total = chosen.reduce((a, e) => a + p[e]!, 0);
    for (const e of chosen) w[t * E + e] = p[e]! / total;
  }
  return w;
}

/** dL/dlogits from dL/dw: the chosen weights are the softmax of the chosen logits alone. */
export function routerBackwardRef(w: ArrayLike<number>, g: ArrayLike<number>, T: number, E: number): Float64Array {
  const dl = new Float64Array(T * E);
  for (let t = 0; t < T; t++) {
    let dot = 0;
    for (let e = 0; e < E; e++) dot += w[t * E + e]! * g[t * E + e]!;
    for (let e = 0; e < E; e++) dl[t * E + e] = w[t * E + e]! * (g[t * E + e]! - dot);
  }
  return dl;
}
