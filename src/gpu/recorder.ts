/**
 * Recording GPU work: a Recorder collects dispatches and copies and submits them in one command
 * encoder (one submit per training micro-step); `params` packs a dispatch's uniform words.
 *
 * Binding convention for every kernel: `@group(0) @binding(0)` is the optional uniform block of
 * parameters; storage buffers follow at bindings 1, 2, ... in the order given to `dispatch`.
 */

import { GpuError, GpuLimitError } from './errors';
import type { Profiler } from './profiler';
import type { Tensor } from './tensor';

/** A storage binding: a whole tensor, a raw buffer, or a byte range of one. */
export type Binding = Tensor | GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

export function isGpuBuffer(b: Binding): b is GPUBuffer {
  return typeof (b as GPUBuffer).mapAsync === 'function';
}

/** What a Recorder needs of its device (the Gpu in context.ts). */
interface RecordingDevice {
  readonly device: GPUDevice;
  readonly limits: { maxComputeWorkgroupsPerDimension: number; minUniformBufferOffsetAlignment: number };
  readonly counters: { submits: number; dispatches: number; bindGroups: number };
  readonly profiler: Profiler | null;
  /** Gpu.allocationsOnly: submit() counts the submit and runs nothing. */
  readonly allocationsOnly: boolean;
  readonly submitCache: SubmitCache;
  throwIfFailed(): void;
}

/**
 * Uniform buffers kept for reuse (recorder labels) and bind groups kept (entries), at most. The
 * groups must hold a training step's and its validation's together, or the cache, cleared when
 * full, makes them all again every step: a checkpointed step makes ~100 per layer and the
 * validation ~20 (36 layers: ~3700 + ~700, over the 4096 this once was). The cap only bounds
 * what is kept; a small model keeps what it uses.
 */
const MAX_UNIFORM_LABELS = 16;
export const MAX_BIND_GROUPS = 16384;

/**
 * What submits reuse (one per device): a uniform buffer per recorder reuse key (the label unless
 * the recorder names one), rewritten with queue.writeBuffer before each submit (queue operations
 * run in order, so a submit still queued reads the values written before it), and the bind groups
 * made for a pipeline with the same buffers, offsets and sizes. A generation step or a training
 * step records the same dispatches on the same buffers every time; with both kept, a submit in
 * the steady state makes no buffers and no bind groups. `enabled = false` makes both per submit
 * (the benchmark's before / after).
 *
 * Why that matters beyond speed: WebGPU has no way to release a bind group but dropping it, and
 * its native object (a descriptor set) lives until JavaScript's garbage collector finalizes the
 * wrapper, which it does at its own pace since it does not see the native memory. On lavapipe
 * each live descriptor set is one memory mapping, and a process has at most vm.max_map_count
 * (65530) of them: a training loop making ~170 fresh bind groups per step crashed Dawn inside
 * vkCreateDescriptorPool (SIGSEGV) after a few hundred steps. So the cache forgets the groups of
 * a buffer when the buffer is freed (forgetBuffer), and training recorders share one reuse key.
 */
export class SubmitCache {
  enabled = true;
  /**
   * Run after the cache drops its groups because it is full (Node: the garbage collector, see
   * node.ts), so the dropped groups' native sets go before new ones pile up on top of them.
   */
  collectGarbage: (() => void) | null = null;
  /** Bind groups kept at most (MAX_BIND_GROUPS; tests lower it). */
  maxGroups = MAX_BIND_GROUPS;
  /**
   * At most this many new bind groups in one submit, or the submit throws GpuLimitError before it
   * makes more (null: no limit). On lavapipe every live bind group is a memory mapping and a
   * process holds at most vm.max_map_count (65530 by default) of them; past that Dawn crashes the
   * process (SIGSEGV) instead of reporting an error, so node.ts sets a budget below it there.
   */
  budget: number | null = null;
  private readonly uniforms = new Map<string, GPUBuffer>();
  private readonly groups = new Map<string, GPUBindGroup>();
  /** The keys of `groups` that name each buffer id (for forgetBuffer). */
  private readonly keysOfBuffer = new Map<number, string[]>();
  private readonly ids = new WeakMap<GPUBuffer | GPUComputePipeline, number>();
  private nextId = 1;

