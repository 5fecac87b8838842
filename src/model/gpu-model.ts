/**
 * The frozen base model on the GPU: every tensor the architecture uses, plus the FrozenLinear view
 * of each linear module. Nothing here is ever written after upload: LoRA lives in src/lora.
 *
 * Tensors are uploaded as they stream in (src/model/load.ts streamWeights), never holding a whole
 * weight file, in one of these forms:
 *   as stored        16-bit weights stay 16-bit (packed two per u32), f32 stays f32; bytes go to the
 *                    GPU piece by piece as they arrive
 *   4-bit NF4        with `quantize: 'nf4'`, every linear module's weight (not the embeddings, LM head,
 *                    norms or biases, as transformers' bitsandbytes integration leaves them) is
 *                    collected alone, quantized on the CPU exactly as bitsandbytes does it
 *                    (src/model/nf4.ts; GPT-2's Conv1D transposed to [out, in] first) and uploaded
 *                    in 4-bit form (src/kernels/nf4.ts)
 *   pre-quantized    a bitsandbytes 4-bit checkpoint's packed weights and statistics are uploaded as
 *                    stored (src/model/bnb.ts), without widening
 */
import type { Gpu } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import { bf16BitsToF32, f16BitsToF32 } from '../gpu/half';
import type { DType, Tensor } from '../gpu/tensor';
import { ALL_FINITE, recordFiniteScan } from '../kernels/finite';
import type { FrozenLinear } from '../kernels/linear';
import { type Nf4Tensor, freeNf4, uploadNf4 } from '../kernels/nf4';
import type { Nf4Host } from '../reference/nf4';
import { BnbWeight } from './bnb';
import type { ModelConfig } from './config';
import {
  type LoadModelOptions,
  type WeightPlan,
  type WeightSink,
  streamWeights,
  weightPlan,
  withWeightDtype,
} from './load';
import { firstNonFinite, quantizeNf4 } from './nf4';
import { type ArchWeights, type LinearModule, ModelWeightsError, linearModules, referencedKeys } from './registry';
import type { HeaderEntry, SafeTensor } from './safetensors';
import { type TensorReceiver, collectTensor } from './safetensors-stream';
import type { ModelSource } from './source';

const SAFE_TO_GPU: Partial<Record<SafeTensor['dtype'], DType>> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };

/** How the frozen linear weights are held on the GPU. */
export interface FrozenWeightsOptions {
  /** 'nf4': quantize every linear weight at load (a pre-quantized checkpoint is NF4 regardless). */
  quantize?: 'nf4' | null;
  /** Double quantization of the absmax values (bitsandbytes' default for QLoRA); default true. */
  doubleQuant?: boolean;
}

/** The 4-bit state of a loaded model, null when every weight is as stored. */
export interface ModelQuantization {
  format: 'nf4';
  doubleQuant: boolean;
  /** 'load': quantized by Tabtune while loading; 'checkpoint': a bitsandbytes 4-bit checkpoint. */
  source: 'load' | 'checkpoint';
  /** Linear modules held in 4-bit form (all of them, unless a checkpoint kept some in 16-bit). */
  modules: number;
}

export interface WeightsInput {
  config: ModelConfig;
  arch: ArchWeights;
  tensors: Map<string, SafeTensor>;
  bnb?: Map<string, boolean>;
}

function halfValue(dtype: DType, bits: number): number {
  return dtype === 'bf16' ? bf16BitsToF32(bits) : f16BitsToF32(bits);
}

/** A frozen weight that holds a NaN or an infinity: what the message says and what to do. */
function nonFiniteError(file: string, key: string, dtype: string, value: number, index: number): ModelWeightsError {
  return new ModelWeightsError(
    `${file}: tensor "${key}" (${dtype}) holds ${value} at element ${index}. The file is damaged, or its bytes are ` +
      'not the dtype its header says (e.g. F32 data labelled F16); download or convert it again.',
  );
}

/** Bytes uploaded between waits for the queue, so the driver can recycle its staging memory. */
const SYNC_BYTES = 256 << 20;

export class GpuModel {
  readonly linears: LinearModule[];
  private readonly weights = new Map<string, Tensor>();
  private readonly nf4 = new Map<string, Nf4Tensor>();
  quantization: ModelQuantization | null = null;
  /** Parameters of the tensors the model uses (a 4-bit weight counts its out · in). */
  params = 0;
  /** Checkpoint dtypes of those tensors ('NF4' for weights a checkpoint stores in 4-bit form). */
  dtypes: string[] = [];

  /** An empty model: GpuModel.stream / GpuModel.upload fill it. */
  constructor(
    readonly gpu: Gpu,
    /** The checkpoint's config (set once more when the weights are in: see Uploader.finish). */
    public config: ModelConfig,
    readonly arch: ArchWeights,
  ) {
    this.linears = linearModules(arch);
  }

