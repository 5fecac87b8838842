/**
 * Float64 reference of a mixture-of-experts MLP (transformers' MixtralSparseMoeBlock), forward and
 * backward, for src/reference/model-layer.ts:
 *
 *   logits = router(m_in);  w = renormalised top-k softmax of logits   (src/reference/moe.ts)
 *   out = Σ_e w[:, e] · down_e(act(gate_e(m_in)) · up_e(m_in))
 *
 * Every expert is computed on every token (w is 0 where the router did not choose it), which is
 * the same sum as transformers' per-expert token gather. Backward: dL/dw[t, e] = dOut[t]·o_e[t],
 * through the router to m_in, and each expert's output gradient is w[:, e]·dOut.
 */

import type { ModelConfig } from '../model/config';
import type { LayerWeights, LinearModule } from '../model/registry';
import { swiGluBackwardRef, swiGluRef } from './activation';
import { routerBackwardRef, routerRef } from './moe';

export interface MoeCache {
  w: Float64Array; // [T, E]
  experts: { g: Float64Array; u: Float64Array; a: Float64Array; o: Float64Array }[];
}

type Fwd = (m: LinearModule, x: Float64Array) => Float64Array;
type Bwd = (m: LinearModule, x: Float64Array, dy: Float64Array) => Float64Array;

/** The router and each expert's gate / up / down modules of a layer. */
export function moeModules(W: LayerWeights, E: number) {
  const find = (role: string, e: number) => W.linears.find((m) => m.role === role && m.expert === e)!;
  return {
    router: W.linears.find((m) => m.role === 'router')!,
    experts: Array.from({ length: E }, (_, e) => ({ gate: find('gate', e), up: find('up', e), down: find('down', e) })),
  };
}

export function moeForwardRef(
  c: ModelConfig,
  W: LayerWeights,
  lin: Fwd,
  mIn: Float64Array,
  T: number,
): { out: Float64Array; cache: MoeCache } {
  const { numExperts: E, topK } = c.moe!;
  const H = c.hiddenSize;
  const mods = moeModules(W, E);
  const w = routerRef(lin(mods.router, mIn), T, E, topK);
  const out = new Float64Array(T * H);
  const experts = mods.experts.map((x, e) => {
    const g = lin(x.gate, mIn);
    const u = lin(x.up, mIn);
    const a = swiGluRef(g, u, c.mlp.act);
    const o = lin(x.down, a);
    for (let t = 0; t < T; t++) for (let j = 0; j < H; j++) out[t * H + j]! += w[t * E + e]! * o[t * H + j]!;
    return { g, u, a, o };
  });
  return { out, cache: { w, experts } };
}

/** dL/d(m_in) from dL/d(out); the LoRA gradients of the router and the experts go through `linB`. */
export function moeBackwardRef(
  c: ModelConfig,
  W: LayerWeights,
  linB: Bwd,
  L: MoeCache,
  mIn: Float64Array,
  dOut: Float64Array,
  T: number,
): Float64Array {
  const E = c.moe!.numExperts;
  const H = c.hiddenSize;
  const mods = moeModules(W, E);
  const gw = new Float64Array(T * E);
  const dmIn = new Float64Array(mIn.length);
  const acc = (d: Float64Array) => d.forEach((v, i) => (dmIn[i]! += v));
  mods.experts.forEach((x, e) => {
    const { g, u, a, o } = L.experts[e]!;
    const dO = new Float64Array(T * H);
    for (let t = 0; t < T; t++) {
      let s = 0;
      for (let j = 0; j < H; j++) {
        s += dOut[t * H + j]! * o[t * H + j]!;
        dO[t * H + j] = L.w[t * E + e]! * dOut[t * H + j]!;
      }
      gw[t * E + e] = s;
    }
    const { dg, du } = swiGluBackwardRef(linB(x.down, a, dO), g, u, c.mlp.act);
    acc(linB(x.gate, mIn, dg));
    acc(linB(x.up, mIn, du));
  });
  acc(linB(mods.router, mIn, routerBackwardRef(L.w, gw, T, E)));
  return dmIn;
}
