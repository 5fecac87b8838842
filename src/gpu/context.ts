/**
 * The WebGPU runtime: one `Gpu` wraps a GPUDevice with
 *   - the adapter's real limits and features (shader-f16, subgroups),
 *   - a byte-accounting allocator (every buffer it hands out is counted per MemoryCategory),
 *   - a pipeline cache keyed by WGSL source and entry point,
 *   - a Recorder that puts many dispatches into one command encoder and one submit; readback helpers,
 *   - typed errors: validation and out-of-memory errors and device loss are turned into GpuError
 *     subclasses and thrown from the next submit/read/check instead of being lost in the console.
 * It is the same in the browser and in Node; only how the adapter is obtained differs (see browser.ts, node.ts).
 *
 * The Recorder and the binding convention of every kernel are in recorder.ts.
 */

import { GpuDeviceLostError, GpuError, GpuLimitError, GpuOutOfMemoryError, GpuValidationError } from './errors';
import { bf16BitsToF32, f16BitsToF32 } from './half';
import type { Profiler } from './profiler';
import { probeSubgroups } from './subgroups';
import { type DType, type MemoryCategory, type Tensor, numel, shapeString, tensorBytes } from './tensor';
import { type Binding, Recorder, SubmitCache, isGpuBuffer } from './recorder';

export { type Binding, Recorder, params } from './recorder';

export interface GpuInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** 'node' (Dawn through the `webgpu` package) or 'browser' (navigator.gpu). */
  runtime: 'node' | 'browser';
}

export interface GpuFeatures {
  f16: boolean;
  subgroups: boolean;
  timestampQuery: boolean;
  /**
   * Lanes that kernels may treat as one aligned run of a subgroup in a 1-D workgroup (a power of
   * two), or 0: subgroups absent, or laid out otherwise (src/gpu/subgroups.ts checks it).
   */
  subgroupLanes: number;
}

export interface GpuLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupSizeX: number;
  maxComputeWorkgroupsPerDimension: number;
  maxStorageBuffersPerShaderStage: number;
  minStorageBufferOffsetAlignment: number;
  minUniformBufferOffsetAlignment: number;
}

export interface MemoryReport {
  /** Bytes currently held, in total and per category. */
  total: number;
  byCategory: Record<MemoryCategory, number>;
  /** Highest `total` seen since creation or the last resetPeak(). */
  peak: number;
  peakByCategory: Record<MemoryCategory, number>;
}

export interface GpuOptions {
  /** Ask for shader-f16 when the adapter has it (default true). */
  wantF16?: boolean;
  /** Ask for subgroups when the adapter has it (default true). */
  wantSubgroups?: boolean;
}

const CATEGORIES: MemoryCategory[] = ['weights', 'lora', 'optimizer', 'activations', 'scratch', 'io'];

function zeroCategories(): Record<MemoryCategory, number> {
  return { weights: 0, lora: 0, optimizer: 0, activations: 0, scratch: 0, io: 0 };
}

