/**
 * Float64 reference of one transformer layer, forward and backward, for every block form the
 * ModelConfig flags describe (src/model/config.ts BlockConfig, AttentionConfig, MlpConfig). The
 * GPU runner records the same steps; src/reference/model.ts strings layers together.
 *
 * Shape legend: T tokens, H hidden, nH / nKV heads, hd head dim, I MLP width.
 *
 *   a_in = norm_attn(x)                      (x itself without attnNorm, or when norms follow the residual)
 *   q, k, v = proj(a_in)                     separate, or one fused projection split by qkvGroups
 *   q, k = qk_norm(q, k); q, k = rope(q, k)  (per layer: RoPE or none)
 *   attn = o_proj(attention(q, k, v))        (window, soft-cap, ALiBi, scale)
 *   attn = norm_attn_out(attn)               (attnOutNorm)
 * sequential:  y1 = x + rs·attn;  x_mid = y1 (or norm_attn(y1) after the residual)
 *              m_in = norm_mlp(x_mid) (or x_mid);  y2 = x_mid + rs·mlp_out;  out = y2 (or norm_mlp(y2))
 * parallel:    m_in = norm_mlp(x) | a_in (shared) | x;  out = x + rs·attn + rs·mlp_out
 *   mlp_out = norm_mlp_out(down(act(gate(m_in))·up(m_in)))  or  fc_out(act(fc_in(m_in)))
 *
 * One linear module with its adapter is model-linear.ts.
 */

import type { ModelConfig, NormKind } from '../model/config';
import type { LayerWeights, NormKeys } from '../model/registry';
import { activationBackwardRef, activationRef, swiGluBackwardRef, swiGluRef } from './activation';
import { attentionBackwardRef, attentionRef } from './attention';
import { type RefGrads, type RefLora, type RefWeights, linearBwd, linearFwd } from './model-linear';
import { layerNormBackwardRef, layerNormRef, rmsNormBackwardRef, rmsNormRef } from './norm';
import { type MoeCache, moeBackwardRef, moeForwardRef } from './model-moe';
import { ropeInvFreq } from '../numerics/rope';
import { ropeRef } from './rope';
import { copyColumnsRef } from './slice';

// ----------------------------------------------------------------------------------- norms

export interface NormCache {
  x: Float64Array;
  y: Float64Array;
  rstd: Float64Array;
  mean: Float64Array | null;
}

interface NormSpec {
  kind: NormKind;
  eps: number;
  weightOffset: number;
}

export function normFwd(
  w: RefWeights,
  spec: NormSpec,
  keys: NormKeys,
  x: Float64Array,
  rows: number,
  dim: number,
): NormCache {
  const weightOffset = spec.weightOffset;
  if (spec.kind === 'rms') {
    const r = rmsNormRef({ x, w: w.get(keys.w), rows, dim, eps: spec.eps, weightOffset });
    return { x, y: r.y, rstd: r.rstd, mean: null };
  }
  const b = keys.b ? w.get(keys.b) : null;
  const r = layerNormRef({ x, w: w.get(keys.w), b, rows, dim, eps: spec.eps, weightOffset });
  return { x, y: r.y, rstd: r.rstd, mean: r.mean };
}

export function normBwd(
  w: RefWeights,
  spec: NormSpec,
  keys: NormKeys,
  c: NormCache,
  dy: Float64Array,
  rows: number,
  dim: number,
): Float64Array {
  const a = { dy, x: c.x, w: w.get(keys.w), rstd: c.rstd, rows, dim, weightOffset: spec.weightOffset };
  return spec.kind === 'rms' ? rmsNormBackwardRef(a) : layerNormBackwardRef({ ...a, mean: c.mean! });
}

function add(a: Float64Array, b: ArrayLike<number>, scale = 1): Float64Array {
  for (let i = 0; i < a.length; i++) a[i] = a[i]! + scale * b[i]!;
  return a;
}

const scaled = (x: Float64Array, s: number) => (s === 1 ? x : x.map((v) => v * s));

// ------------------------------------------------------------------------------ attention

