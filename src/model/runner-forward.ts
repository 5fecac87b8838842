/**
 * The forward pass a ModelRunner records (the layer is drawn in runner.ts): embeddings, each
 * transformer layer, the final norm, then the LM-head cross-entropy (train / eval) or the logits of
 * one position (infer). Every step follows the config's flags exactly as the float64 reference does
 * (src/reference/model-layer.ts). Layers read and write the buffers of runner-buffers.ts; in infer
 * mode keys and values also go into the KV cache. Backward (runner-backward.ts) reuses recordLayer
 * to recompute a layer under activation checkpointing.
 */

import type { Recorder } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { recordActivation, recordSwiGlu } from '../kernels/activation';
import { type AttentionVariant, recordAttention, recordAttentionDecode } from '../kernels/attention';
import { recordCrossEntropy, recordLogits } from '../kernels/cross_entropy';
import { recordEmbedding } from '../kernels/embedding';
import { recordAdd, recordCopyRows } from '../kernels/elementwise';
import type { LogitTransform } from '../kernels/logits';
import { recordLayerNorm, recordRmsNorm } from '../kernels/norm';
import { recordRope } from '../kernels/rope';
import type { NormConfig, QkNormConfig } from './config';
import type { LinearModule, NormKeys } from './registry';
import { type NormSave, type RunnerState, headInput } from './runner-buffers';
import { type ForwardArgs, recordLinear } from './runner-linear';
import { recordMoe } from './runner-moe';
import { recordPrefixRows, recordPromptRows } from './runner-virtual';

/** A norm of `save.x` into `save.y` over `rows` rows of `dim` (RMSNorm or LayerNorm, as `spec` says). */
export function recordNorm(
  st: RunnerState,
  rec: Recorder,
  spec: NormConfig | QkNormConfig,
  keys: NormKeys,
  save: NormSave,
  rows: number,
  dim: number,
): void {
  const w = st.model.weight(keys.w);
  const common = {
    x: save.x,
    w,
    y: save.y,
    rstd: save.rstd,
    rows,
    dim,
    eps: spec.eps,
    weightOffset: spec.weightOffset,
  };
  if (spec.kind === 'rms') {
    recordRmsNorm(st.gpu, rec, common);
    return;
  }
  if (!keys.b || !save.mean) throw new GpuError(`LayerNorm "${keys.w}" needs a bias and a mean buffer.`);
  recordLayerNorm(st.gpu, rec, { ...common, b: st.model.weight(keys.b), mean: save.mean });
}

/** The attention variant of layer `l`: scale, window, soft-cap, ALiBi. */
export function attentionVariant(st: RunnerState, l: number): AttentionVariant {
  const c = st.model.config;
  return {
    scale: c.attention.scale,
    window: c.layers[l]!.window,
    softcap: c.attention.softcap,
    alibi: c.attention.alibi,
  };
}

/** Layer l's RoPE arguments (without x / heads / inverse), or null without RoPE. */
export function ropeArgs(st: RunnerState, l: number, T: number) {
  const rope = st.model.config.layers[l]!.rope;
  if (!rope) return null;
  return {
    positions: st.positions,
    rows: T,
    headDim: st.model.config.headDim,
    theta: rope.theta,
    rotaryDim: rope.rotaryDim,
    invFreq: st.invFreq[l]!,
    attentionScaling: rope.attentionScaling,
    interleaved: rope.interleaved,
  };
}

/** The q/k norm's (rows, dim): per head, or over the whole projection (OLMo 2). */
export function qkNormShape(st: RunnerState, heads: number, T: number): { rows: number; dim: number } {
  const c = st.model.config;
  return c.attention.qkNorm!.over === 'all' ? { rows: T, dim: heads * c.headDim } : { rows: T * heads, dim: c.headDim };
}

/** The column ranges of q, k, v in each of a fused projection's `groups` row blocks. */
export function qkvParts(st: RunnerState, groups: number) {
  const c = st.model.config;
  const qg = (c.numHeads / groups) * c.headDim;
  const kg = (c.numKvHeads / groups) * c.headDim;
  return { stride: qg + 2 * kg, q: [0, qg], k: [qg, kg], v: [qg + kg, kg] } as const;
}

