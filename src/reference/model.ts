/**
 * Float64 reference of the whole model (the spec the GPU runner is tested against): forward to the
 * token-mean cross-entropy, and a hand-written backward to every LoRA A and B, composed from the
 * per-op references. It mirrors src/model/runner.ts step by step.
 *
 * Shape legend: B batch, S sequence, T = B*S, H hidden, nH/nKV heads, hd head dim, I MLP width,
 * V vocab, r LoRA rank. Weights are given already widened to float64 (for 16-bit checkpoints, the
 * values rounded through their dtype, which is what the GPU computes with).
 */

import type { ModelConfig } from '../model/config';
import type { ArchWeights, LinearModule } from '../model/registry';
import { swiGluBackwardRef, swiGluRef, activationBackwardRef, activationRef } from './activation';
import { attentionBackwardRef, attentionRef } from './attention';
import { crossEntropyRef, logitsRef } from './cross_entropy';
import { type LoraParamsRef, linearBackwardRef, linearForwardRef } from './linear';
import { layerNormBackwardRef, layerNormRef, rmsNormBackwardRef, rmsNormRef } from './norm';
import { ropeInvFreq, ropeRef } from './rope';

function invFreqOf(c: ModelConfig): Float32Array | undefined {
  return c.rope?.scaling ? ropeInvFreq(c.rope.rotaryDim, c.rope.theta, c.rope.scaling) : undefined;
}
import { copyColumnsRef } from './slice';

export interface RefWeights {
  config: ModelConfig;
  arch: ArchWeights;
  /** Every referenced tensor, widened to float64. */
  get(key: string): Float64Array;
}

export interface RefLoraModule extends LoraParamsRef {
  /** Dropout seed used for this module in this micro-step (same derivation as the runner). */
  seed: number;
}

export interface RefBatch {
  B: number;
  S: number;
  ids: ArrayLike<number>; // [T]
  positions: ArrayLike<number>; // [T]
  targets: ArrayLike<number>; // [T], >= V ignored
}

interface NormCache {
  y: Float64Array;
  rstd: Float64Array;
  mean: Float64Array | null;
}

interface LayerCache {
  xIn: Float64Array;
  n1: NormCache;
  qPre: Float64Array | null;
  kPre: Float64Array | null;
  qRstd: Float64Array | null;
  kRstd: Float64Array | null;
  q: Float64Array;
  k: Float64Array;
  v: Float64Array;
  o: Float64Array;
  xMid: Float64Array;
  n2: NormCache;
  g: Float64Array;
  u: Float64Array | null;
  a: Float64Array;
}

export interface RefForward {
  lossSum: number;
  count: number;
  /** Final normalised hidden states [T, H]. */
  hidden: Float64Array;
  caches: LayerCache[];
  xFinal: Float64Array;
  nf: NormCache;
}

export interface RefGrads {
  dA: Map<string, Float64Array>;
  dB: Map<string, Float64Array>;
}

function byRole(m: LinearModule[], role: string): LinearModule | undefined {
  return m.find((x) => x.role === role);
}

function normRef(w: RefWeights, x: Float64Array, keys: { w: string; b: string | null }, rows: number): NormCache {
  const c = w.config;
  if (c.norm === 'rms') {
    const r = rmsNormRef({ x, w: w.get(keys.w), rows, dim: c.hiddenSize, eps: c.normEps });
    return { y: r.y, rstd: r.rstd, mean: null };
  }
  const r = layerNormRef({ x, w: w.get(keys.w), b: w.get(keys.b!), rows, dim: c.hiddenSize, eps: c.normEps });
  return { y: r.y, rstd: r.rstd, mean: r.mean };
}

function normBackwardRef(
  w: RefWeights,
  dy: Float64Array,
  x: Float64Array,
  keys: { w: string; b: string | null },
  cache: NormCache,
  rows: number,
): Float64Array {
  const c = w.config;
  if (c.norm === 'rms')
    return rmsNormBackwardRef({ dy, x, w: w.get(keys.w), rstd: cache.rstd, rows, dim: c.hiddenSize });
  return layerNormBackwardRef({
    dy,
    x,
    w: w.get(keys.w),
    mean: cache.mean!,
    rstd: cache.rstd,
    rows,
    dim: c.hiddenSize,
  });
}

