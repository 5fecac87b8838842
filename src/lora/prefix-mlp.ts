/**
 * Training a prefix through PEFT's projection MLP (PrefixTuningConfig.prefix_projection): the
 * trainable values are PEFT's PrefixEncoder parameters (embedding [P, D], W1 [E, D], b1 [E],
 * W2 [O, E], b2 [O]; D = token_dim, E = encoder_hidden_size, O = num_layers·2·D), and the prefix
 * table the runner attends over is their output T = tanh(X·W1ᵀ + b1)·W2ᵀ + b2.
 *
 * On the GPU (recordPrefixMlpForward / recordPrefixMlpBackward, recorded by the trainer into the
 * step's own command buffers, so a step reads nothing back for it): the two linears are the matmul
 * family with its bias epilogue, tanh and its derivative the activation family's; the bias
 * gradients are column sums written as 1ᵀ·dY matmuls. Z = X·W1ᵀ + b1 and H = tanh(Z) [P, E] are
 * kept from the forward for the backward. The five gradients then go to the GPU optimizer (AdamW
 * or SGD, with the global gradient-norm clip) like any other trainable tensor.
 *
 * On the CPU in float64 (prefixMlpTable, the spec's own arithmetic in src/reference/prefix-projection.ts):
 * the table a fresh or loaded MLP starts with, and the table saved as PEFT's prompt_embeddings.
 *
 * Initialisation: the embedding is nn.Embedding's N(0, 1); both linears take nn.Linear's default
 * bound, uniform in ±1/√fan_in for weights and biases (kaiming_uniform with a = √5), drawn from
 * Tabtune's seeded generator.
 */

import type { Gpu, Recorder } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import type { Workspace } from '../gpu/workspace';
import { recordActivation, recordActivationBackward } from '../kernels/activation';
import { recordFill } from '../kernels/elementwise';
import { splitsFor } from '../kernels/linear';
import { recordMatmul } from '../kernels/matmul';
import { mulberry32 } from '../reference/check';
import { type PrefixMlpRef, prefixMlpForwardRef } from '../reference/prefix-projection';
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

/** The prefix table [P, O] the parameters make, computed in float64. */
export function prefixMlpTable(d: PrefixMlpDims, a: PrefixMlpArrays): Float32Array {
  return Float32Array.from(prefixMlpForwardRef(asRef(d, a)).table);
}

/** The five parameters (or their gradients) as GPU tensors, each flat. */
export type PrefixMlpTensors = Record<keyof PrefixMlpArrays, Tensor>;

/** What the forward keeps for the backward: Z = X·W1ᵀ + b1 and H = tanh(Z), each [P, E]. */
export interface PrefixMlpSaved {
  z: Tensor;
  h: Tensor;
}

/** Records table [P, O] = tanh(X·W1ᵀ + b1)·W2ᵀ + b2, keeping Z and H in `saved`. */
export function recordPrefixMlpForward(
  gpu: Gpu,
  rec: Recorder,
  a: { dims: PrefixMlpDims; params: PrefixMlpTensors; saved: PrefixMlpSaved; table: Tensor },
): void {
  const { P, D, E, O } = a.dims;
  const { x, w1, b1, w2, b2 } = a.params;
  const { z, h } = a.saved;
  recordMatmul(gpu, rec, { a: x, b: w1, c: z, M: P, N: E, K: D, transB: true, bias: b1 });
  recordActivation(gpu, rec, { x: z, y: h, n: P * E, act: 'tanh' });
  recordMatmul(gpu, rec, { a: h, b: w2, c: a.table, M: P, N: O, K: E, transB: true, bias: b2 });
}

/**
 * Records the five gradients (overwritten) from the table's gradient dT [P, O]:
 *   dW2 = dTᵀ·H, db2 = 1ᵀ·dT, dZ = (dT·W2) ∘ tanh'(Z), dW1 = dZᵀ·X, db1 = 1ᵀ·dZ, dX = dZ·W1.
 */
export function recordPrefixMlpBackward(
  gpu: Gpu,
  rec: Recorder,
  a: {
    dims: PrefixMlpDims;
    params: PrefixMlpTensors;
    saved: PrefixMlpSaved;
    dTable: Tensor;
    grads: PrefixMlpTensors;
    ws: Workspace;
  },
): void {
  const { P, D, E, O } = a.dims;
  const { params: p, saved: s, grads: g, dTable: dT, ws } = a;
  const ones = ws.get('prefixMlp.ones', [P]);
  recordFill(gpu, rec, { out: ones, n: P, value: 1 });
  recordMatmul(gpu, rec, { a: dT, b: s.h, c: g.w2, M: O, N: E, K: P, transA: true });
  recordMatmul(gpu, rec, { a: ones, b: dT, c: g.b2, M: 1, N: O, K: P });
  // dH [P, E] = dT·W2: a reduction over O = layers·2·D, split like the LoRA gradients' token sums
  const dH = ws.get('prefixMlp.dH', [P, E]);
  recordMatmul(gpu, rec, { a: dT, b: p.w2, c: dH, M: P, N: E, K: O, splitK: splitsFor(O), ws });
  const dZ = ws.get('prefixMlp.dZ', [P, E]);
  recordActivationBackward(gpu, rec, { dy: dH, x: s.z, dx: dZ, n: P * E, act: 'tanh' });
  recordMatmul(gpu, rec, { a: dZ, b: p.x, c: g.w1, M: E, N: D, K: P, transA: true });
  recordMatmul(gpu, rec, { a: ones, b: dZ, c: g.b1, M: 1, N: E, K: P });
  recordMatmul(gpu, rec, { a: dZ, b: p.w1, c: g.x, M: P, N: D, K: E });
}