  /**
   * Streams a checkpoint from `source` onto the GPU. `onProgress(done, total)` counts tensors;
   * `opts.onProgress` reports the bytes of each file read.
   */
  static async stream(
    gpu: Gpu,
    source: ModelSource,
    config: ModelConfig,
    opts: FrozenWeightsOptions & LoadModelOptions = {},
    onProgress?: (done: number, total: number) => void,
  ): Promise<GpuModel> {
    const up = new Uploader(gpu, config, opts, onProgress);
    try {
      await streamWeights(source, config, up, opts);
      return await up.finish();
    } catch (e) {
      up.abort();
      throw e;
    }
  }

  /** Uploads tensors already in memory (tests, benchmarks) the same way. */
  static async upload(
    gpu: Gpu,
    input: WeightsInput,
    opts: FrozenWeightsOptions = {},
    onProgress?: (done: number, total: number) => void,
  ): Promise<GpuModel> {
    const up = new Uploader(gpu, input.config, opts, onProgress);
    try {
      const plan = weightPlan(input.arch, input.bnb ?? new Map(), [], () => 'model.safetensors');
      await up.begin(plan);
      for (const key of plan.keys) {
        const t = input.tensors.get(key);
        if (!t) throw new GpuError(`Model weights: tensor "${key}" is missing from the checkpoint.`);
        const entry = { dtype: t.dtype, shape: t.shape, data_offsets: [0, t.data.byteLength] as [number, number] };
        const rx = up.tensor(key, entry, plan.fileOf(key));
        if (!rx) continue;
        rx.write(t.data, 0);
        await rx.end();
      }
      return await up.finish();
    } catch (e) {
      up.abort();
      throw e;
    }
  }

  /** @internal the uploader's */
  setWeight(key: string, t: Tensor): void {
    this.weights.set(key, t);
  }

  /** @internal the uploader's */
  setNf4(key: string, w: Nf4Tensor): void {
    this.nf4.set(key, w);
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
    await this.gpu.sync();
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

  /**
   * The error for a weight holding a NaN or an infinity, naming file, tensor, dtype, value and
   * element, or null when every weight is finite. (A weight quantized at load was checked on the CPU
   * before quantizing: quantization would have hidden it.)
   */
  async nonFiniteError(): Promise<ModelWeightsError | null> {
    const bad = await this.findNonFinite();
    if (!bad) return null;
    const t = this.weight(bad.key);
    const size = t.dtype === 'f32' ? 4 : 2;
    const raw = new DataView(await this.gpu.readBytes(t.buffer, Math.floor((bad.index * size) / 4) * 4, 4));
    const at = (bad.index * size) % 4;
    const value = size === 4 ? raw.getFloat32(0, true) : halfValue(t.dtype, raw.getUint16(at, true));
    const o = this.origin.get(bad.key) ?? { dtype: t.dtype.toUpperCase(), file: 'model.safetensors' };
    return nonFiniteError(o.file, bad.key, o.dtype, value, bad.index);
  }

  /** @internal the uploader's: where a tensor came from, for messages. */
  readonly origin = new Map<string, { dtype: string; file: string }>();

  weight(key: string): Tensor {
    const t = this.weights.get(key);
    if (!t) throw new GpuError(`Model weight "${key}" is not on the GPU.`);
    return t;
  }

  maybeWeight(key: string | null | undefined): Tensor | null {
    return key ? this.weight(key) : null;
  }

  frozen(module: LinearModule): FrozenLinear {
    const q = this.nf4.get(module.weightKey);
    return {
      w: q ?? this.weight(module.weightKey),
      bias: this.maybeWeight(module.biasKey),
      inF: module.inF,
      outF: module.outF,
      // A 4-bit weight is always [out, in] (a Conv1D weight was transposed before quantizing).
      transposed: q ? false : module.transposed,
    };
  }

  get weightBytes(): number {
    let n = 0;
    for (const t of this.weights.values()) n += t.buffer.size;
    for (const w of this.nf4.values()) n += w.q.buffer.size + w.stats.buffer.size;
    return n;
  }

  dispose(): void {
    for (const t of this.weights.values()) this.gpu.free(t);
    for (const w of this.nf4.values()) freeNf4(this.gpu, w);
    this.weights.clear();
    this.nf4.clear();
  }
}

/** The sink that puts a streamed checkpoint on the GPU (see the file comment). */
class Uploader implements WeightSink {
  private model: GpuModel | null = null;
  private readonly toQuantize = new Map<string, LinearModule>();
  private readonly bnbParts = new Map<string, BnbWeight>();
  /** Tensors to upload (a 4-bit weight with its statistics counts once). */
  private total = 0;
  private done = 0;
  private sinceSync = 0;
  private readonly doubleQuant: boolean;

  constructor(
    private readonly gpu: Gpu,
    private readonly config: ModelConfig,
    private readonly opts: FrozenWeightsOptions,
    private readonly onProgress?: (done: number, total: number) => void,
  ) {
    this.doubleQuant = opts.doubleQuant ?? true;
  }