function add(a: Float64Array, b: ArrayLike<number>): void {
  for (let i = 0; i < a.length; i++) a[i] = a[i]! + b[i]!;
}

function linear(
  w: RefWeights,
  m: LinearModule,
  lora: Map<string, RefLoraModule>,
  x: Float64Array,
  T: number,
  y?: Float64Array,
): Float64Array {
  const out = y ?? new Float64Array(T * m.outF);
  const l = lora.get(m.path);
  linearForwardRef({
    x,
    M: T,
    lin: {
      w: w.get(m.weightKey),
      bias: m.biasKey ? w.get(m.biasKey) : null,
      inF: m.inF,
      outF: m.outF,
      transposed: m.transposed,
    },
    lora: l ?? null,
    seed: l?.seed ?? 0,
    y: out,
    accumulate: y !== undefined,
  });
  return out;
}

/** Embeddings (+ learned positions) for a batch: [T, H]. */
export function embedRef(w: RefWeights, batch: RefBatch): Float64Array {
  const c = w.config;
  const H = c.hiddenSize;
  const T = batch.B * batch.S;
  const x = new Float64Array(T * H);
  const table = w.get(w.arch.embed);
  const pos = w.arch.posEmbed ? w.get(w.arch.posEmbed) : null;
  for (let t = 0; t < T; t++) {
    const id = batch.ids[t]!;
    for (let h = 0; h < H; h++) {
      x[t * H + h] = table[id * H + h]! + (pos ? pos[batch.positions[t]! * H + h]! : 0);
    }
  }
  return x;
}

export function modelForwardRef(w: RefWeights, lora: Map<string, RefLoraModule>, batch: RefBatch): RefForward {
  const c = w.config;
  const T = batch.B * batch.S;
  const H = c.hiddenSize;
  const qW = c.numHeads * c.headDim;
  const kvW = c.numKvHeads * c.headDim;
  let x = embedRef(w, batch);
  const caches: LayerCache[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const W = w.arch.layers[l]!;
    const xIn = x;
    const n1 = normRef(w, xIn, W.inputNorm, T);
    let qPre: Float64Array;
    let kPre: Float64Array;
    let v: Float64Array;
    const qkvM = byRole(W.linears, 'qkv');
    if (qkvM) {
      const qkv = linear(w, qkvM, lora, n1.y, T);
      const split = (col0: number, width: number) => {
        const out = new Float64Array(T * width);
        copyColumnsRef(qkv, out, {
          rows: T,
          width,
          srcStride: qW + 2 * kvW,
          srcCol0: col0,
          dstStride: width,
          dstCol0: 0,
        });
        return out;
      };
      qPre = split(0, qW);
      kPre = split(qW, kvW);
      v = split(qW + kvW, kvW);
    } else {
      qPre = linear(w, byRole(W.linears, 'q')!, lora, n1.y, T);
      kPre = linear(w, byRole(W.linears, 'k')!, lora, n1.y, T);
      v = linear(w, byRole(W.linears, 'v')!, lora, n1.y, T);
    }
    let q = qPre;
    let k = kPre;
    let qRstd: Float64Array | null = null;
    let kRstd: Float64Array | null = null;
    if (c.qkNorm) {
      const qn = rmsNormRef({ x: qPre, w: w.get(W.qNorm!), rows: T * c.numHeads, dim: c.headDim, eps: c.normEps });
      const kn = rmsNormRef({ x: kPre, w: w.get(W.kNorm!), rows: T * c.numKvHeads, dim: c.headDim, eps: c.normEps });
      q = qn.y;
      k = kn.y;
      qRstd = qn.rstd;
      kRstd = kn.rstd;
    }
    if (c.rope) {
      const rope = {
        positions: batch.positions,
        rows: T,
        headDim: c.headDim,
        theta: c.rope.theta,
        rotaryDim: c.rope.rotaryDim,
        invFreq: invFreqOf(c),
      };
      q = ropeRef({ ...rope, x: q, heads: c.numHeads });
      k = ropeRef({ ...rope, x: k, heads: c.numKvHeads });
    }
    const att = attentionRef({
      q,
      k,
      v,
      batch: batch.B,
      seq: batch.S,
      heads: c.numHeads,
      kvHeads: c.numKvHeads,
      headDim: c.headDim,
    });
    const xMid = Float64Array.from(xIn);
    linear(w, byRole(W.linears, 'o')!, lora, att.o, T, xMid);
    const n2 = normRef(w, xMid, W.postAttnNorm, T);
    let g: Float64Array;
    let u: Float64Array | null = null;
    let a: Float64Array;
    if (c.arch === 'gpt2') {
      g = linear(w, byRole(W.linears, 'fc_in')!, lora, n2.y, T);
      a = activationRef(g, 'gelu_tanh');
    } else {
      g = linear(w, byRole(W.linears, 'gate')!, lora, n2.y, T);
      u = linear(w, byRole(W.linears, 'up')!, lora, n2.y, T);
      a = swiGluRef(g, u, 'silu');
    }
    const xOut = Float64Array.from(xMid);
    linear(w, (byRole(W.linears, 'down') ?? byRole(W.linears, 'fc_out'))!, lora, a, T, xOut);
    caches.push({
      xIn,
      n1,
      qPre: c.qkNorm ? qPre : null,
      kPre: c.qkNorm ? kPre : null,
      qRstd,
      kRstd,
      q,
      k,
      v,
      o: att.o,
      xMid,
      n2,
      g,
      u,
      a,
    });
    x = xOut;
  }
  const nf = normRef(w, x, w.arch.finalNorm, T);
  const ce = crossEntropyRef({
    h: nf.y,
    w: w.get(w.arch.lmHead),
    targets: batch.targets,
    T,
    H,
    V: c.vocabSize,
    gradScale: 1,
  });
  return { lossSum: ce.lossSum, count: ce.count, hidden: nf.y, caches, xFinal: x, nf };
}