export class Gpu {
  readonly info: GpuInfo;
  readonly features: GpuFeatures;
  readonly limits: GpuLimits;

  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly pipelineLabelSet = new Set<string>();
  private readonly sizes = new Map<GPUBuffer, { bytes: number; category: MemoryCategory }>();
  private readonly held = zeroCategories();
  private readonly peakHeld = zeroCategories();
  private heldTotal = 0;
  private peakTotal = 0;
  private pendingError: GpuError | null = null;
  private lost: GpuDeviceLostError | null = null;
  /**
   * Work submitted through recorders (submits, their dispatches) and GPU→CPU readbacks since the device
   * was made, so tests and the benchmark can check a training step's traffic (a submit per micro-step, no readback).
   */
  readonly counters = { submits: 0, dispatches: 0, readbacks: 0, bindGroups: 0 };
  /**
   * Called once with the WGSL of every pipeline compiled (Node sets it from TABTUNE_DUMP_WGSL, see
   * node.ts, so the code that runs can be read).
   */
  onShader: ((label: string, code: string, entryPoint: string) => void) | null = null;
  /**
   * Which member of a kernel family runs (src/kernels/matmul/variants.ts): `pin` for every problem it serves
   * (TABTUNE_KERNELS), `choices` a shape class's tuned member, `seen` a problem of each class met without one
   * (tune.ts tunes them); while tuning, `prior`: untuned classes run the likely best, `tally`: see ruledOut.
   */
  readonly kernels = {
    pin: null as string | null,
    choices: new Map<string, string>(),
    seen: new Map<string, unknown>(),
    prior: false,
    tally: new Map<string, { lost: number; won: number; clear: number }>(),
    /** Width of the row-reduction kernels (src/kernels/row-width.ts): null = by device class. */
    rowWidth: null as number | null,
    /**
     * Which attention kernels run (src/kernels/attention.ts): 'tiled' (workgroup-memory tiles),
     * 'direct' (subgroup kernels without workgroup memory, where they can serve); null = by device class.
     */
    attention: null as 'tiled' | 'direct' | null,
  };
  /** Set (benchmark profiles only, needs timestamp-query) to time every dispatch; see profiler.ts. */
  profiler: Profiler | null = null;
  /**
   * Allocations only (`bench memory --allocations-only`): buffers are created, uploaded and counted
   * as always, but no shader is compiled and nothing recorded runs (recorders submit nothing,
   * readbacks return zeros). The buffer plan of a step does not depend on the values computed, so
   * the peak is the one a real run reaches, without its compute: a slow driver can measure the
   * memory of a model it could not train in reasonable time. Never set when results matter.
   */
  allocationsOnly = false;
  /** Uniform buffers and bind groups that submits reuse (recorder.ts). */
  readonly submitCache = new SubmitCache();

  constructor(
    readonly device: GPUDevice,
    info: GpuInfo,
  ) {
    this.info = info;
    this.features = {
      f16: device.features.has('shader-f16'),
      subgroups: device.features.has('subgroups'),
      timestampQuery: device.features.has('timestamp-query'),
      subgroupLanes: 0,
    };
    const l = device.limits;
    this.limits = {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      minStorageBufferOffsetAlignment: l.minStorageBufferOffsetAlignment,
      minUniformBufferOffsetAlignment: l.minUniformBufferOffsetAlignment,
    };
    device.addEventListener('uncapturederror', (ev) => {
      const err = (ev as GPUUncapturedErrorEvent).error;
      this.recordError(err);
    });
    void device.lost.then((info) => {
      if (info.reason === 'destroyed') return;
      this.lost = new GpuDeviceLostError(
        `The GPU device was lost (${info.reason}): ${info.message || 'no message'}. ` +
          'Progress since the last checkpoint is gone; reload to get a new device and resume.',
        info.reason,
      );
    });
  }

  /**
   * Requests a device from an adapter with the adapter's own limits (not the WebGPU defaults), so
   * big tensors fit, and with shader-f16 / subgroups when present.
   */
  static async fromAdapter(adapter: GPUAdapter, runtime: GpuInfo['runtime'], opts: GpuOptions = {}): Promise<Gpu> {
    const wanted: GPUFeatureName[] = [];
    if (opts.wantF16 !== false && adapter.features.has('shader-f16')) wanted.push('shader-f16');
    if (opts.wantSubgroups !== false && adapter.features.has('subgroups')) wanted.push('subgroups' as GPUFeatureName);
    if (adapter.features.has('timestamp-query')) wanted.push('timestamp-query');
    const names = [
      'maxStorageBufferBindingSize',
      'maxBufferSize',
      'maxComputeWorkgroupStorageSize',
      'maxComputeInvocationsPerWorkgroup',
      'maxComputeWorkgroupSizeX',
      'maxComputeWorkgroupSizeY',
      'maxComputeWorkgroupsPerDimension',
      'maxStorageBuffersPerShaderStage',
    ] as const;
    const requiredLimits: Record<string, number> = {};
    for (const n of names) requiredLimits[n] = adapter.limits[n];
    const device = await adapter.requestDevice({ requiredFeatures: wanted, requiredLimits, label: 'tabtune' });
    const ai = adapter.info;
    const gpu = new Gpu(device, {
      vendor: ai?.vendor ?? '',
      architecture: ai?.architecture ?? '',
      device: ai?.device ?? '',
      description: ai?.description ?? '',
      runtime,
    });
    if (gpu.features.subgroups) {
      const minSize = (ai as { subgroupMinSize?: number } | undefined)?.subgroupMinSize;
      (gpu.features as { subgroupLanes: number }).subgroupLanes = await probeSubgroups(device, minSize);
    }
    return gpu;
  }

