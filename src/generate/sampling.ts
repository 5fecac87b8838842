/**
 * Token sampling on the CPU from one row of logits: greedy (temperature 0), or temperature with
 * top-k and top-p (nucleus) filtering, drawn from a seeded generator so the same seed gives the
 * same text. The rules are transformers' logits processors, in its order: the repetition penalty
 * (RepetitionPenaltyLogitsProcessor, applied in greedy decoding too), then temperature, top-k
 * (every token tied with the k-th is kept) and top-p (the most probable tokens until their
 * probability reaches top_p, at least one). `samplingDefaults` reads generation_config.json as
 * transformers' GenerationConfig does.
 */

import { type Rng } from '../lora/init';

export interface SamplingOptions {
  /** 0 = greedy. */
  temperature: number;
  /** 0 = no top-k filter. */
  topK: number;
  /** 1 = no nucleus filter. */
  topP: number;
  /** transformers' repetition_penalty: 1 = none; above 1 makes tokens already in the text less likely. */
  repetitionPenalty?: number;
}

export const GREEDY: SamplingOptions = { temperature: 0, topK: 0, topP: 1 };

/**
 * transformers' RepetitionPenaltyLogitsProcessor, in place: the logit of every token that occurs in
 * `seen` (the prompt and what was generated so far), once per distinct token, is divided by
 * `penalty` when positive and multiplied by it when negative.
 */
export function applyRepetitionPenalty(
  logits: Float32Array | Float64Array,
  seen: Iterable<number>,
  penalty: number,
): void {
  if (penalty === 1) return;
  for (const id of new Set(seen)) {
    if (id < 0 || id >= logits.length) continue;
    const v = logits[id]!;
    logits[id] = v < 0 ? v * penalty : v / penalty;
  }
}

/** What generation_config.json asks for, as sampling settings (transformers' GenerationConfig defaults where absent). */
export interface SamplingDefaults extends Required<SamplingOptions> {
  /** max_new_tokens, or null when the file does not say (the caller picks). */
  maxNewTokens: number | null;
}

/**
 * The sampling settings a model's generation_config.json asks for. As in transformers, sampling
 * happens only with do_sample true (else greedy: temperature 0 here); absent values take
 * GenerationConfig's defaults: temperature 1, top_k 50, top_p 1, repetition_penalty 1.
 */
export function samplingDefaults(generationConfig: Record<string, unknown> | null): SamplingDefaults {
  const g = generationConfig ?? {};
  const num = (key: string, dflt: number, ok: (v: number) => boolean): number => {
    const v = g[key];
    return typeof v === 'number' && Number.isFinite(v) && ok(v) ? v : dflt;
  };
  const doSample = g.do_sample === true;
  const temperature = num('temperature', 1, (v) => v >= 0);
  const maxNew = num('max_new_tokens', 0, (v) => Number.isInteger(v) && v > 0);
  return {
    temperature: doSample ? temperature : 0,
    topK: num('top_k', 50, (v) => Number.isInteger(v) && v >= 0),
    topP: num('top_p', 1, (v) => v > 0 && v <= 1),
    repetitionPenalty: num('repetition_penalty', 1, (v) => v > 0),
    maxNewTokens: maxNew > 0 ? maxNew : null,
  };
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
export function sampleToken(logits: ArrayLike<number>, o: SamplingOptions, rand: Rng, n = logits.length): number {
  if (o.temperature <= 0) return argmax(logits, n);
  const { ids, weights, total } = samplingWeights(logits, o, n);
  let u = rand.next() * total;
  for (let j = 0; j < ids.length; j++) {
    u -= weights[j]!;
    if (u <= 0) return ids[j]!;
  }
  return ids[ids.length - 1]!;
}

/**
 * The tokens a sampled draw (temperature above 0) chooses from, most likely first, with their
 * unnormalized weights exp((logit - max) / temperature) after top-k and top-p; weight / total is
 * the probability transformers' warpers give (test/python/chat.py-test.ts checks it against them).
 */
export function samplingWeights(
  logits: ArrayLike<number>,
  o: SamplingOptions,
  n = logits.length,
): { ids: number[]; weights: number[]; total: number } {
  const idx: number[] = [];
  for (let i = 0; i < n; i++) if (Number.isFinite(logits[i]!)) idx.push(i);
  idx.sort((a, b) => logits[b]! - logits[a]! || a - b);
  let cand = idx;
  if (o.topK > 0 && o.topK < idx.length) {
    // transformers' TopKLogitsWarper keeps every token whose logit is at least the k-th largest.
    const kth = logits[idx[o.topK - 1]!]!;
    let keep = o.topK;
    while (keep < idx.length && logits[idx[keep]!]! >= kth) keep++;
    cand = idx.slice(0, keep);
  }
  const maxL = logits[cand[0]!]!;
  let probs = cand.map((i) => Math.exp((logits[i]! - maxL) / o.temperature));
  let total = probs.reduce((a, b) => a + b, 0);
  if (o.topP < 1) {
    // TopPLogitsWarper: the most likely tokens until their probability reaches top_p (at least one).
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
  return { ids: cand, weights: probs, total };
}