/** Logits [T, V] of the last forward's hidden states. */
export function modelLogitsRef(w: RefWeights, fwd: RefForward, T: number): Float64Array {
  const c = w.config;
  return logitsRef({ h: fwd.hidden, w: w.get(w.arch.lmHead), T, H: c.hiddenSize, V: c.vocabSize });
}

function linearBackward(
  w: RefWeights,
  m: LinearModule,
  lora: Map<string, RefLoraModule>,
  grads: RefGrads,
  x: Float64Array,
  dy: Float64Array,
  T: number,
  dx: Float64Array | null,
): void {
  const l = lora.get(m.path);
  if (!l && !dx) return;
  const dA = l ? new Float64Array(l.r * m.inF) : undefined;
  const dB = l ? new Float64Array(m.outF * l.r) : undefined;
  linearBackwardRef({
    dy,
    x,
    M: T,
    lin: {
      w: w.get(m.weightKey),
      bias: m.biasKey ? w.get(m.biasKey) : null,
      inF: m.inF,
      outF: m.outF,
      transposed: m.transposed,
    },
    lora: l ?? null,
    seed: l?.seed ?? 0,
    dx,
    accumulateDx: true,
    dA,
    dB,
  });
  if (l) {
    grads.dA.set(m.path, dA!);
    grads.dB.set(m.path, dB!);
  }
}

/**
 * Gradients of `gradScale * lossSum` with respect to every LoRA A and B (gradScale = 1 / counted
 * tokens gives the token-mean loss).
 */
