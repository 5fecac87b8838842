/**
 * Float64 reference of the whole model (the spec the GPU runner is tested against): forward to the
 * token-mean cross-entropy, and a hand-written backward to every LoRA A and B, composed from the
 * per-op references. It mirrors src/model/runner*.ts step by step, for every family: the layer is in
 * ./model-layer.ts, this file does the embeddings, the final norm and the LM head.
 *
 *   x = embed[ids]·embedScale  -> project_in (OPT)  -> + positions[pos + offset] (learned)
 *     -> embedding norm (BLOOM) -> layers -> final norm -> project_out (OPT)
 *     -> logits = softcap(scale·(h·Wᵀ + b)) -> cross-entropy
 *
 * Shape legend: B batch, S sequence, T = B*S, H hidden, E = embedDim, V vocab, r LoRA rank. Weights
 * are given already widened to float64 (for 16-bit checkpoints, the values rounded through their
 * dtype, which is what the GPU computes with).
 */

import type { ModelConfig } from '../model/config';
import { crossEntropyRef, logitsRef, type LogitTransform } from './cross_entropy';
import {
  type LayerCache,
  type NormCache,
  type RefVirtual,
  layerBackwardRef,
  layerForwardRef,
  normBwd,
  normFwd,
  virtualRows,
} from './model-layer';
import { type RefGrads, type RefLora, type RefWeights, linearBwd, linearFwd } from './model-linear';

export type { RefVirtual } from './model-layer';
export type { RefGrads, RefLoraModule, RefWeights } from './model-linear';

export interface RefBatch {
  B: number;
  S: number;
  ids: ArrayLike<number>; // [T]
  positions: ArrayLike<number>; // [T]
  targets: ArrayLike<number>; // [T], >= V ignored
  /** Prompt / prefix tuning: the first P rows of each sequence are virtual tokens. */
  virtual?: RefVirtual | null;
}

export interface RefForward {
  lossSum: number;
  count: number;
  /** Hidden states the LM head reads [T, E]. */
  hidden: Float64Array;
  caches: LayerCache[];
  embed: { e: Float64Array; nEmbed: NormCache | null };
  /** Output of the last layer [T, H]. */
  xFinal: Float64Array;
  nf: NormCache | null;
  /** Input of project_out (the final norm's output) [T, H]. */
  preOut: Float64Array;
}

const top = (w: RefWeights, role: string) => w.arch.top.find((m) => m.role === role);

/** The LM head's logit transform (bias, scale, soft-cap) of a config. */
export function logitTransform(w: RefWeights): LogitTransform {
  const c: ModelConfig = w.config;
  return {
    bias: w.arch.lmHeadBias ? w.get(w.arch.lmHeadBias) : null,
    scale: c.logits.scale,
    softcap: c.logits.softcap,
  };
}

const promptScaleRef = (c: ModelConfig) => (c.embedScaleInWeightDtype ? 1 : c.embedScale);

/** Token embeddings (+ learned positions), before the embedding norm: [T, H]. */
export function embedRef(w: RefWeights, lora: RefLora, batch: RefBatch): Float64Array {
  const c = w.config;
  const E = c.embedDim;
  const H = c.hiddenSize;
  const T = batch.B * batch.S;
  let x: Float64Array = new Float64Array(T * E);
  const table = w.get(w.arch.embed);
  for (let t = 0; t < T; t++) {
    const id = batch.ids[t]!;
    for (let h = 0; h < E; h++) x[t * E + h] = table[id * E + h]! * c.embedScale;
  }
  const vt = batch.virtual;
  if (vt?.kind === 'prompt') {
    // PEFT prepends the prompt to inputs_embeds: scaled where the model scales those (Granite), not
    // where the embedding module scales its own rows (Gemma, marked by embedScaleInWeightDtype)
    const at = { B: batch.B, S: batch.S, P: vt.P, width: E, col0: 0, stride: E, scale: promptScaleRef(c) };
    virtualRows('write', x, vt.table as Float64Array, at);
  }
  const pin = top(w, 'project_in');
  if (pin) x = linearFwd(w, pin, lora, x, T);
  if (w.arch.posEmbed) {
    const pos = w.get(w.arch.posEmbed);
    const off = c.learnedPositions!.offset;
    for (let t = 0; t < T; t++) {
      const p = batch.positions[t]! + off;
      for (let h = 0; h < H; h++) x[t * H + h] = x[t * H + h]! + pos[p * H + h]!;
    }
  }
  return x;
}

