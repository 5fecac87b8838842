/**
 * The forward pass a ModelRunner records (the layer is drawn in runner.ts): embeddings, each
 * transformer layer, the final norm, then the LM-head cross-entropy (train / eval) or the logits of
 * one position (infer). Layers read and write the buffers of runner-buffers.ts; in infer mode keys
 * and values also go into the KV cache. Backward (runner-backward.ts) reuses recordLayer to recompute
 * a layer under activation checkpointing.
 */

import type { Recorder } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { recordSwiGlu, recordGelu } from '../kernels/activation';
import { recordAttention, recordAttentionDecode } from '../kernels/attention';
import { recordCrossEntropy, recordLogits } from '../kernels/cross_entropy';
import { recordEmbedding } from '../kernels/embedding';
import { recordCopyRows } from '../kernels/elementwise';
import { type LoraParams, recordLinearForward } from '../kernels/linear';
import { recordLayerNorm, recordRmsNorm } from '../kernels/norm';
import { recordRope } from '../kernels/rope';
import type { GpuLora } from '../lora/gpu-lora';
import type { LinearModule } from './registry';
import { type LayerActs, type NormSave, type RunnerState, loraScratch } from './runner-buffers';

export interface ForwardArgs {
  B: number;
  S: number;
  lora: GpuLora | null;
  /** Dropout seed for this micro-step (train mode only; dropout is off in infer mode). */
  seed?: number;
  /** Apply LoRA dropout (training). */
  dropout?: boolean;
}

/** The LoRA dropout seed of module `moduleIndex` (index in GpuModel.linears) in micro-step `base`. */
export function dropoutSeed(base: number, moduleIndex: number): number {
  return (Math.imul(base + 1, 0x9e3779b1) + Math.imul(moduleIndex + 1, 0x85ebca6b)) >>> 0;
}

/** The LoRA parameters of module `m` (none when it has no adapter), with dropout off unless asked. */
export function loraFor(lora: GpuLora | null, m: LinearModule, dropout: boolean): LoraParams | null {
  const p = lora?.get(m.path) ?? null;
  if (!p) return null;
  return dropout ? p : { ...p, dropout: 0 };
}

/** y (+)= x W^T (+ b) + LoRA(x) for module `m`, saving LoRA's S in the layer set L. */
function recordLinear(
  st: RunnerState,
  rec: Recorder,
  L: LayerActs,
  m: LinearModule,
  x: Tensor,
  y: Tensor,
  T: number,
  f: ForwardArgs,
  accumulate = false,
): void {
  const lora = loraFor(f.lora, m, !!f.dropout);
  recordLinearForward(st.gpu, rec, {
    x,
    M: T,
    lin: st.model.frozen(m),
    lora,
    seed: dropoutSeed(f.seed ?? 0, st.model.linears.indexOf(m)),
    y,
    s: lora ? loraScratch(st, L, m.path, lora.r) : undefined,
    accumulate,
  });
}

function recordNorm(
  st: RunnerState,
  rec: Recorder,
  x: Tensor,
  w: { w: string; b: string | null },
  save: NormSave,
  rows: number,
): void {
  const c = st.model.config;
  if (c.norm === 'rms') {
    recordRmsNorm(st.gpu, rec, {
      x,
      w: st.model.weight(w.w),
      y: save.y,
      rstd: save.rstd,
      rows,
      dim: c.hiddenSize,
      eps: c.normEps,
    });
  } else {
    if (!w.b || !save.mean) throw new GpuError('LayerNorm needs a bias and a mean buffer.');
    recordLayerNorm(st.gpu, rec, {
      x,
      w: st.model.weight(w.w),
      b: st.model.weight(w.b),
      y: save.y,
      mean: save.mean,
      rstd: save.rstd,
      rows,
      dim: c.hiddenSize,
      eps: c.normEps,
    });
  }
}

/**
 * Records the forward pass of T = B*S tokens up to the final norm (train), or of one chunk of
 * B = 1 tokens at positions past..past+S-1 through the KV cache (infer, `past` given).
 */
export function recordForward(st: RunnerState, rec: Recorder, f: ForwardArgs, past = 0): void {
  const gpu = st.gpu;
  const c = st.model.config;
  const arch = st.model.arch;
  const T = f.B * f.S;
  if (T > st.opts.maxTokens) throw new GpuError(`Forward of ${T} tokens exceeds capacity ${st.opts.maxTokens}.`);
  const maxContext = st.opts.maxContext ?? st.opts.maxTokens;
  if (st.opts.mode === 'infer' && (f.B !== 1 || past + f.S > maxContext)) {
    throw new GpuError(`Generation context of ${past + f.S} tokens exceeds the KV cache (${maxContext}).`);
  }
  const H = c.hiddenSize;
  const x0 = st.acts[0]!.xIn;
  recordEmbedding(gpu, rec, { table: st.model.weight(arch.embed), ids: st.ids, out: x0, T, H });
  if (arch.posEmbed) {
    recordEmbedding(gpu, rec, {
      table: st.model.weight(arch.posEmbed),
      ids: st.positions,
      out: x0,
      T,
      H,
      accumulate: true,
    });
  }
  for (let l = 0; l < c.numLayers; l++) {
    const next = l + 1 < c.numLayers ? st.acts[l + 1]!.xIn : st.xFinal;
    recordLayer(st, rec, l, f, T, past, next);
  }
  recordNorm(st, rec, st.xFinal, arch.finalNorm, st.nf, T);
}

/**
 * One transformer layer: reads acts[l].xIn, writes the layer's saved activations and the
 * layer's output residual into `next`.
 */