/** The column ranges of q, k and v inside a fused projection with `groups` [q | k | v] blocks. */
export function qkvSplit(c: ModelConfig, groups: number) {
  const qg = (c.numHeads / groups) * c.headDim;
  const kg = (c.numKvHeads / groups) * c.headDim;
  const stride = qg + 2 * kg;
  return {
    rowsPer: groups,
    stride,
    q: { col0: 0, width: qg },
    k: { col0: qg, width: kg },
    v: { col0: qg + kg, width: kg },
  };
}

/** [T, fused] -> q [T, nH·hd], k, v [T, nKV·hd]: each of the T·groups rows of width `stride` holds one block. */
function splitQkv(c: ModelConfig, groups: number, qkv: Float64Array, T: number) {
  const s = qkvSplit(c, groups);
  const part = ({ col0, width }: { col0: number; width: number }) => {
    const out = new Float64Array(T * groups * width);
    copyColumnsRef(qkv, out, {
      rows: T * groups,
      width,
      srcStride: s.stride,
      srcCol0: col0,
      dstStride: width,
      dstCol0: 0,
    });
    return out;
  };
  return { q: part(s.q), k: part(s.k), v: part(s.v) };
}

function mergeQkv(c: ModelConfig, groups: number, dq: Float64Array, dk: Float64Array, dv: Float64Array, T: number) {
  const s = qkvSplit(c, groups);
  const out = new Float64Array(T * groups * s.stride);
  for (const [src, r] of [
    [dq, s.q],
    [dk, s.k],
    [dv, s.v],
  ] as const) {
    copyColumnsRef(src, out, {
      rows: T * groups,
      width: r.width,
      srcStride: r.width,
      srcCol0: 0,
      dstStride: s.stride,
      dstCol0: r.col0,
    });
  }
  return out;
}

function qkNormShape(c: ModelConfig, heads: number, T: number): { rows: number; dim: number } {
  return c.attention.qkNorm!.over === 'all' ? { rows: T, dim: heads * c.headDim } : { rows: T * heads, dim: c.headDim };
}

function ropeArgs(c: ModelConfig, l: number, positions: ArrayLike<number>, T: number) {
  const rope = c.layers[l]!.rope!;
  return {
    positions,
    rows: T,
    headDim: c.headDim,
    theta: rope.theta,
    rotaryDim: rope.rotaryDim,
    invFreq: rope.scaling ? ropeInvFreq(rope.rotaryDim, rope.theta, rope.scaling) : undefined,
    attentionScaling: rope.attentionScaling,
    interleaved: rope.interleaved,
  };
}

/** Attention shape and variant (scale, window, soft-cap, ALiBi) of layer `l`. */
export function attentionShape(c: ModelConfig, l: number, B: number, S: number) {
  return {
    batch: B,
    seq: S,
    heads: c.numHeads,
    kvHeads: c.numKvHeads,
    headDim: c.headDim,
    scale: c.attention.scale,
    window: c.layers[l]!.window,
    softcap: c.attention.softcap,
    alibi: c.attention.alibi,
  };
}

// ---------------------------------------------------------------------------------- layer

export interface LayerCache {
  xIn: Float64Array;
  aIn: Float64Array;
  nAttn: NormCache | null;
  qkv: { qPre: Float64Array; kPre: Float64Array; qn: NormCache | null; kn: NormCache | null };
  q: Float64Array;
  k: Float64Array;
  v: Float64Array;
  o: Float64Array;
  nAttnOut: NormCache | null;
  /** Sequential: after the attention residual (and its norm when norms follow residuals). */
  xMid: Float64Array | null;
  y1: NormCache | null;
  mIn: Float64Array;
  nMlp: NormCache | null;
  /** MLP pre-activation(s): fc_in output, or gate and up. */
  g: Float64Array;
  u: Float64Array | null;
  a: Float64Array;
  /** Mixture of experts (config.moe): the routing weights and every expert's activations. */
  moe: MoeCache | null;
  nMlpOut: NormCache | null;
  y2: NormCache | null;
}

/**
 * Prompt or prefix tuning's virtual tokens: the first P rows of every sequence (S counts them). A
 * prompt's rows enter as embeddings; a prefix's rows are dummies whose keys and values every layer
 * replaces with the learned prefix after RoPE, so the sequence's own queries see the prefix first,
 * as transformers does with PEFT's past_key_values. Their targets are ignored.
 */
