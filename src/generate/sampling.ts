/**
 * Token sampling on the CPU from one row of logits: greedy (temperature 0), or temperature with
 * top-k and top-p (nucleus) filtering, drawn from a seeded generator so the same seed gives the
 * same text.
 */

import { type Rng } from '../lora/init';

export interface SamplingOptions {
  /** 0 = greedy. */
  temperature: number;
  /** 0 = no top-k filter. */
  topK: number;
  /** 1 = no nucleus filter. */
  topP: number;
}

export const GREEDY: SamplingOptions = { temperature: 0, topK: 0, topP: 1 };

export function argmax(logits: ArrayLike<number>, n = logits.length): number {
  let best = 0;
  let bestV = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = logits[i]!;
    if (v > bestV) {
      bestV = v;
      best = i;
    }
  }
  return best;
}

/**
 * Picks the next token. `n` limits the candidates to the first n logits (the tokenizer's vocabulary
 * when the embedding matrix has extra padding rows).
 */
export function sampleToken(logits: ArrayLike<number>, o: SamplingOptions, rand: Rng, n = logits.length): number {
  if (o.temperature <= 0) return argmax(logits, n);
  const idx: number[] = [];
  for (let i = 0; i < n; i++) if (Number.isFinite(logits[i]!)) idx.push(i);
  idx.sort((a, b) => logits[b]! - logits[a]! || a - b);
  let cand = o.topK > 0 ? idx.slice(0, o.topK) : idx;
  const maxL = logits[cand[0]!]!;
  let probs = cand.map((i) => Math.exp((logits[i]! - maxL) / o.temperature));
  let total = probs.reduce((a, b) => a + b, 0);
  if (o.topP < 1) {
    let acc = 0;
    let keep = 0;
    while (keep < cand.length) {
      acc += probs[keep]! / total;
      keep++;
      if (acc >= o.topP) break;
    }
    cand = cand.slice(0, keep);
    probs = probs.slice(0, keep);
    total = probs.reduce((a, b) => a + b, 0);
  }
  let u = rand.next() * total;
  for (let j = 0; j < cand.length; j++) {
    u -= probs[j]!;
    if (u <= 0) return cand[j]!;
  }
  return cand[cand.length - 1]!;
}