export function recordLayer(
  st: RunnerState,
  rec: Recorder,
  l: number,
  f: ForwardArgs,
  T: number,
  past: number,
  next: Tensor,
): void {
  const gpu = st.gpu;
  const c = st.model.config;
  const arch = st.model.arch;
  const infer = st.opts.mode === 'infer';
  const H = c.hiddenSize;
  const qW = c.numHeads * c.headDim;
  const kvW = c.numKvHeads * c.headDim;
  const L = st.acts[l]!;
  const W = arch.layers[l]!;
  const byRole = (role: string) => W.linears.find((m) => m.role === role);
  const linear = (m: LinearModule, x: Tensor, y: Tensor, accumulate = false) =>
    recordLinear(st, rec, L, m, x, y, T, f, accumulate);
  recordNorm(st, rec, L.xIn, W.inputNorm, L.n1, T);
  const qOut = L.qPre ?? L.q;
  const kOut = L.kPre ?? L.k;
  const qkvM = byRole('qkv');
  if (qkvM) {
    linear(qkvM, L.n1.y, L.qkv!);
    const split = (dst: Tensor, col0: number, width: number) =>
      recordCopyRows(gpu, rec, {
        src: L.qkv!,
        dst,
        rows: T,
        width,
        srcStride: qW + 2 * kvW,
        srcCol0: col0,
        dstStride: width,
      });
    split(qOut, 0, qW);
    split(kOut, qW, kvW);
    split(L.v, qW + kvW, kvW);
  } else {
    linear(byRole('q')!, L.n1.y, qOut);
    linear(byRole('k')!, L.n1.y, kOut);
    linear(byRole('v')!, L.n1.y, L.v);
  }
  if (c.qkNorm) {
    recordRmsNorm(gpu, rec, {
      x: L.qPre!,
      w: st.model.weight(W.qNorm!),
      y: L.q,
      rstd: L.qRstd!,
      rows: T * c.numHeads,
      dim: c.headDim,
      eps: c.normEps,
    });
    recordRmsNorm(gpu, rec, {
      x: L.kPre!,
      w: st.model.weight(W.kNorm!),
      y: L.k,
      rstd: L.kRstd!,
      rows: T * c.numKvHeads,
      dim: c.headDim,
      eps: c.normEps,
    });
  }
  if (c.rope) {
    const rope = {
      positions: st.positions,
      rows: T,
      headDim: c.headDim,
      theta: c.rope.theta,
      rotaryDim: c.rope.rotaryDim,
      invFreq: st.invFreq,
    };
    recordRope(gpu, rec, { ...rope, x: L.q, heads: c.numHeads });
    recordRope(gpu, rec, { ...rope, x: L.k, heads: c.numKvHeads });
  }
  if (infer) {
    rec.copy(L.k, st.kCache[l]!, T * kvW * 4, 0, past * kvW * 4);
    rec.copy(L.v, st.vCache[l]!, T * kvW * 4, 0, past * kvW * 4);
    recordAttentionDecode(gpu, rec, {
      q: L.q,
      kCache: st.kCache[l]!,
      vCache: st.vCache[l]!,
      o: L.o,
      qLen: T,
      past,
      heads: c.numHeads,
      kvHeads: c.numKvHeads,
      headDim: c.headDim,
    });
  } else {
    recordAttention(gpu, rec, {
      q: L.q,
      k: L.k,
      v: L.v,
      o: L.o,
      lse: L.lse,
      batch: f.B,
      seq: f.S,
      heads: c.numHeads,
      kvHeads: c.numKvHeads,
      headDim: c.headDim,
    });
  }
  rec.copy(L.xIn, L.xMid, T * H * 4);
  linear(byRole('o')!, L.o, L.xMid, true);
  recordNorm(st, rec, L.xMid, W.postAttnNorm, L.n2, T);
  if (c.arch === 'gpt2') {
    linear(byRole('fc_in')!, L.n2.y, L.g);
    recordGelu(gpu, rec, { x: L.g, y: L.a, n: T * c.intermediateSize });
  } else {
    linear(byRole('gate')!, L.n2.y, L.g);
    linear(byRole('up')!, L.n2.y, L.u!);
    recordSwiGlu(gpu, rec, { g: L.g, u: L.u!, h: L.a, n: T * c.intermediateSize });
  }
  rec.copy(L.xMid, next, T * H * 4);
  linear(byRole('down') ?? byRole('fc_out')!, L.a, next, true);
}

/**
 * Records the LM-head cross-entropy over the last forward's tokens (targets from setBatch),
 * adding into lossSum / countSum. With `gradScale` it also writes dLoss/dHidden for backward.
 */
export function recordLoss(st: RunnerState, rec: Recorder, T: number, gradScale: number | null): void {
  const c = st.model.config;
  recordCrossEntropy(st.gpu, rec, {
    h: st.nf.y,
    w: st.model.weight(st.model.arch.lmHead),
    targets: st.targets,
    T,
    H: c.hiddenSize,
    V: c.vocabSize,
    gradScale: gradScale ?? 0,
    dh: gradScale === null ? null : st.ws.get('dFinal', [st.opts.maxTokens, c.hiddenSize]),
    rowLoss: st.rowLoss,
    lossSum: st.lossSum,
    countSum: st.countSum,
    ws: st.ws,
    chunk: st.opts.ceChunk,
  });
}

/** infer: records the logits of token `index` (0-based within the last forward) into `logits`. */
export function recordLogitsAt(st: RunnerState, rec: Recorder, index: number): void {
  const c = st.model.config;
  rec.copy(st.nf.y, st.lastHidden!, c.hiddenSize * 4, index * c.hiddenSize * 4, 0);
  recordLogits(st.gpu, rec, {
    h: st.lastHidden!,
    w: st.model.weight(st.model.arch.lmHead),
    logits: st.logits!,
    T: 1,
    H: c.hiddenSize,
    V: c.vocabSize,
  });
}