export interface RefVirtual {
  kind: 'prompt' | 'prefix';
  P: number;
  /** prompt: [P, H]; prefix: [P, layers·2·kvW] (layer l's keys at column 2l·kvW, its values at (2l+1)·kvW). */
  table: ArrayLike<number>;
}

export interface LayerBatch {
  B: number;
  S: number;
  positions: ArrayLike<number>;
  virtual?: RefVirtual | null;
}

/**
 * Rows p < P of every sequence of `x` [B·S, width] and columns col0.. of `table` [P, stride]:
 * 'write' copies table -> x; 'grad' adds x's rows into the table-shaped `table` and zeroes them in x.
 */
export function virtualRows(
  mode: 'write' | 'grad',
  x: Float64Array,
  table: ArrayLike<number> & { [i: number]: number },
  v: { B: number; S: number; P: number; width: number; col0: number; stride: number; scale?: number },
): void {
  const sc = v.scale ?? 1;
  for (let b = 0; b < v.B; b++) {
    for (let p = 0; p < v.P; p++) {
      for (let j = 0; j < v.width; j++) {
        const xi = (b * v.S + p) * v.width + j;
        const ti = p * v.stride + v.col0 + j;
        if (mode === 'write') x[xi] = table[ti]! * sc;
        else {
          table[ti] = table[ti]! + x[xi]! * sc;
          x[xi] = 0;
        }
      }
    }
  }
}

const byRole = (W: LayerWeights, role: string) => W.linears.find((m) => m.role === role);

