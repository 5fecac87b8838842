/**
 * An adapter on the GPU: for each targeted linear module, LoRA's A [r, in] and B [out, r] (f32) (with
 * DoRA also the magnitude m [out], PEFT's lora_magnitude_vector, and ||W_o||²), or an (IA)³ vector l
 * ([in] for a feed-forward module, else [out]), their gradients, and optimizer state. The base model is untouched; the same GpuModel serves any number
 * of adapters (compare runs base and adapters over one copy of the weights).
 */

import type { Gpu, Recorder } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import type { Workspace } from '../gpu/workspace';
import type { DoraParams } from '../kernels/dora';
import type { Ia3Params, LoraParams } from '../kernels/linear';
import type { LinearModule } from '../model/registry';
import type { RunnerVirtual } from '../model/runner-virtual';
import type { Ia3VectorArrays } from './ia3';
import type { LoraModuleWeights } from './init';
import {
  PREFIX_MLP_PARTS,
  type PrefixMlpArrays,
  type PrefixMlpDims,
  type PrefixMlpSaved,
  type PrefixMlpTensors,
  prefixMlpSizes,
  prefixMlpTable,
  recordPrefixMlpBackward,
  recordPrefixMlpForward,
} from './prefix-mlp';

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
  /** DoRA: the magnitude's gradient. */
  dM: Tensor | null;
  /** Optimizer moments for A then for B (AdamW: [mA, vA, mB, vB]), allocated by enableTraining(). */
  stateA: Tensor[];
  stateB: Tensor[];
  stateM: Tensor[];
}

interface Ia3Slot {
  module: LinearModule;
  params: Ia3Params;
  dl: Tensor | null;
  state: Tensor[];
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
  /** (IA)³ vectors by module path (an adapter has LoRA slots or these). */
  readonly ia3Slots = new Map<string, Ia3Slot>();
  /** Prompt or prefix tuning's table (an adapter of those methods has nothing else). */
  virtualSlot: (RunnerVirtual & { state: Tensor[] }) | null = null;
  /**
   * A prefix trained through PEFT's projection MLP (src/lora/prefix-mlp.ts): its five parameters
   * are the trainables, and virtualSlot.table is their output, recorded on the GPU by the trainer
   * (recordPrefixTable) after every update. `saved` holds the forward's Z and H for the backward
   * (allocated by enableTraining()).
   */
  prefixMlp: {
    dims: PrefixMlpDims;
    parts: { key: keyof PrefixMlpArrays; name: string; param: Tensor; grad: Tensor | null; state: Tensor[] }[];
    saved: PrefixMlpSaved | null;
  } | null = null;

  private constructor(readonly gpu: Gpu) {}

