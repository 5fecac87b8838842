/**
 * Kernel infrastructure shared by every wrapper in src/kernels/, so each wrapper holds only its
 * shapes, bindings and dispatches:
 *
 *   WGSL assembly   `wgslModule`: one way to build a shader variant. A template file
 *                   (shaders/*.wgsl) is a common part followed by `//#kernel <name>` sections;
 *                   a module is `enable` lines + a generated prelude (consts, bindings, loaders that
 *                   bake in the variant) + libraries + the common part + one section.
 *   weights         `weightDType`, `weightArrayType`, `weightRead`, `weightLoader`: frozen weights
 *                   in f32, or f16 / bf16 packed two per u32 and widened in the loader (or, with
 *                   shader-f16, f16 read natively). No kernel needs `shader-f16`.
 *   checks          `needDims`, `needElems`, `noAlias`, `bindable`: argument errors that name the
 *                   kernel, the tensor, what was expected and what was got.
 *   windows         `bindingLimit`, `windowOf`, `rowsPerWindow`: a tensor over the storage binding
 *                   limit is bound as windows of its buffer at aligned offsets.
 *   grids           `flatGrid`, `itemGrid`: 2D grids past the 65,535-workgroups-per-dimension limit.
 */
import type { Binding, Gpu } from '../gpu/context';
import { GpuError, GpuLimitError } from '../gpu/errors';
import { DTYPE_BYTES, type Tensor } from '../gpu/tensor';

// ------------------------------------------------------------------ WGSL assembly

const MARK = /^\/\/#kernel (\w+)[^\n]*$/gm;

interface Sections {
  common: string;
  kernels: Map<string, string>;
}

const sectionCache = new Map<string, Sections>();

/** The common part (text before the first `//#kernel` marker) and the sections of a template. */
export function templateSections(source: string): Sections {
  let s = sectionCache.get(source);
  if (!s) {
    const marks = [...source.matchAll(MARK)];
    const kernels = new Map<string, string>();
    marks.forEach((m, i) => {
      const end = i + 1 < marks.length ? marks[i + 1]!.index : source.length;
      kernels.set(m[1]!, source.slice(m.index, end));
    });
    s = { common: marks.length ? source.slice(0, marks[0]!.index) : source, kernels };
    sectionCache.set(source, s);
  }
  return s;
}

export interface ModuleSpec {
  /** The template text (a shaders/*.wgsl file imported with `?raw`). */
  source: string;
  /** The `//#kernel` section to use; omitted: the whole template (a file with one kernel). */
  kernel?: string;
  /** Generated lines placed before the template: consts, bindings and loaders of the variant. */
  prelude?: readonly string[];
  /** Extensions the variant needs (`f16`, `subgroups`); WGSL wants `enable` first. */
  enable?: readonly string[];
  /** Function libraries placed after the prelude (e.g. the common part of shaders/dropout.wgsl). */
  libs?: readonly string[];
  /** A description of the variant for the prelude's opening comment (default: the kernel name). */
  describe?: string;
}

/** The WGSL of one kernel variant (see ModuleSpec). */
export function wgslModule(spec: ModuleSpec): string {
  const t = templateSections(spec.source);
  let body = spec.source;
  if (spec.kernel !== undefined) {
    const section = t.kernels.get(spec.kernel);
    if (section === undefined) throw new GpuError(`No kernel "${spec.kernel}" in the shader template.`);
    body = `${t.common}\n${section}`;
  }
  const out: string[] = [];
  for (const e of spec.enable ?? []) out.push(`enable ${e};`);
  out.push(`// ---- generated prelude: ${spec.describe ?? spec.kernel ?? 'module'}`);
  out.push(...(spec.prelude ?? []));
  out.push('// ---- end of prelude', '');
  for (const lib of spec.libs ?? []) out.push(lib);
  out.push(body);
  return out.join('\n');
}

const variantSources = new Map<string, string>();

/**
 * The compute pipeline of a kernel variant. `label` must name the variant completely (kernel, baked
 * tile sizes, dtypes, flags): the WGSL is built once per label, so recording the hundreds of
 * dispatches of a step does not rebuild and hash shader text. `entryPoint` defaults to `main`.
 */
