/**
 * The mixture-of-experts MLP a ModelRunner records in place of the dense one (config.moe, Mixtral),
 * forward and backward, as src/reference/model-moe.ts:
 *
 *   logits = router(m_in) [T, E];  w = renormalised top-k softmax (kernels/moe.ts recordRouter)
 *   out (+)= Σ_e w[:, e] · down_e(act(gate_e(m_in)) · up_e(m_in))
 *
 * Every expert runs on every token, its output weighted by w (0 where the router did not choose
 * it): the same sum transformers computes by gathering each expert's tokens, at E / k times the
 * MLP's arithmetic, with plain linears (so LoRA on the experts and the router is the ordinary
 * LoRA linear). Backward: dL/dw[t, e] = dOut[t]·o_e[t] through the router's backward into the
 * router linear; each expert's output gradient is w[:, e]·dOut.
 */

import type { Recorder } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { recordSwiGlu, recordSwiGluBackward } from '../kernels/activation';
import { recordRouter, recordRouterBackward, recordRowDot, recordScaleRows } from '../kernels/moe';
import type { LinearModule } from './registry';
import type { RunnerState } from './runner-buffers';
import { type ForwardArgs, recordLinear } from './runner-linear';

/** A layer's router and experts' modules. */
function moeModules(st: RunnerState, l: number) {
  const W = st.model.arch.layers[l]!;
  const E = st.model.config.moe!.numExperts;
  const find = (role: string, e: number) => W.linears.find((m) => m.role === role && m.expert === e)!;
  return {
    router: W.linears.find((m) => m.role === 'router')!,
    experts: Array.from({ length: E }, (_, e) => ({ gate: find('gate', e), up: find('up', e), down: find('down', e) })),
  };
}

/** out (+)= the MoE MLP of `mIn` for layer l (accumulate: add into `out`, else overwrite it). */
export function recordMoe(
  st: RunnerState,
  rec: Recorder,
  l: number,
  f: ForwardArgs,
  T: number,
  mIn: Tensor,
  out: Tensor,
  accumulate: boolean,
): void {
  const c = st.model.config;
  const { numExperts: E, topK: K } = c.moe!;
  const L = st.acts[l]!;
  const M = L.moe!;
  const mods = moeModules(st, l);
  const linear = (m: LinearModule, x: Tensor, y: Tensor) => recordLinear(st, rec, L.s, m, x, y, T, f);
  linear(mods.router, mIn, M.logits);
  recordRouter(st.gpu, rec, { logits: M.logits, w: M.w, T, E, K });
  mods.experts.forEach((x, e) => {
    const A = M.experts[e]!;
    linear(x.gate, mIn, A.g);
    linear(x.up, mIn, A.u);
    recordSwiGlu(st.gpu, rec, { g: A.g, u: A.u, h: A.a, n: T * c.intermediateSize, act: c.mlp.act });
    linear(x.down, A.a, A.o);
    recordScaleRows(st.gpu, rec, {
      w: M.w,
      x: A.o,
      out,
      T,
      H: c.hiddenSize,
      E,
      expert: e,
      accumulate: accumulate || e > 0,
    });
  });
}

/** The linear backward runner-backward.ts records with (dx accumulate flag last). */
export type LinearBack = (m: LinearModule, x: Tensor, dy: Tensor, dx: Tensor | null, accumulateDx: boolean) => void;

/** dm = dL/d(m_in) of the MoE MLP from dOut = dL/d(its output) (dm null: LoRA gradients only). */
export function recordMoeBackward(
  st: RunnerState,
  rec: Recorder,
  l: number,
  T: number,
  mIn: Tensor,
  dOut: Tensor,
  dm: Tensor | null,
  linearBack: LinearBack,
): void {
  const gpu = st.gpu;
  const c = st.model.config;
  const E = c.moe!.numExperts;
  const H = c.hiddenSize;
  const I = c.intermediateSize;
  const maxT = st.opts.maxTokens;
  const M = st.acts[l]!.moe!;
  const mods = moeModules(st, l);
  const gw = st.ws.get('moe.gw', [maxT, E]);
  const dO = st.ws.get('moe.dO', [maxT, H]);
  const da = st.ws.get('da', [maxT, I]);
  const dg = st.ws.get('dg', [maxT, I]);
  const du = st.ws.get('du', [maxT, I]);
  mods.experts.forEach((x, e) => {
    const A = M.experts[e]!;
    recordRowDot(gpu, rec, { a: dOut, b: A.o, g: gw, T, H, E, expert: e });
    recordScaleRows(gpu, rec, { w: M.w, x: dOut, out: dO, T, H, E, expert: e, accumulate: false });
    linearBack(x.down, A.a, dO, da, false);
    recordSwiGluBackward(gpu, rec, { dh: da, g: A.g, u: A.u, dg, du, n: T * I, act: c.mlp.act });
    linearBack(x.gate, mIn, dg, dm, e > 0);
    linearBack(x.up, mIn, du, dm, true);
  });
  const dl = st.ws.get('moe.dl', [maxT, E]);
  recordRouterBackward(gpu, rec, { w: M.w, g: gw, dl, T, E });
  linearBack(mods.router, mIn, dl, dm, true);
}