/** One layer's forward: returns its output [T, H] and what backward needs. */
export function layerForwardRef(
  w: RefWeights,
  l: number,
  lora: RefLora,
  xIn: Float64Array,
  batch: LayerBatch,
): { out: Float64Array; cache: LayerCache } {
  const c = w.config;
  const blk = c.block;
  const W = w.arch.layers[l]!;
  const T = batch.B * batch.S;
  const H = c.hiddenSize;
  const I = c.intermediateSize;
  const norm = (keys: NormKeys, x: Float64Array) => normFwd(w, c.norm, keys, x, T, H);
  const lin = (role: string, x: Float64Array) => linearFwd(w, byRole(W, role)!, lora, x, T);

  const nAttn = blk.attnNorm && !blk.normAfterResidual ? norm(W.norms.attn!, xIn) : null;
  const aIn = nAttn ? nAttn.y : xIn;
  // q, k, v
  let qPre: Float64Array;
  let kPre: Float64Array;
  let v: Float64Array;
  const fused = byRole(W, 'qkv');
  if (fused) ({ q: qPre, k: kPre, v } = splitQkv(c, fused.qkvGroups, lin('qkv', aIn), T));
  else [qPre, kPre, v] = [lin('q', aIn), lin('k', aIn), lin('v', aIn)];
  let q = qPre;
  let k = kPre;
  let qn: NormCache | null = null;
  let kn: NormCache | null = null;
  const qk = c.attention.qkNorm;
  if (qk) {
    const qs = qkNormShape(c, c.numHeads, T);
    const ks = qkNormShape(c, c.numKvHeads, T);
    qn = normFwd(w, qk, W.norms.q!, qPre, qs.rows, qs.dim);
    kn = normFwd(w, qk, W.norms.k!, kPre, ks.rows, ks.dim);
    q = qn.y;
    k = kn.y;
  }
  if (c.layers[l]!.rope) {
    const r = ropeArgs(c, l, batch.positions, T);
    q = ropeRef({ ...r, x: q, heads: c.numHeads });
    k = ropeRef({ ...r, x: k, heads: c.numKvHeads });
  }
  const vt = batch.virtual;
  if (vt?.kind === 'prefix') {
    // the dummy rows' keys and values become the layer's learned prefix
    const kvW = c.numKvHeads * c.headDim;
    const at = { B: batch.B, S: batch.S, P: vt.P, width: kvW, stride: 2 * c.numLayers * kvW };
    k = Float64Array.from(k);
    virtualRows('write', k, vt.table as Float64Array, { ...at, col0: 2 * l * kvW });
    virtualRows('write', v, vt.table as Float64Array, { ...at, col0: (2 * l + 1) * kvW });
  }
  const att = attentionRef({ q, k, v, ...attentionShape(c, l, batch.B, batch.S) });
  let attn = lin('o', att.o);
  const nAttnOut = blk.attnOutNorm ? norm(W.norms.attnOut!, attn) : null;
  if (nAttnOut) attn = nAttnOut.y;

  // MLP input and the residual around it
  let xMid: Float64Array | null = null;
  let y1: NormCache | null = null;
  let mIn: Float64Array;
  let nMlp: NormCache | null = null;
  if (blk.parallel) {
    if (blk.mlpNorm === 'shared') mIn = aIn;
    else if (blk.mlpNorm === 'own') mIn = (nMlp = norm(W.norms.mlp!, xIn)).y;
    else mIn = xIn;
  } else {
    xMid = add(Float64Array.from(xIn), attn, blk.residualScale);
    if (blk.normAfterResidual) xMid = (y1 = norm(W.norms.attn!, xMid)).y;
    mIn = blk.mlpNorm === 'own' && !blk.normAfterResidual ? (nMlp = norm(W.norms.mlp!, xMid)).y : xMid;
  }
  // MLP
  let g: Float64Array;
  let u: Float64Array | null = null;
  let a: Float64Array;
  const act = c.mlp.act;
  let moe: { out: Float64Array; cache: MoeCache } | null = null;
  if (c.moe) {
    moe = moeForwardRef(c, W, (m, x) => linearFwd(w, m, lora, x, T), mIn, T);
    [g, a] = [new Float64Array(0), new Float64Array(0)];
  } else if (!c.mlp.gated) {
    g = lin('fc_in', mIn);
    a = activationRef(g, act);
  } else {
    if (byRole(W, 'gate_up')) {
      const gu = lin('gate_up', mIn);
      const s = { rows: T, width: I, srcStride: 2 * I, dstStride: I, dstCol0: 0 };
      g = new Float64Array(T * I);
      u = new Float64Array(T * I);
      copyColumnsRef(gu, g, { ...s, srcCol0: 0 });
      copyColumnsRef(gu, u, { ...s, srcCol0: I });
    } else [g, u] = [lin('gate', mIn), lin('up', mIn)];
    a = swiGluRef(g, u, act);
  }
  let mlpOut = moe ? moe.out : lin(c.mlp.gated ? 'down' : 'fc_out', a);
  const nMlpOut = blk.mlpOutNorm ? norm(W.norms.mlpOut!, mlpOut) : null;
  if (nMlpOut) mlpOut = nMlpOut.y;

  let out: Float64Array;
  let y2: NormCache | null = null;
  if (blk.parallel) out = add(add(Float64Array.from(xIn), attn, blk.residualScale), mlpOut, blk.residualScale);
  else {
    out = add(Float64Array.from(xMid!), mlpOut, blk.residualScale);
    if (blk.normAfterResidual) out = (y2 = norm(W.norms.mlp!, out)).y;
  }
  const cache: LayerCache = {
    xIn,
    aIn,
    nAttn,
    qkv: { qPre, kPre, qn, kn },
    q,
    k,
    v,
    o: att.o,
    nAttnOut,
    xMid,
    y1,
    mIn,
    nMlp,
    g,
    u,
    a,
    moe: moe?.cache ?? null,
    nMlpOut,
    y2,
  };
  return { out, cache };
}