export function variantPipeline(
  gpu: Gpu,
  label: string,
  build: () => ModuleSpec | string,
  entryPoint = 'main',
): GPUComputePipeline {
  let code = variantSources.get(label);
  if (code === undefined) {
    const spec = build();
    code = typeof spec === 'string' ? spec : wgslModule(spec);
    variantSources.set(label, code);
  }
  return gpu.pipeline(label, code, entryPoint);
}

// ------------------------------------------------------------------ weights

/** Element types a frozen weight may have on the GPU. */
export type WeightDType = 'f32' | 'f16' | 'bf16';

/** What a matmul's B holds: a weight dtype, or 4-bit NF4 blocks (QLoRA's frozen weights). */
export type MatmulBType = WeightDType | 'nf4';

export interface WeightBindingOptions {
  /** An f32 weight is bound as array<f32> (default: array<u32>, read through bitcast). */
  typedF32?: boolean;
  /** An f16 weight is bound as array<f16> and read natively (needs `enable f16`). */
  nativeF16?: boolean;
}

/** The weight element type of `t`, or an error naming the kernel and the tensor. */
export function weightDType(t: Tensor, what: string): WeightDType {
  if (t.dtype === 'f32' || t.dtype === 'f16' || t.dtype === 'bf16') return t.dtype;
  throw new GpuError(`${what}: "${t.label}" has dtype ${t.dtype}; expected f32, f16 or bf16.`);
}

/** The WGSL storage type a weight of `dtype` is bound as. */
export function weightArrayType(dtype: WeightDType, o: WeightBindingOptions = {}): string {
  if (dtype === 'f32') return o.typedF32 ? 'array<f32>' : 'array<u32>';
  if (dtype === 'f16' && o.nativeF16) return 'array<f16>';
  return 'array<u32>';
}

/**
 * WGSL `fn <fnName>(i: u32) -> f32` reading element i of a weight bound as `arr`
 * (weightArrayType): f32 directly or through bitcast, f16 with unpack2x16float, bf16 as the high
 * half of an f32. Element i of a 16-bit tensor is the low half of word i/2 when i is even, the high
 * half when odd. Every path widens exactly, so the loaders are bit-identical to one another.
 */
export function weightLoader(fnName: string, arr: string, dtype: WeightDType, o: WeightBindingOptions = {}): string {
  let body: string;
  if (dtype === 'f32') body = o.typedF32 ? `return ${arr}[i];` : `return bitcast<f32>(${arr}[i]);`;
  else if (dtype === 'f16' && o.nativeF16) body = `return f32(${arr}[i]);`;
  else if (dtype === 'f16') body = `let v = unpack2x16float(${arr}[i >> 1u]); return select(v.x, v.y, (i & 1u) == 1u);`;
  else body = `let w = ${arr}[i >> 1u]; return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (i & 1u) == 1u));`;
  return `fn ${fnName}(i: u32) -> f32 { ${body} }`;
}

/** Bytes per element of a tensor of this dtype. */
export function elemBytes(t: Tensor): number {
  return DTYPE_BYTES[t.dtype];
}

// ------------------------------------------------------------------ checks

/** Throws unless every value is a non-negative integer. */
export function needDims(what: string, dims: Record<string, number>): void {
  for (const [k, x] of Object.entries(dims)) {
    if (!Number.isInteger(x) || x < 0) throw new GpuError(`${what}: ${k} must be a non-negative integer, got ${x}.`);
  }
}

/** Throws unless `t` has one of `dtypes` (when given) and holds at least `elems` elements. */
export function needElems(what: string, name: string, t: Tensor, elems: number, dtypes?: readonly string[]): void {
  if (dtypes && !dtypes.includes(t.dtype)) {
    throw new GpuError(`${what}: ${name} "${t.label}" must be ${dtypes.join(' or ')}, got ${t.dtype}.`);
  }
  const bytes = elems * DTYPE_BYTES[t.dtype];
  if (t.buffer.size < bytes) {
    throw new GpuError(`${what}: ${name} "${t.label}" has ${t.buffer.size} bytes; the shapes need ${bytes}.`);
  }
}

