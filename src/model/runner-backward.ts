/**
 * The backward pass a ModelRunner records: from dLoss/dHidden (written by recordLoss with a
 * gradScale) down through every layer in reverse, producing the LoRA gradients dA and dB. Only LoRA
 * parameters get gradients: embeddings, norms and base linears are frozen, so backward computes dX
 * through them and nothing else, and stops above the first layer's input. Gradient scratch lives in
 * the runner's Workspace; with activation checkpointing each layer below the last is recomputed
 * first (runner-forward.ts recordLayer, same seeds, same values).
 */

import type { Recorder } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { recordActivationBackward, recordSwiGluBackward } from '../kernels/activation';
import { recordAttentionBackward } from '../kernels/attention';
import { recordAdd, recordCopyRows, recordScale } from '../kernels/elementwise';
import { recordLinearBackward } from '../kernels/linear';
import { recordLayerNormBackward, recordRmsNormBackward } from '../kernels/norm';
import { recordRope } from '../kernels/rope';
import type { NormConfig, QkNormConfig } from './config';
import type { LinearModule, NormKeys } from './registry';
import { type NormSave, type RunnerState, doraScratch, ia3Scratch, loraScratch } from './runner-buffers';
import { recordMoeBackward } from './runner-moe';
import { recordPrefixGrad, recordPromptGrad } from './runner-virtual';
import { type ForwardArgs, dropoutSeed, loraFor } from './runner-linear';
import { attentionVariant, qkNormShape, qkvParts, recordLayer, ropeArgs } from './runner-forward';

/** dx (+)= dL/dx of the norm that made `save.y` from `save.x` (weights frozen). */
function recordNormBackward(
  st: RunnerState,
  rec: Recorder,
  spec: NormConfig | QkNormConfig,
  keys: NormKeys,
  save: NormSave,
  dy: Tensor,
  dx: Tensor,
  rows: number,
  dim: number,
  accumulate: boolean,
): void {
  const common = { dy, x: save.x, w: st.model.weight(keys.w), rstd: save.rstd, dx, rows, dim, accumulate };
  if (spec.kind === 'rms') recordRmsNormBackward(st.gpu, rec, { ...common, weightOffset: spec.weightOffset });
  else recordLayerNormBackward(st.gpu, rec, { ...common, mean: save.mean!, weightOffset: spec.weightOffset });
}

function recordLinearBack(
  st: RunnerState,
  rec: Recorder,
  s: Map<string, Tensor>,
  m: LinearModule,
  x: Tensor,
  dy: Tensor,
  dx: Tensor | null,
  T: number,
  f: ForwardArgs,
  accumulateDx: boolean,
  accumulateGrads: boolean,
): void {
  const slot = f.lora?.slot(m.path) ?? null;
  const lora = loraFor(f.lora, m, !!f.dropout);
  const ia3 = f.lora?.ia3?.(m.path) ?? null;
  if (!lora && !ia3 && !dx) return;
  recordLinearBackward(st.gpu, rec, {
    dy,
    x,
    M: T,
    lin: st.model.frozen(m),
    lora,
    ia3: ia3?.params,
    // an input vector's scaled input is not read by backward
    ia3Save: ia3 ? (ia3.params.input ? x : ia3Scratch(st, s, m, false)) : undefined,
    dl: ia3?.dl ?? undefined,
    seed: dropoutSeed(f.seed ?? 0, st.model.linears.indexOf(m)),
    s: lora ? loraScratch(st, s, m.path, lora.r) : undefined,
    z: lora?.dora ? doraScratch(st, s, m.path, m.outF) : undefined,
    dM: slot?.dM ?? undefined,
    dx,
    accumulateDx,
    dA: slot?.dA ?? undefined,
    dB: slot?.dB ?? undefined,
    accumulateGrads,
    ws: st.ws,
  });
}

/**
 * Records backward from the loss (recordLoss with a gradScale must precede it in the same
 * micro-step) to every LoRA gradient. `accumulateGrads` adds into the gradients (micro-batches
 * after the first of a step) instead of overwriting them.
 */
