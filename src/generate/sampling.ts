/**
 * Token sampling on the CPU from one row of logits: greedy (temperature 0), or temperature with
 * top-k and top-p (nucleus) filtering, drawn from a seeded generator so the same seed gives the
 * same text.
 */

export interface SamplingOptions {
  /** 0 = greedy. */
  temperature: number;
  /** 0 = no top-k filter. */
  topK: number;
  /** 1 = no nucleus filter. */
  topP: number;
}

export const GREEDY: SamplingOptions = { temperature: 0, topK: 0, topP: 1 };

/** A small seeded generator (xorshift128+ folded to doubles in [0, 1)). */
export class SeededRandom {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    // splitmix32 to spread the seed over the state
    let x = seed >>> 0;
    const next = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next() | 1;
  }

  /** xoshiro128** step; returns a double in [0, 1). */
  next(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result / 4294967296;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

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
export function sampleToken(logits: ArrayLike<number>, o: SamplingOptions, rand: SeededRandom, n = logits.length): number {
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
