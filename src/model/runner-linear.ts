/**
 * One linear module of the runner (a frozen weight with its LoRA adapter, fused in one kernel) and
 * what every step passes down to it: ForwardArgs, the adapter (RunnerLora), the dropout seed per
 * module. runner-forward.ts, runner-backward.ts and runner-moe.ts all record linears through here.
 */

import type { Recorder } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { type Ia3Params, type LoraParams, recordLinearForward } from '../kernels/linear';
import type { LinearModule } from './registry';
import { type RunnerState, doraScratch, ia3Scratch, loraScratch } from './runner-buffers';
import type { RunnerVirtual } from './runner-virtual';

/**
 * What the runner needs of a LoRA adapter, by module path: the parameters the fused linear kernels
 * take and, when training, the gradient buffers. GpuLora (src/lora/gpu-lora.ts) implements it; the
 * model layer names only this shape so it never imports from lora/.
 */
export interface RunnerLora {
  get(path: string): LoraParams | null;
  slot(path: string): { dA: Tensor | null; dB: Tensor | null; dM?: Tensor | null } | null;
  /** Module `path`'s (IA)³ vector and, when training, its gradient (null: none). */
  ia3?(path: string): { params: Ia3Params; dl: Tensor | null } | null;
  /** Prompt or prefix tuning's table (null: none); the caller lays out P virtual rows per sequence. */
  virtual?(): RunnerVirtual | null;
}

export interface ForwardArgs {
  B: number;
  S: number;
  lora: RunnerLora | null;
  /** Dropout seed for this micro-step (train mode only; dropout is off in infer mode). */
  seed?: number;
  /** Apply LoRA dropout (training). */
  dropout?: boolean;
  /** Packed rows (train / eval): attention sees only each token's own example (setBatch's keyStart). */
  packed?: boolean;
}

/** The LoRA dropout seed of module `moduleIndex` (index in GpuModel.linears) in micro-step `base`. */
export function dropoutSeed(base: number, moduleIndex: number): number {
  return (Math.imul(base + 1, 0x9e3779b1) + Math.imul(moduleIndex + 1, 0x85ebca6b)) >>> 0;
}

/** The LoRA parameters of module `m` (none when it has no adapter), with dropout off unless asked. */
export function loraFor(lora: RunnerLora | null, m: LinearModule, dropout: boolean): LoraParams | null {
  const p = lora?.get(m.path) ?? null;
  if (!p) return null;
  return dropout ? p : { ...p, dropout: 0 };
}

/** y (+)= x W^T (+ b) + LoRA(x) for module `m`, saving LoRA's S in `s` (the layer set's map). */
export function recordLinear(
  st: RunnerState,
  rec: Recorder,
  s: Map<string, Tensor>,
  m: LinearModule,
  x: Tensor,
  y: Tensor,
  T: number,
  f: ForwardArgs,
  accumulate = false,
): void {
  const lora = loraFor(f.lora, m, !!f.dropout);
  const ia3 = f.lora?.ia3?.(m.path)?.params ?? null;
  recordLinearForward(st.gpu, rec, {
    x,
    M: T,
    lin: st.model.frozen(m),
    lora,
    ia3,
    ia3Save: ia3 ? ia3Scratch(st, s, m, ia3.input) : undefined,
    seed: dropoutSeed(f.seed ?? 0, st.model.linears.indexOf(m)),
    y,
    s: lora ? loraScratch(st, s, m.path, lora.r) : undefined,
    z: lora?.dora ? doraScratch(st, s, m.path, m.outF) : undefined,
    ws: st.ws,
    accumulate,
  });
}
