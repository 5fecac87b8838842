/**
 * Float64 reference of one linear module with its adapter (LoRA A/B with dropout, or an (IA)³
 * vector), forward and backward, on the weights of a RefWeights; model-layer.ts calls it for
 * every projection of a layer, model.ts for the modules outside the layers.
 */

import type { ModelConfig } from '../model/config';
import type { LinearModule } from '../model/registry';
import { type Ia3Ref, type LoraParamsRef, linearBackwardRef, linearForwardRef } from './linear';

export interface RefWeights {
  config: ModelConfig;
  arch: import('../model/registry').ArchWeights;
  /** Every referenced tensor, widened to float64. */
  get(key: string): Float64Array;
}

export interface RefLoraModule extends LoraParamsRef {
  /** Dropout seed used for this module in this micro-step (same derivation as the runner). */
  seed: number;
}

/** A module's (IA)³ vector instead of LoRA. */
export interface RefIa3Module {
  ia3: Ia3Ref;
}

/** The adapter by module path: LoRA A/B or an (IA)³ vector per module. */
export type RefLora = Map<string, RefLoraModule | RefIa3Module>;

/** The LoRA and the (IA)³ parts of module `path`'s adapter entry. */
function adapterOf(lora: RefLora, path: string): { l: RefLoraModule | null; ia3: Ia3Ref | null } {
  const e = lora.get(path);
  if (!e) return { l: null, ia3: null };
  return 'ia3' in e ? { l: null, ia3: e.ia3 } : { l: e, ia3: null };
}

/** y = x·Wᵀ + b + LoRA, into a new [T, outF] array. */
export function linearFwd(w: RefWeights, m: LinearModule, lora: RefLora, x: Float64Array, T: number): Float64Array {
  const y = new Float64Array(T * m.outF);
  const { l, ia3 } = adapterOf(lora, m.path);
  linearForwardRef({
    x,
    M: T,
    lin: frozen(w, m),
    lora: l,
    ia3,
    seed: l?.seed ?? 0,
    y,
    accumulate: false,
  });
  return y;
}

function frozen(w: RefWeights, m: LinearModule) {
  return {
    w: w.get(m.weightKey),
    bias: m.biasKey ? w.get(m.biasKey) : null,
    inF: m.inF,
    outF: m.outF,
    transposed: m.transposed,
  };
}

export interface RefGrads {
  dA: Map<string, Float64Array>;
  dB: Map<string, Float64Array>;
  /** (IA)³ vector gradients. */
  dl: Map<string, Float64Array>;
  /** Prompt or prefix tuning: the gradient of the virtual-token table (shaped like RefVirtual.table). */
  dVirtual?: Float64Array;
}

/** dx (a new [T, inF] array) of the linear, recording the LoRA gradients of `m` in `grads`. */
export function linearBwd(
  w: RefWeights,
  m: LinearModule,
  lora: RefLora,
  grads: RefGrads,
  x: Float64Array,
  dy: Float64Array,
  T: number,
): Float64Array {
  const { l, ia3 } = adapterOf(lora, m.path);
  const dx = new Float64Array(T * m.inF);
  const dA = l ? new Float64Array(l.r * m.inF) : undefined;
  const dB = l ? new Float64Array(m.outF * l.r) : undefined;
  const dl = ia3 ? new Float64Array(ia3.l.length) : undefined;
  linearBackwardRef({
    dy,
    x,
    M: T,
    lin: frozen(w, m),
    lora: l,
    ia3,
    dl,
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
  if (dl) grads.dl.set(m.path, dl);
  return dx;
}