  private recordError(err: GPUError): void {
    if (this.pendingError) return;
    const msg = err.message;
    if (typeof GPUOutOfMemoryError !== 'undefined' && err instanceof GPUOutOfMemoryError) {
      this.pendingError = new GpuOutOfMemoryError(
        `The GPU ran out of memory: ${msg}. Lower the batch size, sequence length or LoRA rank, or pick a smaller model.`,
      );
    } else {
      this.pendingError = new GpuValidationError(`WebGPU validation error: ${msg}`);
    }
  }

  /** Throws the first device error seen since the last check, or a device loss. */
  throwIfFailed(): void {
    if (this.lost) throw this.lost;
    const e = this.pendingError;
    if (e) {
      this.pendingError = null;
      throw e;
    }
  }

  /** Waits for all submitted work and throws any error it produced. */
  async sync(): Promise<void> {
    await this.device.queue.onSubmittedWorkDone();
    // Uncaptured errors are delivered as events; give them a task turn to arrive.
    await new Promise((r) => setTimeout(r, 0));
    this.throwIfFailed();
  }

  // ---------------------------------------------------------------- memory

  /**
   * Creates a storage buffer and counts its bytes under `category`. Sizes are rounded up to 16
   * bytes, so a kernel that binds a tensor as an array of vec4 (or of vec2<u32> for 16-bit data)
   * reaches every element, and an aligned 16-byte group that starts inside the tensor ends inside
   * its buffer.
   */
  buffer(label: string, bytes: number, category: MemoryCategory, extraUsage = 0): GPUBuffer {
    this.throwIfFailed();
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    if (size > this.limits.maxBufferSize) {
      throw new GpuLimitError(
        `Buffer "${label}" needs ${size} bytes but this GPU allows at most ${this.limits.maxBufferSize} bytes per buffer.`,
      );
    }
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST | extraUsage;
    const buf = this.device.createBuffer({ label, size, usage });
    this.sizes.set(buf, { bytes: size, category });
    this.held[category] += size;
    this.heldTotal += size;
    if (this.heldTotal > this.peakTotal) this.peakTotal = this.heldTotal;
    for (const c of CATEGORIES) if (this.held[c] > this.peakHeld[c]) this.peakHeld[c] = this.held[c];
    return buf;
  }

  /** Allocates a tensor, optionally filled with `data` (raw element bits in the tensor's dtype). */
  tensor(
    label: string,
    shape: readonly number[],
    dtype: DType,
    category: MemoryCategory,
    data?: ArrayBufferView,
  ): Tensor {
    const bytes = tensorBytes(shape, dtype);
    const buffer = this.buffer(label, bytes, category);
    const t: Tensor = { buffer, shape: [...shape], dtype, label, category };
    if (data) this.write(t, data);
    return t;
  }

  /** Allocates an f32 tensor from numbers. */
  tensorF32(label: string, shape: readonly number[], category: MemoryCategory, values?: ArrayLike<number>): Tensor {
    const n = numel(shape);
    if (values && values.length !== n) {
      throw new GpuError(`Tensor "${label}" ${shapeString(shape)} expects ${n} values, got ${values.length}.`);
    }
    return this.tensor(label, shape, 'f32', category, values ? Float32Array.from(values) : undefined);
  }

