/**
 * A LoRA adapter on the GPU: for each targeted linear module, A [r, in] and B [out, r] (f32), their
 * gradients, and optimizer state. The base model is untouched; the same GpuModel serves any number
 * of adapters (compare runs base and adapters over one copy of the weights).
 */

import type { Gpu } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import type { LoraParams } from '../kernels/linear';
import type { LinearModule } from '../model/registry';
import type { LoraModuleWeights } from './init';

/** A and B of one module as plain arrays (the same shape init, PEFT import and checkpoints use). */
export type LoraModuleArrays = LoraModuleWeights;

export interface LoraScaleInfo {
  r: number;
  scale: number;
  dropout: number;
}

export interface LoraSlot {
  module: LinearModule;
  params: LoraParams;
  /** Gradients, allocated by enableTraining(). */
  dA: Tensor | null;
  dB: Tensor | null;
  /** Optimizer moments for A then for B (AdamW: [mA, vA, mB, vB]), allocated by enableTraining(). */
  stateA: Tensor[];
  stateB: Tensor[];
}

export interface TrainableTensor {
  name: string;
  param: Tensor;
  grad: Tensor;
  state: Tensor[];
  n: number;
}

export class GpuLora {
  readonly slots = new Map<string, LoraSlot>();

  private constructor(readonly gpu: Gpu) {}

  /**
   * Uploads A and B for each module. `scaleOf(module)` gives r / scale / dropout, computed once by
   * the LoRA config (src/lora/config.ts) so the scale has one source of truth.
   */
  static fromArrays(
    gpu: Gpu,
    modules: LinearModule[],
    arrays: LoraModuleArrays[],
    scaleOf: (m: LinearModule) => LoraScaleInfo,
  ): GpuLora {
    const byPath = new Map(modules.map((m) => [m.path, m]));
    const lora = new GpuLora(gpu);
    for (const arr of arrays) {
      const module = byPath.get(arr.path);
      if (!module) throw new GpuError(`LoRA module "${arr.path}" does not exist in this model.`);
      const { r, scale, dropout } = scaleOf(module);
      if (arr.r !== r || arr.inF !== module.inF || arr.outF !== module.outF) {
        throw new GpuError(
          `LoRA module "${arr.path}": expected A [${r}, ${module.inF}] and B [${module.outF}, ${r}], ` +
            `got A [${arr.r}, ${arr.inF}] and B [${arr.outF}, ${arr.r}].`,
        );
      }
      const a = gpu.tensor(`${arr.path}.lora_A`, [r, module.inF], 'f32', 'lora', arr.a);
      const b = gpu.tensor(`${arr.path}.lora_B`, [module.outF, r], 'f32', 'lora', arr.b);
      lora.slots.set(arr.path, {
        module,
        params: { a, b, r, scale, dropout },
        dA: null,
        dB: null,
        stateA: [],
        stateB: [],
      });
    }
    return lora;
  }

  get(path: string): LoraParams | null {
    return this.slots.get(path)?.params ?? null;
  }

  slot(path: string): LoraSlot | null {
    return this.slots.get(path) ?? null;
  }

  /** Allocates gradients and `moments` zeroed optimizer tensors per parameter (2 for AdamW, 0 for SGD). */
  enableTraining(moments: number): void {
    const zeroed = (label: string, like: Tensor) => {
      const t = this.gpu.tensor(label, like.shape, 'f32', 'optimizer');
      this.gpu.write(t, new Float32Array(t.buffer.size / 4));
      return t;
    };
    for (const [path, s] of this.slots) {
      if (!s.dA) s.dA = this.gpu.tensor(`${path}.lora_A.grad`, s.params.a.shape, 'f32', 'lora');
      if (!s.dB) s.dB = this.gpu.tensor(`${path}.lora_B.grad`, s.params.b.shape, 'f32', 'lora');
      while (s.stateA.length < moments) s.stateA.push(zeroed(`${path}.lora_A.m${s.stateA.length}`, s.params.a));
      while (s.stateB.length < moments) s.stateB.push(zeroed(`${path}.lora_B.m${s.stateB.length}`, s.params.b));
    }
  }

  /** Number of trainable parameters. */
  get parameterCount(): number {
    let n = 0;
    for (const s of this.slots.values()) n += s.params.r * (s.module.inF + s.module.outF);
    return n;
  }

  /** Every trainable tensor with its gradient and optimizer state, in a fixed order. */
  trainables(): TrainableTensor[] {
    const out: TrainableTensor[] = [];
    for (const [path, s] of this.slots) {
      if (!s.dA || !s.dB) throw new GpuError(`LoRA module "${path}" has no gradients; call enableTraining() first.`);
      out.push({
        name: `${path}.lora_A`,
        param: s.params.a,
        grad: s.dA,
        state: s.stateA,
        n: s.params.r * s.module.inF,
      });
      out.push({
        name: `${path}.lora_B`,
        param: s.params.b,
        grad: s.dB,
        state: s.stateB,
        n: s.params.r * s.module.outF,
      });
    }
    return out;
  }

  /** Reads A and B back (for export and checkpoints). */
  async toArrays(): Promise<LoraModuleArrays[]> {
    const out: LoraModuleArrays[] = [];
    for (const [path, s] of this.slots) {
      out.push({
        path,
        r: s.params.r,
        inF: s.module.inF,
        outF: s.module.outF,
        a: await this.gpu.read(s.params.a),
        b: await this.gpu.read(s.params.b),
      });
    }
    return out;
  }

  /** Reads optimizer moments back in trainables() order (for checkpoints). */
  async stateArrays(): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    for (const t of this.trainables()) for (const s of t.state) out.push(await this.gpu.read(s));
    return out;
  }

  loadState(arrays: Float32Array[]): void {
    let i = 0;
    for (const t of this.trainables()) {
      for (const s of t.state) {
        const arr = arrays[i++];
        if (!arr) throw new GpuError('The checkpoint holds fewer optimizer tensors than the adapter needs.');
        this.gpu.write(s, arr);
      }
    }
  }

  dispose(): void {
    for (const s of this.slots.values()) {
      this.gpu.free(s.params.a);
      this.gpu.free(s.params.b);
      this.gpu.free(s.dA);
      this.gpu.free(s.dB);
      for (const t of [...s.stateA, ...s.stateB]) this.gpu.free(t);
    }
    this.slots.clear();
  }
}
