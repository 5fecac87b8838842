/**
 * Prompt and prefix tuning in the runner (the float64 twin is src/reference/model.ts and
 * model-layer.ts, `RefVirtual`). The first P rows of every sequence are virtual tokens (S counts
 * them; positions 0..P-1, targets ignored, the sequence's own tokens at P..):
 *   prompt: their embeddings are the learned table [P, H] (PEFT prepends the prompt to
 *           inputs_embeds: scaled where the model scales those, not where the embedding module
 *           itself scales, as Gemma's does in transformers 5);
 *   prefix: their rows are dummies whose keys and values every layer replaces, after RoPE, with
 *           the learned prefix (table [P, layers·2·kvW]: layer l's keys at column 2l·kvW, values at
 *           (2l+1)·kvW), so each real query sees the P prefix positions first, exactly as
 *           transformers attends over PEFT's past_key_values (causal, windows, soft-cap, ALiBi alike).
 * A dummy row's own outputs reach nothing the loss reads (its keys and values are replaced), so
 * backward takes the prefix's gradient from dK / dV and zeroes those rows before they go on.
 */

import type { Recorder } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { recordCopyRows, recordFill, recordScale } from '../kernels/elementwise';
import type { RunnerState } from './runner-buffers';

/** What the runner needs of a prompt or prefix: the table, and its gradient when training. */
export interface RunnerVirtual {
  kind: 'prompt' | 'prefix';
  /** Virtual tokens at the head of every sequence. */
  P: number;
  table: Tensor;
  grad: Tensor | null;
}

/** Rows p < P of each of B sequences of S rows: table -> x (write) or x -> grad (accumulating). */
function eachSequence(B: number, fn: (b: number) => void): void {
  for (let b = 0; b < B; b++) fn(b);
}

/**
 * The factor on a prompt's rows: the model's embedding scale where the model scales inputs_embeds
 * (Granite's embedding_multiplier), 1 where transformers scales inside the embedding module
 * (Gemma's, whose embedScaleInWeightDtype marks it): PEFT's prompt bypasses that module.
 */
export function promptScale(c: { embedScale: number; embedScaleInWeightDtype: boolean }): number {
  return c.embedScaleInWeightDtype ? 1 : c.embedScale;
}

/** prompt: the virtual rows of the embedding output `x` [T, H] become table·promptScale. */
export function recordPromptRows(st: RunnerState, rec: Recorder, v: RunnerVirtual, x: Tensor, B: number, S: number) {
  const H = st.model.config.hiddenSize;
  const scale = promptScale(st.model.config);
  let src = v.table;
  if (scale !== 1) {
    src = st.ws.get('virtual.scaled', [v.P, H]);
    recordScale(st.gpu, rec, { x: v.table, out: src, n: v.P * H, scale });
  }
  eachSequence(B, (b) => recordCopyRows(st.gpu, rec, { src, dst: x, rows: v.P, width: H, dstRow0: b * S }));
}

/** prompt: the table's gradient from dL/d(embedding output) `d` [T, H]. */
export function recordPromptGrad(
  st: RunnerState,
  rec: Recorder,
  v: RunnerVirtual,
  d: Tensor,
  B: number,
  S: number,
  accumulate: boolean,
) {
  const H = st.model.config.hiddenSize;
  const scale = promptScale(st.model.config);
  let src = d;
  if (scale !== 1) {
    src = st.ws.get('virtual.dscaled', [B * S, H]);
    recordScale(st.gpu, rec, { x: d, out: src, n: B * S * H, scale });
  }
  eachSequence(B, (b) =>
    recordCopyRows(st.gpu, rec, {
      src,
      dst: v.grad!,
      rows: v.P,
      width: H,
      srcRow0: b * S,
      accumulate: accumulate || b > 0,
    }),
  );
}

function prefixColumns(st: RunnerState, l: number) {
  const c = st.model.config;
  const kvW = c.numKvHeads * c.headDim;
  return { kvW, stride: 2 * c.numLayers * kvW, k0: 2 * l * kvW, v0: (2 * l + 1) * kvW };
}

/** prefix: layer l's keys k and values v [T, kvW] get the prefix in their virtual rows. */
export function recordPrefixRows(
  st: RunnerState,
  rec: Recorder,
  v: RunnerVirtual,
  l: number,
  k: Tensor,
  val: Tensor,
  B: number,
  S: number,
) {
  const { kvW, stride, k0, v0 } = prefixColumns(st, l);
  const copy = (dst: Tensor, col0: number, b: number) =>
    recordCopyRows(st.gpu, rec, {
      src: v.table,
      dst,
      rows: v.P,
      width: kvW,
      srcStride: stride,
      srcCol0: col0,
      dstRow0: b * S,
    });
  eachSequence(B, (b) => {
    copy(k, k0, b);
    copy(val, v0, b);
  });
}

/** prefix: layer l's part of the gradient from dK, dV [T, kvW], whose virtual rows are then zeroed. */
export function recordPrefixGrad(
  st: RunnerState,
  rec: Recorder,
  v: RunnerVirtual,
  l: number,
  dk: Tensor,
  dv: Tensor,
  B: number,
  S: number,
  accumulate: boolean,
) {
  const { kvW, stride, k0, v0 } = prefixColumns(st, l);
  const take = (src: Tensor, col0: number, b: number) => {
    recordCopyRows(st.gpu, rec, {
      src,
      dst: v.grad!,
      rows: v.P,
      width: kvW,
      srcRow0: b * S,
      dstStride: stride,
      dstCol0: col0,
      accumulate: accumulate || b > 0,
    });
    recordFill(st.gpu, rec, { out: src, n: v.P * kvW, value: 0, offset: b * S * kvW });
  };
  eachSequence(B, (b) => {
    take(dk, k0, b);
    take(dv, v0, b);
  });
}