  /** A uniform buffer of at least `bytes` for recorders with reuse key `label`, and whether it is kept. */
  uniformBuffer(device: GPUDevice, label: string, bytes: number): { buffer: GPUBuffer; kept: boolean } {
    const size = Math.ceil(bytes / 16) * 16;
    const usage = GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;
    if (!this.enabled) return { buffer: device.createBuffer({ label: `${label}:params`, size, usage }), kept: false };
    let buffer = this.uniforms.get(label);
    if (buffer && buffer.size >= size) return { buffer, kept: true };
    if (buffer) this.retire(device, buffer);
    else if (this.uniforms.size >= MAX_UNIFORM_LABELS) {
      const [oldest, old] = this.uniforms.entries().next().value!;
      this.uniforms.delete(oldest);
      this.retire(device, old);
    }
    // Room to grow: a recording a little longer than the last one reuses the buffer.
    buffer = device.createBuffer({
      label: `${label}:params`,
      size: Math.max(256, 2 ** Math.ceil(Math.log2(size))),
      usage,
    });
    this.uniforms.set(label, buffer);
    return { buffer, kept: true };
  }

  /** The bind group of `pipeline` over `entries` (made once while enabled). */
  bindGroup(
    device: GPUDevice,
    pipeline: GPUComputePipeline,
    entries: GPUBindGroupEntry[],
    counters: { bindGroups: number },
  ): GPUBindGroup {
    const make = () => {
      counters.bindGroups++;
      return device.createBindGroup({ label: pipeline.label, layout: pipeline.getBindGroupLayout(0), entries });
    };
    if (!this.enabled) return make();
    const bufferIds = entries.map((e) => this.id((e.resource as GPUBufferBinding).buffer));
    let key = `${this.id(pipeline)}`;
    entries.forEach((e, i) => {
      const r = e.resource as GPUBufferBinding;
      key += `|${bufferIds[i]}:${r.offset ?? 0}:${r.size ?? -1}`;
    });
    let group = this.groups.get(key);
    if (!group) {
      if (this.groups.size >= this.maxGroups) {
        this.groups.clear();
        this.keysOfBuffer.clear();
        this.collectGarbage?.();
      }
      group = make();
      this.groups.set(key, group);
      for (const id of new Set(bufferIds)) {
        let keys = this.keysOfBuffer.get(id);
        if (!keys) this.keysOfBuffer.set(id, (keys = []));
        // A long-lived buffer (a weight) meets many short-lived ones whose groups were forgotten:
        // drop its keys of groups gone before the list doubles.
        if (keys.length >= 64 && (keys.length & (keys.length - 1)) === 0) {
          const live = keys.filter((k) => this.groups.has(k));
          keys.length = 0;
          keys.push(...live);
        }
        keys.push(key);
      }
    }
    return group;
  }

  /** Drops the bind groups that name `buffer` (it is being destroyed; they can never run again). */
  forgetBuffer(buffer: GPUBuffer): void {
    const id = this.ids.get(buffer);
    if (id === undefined) return;
    for (const key of this.keysOfBuffer.get(id) ?? []) this.groups.delete(key);
    this.keysOfBuffer.delete(id);
  }

  /** Bind groups kept now. */
  get size(): number {
    return this.groups.size;
  }

  /** Drops everything kept (the device is going away). */
  clear(): void {
    for (const b of this.uniforms.values()) b.destroy();
    this.uniforms.clear();
    this.groups.clear();
    this.keysOfBuffer.clear();
  }

  /** Destroys a buffer once the work submitted so far (which may read it) has run. */
  retire(device: GPUDevice, buffer: GPUBuffer): void {
    this.forgetBuffer(buffer);
    void device.queue.onSubmittedWorkDone().then(() => buffer.destroy());
  }

  private id(o: GPUBuffer | GPUComputePipeline): number {
    let id = this.ids.get(o);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(o, id);
    }
    return id;
  }
}