export function modelBackwardRef(
  w: RefWeights,
  lora: Map<string, RefLoraModule>,
  batch: RefBatch,
  fwd: RefForward,
  gradScale: number,
): RefGrads {
  const c = w.config;
  const T = batch.B * batch.S;
  const H = c.hiddenSize;
  const qW = c.numHeads * c.headDim;
  const kvW = c.numKvHeads * c.headDim;
  const grads: RefGrads = { dA: new Map(), dB: new Map() };
  const ce = crossEntropyRef({
    h: fwd.hidden,
    w: w.get(w.arch.lmHead),
    targets: batch.targets,
    T,
    H,
    V: c.vocabSize,
    gradScale,
  });
  let dres = normBackwardRef(w, ce.dh, fwd.xFinal, w.arch.finalNorm, fwd.nf, T);
  for (let l = c.numLayers - 1; l >= 0; l--) {
    const L = fwd.caches[l]!;
    const W = w.arch.layers[l]!;
    // MLP
    const da = new Float64Array(T * c.intermediateSize);
    linearBackward(w, (byRole(W.linears, 'down') ?? byRole(W.linears, 'fc_out'))!, lora, grads, L.a, dres, T, da);
    const dh2 = new Float64Array(T * H);
    if (c.arch === 'gpt2') {
      const dg = activationBackwardRef(da, L.g, 'gelu_tanh');
      linearBackward(w, byRole(W.linears, 'fc_in')!, lora, grads, L.n2.y, dg, T, dh2);
    } else {
      const { dg, du } = swiGluBackwardRef(da, L.g, L.u!, 'silu');
      linearBackward(w, byRole(W.linears, 'gate')!, lora, grads, L.n2.y, dg, T, dh2);
      linearBackward(w, byRole(W.linears, 'up')!, lora, grads, L.n2.y, du, T, dh2);
    }
    add(dres, normBackwardRef(w, dh2, L.xMid, W.postAttnNorm, L.n2, T));
    // attention
    const dO = new Float64Array(T * qW);
    linearBackward(w, byRole(W.linears, 'o')!, lora, grads, L.o, dres, T, dO);
    const shape = { batch: batch.B, seq: batch.S, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim };
    let { dq, dk, dv } = attentionBackwardRef({ q: L.q, k: L.k, v: L.v, dO, ...shape });
    if (c.rope) {
      const rope = {
        positions: batch.positions,
        rows: T,
        headDim: c.headDim,
        theta: c.rope.theta,
        rotaryDim: c.rope.rotaryDim,
        invFreq: invFreqOf(c),
        inverse: true,
      };
      dq = ropeRef({ ...rope, x: dq, heads: c.numHeads });
      dk = ropeRef({ ...rope, x: dk, heads: c.numKvHeads });
    }
    if (c.qkNorm) {
      dq = rmsNormBackwardRef({
        dy: dq,
        x: L.qPre!,
        w: w.get(W.qNorm!),
        rstd: L.qRstd!,
        rows: T * c.numHeads,
        dim: c.headDim,
      });
      dk = rmsNormBackwardRef({
        dy: dk,
        x: L.kPre!,
        w: w.get(W.kNorm!),
        rstd: L.kRstd!,
        rows: T * c.numKvHeads,
        dim: c.headDim,
      });
    }
    const dh1 = new Float64Array(T * H);
    const qkvM = byRole(W.linears, 'qkv');
    if (qkvM) {
      const dqkv = new Float64Array(T * (qW + 2 * kvW));
      const merge = (src: Float64Array, col0: number, width: number) =>
        copyColumnsRef(src, dqkv, {
          rows: T,
          width,
          srcStride: width,
          srcCol0: 0,
          dstStride: qW + 2 * kvW,
          dstCol0: col0,
        });
      merge(dq, 0, qW);
      merge(dk, qW, kvW);
      merge(dv, qW + kvW, kvW);
      linearBackward(w, qkvM, lora, grads, L.n1.y, dqkv, T, dh1);
    } else {
      linearBackward(w, byRole(W.linears, 'q')!, lora, grads, L.n1.y, dq, T, dh1);
      linearBackward(w, byRole(W.linears, 'k')!, lora, grads, L.n1.y, dk, T, dh1);
      linearBackward(w, byRole(W.linears, 'v')!, lora, grads, L.n1.y, dv, T, dh1);
    }
    const dIn = Float64Array.from(dres);
    add(dIn, normBackwardRef(w, dh1, L.xIn, W.inputNorm, L.n1, T));
    dres = dIn;
  }
  return grads;
}
