/**
 * The frozen base model on the GPU: every tensor the architecture uses, uploaded once in its
 * checkpoint dtype (16-bit weights stay 16-bit, packed two per u32), plus the FrozenLinear view of
 * each linear module. Nothing here is ever written after upload: LoRA lives in src/lora.
 */

import type { Gpu } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { DType, Tensor } from '../gpu/tensor';
import { ALL_FINITE, recordFiniteScan } from '../kernels/finite';
import type { FrozenLinear } from '../kernels/linear';
import type { ModelConfig } from './config';
import { type ArchWeights, type LinearModule, linearModules, referencedKeys } from './registry';
import type { SafeTensor } from './safetensors';

const SAFE_TO_GPU: Partial<Record<SafeTensor['dtype'], DType>> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };

export interface WeightsInput {
  config: ModelConfig;
  arch: ArchWeights;
  tensors: Map<string, SafeTensor>;
}

export class GpuModel {
  readonly linears: LinearModule[];
  private readonly weights = new Map<string, Tensor>();

  private constructor(
    readonly gpu: Gpu,
    readonly config: ModelConfig,
    readonly arch: ArchWeights,
  ) {
    this.linears = linearModules(arch);
  }

  /** Uploads every tensor the architecture references. `onProgress(done, total)` counts tensors. */
  static upload(gpu: Gpu, input: WeightsInput, onProgress?: (done: number, total: number) => void): GpuModel {
    const m = new GpuModel(gpu, input.config, input.arch);
    const keys = referencedKeys(input.arch);
    let done = 0;
    for (const key of keys) {
      const t = input.tensors.get(key);
      if (!t) throw new GpuError(`Model weights: tensor "${key}" is missing from the checkpoint.`);
      const dtype = SAFE_TO_GPU[t.dtype];
      if (!dtype) {
        throw new GpuError(
          `Model weights: tensor "${key}" has dtype ${t.dtype}; only F32, F16 and BF16 are supported.`,
        );
      }
      m.weights.set(key, gpu.tensor(key, t.shape, dtype, 'weights', t.data));
      onProgress?.(++done, keys.length);
    }
    return m;
  }

  /**
   * The first weight holding a NaN or an infinity (in key order) and the element's index, or null.
   * One scan per tensor on the GPU into one flags buffer and a single readback: cheap next to the
   * upload, and it catches damaged files and mislabelled dtypes (F32 bytes read as F16) before a
   * forward pass turns them into a NaN loss.
   */
  async findNonFinite(): Promise<{ key: string; index: number } | null> {
    const keys = [...this.weights.keys()];
    if (keys.length === 0) return null;
    const flags = this.gpu.tensor('finite.flags', [keys.length], 'u32', 'scratch');
    try {
      this.gpu.write(flags, new Uint32Array(keys.length).fill(ALL_FINITE));
      const rec = this.gpu.recorder('finite-scan');
      keys.forEach((key, slot) => {
        const x = this.weights.get(key)!;
        recordFiniteScan(this.gpu, rec, { x, n: x.shape.reduce((a, b) => a * b, 1), flags, slot });
      });
      rec.submit();
      const got = await this.gpu.readU32(flags);
      const slot = got.findIndex((f) => f !== ALL_FINITE);
      return slot < 0 ? null : { key: keys[slot]!, index: got[slot]! };
    } finally {
      this.gpu.free(flags);
    }
  }

  weight(key: string): Tensor {
    const t = this.weights.get(key);
    if (!t) throw new GpuError(`Model weight "${key}" is not on the GPU.`);
    return t;
  }

  maybeWeight(key: string | null | undefined): Tensor | null {
    return key ? this.weight(key) : null;
  }

  frozen(module: LinearModule): FrozenLinear {
    return {
      w: this.weight(module.weightKey),
      bias: this.maybeWeight(module.biasKey),
      inF: module.inF,
      outF: module.outF,
      transposed: module.transposed,
    };
  }

  get weightBytes(): number {
    let n = 0;
    for (const t of this.weights.values()) n += t.buffer.size;
    return n;
  }

  dispose(): void {
    for (const t of this.weights.values()) this.gpu.free(t);
    this.weights.clear();
  }
}