export function recordBackward(st: RunnerState, rec: Recorder, f: ForwardArgs, accumulateGrads: boolean): void {
  if (st.opts.mode !== 'train') throw new GpuError('Backward needs a runner created in train mode.');
  const c = st.model.config;
  const arch = st.model.arch;
  const T = f.B * f.S;
  const maxT = st.opts.maxTokens;
  const H = c.hiddenSize;
  const ws = st.ws;
  const dres = ws.get('dres', [maxT, H]);
  const dFinal = ws.get('dFinal', [maxT, c.embedDim]);
  const top = (role: string) => arch.top.find((m) => m.role === role);
  const topBack = (m: LinearModule, x: Tensor, dy: Tensor, dx: Tensor | null) =>
    recordLinearBack(st, rec, st.topS, m, x, dy, dx, T, f, false, accumulateGrads);

  // LM head input -> last layer's output
  const pout = top('project_out');
  let dTop = dFinal;
  if (pout) {
    dTop = ws.get('dPreOut', [maxT, H]);
    topBack(pout, st.nf?.y ?? st.xFinal, dFinal, dTop);
  }
  if (st.nf) recordNormBackward(st, rec, c.norm, arch.finalNorm!, st.nf, dTop, dres, T, H, false);
  else rec.copy(dTop, dres, T * H * 4);

  const pin = top('project_in');
  const virt = f.lora?.virtual?.() ?? null;
  const prompt = virt?.kind === 'prompt' && virt.grad ? virt : null;
  const needEmbedGrad = (!!pin && (!!f.lora?.get(pin.path) || !!f.lora?.ia3?.(pin.path))) || !!prompt;
  for (let l = c.numLayers - 1; l >= 0; l--) {
    // With checkpointing the shared buffers hold the last layer's activations after the forward
    // pass; every other layer is recomputed from its saved input (same seeds, same values).
    if (st.opts.checkpointActivations && l < c.numLayers - 1) {
      recordLayer(st, rec, l, f, T, 0, ws.get('recompute.next', [maxT, H]));
    }
    recordLayerBackward(st, rec, l, f, T, dres, l > 0 || needEmbedGrad, accumulateGrads);
  }
  // Below the layers only project_in (OPT-350m) can have LoRA parameters, and prompt tuning its
  // embeddings; dres is dL/d(layer 0 input).
  if (prompt) {
    let d = dres;
    if (st.nEmbed) {
      d = ws.get('dEmbed', [maxT, H]);
      recordNormBackward(st, rec, c.norm, arch.embedNorm!, st.nEmbed, dres, d, T, H, false);
    }
    recordPromptGrad(st, rec, prompt, d, f.B, f.S, accumulateGrads);
  } else if (needEmbedGrad) topBack(pin!, st.embRaw!, dres, null);
}

/**
 * One layer's backward (the reverse of runner-forward.ts recordLayer, as src/reference/model-layer.ts
 * layerBackwardRef): dres holds dL/d(layer output) on entry and dL/d(layer input) on exit (when
 * `needDx`); LoRA gradients of the layer's modules are written.
 */