  /** Writes raw bytes into a tensor (at a byte offset). Sizes are padded to 4 bytes. */
  write(t: Tensor | GPUBuffer, data: ArrayBufferView, byteOffset = 0): void {
    const buf = isGpuBuffer(t as Binding) ? (t as GPUBuffer) : (t as Tensor).buffer;
    let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4 !== 0) {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      bytes = padded;
    }
    if (byteOffset + bytes.byteLength > buf.size) {
      throw new GpuError(
        `Writing ${bytes.byteLength} bytes at offset ${byteOffset} overflows buffer "${buf.label}" of ${buf.size} bytes.`,
      );
    }
    this.device.queue.writeBuffer(buf, byteOffset, bytes as Uint8Array<ArrayBuffer>);
  }

  /** Frees a tensor or buffer and uncounts its bytes. Safe to call twice. */
  free(t: Tensor | GPUBuffer | null | undefined): void {
    if (!t) return;
    const buf = isGpuBuffer(t as Binding) ? (t as GPUBuffer) : (t as Tensor).buffer;
    const entry = this.sizes.get(buf);
    if (entry) {
      this.held[entry.category] -= entry.bytes;
      this.heldTotal -= entry.bytes;
      this.sizes.delete(buf);
    }
    this.submitCache.forgetBuffer(buf);
    buf.destroy();
  }

  memory(): MemoryReport {
    return {
      total: this.heldTotal,
      byCategory: { ...this.held },
      peak: this.peakTotal,
      peakByCategory: { ...this.peakHeld },
    };
  }

  resetPeak(): void {
    this.peakTotal = this.heldTotal;
    for (const c of CATEGORIES) this.peakHeld[c] = this.held[c];
  }

  // ---------------------------------------------------------------- pipelines

  /** A compute pipeline for `code`, compiled once and cached by source and entry point. */
  pipeline(label: string, code: string, entryPoint = 'main'): GPUComputePipeline {
    // 'main' is keyed by the code string itself: kernels pass the same cached string each time,
    // whose hash V8 keeps, so no key of the source's length is built per dispatch.
    const key = entryPoint === 'main' ? code : `${entryPoint}\u0000${code}`;
    let p = this.pipelines.get(key);
    if (!p && this.allocationsOnly) return { label } as GPUComputePipeline;
    if (!p && this.deferred) {
      // A precompile() recording: note the pipeline; the recording is never submitted.
      this.deferred.set(key, { label, code, entryPoint });
      return { label } as GPUComputePipeline;
    }
    if (!p) {
      this.throwIfFailed();
      this.onShader?.(label, code, entryPoint);
      const module = this.device.createShaderModule({ label, code });
      p = this.device.createComputePipeline({ label, layout: 'auto', compute: { module, entryPoint } });
      this.pipelines.set(key, p);
      this.pipelineLabelSet.add(label);
    }
    return p;
  }

  private deferred: Map<string, { label: string; code: string; entryPoint: string }> | null = null;

  /**
   * Compiles the pipelines `record` would use, without running anything: the recording is thrown
   * away and its pipelines not cached yet are created with createComputePipelineAsync, all at once
   * (the driver may compile them side by side, and the caller's thread is not held meanwhile), then
   * cached as pipeline() does. Returns how many were compiled. The autotuner compiles its
   * candidates so before timing them (src/kernels/matmul/tune.ts).
   */
  async precompile(record: (rec: Recorder) => void): Promise<number> {
    const wanted = new Map<string, { label: string; code: string; entryPoint: string }>();
    this.deferred = wanted;
    try {
      record(this.recorder('precompile'));
    } finally {
      this.deferred = null;
    }
    this.throwIfFailed();
    await Promise.all(
      [...wanted].map(async ([key, { label, code, entryPoint }]) => {
        this.onShader?.(label, code, entryPoint);
        const module = this.device.createShaderModule({ label, code });
        const compute = { module, entryPoint };
        const p = await this.device.createComputePipelineAsync({ label, layout: 'auto', compute });
        this.pipelines.set(key, p);
        this.pipelineLabelSet.add(label);
      }),
    );
    return wanted.size;
  }

  /**
   * Compiles `code` and reports WGSL compiler errors with line numbers. Use in tests and at
   * start-up; `pipeline()` alone reports errors only through the device error path.
   */
  async compileCheck(label: string, code: string): Promise<void> {
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ label, code });
    const info = await module.getCompilationInfo();
    const scoped = await this.device.popErrorScope();
    const errors = info.messages.filter((m) => m.type === 'error');
    if (errors.length) {
      const lines = errors.map((m) => `  ${label}:${m.lineNum}:${m.linePos}: ${m.message}`);
      throw new GpuValidationError(`WGSL compilation failed for "${label}":\n${lines.join('\n')}`);
    }
    if (scoped) throw new GpuValidationError(`Shader "${label}" was rejected: ${scoped.message}`);
  }

  get pipelineCount(): number {
    return this.pipelines.size;
  }

  /** Labels of the pipelines compiled so far (which kernel variants ran). */
  pipelineLabels(): string[] {
    return [...this.pipelineLabelSet];
  }

  // ---------------------------------------------------------------- recording

  /** Starts recording one submit; `reuseKey` when the label changes every call (see Recorder). */
  recorder(label = 'step', reuseKey?: string): Recorder {
    return new Recorder(this, label, reuseKey);
  }

  // ---------------------------------------------------------------- readback

  /** Copies a buffer range to the CPU. */
  async readBytes(buffer: GPUBuffer, byteOffset = 0, byteLength = buffer.size - byteOffset): Promise<ArrayBuffer> {
    this.throwIfFailed();
    if (this.allocationsOnly) {
      this.counters.readbacks++;
      return new ArrayBuffer(byteLength);
    }
    const size = Math.ceil(byteLength / 4) * 4;
    const staging = this.device.createBuffer({
      label: `readback:${buffer.label}`,
      size,
      usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ,
    });
    const enc = this.device.createCommandEncoder({ label: 'readback' });
    enc.copyBufferToBuffer(buffer, byteOffset, staging, 0, size);
    this.device.queue.submit([enc.finish()]);
    try {
      return await this.mapRead(staging, byteLength, buffer.label);
    } finally {
      staging.destroy();
    }
  }

  /**
   * Maps a MAP_READ buffer once the submits that wrote it are done (later submits may still run)
   * and returns a copy of its first `byteLength` bytes; the buffer is unmapped, ready for reuse.
   */
  async mapRead(staging: GPUBuffer, byteLength: number, what = staging.label): Promise<ArrayBuffer> {
    this.throwIfFailed();
    this.counters.readbacks++;
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (e) {
      this.throwIfFailed();
      throw new GpuError(`Reading back "${what}" failed: ${(e as Error).message}`);
    }
    const out = staging.getMappedRange().slice(0, byteLength);
    staging.unmap();
    await new Promise((r) => setTimeout(r, 0));
    this.throwIfFailed();
    return out;
  }

  /** Reads a tensor as f32 values (16-bit types are widened). */
  async read(t: Tensor): Promise<Float32Array> {
    const n = numel(t.shape);
    if (t.dtype === 'f32') return new Float32Array(await this.readBytes(t.buffer, 0, n * 4));
    if (t.dtype === 'f16' || t.dtype === 'bf16') {
      const bits = new Uint16Array(await this.readBytes(t.buffer, 0, Math.ceil(n / 2) * 4));
      const out = new Float32Array(n);
      const conv = t.dtype === 'f16' ? f16BitsToF32 : bf16BitsToF32;
      for (let i = 0; i < n; i++) out[i] = conv(bits[i]!);
      return out;
    }
    const raw = await this.readBytes(t.buffer, 0, n * 4);
    return Float32Array.from(t.dtype === 'u32' ? new Uint32Array(raw) : new Int32Array(raw));
  }

  /**
   * Reads 32-bit words: `count`, else a tensor's own words (its buffer is rounded up to 16 bytes),
   * else the whole buffer.
   */
  async readU32(t: Tensor | GPUBuffer, count?: number): Promise<Uint32Array> {
    const raw = isGpuBuffer(t as Binding);
    const buf = raw ? (t as GPUBuffer) : (t as Tensor).buffer;
    const n = count ?? (raw ? buf.size / 4 : Math.ceil(tensorBytes((t as Tensor).shape, (t as Tensor).dtype) / 4));
    return new Uint32Array(await this.readBytes(buf, 0, n * 4));
  }

  destroy(): void {
    for (const buf of this.sizes.keys()) buf.destroy();
    this.sizes.clear();
    this.submitCache.clear();
    this.pipelines.clear();
    this.pipelineLabelSet.clear();
    this.device.destroy();
  }
}
