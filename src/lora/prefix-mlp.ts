/**
 * Training a prefix through PEFT's projection MLP (PrefixTuningConfig.prefix_projection): the
 * trainable values are PEFT's PrefixEncoder parameters (embedding [P, D], W1 [E, D], b1 [E],
 * W2 [O, E], b2 [O]; D = token_dim, E = encoder_hidden_size, O = num_layers·2·D), and the prefix
 * table the runner attends over is their output T = tanh(X·W1ᵀ + b1)·W2ᵀ + b2.
 *
 * The MLP runs on the CPU in float64 with the spec's own arithmetic (src/reference/prefix-projection.ts):
 * P is tens of tokens, so T costs P·E·(D + O) multiply-adds per step, small beside the model's
 * forward. Each step the trainer reads the five parameters, uploads T before the forward, reads
 * T's gradient after the backward and uploads the five gradients, which the GPU optimizer (AdamW or
 * SGD, with the global gradient-norm clip) then updates like any other trainable tensor.
 *
 * Initialisation: the embedding is nn.Embedding's N(0, 1); both linears take nn.Linear's default
 * bound, uniform in ±1/√fan_in for weights and biases (kaiming_uniform with a = √5), drawn from
 * Tabtune's seeded generator.
 */

import { mulberry32 } from '../reference/check';
import { type PrefixMlpRef, prefixMlpBackwardRef, prefixMlpForwardRef } from '../reference/prefix-projection';
import { standardNormal } from './virtual';

export interface PrefixMlpArrays {
  x: Float32Array; // [P, D]
  w1: Float32Array; // [E, D]
  b1: Float32Array; // [E]
  w2: Float32Array; // [O, E]
  b2: Float32Array; // [O]
}

export interface PrefixMlpDims {
  P: number;
  D: number;
  E: number;
  O: number;
}

/** The five parameters in their fixed order (trainables, checkpoints), with PEFT's names. */
export const PREFIX_MLP_PARTS = [
  { key: 'x', name: 'prefix_encoder.embedding.weight' },
  { key: 'w1', name: 'prefix_encoder.transform.0.weight' },
  { key: 'b1', name: 'prefix_encoder.transform.0.bias' },
  { key: 'w2', name: 'prefix_encoder.transform.2.weight' },
  { key: 'b2', name: 'prefix_encoder.transform.2.bias' },
] as const;

/** The length of each part for these dimensions. */
export function prefixMlpSizes(d: PrefixMlpDims): Record<keyof PrefixMlpArrays, number> {
  return { x: d.P * d.D, w1: d.E * d.D, b1: d.E, w2: d.O * d.E, b2: d.O };
}

function uniform(n: number, bound: number, seed: number): Float32Array {
  const r = mulberry32(seed >>> 0);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (2 * r() - 1) * bound;
  return out;
}

/** PEFT's initialisation (see the header), seeded. */
export function initPrefixMlp(d: PrefixMlpDims, seed: number): PrefixMlpArrays {
  const s = prefixMlpSizes(d);
  const b1 = 1 / Math.sqrt(d.D);
  const b2 = 1 / Math.sqrt(d.E);
  return {
    x: standardNormal(s.x, seed),
    w1: uniform(s.w1, b1, seed + 1),
    b1: uniform(s.b1, b1, seed + 2),
    w2: uniform(s.w2, b2, seed + 3),
    b2: uniform(s.b2, b2, seed + 4),
  };
}

function asRef(d: PrefixMlpDims, a: PrefixMlpArrays): PrefixMlpRef {
  const f = (v: Float32Array) => Float64Array.from(v);
  return { ...d, x: f(a.x), w1: f(a.w1), b1: f(a.b1), w2: f(a.w2), b2: f(a.b2) };
}

/** The prefix table [P, O] the parameters make, and the hidden activations the backward needs. */
export function prefixMlpTable(d: PrefixMlpDims, a: PrefixMlpArrays): { table: Float32Array; h: Float64Array } {
  const { h, table } = prefixMlpForwardRef(asRef(d, a));
  return { table: Float32Array.from(table), h };
}

/** The five parameters' gradients from the table's gradient dT [P, O]. */
export function prefixMlpGrads(
  d: PrefixMlpDims,
  a: PrefixMlpArrays,
  h: Float64Array,
  dT: Float32Array,
): PrefixMlpArrays {
  const g = prefixMlpBackwardRef(asRef(d, a), h, dT);
  const f = (v: Float64Array) => Float32Array.from(v);
  return { x: f(g.dx), w1: f(g.dw1), b1: f(g.db1), w2: f(g.dw2), b2: f(g.db2) };
}