interface RecordedDispatch {
  kind: 'dispatch';
  pipeline: GPUComputePipeline;
  bindings: Binding[];
  workgroups: [number, number, number];
  uniformOffset: number;
  uniformSize: number;
  /** Floating-point operations of the dispatch where its kernel knows them cheaply (the matmuls), else 0. */
  flops: number;
}

interface RecordedCopy {
  kind: 'copy';
  src: GPUBuffer;
  srcOffset: number;
  dst: GPUBuffer;
  dstOffset: number;
  size: number;
}

/**
 * Records dispatches and copies; `submit()` encodes them into one command encoder (consecutive
 * dispatches share one compute pass; WebGPU orders storage writes between dispatches) and submits
 * once. Uniform parameter blocks go into one buffer written with a single writeBuffer.
 */
export class Recorder {
  private readonly ops: (RecordedDispatch | RecordedCopy)[] = [];
  private uniforms = new Uint8Array(4096);
  private uniformBytes = 0;
  private submitted = false;

  /**
   * `label` names the submit in errors and captures; `reuseKey` (default: the label) is what the
   * submit cache keeps this recorder's uniform buffer under. Recorders whose labels change every
   * time (a step number) pass a fixed key, so their submits reuse one buffer and its bind groups.
   */
  constructor(
    private readonly gpu: RecordingDevice,
    private readonly label: string,
    private readonly reuseKey: string = label,
  ) {}

  /**
   * Adds a dispatch. `params` (u32/i32/f32 words) becomes the uniform at binding 0; `bindings`
   * are the storage buffers at bindings 1..n; `flops`, where the kernel knows them, is what a
   * profile (profiler.ts) turns into GFLOP/s.
   */
  dispatch(
    pipeline: GPUComputePipeline,
    bindings: Binding[],
    workgroups: readonly number[],
    params?: ArrayBufferView,
    flops = 0,
  ): this {
    const wg: [number, number, number] = [workgroups[0] ?? 1, workgroups[1] ?? 1, workgroups[2] ?? 1];
    const maxWg = this.gpu.limits.maxComputeWorkgroupsPerDimension;
    for (const w of wg) {
      if (w > maxWg) {
        throw new GpuLimitError(
          `Dispatch "${pipeline.label}" asks for ${w} workgroups in one dimension; the limit is ${maxWg}.`,
        );
      }
    }
    let uniformOffset = -1;
    let uniformSize = 0;
    if (params) {
      const align = this.gpu.limits.minUniformBufferOffsetAlignment;
      uniformOffset = Math.ceil(this.uniformBytes / align) * align;
      uniformSize = Math.max(16, Math.ceil(params.byteLength / 16) * 16);
      const end = uniformOffset + uniformSize;
      if (end > this.uniforms.byteLength) {
        const grown = new Uint8Array(Math.max(end, this.uniforms.byteLength * 2));
        grown.set(this.uniforms.subarray(0, this.uniformBytes));
        this.uniforms = grown;
      }
      this.uniforms.set(new Uint8Array(params.buffer, params.byteOffset, params.byteLength), uniformOffset);
      this.uniformBytes = end;
    }
    if (wg[0] * wg[1] * wg[2] === 0) return this; // empty problem: nothing to run
    this.ops.push({ kind: 'dispatch', pipeline, bindings, workgroups: wg, uniformOffset, uniformSize, flops });
    return this;
  }

  copy(src: Tensor | GPUBuffer, dst: Tensor | GPUBuffer, size?: number, srcOffset = 0, dstOffset = 0): this {
    const s = isGpuBuffer(src as Binding) ? (src as GPUBuffer) : (src as Tensor).buffer;
    const d = isGpuBuffer(dst as Binding) ? (dst as GPUBuffer) : (dst as Tensor).buffer;
    this.ops.push({ kind: 'copy', src: s, srcOffset, dst: d, dstOffset, size: size ?? Math.min(s.size, d.size) });
    return this;
  }

  get length(): number {
    return this.ops.length;
  }

