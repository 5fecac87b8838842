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
import { recordSwiGluBackward, recordGeluBackward } from '../kernels/activation';
import { recordAttentionBackward } from '../kernels/attention';
import { recordCopyRows } from '../kernels/elementwise';
import { recordLinearBackward } from '../kernels/linear';
import { recordLayerNormBackward, recordRmsNormBackward } from '../kernels/norm';
import { recordRope } from '../kernels/rope';
import type { LinearModule } from './registry';
import { type LayerActs, type NormSave, type RunnerState, loraScratch } from './runner-buffers';
import { type ForwardArgs, dropoutSeed, loraFor, recordLayer } from './runner-forward';

function recordNormBackward(
  st: RunnerState,
  rec: Recorder,
  dy: Tensor,
  x: Tensor,
  w: { w: string; b: string | null },
  save: NormSave,
  dx: Tensor,
  rows: number,
  accumulate: boolean,
): void {
  const c = st.model.config;
  if (c.norm === 'rms') {
    recordRmsNormBackward(st.gpu, rec, {
      dy,
      x,
      w: st.model.weight(w.w),
      rstd: save.rstd,
      dx,
      rows,
      dim: c.hiddenSize,
      accumulate,
    });
  } else {
    recordLayerNormBackward(st.gpu, rec, {
      dy,
      x,
      w: st.model.weight(w.w),
      mean: save.mean!,
      rstd: save.rstd,
      dx,
      rows,
      dim: c.hiddenSize,
      accumulate,
    });
  }
}

function recordLinearBack(
  st: RunnerState,
  rec: Recorder,
  L: LayerActs,
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
  if (!lora && !dx) return;
  recordLinearBackward(st.gpu, rec, {
    dy,
    x,
    M: T,
    lin: st.model.frozen(m),
    lora,
    seed: dropoutSeed(f.seed ?? 0, st.model.linears.indexOf(m)),
    s: lora ? loraScratch(st, L, m.path, lora.r) : undefined,
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
  const gpu = st.gpu;
  const c = st.model.config;
  const arch = st.model.arch;
  const T = f.B * f.S;
  const maxT = st.opts.maxTokens;
  const H = c.hiddenSize;
  const qW = c.numHeads * c.headDim;
  const kvW = c.numKvHeads * c.headDim;
  const I = c.intermediateSize;
  const ws = st.ws;
  const dres = ws.get('dres', [maxT, H]);
  const dh = ws.get('dh', [maxT, H]);
  const da = ws.get('da', [maxT, I]);
  const dg = ws.get('dg', [maxT, I]);
  const du = c.arch === 'gpt2' ? null : ws.get('du', [maxT, I]);
  const dO = ws.get('dO', [maxT, qW]);
  const dq = ws.get('dq', [maxT, qW]);
  const dk = ws.get('dk', [maxT, kvW]);
  const dv = ws.get('dv', [maxT, kvW]);
  const dqPre = c.qkNorm ? ws.get('dqPre', [maxT, qW]) : null;
  const dkPre = c.qkNorm ? ws.get('dkPre', [maxT, kvW]) : null;
  const dqkv = c.arch === 'gpt2' ? ws.get('dqkv', [maxT, qW + 2 * kvW]) : null;
  const dFinal = ws.get('dFinal', [maxT, H]);

  recordNormBackward(st, rec, dFinal, st.xFinal, arch.finalNorm, st.nf, dres, T, false);
  for (let l = c.numLayers - 1; l >= 0; l--) {
    // With checkpointing the shared buffers hold the last layer's activations after the forward
    // pass; every other layer is recomputed from its saved input (same seeds, same values).
    if (st.opts.checkpointActivations && l < c.numLayers - 1) {
      recordLayer(st, rec, l, f, T, 0, ws.get('recompute.next', [maxT, H]));
    }
    const L = st.acts[l]!;
    const W = arch.layers[l]!;
    const byRole = (role: string) => W.linears.find((m) => m.role === role);
    const linearBack = (m: LinearModule, x: Tensor, dy: Tensor, dx: Tensor | null, accumulateDx: boolean) =>
      recordLinearBack(st, rec, L, m, x, dy, dx, T, f, accumulateDx, accumulateGrads);
    const needDxBelow = l > 0;
    // MLP: x_out = x_mid + down(act(...(norm2(x_mid))))
    linearBack(byRole('down') ?? byRole('fc_out')!, L.a, dres, da, false);
    if (c.arch === 'gpt2') {
      recordGeluBackward(gpu, rec, { dy: da, x: L.g, dx: dg, n: T * I });
      linearBack(byRole('fc_in')!, L.n2.y, dg, dh, false);
    } else {
      recordSwiGluBackward(gpu, rec, { dh: da, g: L.g, u: L.u!, dg, du: du!, n: T * I });
      linearBack(byRole('gate')!, L.n2.y, dg, dh, false);
      linearBack(byRole('up')!, L.n2.y, du!, dh, true);
    }
    recordNormBackward(st, rec, dh, L.xMid, W.postAttnNorm, L.n2, dres, T, true);
    // Attention: x_mid = x_in + o_proj(attn(rope(q(norm1(x_in))), ...))
    linearBack(byRole('o')!, L.o, dres, dO, false);
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
      ws,
    });
    if (c.rope) {
      const rope = {
        positions: st.positions,
        rows: T,
        headDim: c.headDim,
        theta: c.rope.theta,
        rotaryDim: c.rope.rotaryDim,
        invFreq: st.invFreq,
        inverse: true,
      };
      recordRope(gpu, rec, { ...rope, x: dq, heads: c.numHeads });
      recordRope(gpu, rec, { ...rope, x: dk, heads: c.numKvHeads });
    }
    let dqIn = dq;
    let dkIn = dk;
    if (c.qkNorm) {
      recordRmsNormBackward(gpu, rec, {
        dy: dq,
        x: L.qPre!,
        w: st.model.weight(W.qNorm!),
        rstd: L.qRstd!,
        dx: dqPre!,
        rows: T * c.numHeads,
        dim: c.headDim,
      });
      recordRmsNormBackward(gpu, rec, {
        dy: dk,
        x: L.kPre!,
        w: st.model.weight(W.kNorm!),
        rstd: L.kRstd!,
        dx: dkPre!,
        rows: T * c.numKvHeads,
        dim: c.headDim,
      });
      dqIn = dqPre!;
      dkIn = dkPre!;
    }
    const dxAttn = needDxBelow ? dh : null;
    const qkvM = byRole('qkv');
    if (qkvM) {
      const merge = (src: Tensor, col0: number, width: number) =>
        recordCopyRows(gpu, rec, {
          src,
          dst: dqkv!,
          rows: T,
          width,
          srcStride: width,
          dstStride: qW + 2 * kvW,
          dstCol0: col0,
        });
      merge(dqIn, 0, qW);
      merge(dkIn, qW, kvW);
      merge(dv, qW + kvW, kvW);
      linearBack(qkvM, L.n1.y, dqkv!, dxAttn, false);
    } else {
      linearBack(byRole('q')!, L.n1.y, dqIn, dxAttn, false);
      linearBack(byRole('k')!, L.n1.y, dkIn, dxAttn, true);
      linearBack(byRole('v')!, L.n1.y, dv, dxAttn, true);
    }
    if (needDxBelow) recordNormBackward(st, rec, dh, L.xIn, W.inputNorm, L.n1, dres, T, true);
  }
}