  /**
   * Uploads A and B for each module. `scaleOf(module)` gives r / scale / dropout, computed once by
   * the LoRA config (src/lora/config.ts) so the scale has one source of truth. A module with a
   * magnitude `m` is DoRA: `weightNormsSq` must hold its ||W_o||² (src/lora/dora.ts).
   */
  static fromArrays(
    gpu: Gpu,
    modules: LinearModule[],
    arrays: LoraModuleArrays[],
    scaleOf: (m: LinearModule) => LoraScaleInfo,
    weightNormsSq?: ReadonlyMap<string, Float32Array>,
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
      let dora: DoraParams | null = null;
      if (arr.m) {
        const wn2 = weightNormsSq?.get(arr.path);
        if (arr.m.length !== module.outF || !wn2 || wn2.length !== module.outF) {
          throw new GpuError(
            `DoRA module "${arr.path}": expected a magnitude and ||W||² of ${module.outF} values, got ${arr.m.length} and ${wn2?.length ?? 'none'}.`,
          );
        }
        dora = {
          m: gpu.tensor(`${arr.path}.lora_magnitude_vector`, [module.outF], 'f32', 'lora', arr.m),
          wn2: gpu.tensor(`${arr.path}.weight_norm_sq`, [module.outF], 'f32', 'lora', wn2),
          gi: gpu.tensor(`${arr.path}.dora_scale`, [2, module.outF], 'f32', 'lora'),
        };
      }
      lora.slots.set(arr.path, {
        module,
        params: { a, b, r, scale, dropout, dora },
        dA: null,
        dB: null,
        dM: null,
        stateA: [],
        stateB: [],
        stateM: [],
      });
    }
    return lora;
  }

  /** Uploads an (IA)³ adapter: one vector per module. */
  static fromIa3(gpu: Gpu, modules: LinearModule[], vectors: Ia3VectorArrays[]): GpuLora {
    const byPath = new Map(modules.map((m) => [m.path, m]));
    const lora = new GpuLora(gpu);
    for (const v of vectors) {
      const module = byPath.get(v.path);
      if (!module) throw new GpuError(`(IA)³ module "${v.path}" does not exist in this model.`);
      const n = v.input ? module.inF : module.outF;
      if (v.l.length !== n) {
        throw new GpuError(
          `(IA)³ module "${v.path}": a ${v.input ? 'feed-forward (input)' : 'output'} vector has ${n} values, got ${v.l.length}.`,
        );
      }
      const l = gpu.tensor(`${v.path}.ia3_l`, [n], 'f32', 'lora', v.l);
      lora.ia3Slots.set(v.path, { module, params: { l, input: v.input }, dl: null, state: [] });
    }
    return lora;
  }

  /**
   * Uploads a prompt (`table` [P, hidden]) or a prefix (`table` [P, layers·2·kvW], PEFT's
   * prompt_embeddings layout).
   */
  static fromVirtual(gpu: Gpu, kind: 'prompt' | 'prefix', P: number, table: Float32Array): GpuLora {
    if (!Number.isInteger(P) || P < 1 || table.length % P !== 0) {
      throw new GpuError(`A ${kind} of ${P} virtual tokens cannot hold ${table.length} values.`);
    }
    const lora = new GpuLora(gpu);
    const t = gpu.tensor(`${kind}_embeddings`, [P, table.length / P], 'f32', 'lora', table);
    lora.virtualSlot = { kind, P, table: t, grad: null, state: [] };
    return lora;
  }

  /** Uploads a prefix trained through the projection MLP: its parameters, and the table they make. */
  static fromPrefixMlp(gpu: Gpu, dims: PrefixMlpDims, mlp: PrefixMlpArrays): GpuLora {
    const sizes = prefixMlpSizes(dims);
    for (const { key } of PREFIX_MLP_PARTS) {
      if (mlp[key].length !== sizes[key]) {
        throw new GpuError(`The prefix MLP's ${key} holds ${mlp[key].length} values; its shape needs ${sizes[key]}.`);
      }
    }
    const lora = GpuLora.fromVirtual(gpu, 'prefix', dims.P, prefixMlpTable(dims, mlp));
    lora.prefixMlp = {
      dims,
      parts: PREFIX_MLP_PARTS.map(({ key, name }) => ({
        key,
        name,
        param: gpu.tensor(name, [sizes[key]], 'f32', 'lora', mlp[key]),
        grad: null,
        state: [],
      })),
      saved: null,
    };
    return lora;
  }

  /** The projection MLP's parameters read back. */
  async prefixMlpArrays(): Promise<PrefixMlpArrays | null> {
    const p = this.prefixMlp;
    if (!p) return null;
    const out: Partial<PrefixMlpArrays> = {};
    for (const part of p.parts) out[part.key] = await this.gpu.read(part.param);
    return out as PrefixMlpArrays;
  }

  /** Records the table from the MLP's current parameters (a no-op without a projection MLP). */
  recordPrefixTable(rec: Recorder): void {
    const p = this.prefixMlp;
    const v = this.virtualSlot;
    if (!p || !v) return;
    if (!p.saved)
      throw new GpuError("The prefix MLP's forward has nowhere to keep Z and H; call enableTraining() first.");
    recordPrefixMlpForward(this.gpu, rec, {
      dims: p.dims,
      params: this.prefixMlpTensors('param'),
      saved: p.saved,
      table: v.table,
    });
  }

  /**
   * Records the table's gradient through the MLP into its five parameters' gradients (after the
   * backward; Z and H from the last recordPrefixTable). A no-op without a projection MLP.
   */
  recordPrefixGrads(rec: Recorder, ws: Workspace): void {
    const p = this.prefixMlp;
    if (!p) return;
    const v = this.virtualSlot;
    if (!v?.grad || !p.saved)
      throw new GpuError('The prefix has no gradient or no saved activations; call enableTraining() first.');
    recordPrefixMlpBackward(this.gpu, rec, {
      dims: p.dims,
      params: this.prefixMlpTensors('param'),
      saved: p.saved,
      dTable: v.grad,
      grads: this.prefixMlpTensors('grad'),
      ws,
    });
  }

  private prefixMlpTensors(which: 'param' | 'grad'): PrefixMlpTensors {
    const out: Partial<PrefixMlpTensors> = {};
    for (const part of this.prefixMlp?.parts ?? []) {
      const t = part[which];
      if (!t) throw new GpuError(`${part.name} has no gradient; call enableTraining() first.`);
      out[part.key] = t;
    }
    return out as PrefixMlpTensors;
  }

  virtual(): RunnerVirtual | null {
    return this.virtualSlot;
  }

  ia3(path: string): { params: Ia3Params; dl: Tensor | null } | null {
    return this.ia3Slots.get(path) ?? null;
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
      const m = s.params.dora?.m;
      if (!m) continue;
      if (!s.dM) s.dM = this.gpu.tensor(`${path}.lora_magnitude_vector.grad`, m.shape, 'f32', 'lora');
      while (s.stateM.length < moments) s.stateM.push(zeroed(`${path}.lora_magnitude_vector.m${s.stateM.length}`, m));
    }
    for (const [path, s] of this.ia3Slots) {
      if (!s.dl) s.dl = this.gpu.tensor(`${path}.ia3_l.grad`, s.params.l.shape, 'f32', 'lora');
      while (s.state.length < moments) s.state.push(zeroed(`${path}.ia3_l.m${s.state.length}`, s.params.l));
    }
    const v = this.virtualSlot;
    if (v) {
      if (!v.grad) v.grad = this.gpu.tensor(`${v.kind}_embeddings.grad`, v.table.shape, 'f32', 'lora');
      if (!this.prefixMlp)
        while (v.state.length < moments) v.state.push(zeroed(`${v.kind}_embeddings.m${v.state.length}`, v.table));
    }
    const mlp = this.prefixMlp;
    for (const part of mlp?.parts ?? []) {
      if (!part.grad) part.grad = this.gpu.tensor(`${part.name}.grad`, part.param.shape, 'f32', 'lora');
      while (part.state.length < moments) part.state.push(zeroed(`${part.name}.m${part.state.length}`, part.param));
    }
    if (mlp && !mlp.saved) {
      const shape = [mlp.dims.P, mlp.dims.E];
      mlp.saved = {
        z: this.gpu.tensor('prefix_encoder.z', shape, 'f32', 'activations'),
        h: this.gpu.tensor('prefix_encoder.h', shape, 'f32', 'activations'),
      };
    }
  }

  /** Number of trainable parameters. */
  get parameterCount(): number {
    let n = 0;
    for (const s of this.slots.values())
      n += s.params.r * (s.module.inF + s.module.outF) + (s.params.dora ? s.module.outF : 0);
    for (const s of this.ia3Slots.values()) n += s.params.l.shape[0]!;
    if (this.prefixMlp) for (const part of this.prefixMlp.parts) n += part.param.shape[0]!;
    else if (this.virtualSlot) n += this.virtualSlot.table.shape[0]! * this.virtualSlot.table.shape[1]!;
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
      if (s.params.dora) {
        if (!s.dM) throw new GpuError(`DoRA module "${path}" has no gradients; call enableTraining() first.`);
        out.push({
          name: `${path}.lora_magnitude_vector`,
          param: s.params.dora.m,
          grad: s.dM,
          state: s.stateM,
          n: s.module.outF,
        });
      }
    }
    for (const [path, s] of this.ia3Slots) {
      if (!s.dl) throw new GpuError(`(IA)³ module "${path}" has no gradient; call enableTraining() first.`);
      out.push({ name: `${path}.ia3_l`, param: s.params.l, grad: s.dl, state: s.state, n: s.params.l.shape[0]! });
    }
    const v = this.virtualSlot;
    if (this.prefixMlp) {
      for (const part of this.prefixMlp.parts) {
        if (!part.grad) throw new GpuError(`${part.name} has no gradient; call enableTraining() first.`);
        out.push({ name: part.name, param: part.param, grad: part.grad, state: part.state, n: part.param.shape[0]! });
      }
    } else if (v) {
      if (!v.grad) throw new GpuError(`The ${v.kind} has no gradient; call enableTraining() first.`);
      out.push({
        name: 'prompt_embeddings',
        param: v.table,
        grad: v.grad,
        state: v.state,
        n: v.table.shape[0]! * v.table.shape[1]!,
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
        ...(s.params.dora ? { m: await this.gpu.read(s.params.dora.m) } : {}),
      });
    }
    return out;
  }

  /** Reads the (IA)³ vectors back (for export and checkpoints). */
  async ia3Arrays(): Promise<Ia3VectorArrays[]> {
    const out: Ia3VectorArrays[] = [];
    for (const [path, s] of this.ia3Slots)
      out.push({ path, input: s.params.input, l: await this.gpu.read(s.params.l) });
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
      this.gpu.free(s.dM);
      if (s.params.dora) for (const t of Object.values(s.params.dora)) this.gpu.free(t);
      for (const t of [...s.stateA, ...s.stateB, ...s.stateM]) this.gpu.free(t);
    }
    for (const s of this.ia3Slots.values()) {
      this.gpu.free(s.params.l);
      this.gpu.free(s.dl);
      for (const t of s.state) this.gpu.free(t);
    }
    for (const part of this.prefixMlp?.parts ?? []) {
      this.gpu.free(part.param);
      this.gpu.free(part.grad);
      for (const t of part.state) this.gpu.free(t);
    }
    this.gpu.free(this.prefixMlp?.saved?.z);
    this.gpu.free(this.prefixMlp?.saved?.h);
    this.prefixMlp = null;
    if (this.virtualSlot) {
      this.gpu.free(this.virtualSlot.table);
      this.gpu.free(this.virtualSlot.grad);
      for (const t of this.virtualSlot.state) this.gpu.free(t);
      this.virtualSlot = null;
    }
    this.slots.clear();
    this.ia3Slots.clear();
  }
}