/** Throws if the written tensor shares a buffer with another binding of the same dispatch. */
export function noAlias(what: string, written: Tensor, others: Record<string, Tensor | null | undefined>): void {
  for (const [k, t] of Object.entries(others)) {
    if (t && t.buffer === written.buffer) {
      throw new GpuError(`${what}: "${written.label}" (written) must not share a buffer with ${k} "${t.label}".`);
    }
  }
}

/** Tensors bound whole must fit one storage binding; the error says what to lower. */
export function bindable(gpu: Gpu, what: string, named: Record<string, Tensor | null | undefined>): void {
  const limit = gpu.limits.maxStorageBufferBindingSize;
  for (const [name, t] of Object.entries(named)) {
    if (t && t.buffer.size > limit) {
      throw new GpuLimitError(
        `${what}: ${name} "${t.label}" is ${t.buffer.size} bytes, over this GPU's ${limit}-byte storage binding limit; ` +
          'use fewer tokens per step (batch x sequence length).',
      );
    }
  }
}

// ------------------------------------------------------------------ binding windows

/** The per-binding byte limit: the device's, or a lower one (tests of the chunked paths). */
export function bindingLimit(gpu: Gpu, maxBindingBytes?: number): number {
  const dev = gpu.limits.maxStorageBufferBindingSize;
  return Math.floor(Math.min(dev, maxBindingBytes ?? dev) / 16) * 16;
}

export interface Window {
  binding: Binding;
  /** Elements of the buffer before the binding's start: global index - first = index in the binding. */
  first: number;
}

/**
 * Binds elements [lo, hi) of `t`: the whole buffer when it fits `limit`, else a window starting at
 * `lo` aligned down to minStorageBufferOffsetAlignment, with its size rounded up to 16 bytes (so
 * kernels may bind it as an array of 16-byte vectors; buffers are multiples of 16 bytes).
 */
export function windowOf(gpu: Gpu, t: Tensor, lo: number, hi: number, limit: number, what: string): Window {
  if (t.buffer.size <= limit) return { binding: t, first: 0 };
  const eb = elemBytes(t);
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  if (hi <= lo) return { binding: { buffer: t.buffer, offset: 0, size: Math.min(t.buffer.size, align) }, first: 0 };
  const start = Math.floor((lo * eb) / align) * align;
  const end = Math.min(t.buffer.size, Math.ceil((hi * eb) / 16) * 16);
  if (end - start > limit) {
    throw new GpuLimitError(
      `${what} "${t.label}" needs a ${end - start}-byte binding for one chunk; the limit is ${limit} bytes.`,
    );
  }
  return { binding: { buffer: t.buffer, offset: start, size: end - start }, first: start / eb };
}

/**
 * Rows of `rowElems` elements of `t` that one window holds (with room for the aligned start), or
 * Infinity when `t` fits `limit` whole; an error when not even one row fits.
 */
export function rowsPerWindow(gpu: Gpu, t: Tensor, rowElems: number, limit: number, what: string): number {
  if (t.buffer.size <= limit) return Infinity;
  const rowBytes = rowElems * elemBytes(t);
  const rows = Math.floor((limit - gpu.limits.minStorageBufferOffsetAlignment - 16) / Math.max(1, rowBytes));
  if (rows < 1) {
    throw new GpuLimitError(
      `${what}: one row of "${t.label}" (${rowBytes} bytes) does not fit a ${limit}-byte storage binding.`,
    );
  }
  return rows;
}

// ------------------------------------------------------------------ grids

/** 2D grid of `wg`-wide workgroups covering n invocations: [x groups, y groups, row pitch]. */
export function flatGrid(gpu: Gpu, n: number, wg = 256): [number, number, number] {
  const groups = Math.ceil(n / wg);
  const gx = Math.max(1, Math.min(groups, gpu.limits.maxComputeWorkgroupsPerDimension));
  const gy = Math.ceil(groups / gx);
  return [gx, gy, gx * wg];
}

/** 2D grid of one workgroup per item (row): [x groups, y groups]; item = wid.x + wid.y * gx. */
export function itemGrid(gpu: Gpu, items: number): [number, number] {
  const gx = Math.max(1, Math.min(items, gpu.limits.maxComputeWorkgroupsPerDimension));
  return [gx, Math.ceil(items / gx)];
}