  begin(plan: WeightPlan): void {
    const model = new GpuModel(this.gpu, this.config, plan.arch);
    this.model = model;
    this.total = referencedKeys(plan.arch).length;
    for (const m of model.linears) {
      const dq = plan.bnb.get(m.weightKey);
      if (dq !== undefined) {
        const w = new BnbWeight(m, dq, plan.fileOf);
        for (const k of w.keys()) this.bnbParts.set(k, w);
      } else if (this.opts.quantize === 'nf4') this.toQuantize.set(m.weightKey, m);
    }
    if (plan.bnb.size) {
      model.quantization = {
        format: 'nf4',
        doubleQuant: [...plan.bnb.values()].every(Boolean),
        source: 'checkpoint',
        modules: plan.bnb.size,
      };
    } else if (this.toQuantize.size) {
      model.quantization = {
        format: 'nf4',
        doubleQuant: this.doubleQuant,
        source: 'load',
        modules: this.toQuantize.size,
      };
    }
  }

  tensor(key: string, entry: HeaderEntry, file: string): TensorReceiver | null {
    const size = entry.data_offsets[1] - entry.data_offsets[0];
    this.model!.origin.set(key, { dtype: entry.dtype, file });
    const bnb = this.bnbParts.get(key);
    if (bnb) {
      return collectTensor(size, (bytes) => {
        bnb.add(key, bytes, entry);
        if (!bnb.complete) return;
        for (const k of bnb.keys()) this.bnbParts.delete(k);
        return this.putNf4(bnb.module, bnb.build(), 'NF4');
      });
    }
    const m = this.toQuantize.get(key);
    if (m) {
      const dtype = entry.dtype;
      if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16') {
        throw new GpuError(`Model weights: "${key}" is ${dtype}; only F32, F16 and BF16 weights can be quantized.`);
      }
      return collectTensor(size, (data) => {
        // Quantizing would hide a NaN or an infinity (it cannot be a block's absmax): refuse it here.
        const bad = firstNonFinite({ dtype, data });
        if (bad) throw nonFiniteError(file, key, dtype, bad.value, bad.index);
        const host = quantizeNf4({ dtype, data }, m.outF, m.inF, {
          transposed: m.transposed,
          doubleQuant: this.doubleQuant,
        });
        return this.putNf4(m, host, dtype);
      });
    }
    const dtype = SAFE_TO_GPU[entry.dtype];
    if (!dtype) {
      throw new GpuError(
        `Model weights: tensor "${key}" has dtype ${entry.dtype}; only F32, F16 and BF16 are supported.`,
      );
    }
    const t = this.gpu.tensor(key, entry.shape, dtype, 'weights');
    this.model!.setWeight(key, t);
    this.count(
      entry.shape.reduce((a, b) => a * b, 1),
      entry.dtype,
    );
    return this.gpuReceiver(t, size);
  }

  private count(params: number, dtype: string): void {
    const m = this.model!;
    m.params += params;
    if (!m.dtypes.includes(dtype)) m.dtypes.push(dtype);
  }

  private putNf4(m: LinearModule, host: Nf4Host, dtype: string): Promise<void> | void {
    this.model!.setNf4(m.weightKey, uploadNf4(this.gpu, m.weightKey, host, m.outF, m.inF));
    this.count(host.n, dtype);
    return this.uploaded(host.packed.byteLength);
  }

  /** Writes a tensor's pieces straight into its buffer (writes are whole words: a tail waits for the next piece). */
  private gpuReceiver(t: Tensor, size: number): TensorReceiver {
    const carry = new Uint8Array(4);
    let carried = 0;
    let pos = 0;
    return {
      write: (piece) => {
        let p = piece;
        if (carried) {
          const take = Math.min(4 - carried, p.byteLength);
          carry.set(p.subarray(0, take), carried);
          carried += take;
          p = p.subarray(take);
          if (carried < 4) return;
          this.gpu.write(t, carry, pos);
          pos += 4;
          carried = 0;
        }
        const whole = p.byteLength - (p.byteLength % 4);
        if (whole) this.gpu.write(t, p.subarray(0, whole), pos);
        pos += whole;
        carried = p.byteLength - whole;
        carry.set(p.subarray(whole));
      },
      end: () => {
        if (carried) this.gpu.write(t, carry.fill(0, carried).subarray(0, 4), pos);
        return this.uploaded(size);
      },
    };
  }

  private uploaded(bytes: number): Promise<void> | void {
    this.onProgress?.(++this.done, this.total);
    this.sinceSync += bytes;
    if (this.sinceSync < SYNC_BYTES) return;
    this.sinceSync = 0;
    return this.gpu.sync();
  }

  async finish(): Promise<GpuModel> {
    const model = this.model;
    if (!model) throw new GpuError('Model weights: the checkpoint was never read.');
    if (this.bnbParts.size) {
      const key = [...this.bnbParts.keys()][0]!;
      throw new GpuError(`Model weights: "${key}" of a bitsandbytes 4-bit weight is missing from the checkpoint.`);
    }
    for (const m of model.linears) model.frozen(m); // throws for a module that never arrived
    // Gemma's embedding scale is rounded to the embedding's stored dtype (known once its header came).
    model.config = withWeightDtype(model.config, model.origin.get(model.arch.embed)?.dtype ?? 'F32');
    await this.gpu.sync();
    return model;
  }

  abort(): void {
    this.model?.dispose();
  }
}