/**
 * Records the forward pass of T = B*S tokens up to the LM head's input (train), or of one chunk of
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
  const top = (role: string) => arch.top.find((m) => m.role === role);
  // token embedding (·embedScale) -> project_in -> + positions -> embedding norm
  const pin = top('project_in');
  const embTo = st.embRaw ?? x0;
  recordEmbedding(gpu, rec, {
    table: st.model.weight(arch.embed),
    ids: st.ids,
    out: embTo,
    T,
    H: c.embedDim,
    scale: c.embedScale,
  });
  const virt = past === 0 ? (f.lora?.virtual?.() ?? null) : null;
  if (virt?.kind === 'prompt') recordPromptRows(st, rec, virt, embTo, f.B, f.S);
  if (pin) recordLinear(st, rec, st.topS, pin, st.embRaw!, x0, T, f);
  if (arch.posEmbed) {
    const out = st.nEmbed ? st.embRaw! : x0;
    recordEmbedding(gpu, rec, {
      table: st.model.weight(arch.posEmbed),
      ids: st.posIds ?? st.positions,
      out,
      T,
      H,
      accumulate: true,
    });
  }
  if (st.nEmbed) recordNorm(st, rec, c.norm, arch.embedNorm!, st.nEmbed, T, H);
  for (let l = 0; l < c.numLayers; l++) {
    const next = l + 1 < c.numLayers ? st.acts[l + 1]!.xIn : st.xFinal;
    recordLayer(st, rec, l, f, T, past, next);
  }
  if (st.nf) recordNorm(st, rec, c.norm, arch.finalNorm!, st.nf, T, H);
  const pout = top('project_out');
  if (pout) recordLinear(st, rec, st.topS, pout, st.nf?.y ?? st.xFinal, st.hOut!, T, f);
}

/**
 * One transformer layer: reads acts[l].xIn, writes the layer's saved activations and the layer's
 * output residual into `next` (which may be the same buffer as xIn in eval / infer mode, where one
 * set serves every layer: xIn is never read after `next` is first written).
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
  const b = c.block;
  const infer = st.opts.mode === 'infer';
  const H = c.hiddenSize;
  const I = c.intermediateSize;
  const kvW = c.numKvHeads * c.headDim;
  const L = st.acts[l]!;
  const W = st.model.arch.layers[l]!;
  const byRole = (role: string) => W.linears.find((m) => m.role === role);
  const linear = (m: LinearModule, x: Tensor, y: Tensor, accumulate = false) =>
    recordLinear(st, rec, L.s, m, x, y, T, f, accumulate);
  const norm = (keys: NormKeys, save: NormSave) => recordNorm(st, rec, c.norm, keys, save, T, H);
  const copy = (src: Tensor, dst: Tensor) => {
    if (src !== dst) rec.copy(src, dst, T * H * 4);
  };
  /** dst = base + rs·x (in place when dst is base). */
  const residual = (dst: Tensor, base: Tensor, x: Tensor) =>
    recordAdd(gpu, rec, { a: base, b: x, out: dst === base ? undefined : dst, n: T * H, alpha: b.residualScale });

  // ---- attention
  if (L.nAttn) norm(W.norms.attn!, L.nAttn);
  const aIn = L.nAttn?.y ?? L.xIn;
  const qOut = L.qn?.x ?? L.q;
  const kOut = L.kn?.x ?? L.k;
  const fused = byRole('qkv');
  if (fused) {
    linear(fused, aIn, L.qkv!);
    const p = qkvParts(st, fused.qkvGroups);
    const split = (dst: Tensor, [col0, width]: readonly [number, number]) =>
      recordCopyRows(gpu, rec, {
        src: L.qkv!,
        dst,
        rows: T * fused.qkvGroups,
        width,
        srcStride: p.stride,
        srcCol0: col0,
        dstStride: width,
      });
    split(qOut, p.q);
    split(kOut, p.k);
    split(L.v, p.v);
  } else {
    linear(byRole('q')!, aIn, qOut);
    linear(byRole('k')!, aIn, kOut);
    linear(byRole('v')!, aIn, L.v);
  }
  const qk = c.attention.qkNorm;
  if (qk) {
    const qs = qkNormShape(st, c.numHeads, T);
    const ks = qkNormShape(st, c.numKvHeads, T);
    recordNorm(st, rec, qk, W.norms.q!, L.qn!, qs.rows, qs.dim);
    recordNorm(st, rec, qk, W.norms.k!, L.kn!, ks.rows, ks.dim);
  }
  const rope = ropeArgs(st, l, T);
  if (rope) {
    recordRope(gpu, rec, { ...rope, x: L.q, heads: c.numHeads });
    recordRope(gpu, rec, { ...rope, x: L.k, heads: c.numKvHeads });
  }
  const virt = past === 0 ? (f.lora?.virtual?.() ?? null) : null;
  if (virt?.kind === 'prefix') recordPrefixRows(st, rec, virt, l, L.k, L.v, f.B, f.S);
  const shape = { heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim, ...attentionVariant(st, l) };
  if (infer) {
    rec.copy(L.k, st.kCache[l]!, T * kvW * 4, 0, past * kvW * 4);
    rec.copy(L.v, st.vCache[l]!, T * kvW * 4, 0, past * kvW * 4);
    recordAttentionDecode(gpu, rec, {
      q: L.q,
      kCache: st.kCache[l]!,
      vCache: st.vCache[l]!,
      o: L.o,
      lse: L.lse,
      qLen: T,
      past,
      ...shape,
    });
  } else {
    const keyStart = f.packed ? st.keyStart : undefined;
    recordAttention(gpu, rec, { q: L.q, k: L.k, v: L.v, o: L.o, lse: L.lse, batch: f.B, seq: f.S, ...shape, keyStart });
  }

  // ---- the MLP's input (a parallel block reads the layer input: norm it before `next` is written)
  if (b.parallel && L.nMlp) norm(W.norms.mlp!, L.nMlp);
  // ---- o_proj and the residual around attention
  const oProj = byRole('o')!;
  const attnTo = b.parallel ? next : (L.sum1 ?? L.xMid!);
  if (!L.attnOut) {
    copy(L.xIn, attnTo);
    linear(oProj, L.o, attnTo, true);
  } else {
    linear(oProj, L.o, L.attnOut);
    if (L.nAttnOut) norm(W.norms.attnOut!, L.nAttnOut);
    residual(attnTo, L.xIn, L.nAttnOut?.y ?? L.attnOut);
  }
  let mIn: Tensor;
  if (b.parallel) mIn = b.mlpNorm === 'shared' ? aIn : (L.nMlp?.y ?? L.xIn);
  else {
    if (L.y1) norm(W.norms.attn!, L.y1); // xMid = norm(x + attention)
    if (L.nMlp) norm(W.norms.mlp!, L.nMlp);
    mIn = L.nMlp?.y ?? L.xMid!;
  }

  // ---- MLP
  const mlpTo = b.parallel ? next : (L.sum2 ?? next);
  const mlpBase = b.parallel ? next : L.xMid!;
  if (L.moe) {
    if (!L.mlpOut) {
      copy(mlpBase, mlpTo);
      recordMoe(st, rec, l, f, T, mIn, mlpTo, true);
    } else recordMoe(st, rec, l, f, T, mIn, L.mlpOut, false);
  } else if (L.gu) {
    linear(byRole('gate_up')!, mIn, L.gu);
    recordSwiGlu(gpu, rec, { gu: L.gu, h: L.a, rows: T, cols: I, act: c.mlp.act });
  } else if (c.mlp.gated) {
    linear(byRole('gate')!, mIn, L.g!);
    linear(byRole('up')!, mIn, L.u!);
    recordSwiGlu(gpu, rec, { g: L.g!, u: L.u!, h: L.a, n: T * I, act: c.mlp.act });
  } else {
    linear(byRole('fc_in')!, mIn, L.g!);
    recordActivation(gpu, rec, { x: L.g!, y: L.a, n: T * I, act: c.mlp.act });
  }
  const down = byRole('down') ?? byRole('fc_out')!;
  if (!L.mlpOut) {
    if (!L.moe) {
      copy(mlpBase, mlpTo);
      linear(down, L.a, mlpTo, true);
    }
  } else {
    if (!L.moe) linear(down, L.a, L.mlpOut);
    if (L.nMlpOut) norm(W.norms.mlpOut!, L.nMlpOut);
    residual(mlpTo, mlpBase, L.nMlpOut?.y ?? L.mlpOut);
  }
  if (L.y2) {
    norm(W.norms.mlp!, L.y2); // the layer output = norm(x_mid + MLP)
    copy(L.y2.y, next);
  }
}