export function modelForwardRef(w: RefWeights, lora: RefLora, batch: RefBatch): RefForward {
  const c = w.config;
  const T = batch.B * batch.S;
  const H = c.hiddenSize;
  const e = embedRef(w, lora, batch);
  const nEmbed = w.arch.embedNorm ? normFwd(w, c.norm, w.arch.embedNorm, e, T, H) : null;
  let x = nEmbed ? nEmbed.y : e;
  const caches: LayerCache[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const r = layerForwardRef(w, l, lora, x, batch);
    caches.push(r.cache);
    x = r.out;
  }
  const nf = w.arch.finalNorm ? normFwd(w, c.norm, w.arch.finalNorm, x, T, H) : null;
  const preOut = nf ? nf.y : x;
  const pout = top(w, 'project_out');
  const hidden = pout ? linearFwd(w, pout, lora, preOut, T) : preOut;
  const ce = crossEntropyRef({
    h: hidden,
    w: w.get(w.arch.lmHead),
    targets: batch.targets,
    T,
    H: c.embedDim,
    V: c.vocabSize,
    gradScale: 1,
    transform: logitTransform(w),
  });
  return { lossSum: ce.lossSum, count: ce.count, hidden, caches, embed: { e, nEmbed }, xFinal: x, nf, preOut };
}

/** Logits [T, V] of the last forward's hidden states (with the head's bias, scale and soft-cap). */
export function modelLogitsRef(w: RefWeights, fwd: RefForward, T: number): Float64Array {
  const c = w.config;
  return logitsRef({
    h: fwd.hidden,
    w: w.get(w.arch.lmHead),
    T,
    H: c.embedDim,
    V: c.vocabSize,
    transform: logitTransform(w),
  });
}

/**
 * Gradients of `gradScale * lossSum` with respect to every LoRA A and B (gradScale = 1 / counted
 * tokens gives the token-mean loss).
 */
export function modelBackwardRef(
  w: RefWeights,
  lora: RefLora,
  batch: RefBatch,
  fwd: RefForward,
  gradScale: number,
): RefGrads {
  const c = w.config;
  const T = batch.B * batch.S;
  const H = c.hiddenSize;
  const grads: RefGrads = { dA: new Map(), dB: new Map(), dl: new Map() };
  const vt = batch.virtual;
  if (vt) grads.dVirtual = new Float64Array(vt.table.length);
  const ce = crossEntropyRef({
    h: fwd.hidden,
    w: w.get(w.arch.lmHead),
    targets: batch.targets,
    T,
    H: c.embedDim,
    V: c.vocabSize,
    gradScale,
    transform: logitTransform(w),
  });
  const pout = top(w, 'project_out');
  let d = pout ? linearBwd(w, pout, lora, grads, fwd.preOut, ce.dh, T) : ce.dh;
  if (fwd.nf) d = normBwd(w, c.norm, w.arch.finalNorm!, fwd.nf, d, T, H);
  for (let l = c.numLayers - 1; l >= 0; l--) d = layerBackwardRef(w, l, lora, grads, fwd.caches[l]!, d, batch);
  if (vt?.kind === 'prompt') {
    const e = fwd.embed.nEmbed ? normBwd(w, c.norm, w.arch.embedNorm!, fwd.embed.nEmbed, d, T, H) : d;
    const at = { B: batch.B, S: batch.S, P: vt.P, width: H, col0: 0, stride: H, scale: promptScaleRef(c) };
    virtualRows('grad', Float64Array.from(e), grads.dVirtual!, at);
  }
  // Below the layers only project_in (OPT) has LoRA parameters.
  const pin = top(w, 'project_in');
  if (pin && lora.has(pin.path)) {
    if (fwd.embed.nEmbed) d = normBwd(w, c.norm, w.arch.embedNorm!, fwd.embed.nEmbed, d, T, H);
    const table = w.get(w.arch.embed);
    const E = c.embedDim;
    const x = new Float64Array(T * E);
    for (let t = 0; t < T; t++) for (let h = 0; h < E; h++) x[t * E + h] = table[batch.ids[t]! * E + h]! * c.embedScale;
    linearBwd(w, pin, lora, grads, x, d, T);
  }
  return grads;
}