/** One layer's backward: dL/d(layer input) from dL/d(layer output), LoRA gradients into `grads`. */
export function layerBackwardRef(
  w: RefWeights,
  l: number,
  lora: RefLora,
  grads: RefGrads,
  L: LayerCache,
  dOut: Float64Array,
  batch: LayerBatch,
): Float64Array {
  const c = w.config;
  const blk = c.block;
  const W = w.arch.layers[l]!;
  const T = batch.B * batch.S;
  const H = c.hiddenSize;
  const I = c.intermediateSize;
  const nb = (keys: NormKeys, cache: NormCache, dy: Float64Array) => normBwd(w, c.norm, keys, cache, dy, T, H);
  const linB = (role: string, x: Float64Array, dy: Float64Array) =>
    linearBwd(w, byRole(W, role)!, lora, grads, x, dy, T);
  const rs = blk.residualScale;

  // MLP: dmlp_out -> dm_in
  const dy2 = L.y2 ? nb(W.norms.mlp!, L.y2, dOut) : dOut;
  let dMlp = scaled(dy2, rs);
  if (L.nMlpOut) dMlp = nb(W.norms.mlpOut!, L.nMlpOut, dMlp);
  let dmIn: Float64Array;
  if (L.moe) dmIn = moeBackwardRef(c, W, (m, x, dy) => linearBwd(w, m, lora, grads, x, dy, T), L.moe, L.mIn, dMlp, T);
  else if (!c.mlp.gated) dmIn = linB('fc_in', L.mIn, activationBackwardRef(linB('fc_out', L.a, dMlp), L.g, c.mlp.act));
  else {
    const da = linB('down', L.a, dMlp);
    const { dg, du } = swiGluBackwardRef(da, L.g, L.u!, c.mlp.act);
    if (byRole(W, 'gate_up')) {
      const dgu = new Float64Array(T * 2 * I);
      const s = { rows: T, width: I, srcStride: I, srcCol0: 0, dstStride: 2 * I };
      copyColumnsRef(dg, dgu, { ...s, dstCol0: 0 });
      copyColumnsRef(du, dgu, { ...s, dstCol0: I });
      dmIn = linB('gate_up', L.mIn, dgu);
    } else dmIn = add(linB('gate', L.mIn, dg), linB('up', L.mIn, du));
  }

  // the residual around the MLP, then the attention output's gradient
  let dy1: Float64Array; // gradient at the attention's residual sum (sequential) or the layer input (parallel)
  let dAttn: Float64Array;
  if (blk.parallel) {
    dy1 = Float64Array.from(dOut);
    if (blk.mlpNorm === 'own') add(dy1, nb(W.norms.mlp!, L.nMlp!, dmIn));
    else if (blk.mlpNorm === 'none') add(dy1, dmIn);
    dAttn = scaled(dOut, rs);
  } else {
    let dxMid = add(Float64Array.from(dy2), L.nMlp ? nb(W.norms.mlp!, L.nMlp, dmIn) : dmIn);
    if (L.y1) dxMid = nb(W.norms.attn!, L.y1, dxMid);
    dy1 = dxMid;
    dAttn = scaled(dxMid, rs);
  }
  if (L.nAttnOut) dAttn = nb(W.norms.attnOut!, L.nAttnOut, dAttn);

  // attention
  const dO = linB('o', L.o, dAttn);
  let { dq, dk, dv } = attentionBackwardRef({ q: L.q, k: L.k, v: L.v, dO, ...attentionShape(c, l, batch.B, batch.S) });
  const vt = batch.virtual;
  if (vt?.kind === 'prefix') {
    // the prefix's gradient; the dummy rows' own projections did not make what attention read
    const kvW = c.numKvHeads * c.headDim;
    const at = { B: batch.B, S: batch.S, P: vt.P, width: kvW, stride: 2 * c.numLayers * kvW };
    virtualRows('grad', dk, grads.dVirtual!, { ...at, col0: 2 * l * kvW });
    virtualRows('grad', dv, grads.dVirtual!, { ...at, col0: (2 * l + 1) * kvW });
  }
  if (c.layers[l]!.rope) {
    const r = { ...ropeArgs(c, l, batch.positions, T), inverse: true };
    dq = ropeRef({ ...r, x: dq, heads: c.numHeads });
    dk = ropeRef({ ...r, x: dk, heads: c.numKvHeads });
  }
  const qk = c.attention.qkNorm;
  if (qk) {
    const qs = qkNormShape(c, c.numHeads, T);
    const ks = qkNormShape(c, c.numKvHeads, T);
    dq = normBwd(w, qk, W.norms.q!, L.qkv.qn!, dq, qs.rows, qs.dim);
    dk = normBwd(w, qk, W.norms.k!, L.qkv.kn!, dk, ks.rows, ks.dim);
  }
  const fused = byRole(W, 'qkv');
  let daIn = fused
    ? linB('qkv', L.aIn, mergeQkv(c, fused.qkvGroups, dq, dk, dv, T))
    : add(add(linB('q', L.aIn, dq), linB('k', L.aIn, dk)), linB('v', L.aIn, dv));
  if (blk.parallel && blk.mlpNorm === 'shared') daIn = add(daIn, dmIn);
  return add(dy1, L.nAttn ? nb(W.norms.attn!, L.nAttn, daIn) : daIn);
}