/** The LM head's transform (bias, logit scale, soft-cap) for the kernels. */
function headTransform(st: RunnerState): LogitTransform {
  const c = st.model.config;
  const bias = st.model.arch.lmHeadBias;
  return { bias: bias ? st.model.weight(bias) : null, scale: c.logits.scale, softcap: c.logits.softcap };
}

/**
 * Records the LM-head cross-entropy over the last forward's tokens (targets from setBatch),
 * adding into lossSum / countSum. With `gradScale` it also writes dLoss/dHidden for backward.
 */
export function recordLoss(st: RunnerState, rec: Recorder, T: number, gradScale: number | null): void {
  const c = st.model.config;
  recordCrossEntropy(st.gpu, rec, {
    h: headInput(st),
    w: st.model.weight(st.model.arch.lmHead),
    targets: st.targets,
    T,
    H: c.embedDim,
    V: c.vocabSize,
    gradScale: gradScale ?? 0,
    dh: gradScale === null ? null : st.ws.get('dFinal', [st.opts.maxTokens, c.embedDim]),
    rowLoss: st.rowLoss,
    lossSum: st.lossSum,
    countSum: st.countSum,
    ws: st.ws,
    chunk: st.opts.ceChunk,
    transform: headTransform(st),
  });
}

/** infer: records the logits of token `index` (0-based within the last forward) into `logits`. */
export function recordLogitsAt(st: RunnerState, rec: Recorder, index: number): void {
  const c = st.model.config;
  const E = c.embedDim;
  rec.copy(headInput(st), st.lastHidden!, E * 4, index * E * 4, 0);
  recordLogits(st.gpu, rec, {
    h: st.lastHidden!,
    w: st.model.weight(st.model.arch.lmHead),
    logits: st.logits!,
    T: 1,
    H: E,
    V: c.vocabSize,
    transform: headTransform(st),
  });
}