  /** Encodes everything recorded into one command buffer and submits it. */
  submit(): void {
    if (this.submitted) throw new GpuError(`Recorder "${this.label}" was already submitted.`);
    this.submitted = true;
    const gpu = this.gpu;
    gpu.throwIfFailed();
    const dispatches = this.ops.filter((op) => op.kind === 'dispatch');
    gpu.counters.dispatches += dispatches.length;
    if (gpu.allocationsOnly) {
      gpu.counters.submits++;
      return;
    }
    const device = gpu.device;
    let ubuf: GPUBuffer | null = null;
    let keptUniforms = false;
    if (this.uniformBytes > 0) {
      ({ buffer: ubuf, kept: keptUniforms } = gpu.submitCache.uniformBuffer(device, this.reuseKey, this.uniformBytes));
      device.queue.writeBuffer(ubuf, 0, this.uniforms, 0, Math.ceil(this.uniformBytes / 4) * 4);
    }
    const enc = device.createCommandEncoder({ label: this.label });
    let pass: GPUComputePassEncoder | null = null;
    // Profiling (gpu.profiler): one pass per dispatch, with its begin / end timestamps.
    const prof = gpu.profiler?.begin(dispatches.map((op) => ({ label: op.pipeline.label, flops: op.flops })));
    let di = 0;
    const groupsBefore = gpu.counters.bindGroups;
    for (const op of this.ops) {
      if (op.kind === 'copy') {
        if (pass) {
          pass.end();
          pass = null;
        }
        enc.copyBufferToBuffer(op.src, op.srcOffset, op.dst, op.dstOffset, op.size);
        continue;
      }
      if (prof) {
        pass?.end();
        pass = enc.beginComputePass({ label: this.label, timestampWrites: prof.writes[di++] });
      } else if (!pass) pass = enc.beginComputePass({ label: this.label });
      const entries: GPUBindGroupEntry[] = [];
      if (op.uniformOffset >= 0 && ubuf) {
        entries.push({ binding: 0, resource: { buffer: ubuf, offset: op.uniformOffset, size: op.uniformSize } });
      }
      op.bindings.forEach((b, i) => {
        let resource: GPUBufferBinding;
        if (isGpuBuffer(b)) resource = { buffer: b };
        else if ('shape' in b) resource = { buffer: b.buffer };
        else resource = { buffer: b.buffer, offset: b.offset ?? 0, size: b.size };
        entries.push({ binding: i + 1, resource });
      });
      const bindGroup = gpu.submitCache.bindGroup(device, op.pipeline, entries, gpu.counters);
      const made = gpu.counters.bindGroups - groupsBefore;
      const budget = gpu.submitCache.budget;
      if (budget !== null && made > budget) {
        throw new GpuLimitError(
          `Submit "${this.label}" needs more than ${budget} new GPU bind groups (${this.ops.length} ` +
            `operations in one submit; a mixture-of-experts model dispatches every expert's linears apart). ` +
            `This driver keeps each one as a memory mapping and the process may hold only ` +
            `vm.max_map_count of them, so going on would crash it. Raise the limit ` +
            `(sudo sysctl -w vm.max_map_count=1048576), train a model with fewer layers or experts, ` +
            `or use a GPU.`,
        );
      }
      pass.setPipeline(op.pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(op.workgroups[0], op.workgroups[1], op.workgroups[2]);
    }
    if (pass) pass.end();
    prof?.finish(enc);
    device.queue.submit([enc.finish()]);
    prof?.after();
    gpu.counters.submits++;
    if (ubuf && !keptUniforms) gpu.submitCache.retire(device, ubuf);
  }
}

/** Packs uniform parameters: integers as u32 (or i32 when negative), `{f: x}` as f32. */
export function params(...values: (number | { f: number })[]): Uint32Array {
  const out = new Uint32Array(Math.max(4, Math.ceil(values.length / 4) * 4));
  const f = new Float32Array(out.buffer);
  values.forEach((v, i) => {
    if (typeof v === 'number') {
      if (!Number.isInteger(v))
        throw new GpuError(`Uniform parameter ${i} (${v}) must be an integer; wrap floats as {f: x}.`);
      out[i] = v >>> 0;
    } else f[i] = v.f;
  });
  return out;
}