function recordLayerBackward(
  st: RunnerState,
  rec: Recorder,
  l: number,
  f: ForwardArgs,
  T: number,
  dres: Tensor,
  needDx: boolean,
  accumulateGrads: boolean,
): void {
  const gpu = st.gpu;
  const c = st.model.config;
  const b = c.block;
  const maxT = st.opts.maxTokens;
  const H = c.hiddenSize;
  const I = c.intermediateSize;
  const qW = c.numHeads * c.headDim;
  const kvW = c.numKvHeads * c.headDim;
  const ws = st.ws;
  const L = st.acts[l]!;
  const W = st.model.arch.layers[l]!;
  const byRole = (role: string) => W.linears.find((m) => m.role === role);
  const linearBack = (m: LinearModule, x: Tensor, dy: Tensor, dx: Tensor | null, accumulateDx: boolean) =>
    recordLinearBack(st, rec, L.s, m, x, dy, dx, T, f, accumulateDx, accumulateGrads);
  const normBack = (keys: NormKeys, save: NormSave, dy: Tensor, dx: Tensor, accumulate: boolean) =>
    recordNormBackward(st, rec, c.norm, keys, save, dy, dx, T, H, accumulate);
  const add = (dst: Tensor, x: Tensor) => recordAdd(gpu, rec, { a: dst, b: x, n: T * H });
  /** The gradient of a sublayer's raw output from the gradient of its residual sum: times rs, back through its output norm. */
  const sublayerGrad = (dSum: Tensor, outNorm: NormSave | null, keys: NormKeys | undefined): Tensor => {
    let d = dSum;
    if (b.residualScale !== 1) {
      const t = ws.get('dScaled', [maxT, H]);
      recordScale(gpu, rec, { x: d, out: t, n: T * H, scale: b.residualScale });
      d = t;
    }
    if (outNorm) {
      const t = ws.get('dOutNorm', [maxT, H]);
      normBack(keys!, outNorm, d, t, false);
      d = t;
    }
    return d;
  };

  // ---- MLP: dL/d(its input) into dm
  let dy2 = dres; // dL/d(x_mid + rs·mlp)
  if (L.y2) {
    dy2 = ws.get('dSum2', [maxT, H]);
    normBack(W.norms.mlp!, L.y2, dres, dy2, false);
  }
  const dMlp = sublayerGrad(dy2, L.nMlpOut, W.norms.mlpOut);
  const mIn = b.parallel
    ? b.mlpNorm === 'shared'
      ? (L.nAttn?.y ?? L.xIn)
      : (L.nMlp?.y ?? L.xIn)
    : (L.nMlp?.y ?? L.xMid!);
  const dm = b.parallel && !needDx ? null : ws.get('dm', [maxT, H]);
  const da = ws.get('da', [maxT, I]);
  if (!L.moe) linearBack(byRole('down') ?? byRole('fc_out')!, L.a, dMlp, da, false);
  if (L.moe) recordMoeBackward(st, rec, l, T, mIn, dMlp, dm, linearBack);
  else if (L.gu) {
    const dgu = ws.get('dgu', [maxT, 2 * I]);
    recordSwiGluBackward(gpu, rec, { dh: da, gu: L.gu, dgu, rows: T, cols: I, act: c.mlp.act });
    linearBack(byRole('gate_up')!, mIn, dgu, dm, false);
  } else if (c.mlp.gated) {
    const dg = ws.get('dg', [maxT, I]);
    const du = ws.get('du', [maxT, I]);
    recordSwiGluBackward(gpu, rec, { dh: da, g: L.g!, u: L.u!, dg, du, n: T * I, act: c.mlp.act });
    linearBack(byRole('gate')!, mIn, dg, dm, false);
    linearBack(byRole('up')!, mIn, du, dm, true);
  } else {
    const dg = ws.get('dg', [maxT, I]);
    recordActivationBackward(gpu, rec, { dy: da, x: L.g!, dx: dg, n: T * I, act: c.mlp.act });
    linearBack(byRole('fc_in')!, mIn, dg, dm, false);
  }

  // ---- the residual around the MLP; dSum1 = dL/d(x + rs·attention)
  let dSum1 = dres;
  if (!b.parallel) {
    if (L.nMlp) normBack(W.norms.mlp!, L.nMlp, dm!, dy2, true);
    else add(dy2, dm!);
    dSum1 = dy2; // = dL/d x_mid
    if (L.y1) {
      dSum1 = ws.get('dSum1', [maxT, H]);
      normBack(W.norms.attn!, L.y1, dy2, dSum1, false);
    }
  }

  // ---- attention
  const dAttn = sublayerGrad(dSum1, L.nAttnOut, W.norms.attnOut);
  const dO = ws.get('dO', [maxT, qW]);
  linearBack(byRole('o')!, L.o, dAttn, dO, false);
  const dq = ws.get('dq', [maxT, qW]);
  const dk = ws.get('dk', [maxT, kvW]);
  const dv = ws.get('dv', [maxT, kvW]);
  recordAttentionBackward(gpu, rec, {
    q: L.q,
    k: L.k,
    v: L.v,
    o: L.o,
    lse: L.lse,
    dO,
    dq,
    dk,
    dv,
    batch: f.B,
    seq: f.S,
    heads: c.numHeads,
    kvHeads: c.numKvHeads,
    headDim: c.headDim,
    ...attentionVariant(st, l),
    keyStart: f.packed ? st.keyStart : undefined,
    ws,
  });
  const virt = f.lora?.virtual?.() ?? null;
  if (virt?.kind === 'prefix' && virt.grad) recordPrefixGrad(st, rec, virt, l, dk, dv, f.B, f.S, accumulateGrads);
  const rope = ropeArgs(st, l, T);
  if (rope) {
    recordRope(gpu, rec, { ...rope, x: dq, heads: c.numHeads, inverse: true });
    recordRope(gpu, rec, { ...rope, x: dk, heads: c.numKvHeads, inverse: true });
  }
  let dqIn = dq;
  let dkIn = dk;
  const qk = c.attention.qkNorm;
  if (qk) {
    dqIn = ws.get('dqPre', [maxT, qW]);
    dkIn = ws.get('dkPre', [maxT, kvW]);
    const qs = qkNormShape(st, c.numHeads, T);
    const ks = qkNormShape(st, c.numKvHeads, T);
    recordNormBackward(st, rec, qk, W.norms.q!, L.qn!, dq, dqIn, qs.rows, qs.dim, false);
    recordNormBackward(st, rec, qk, W.norms.k!, L.kn!, dk, dkIn, ks.rows, ks.dim, false);
  }
  const aIn = L.nAttn?.y ?? L.xIn;
  const daIn = needDx ? ws.get('dh', [maxT, H]) : null;
  const fused = byRole('qkv');
  if (fused) {
    const p = qkvParts(st, fused.qkvGroups);
    const dqkv = ws.get('dqkv', [maxT, p.stride * fused.qkvGroups]);
    const merge = (src: Tensor, [col0, width]: readonly [number, number]) =>
      recordCopyRows(gpu, rec, {
        src,
        dst: dqkv,
        rows: T * fused.qkvGroups,
        width,
        srcStride: width,
        dstStride: p.stride,
        dstCol0: col0,
      });
    merge(dqIn, p.q);
    merge(dkIn, p.k);
    merge(dv, p.v);
    linearBack(fused, aIn, dqkv, daIn, false);
  } else {
    linearBack(byRole('q')!, aIn, dqIn, daIn, false);
    linearBack(byRole('k')!, aIn, dkIn, daIn, true);
    linearBack(byRole('v')!, aIn, dv, daIn, true);
  }
  if (!needDx) return;

  // ---- dL/d(layer input) into dres
  if (b.parallel) {
    if (b.mlpNorm === 'shared') add(daIn!, dm!);
    else if (L.nMlp) normBack(W.norms.mlp!, L.nMlp, dm!, dres, true);
    else add(dres, dm!);
  }
  if (L.nAttn) normBack(W.norms.attn!, L.nAttn, daIn!, dSum1, true);
  else add(dSum1, daIn!);
  if (dSum1 !== dres) rec.copy(dSum1, dres, T * H * 4);
}
