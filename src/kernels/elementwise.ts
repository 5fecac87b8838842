/**
 * Element-wise helpers (add, axpy, scale, fill, strided row copy) and the deterministic global
 * sum of squares used for gradient-norm clipping (see shaders/elementwise.wgsl).
 *
 * Also home of the small WGSL template helpers shared by the norm / rope / activation / embedding /
 * optim wrappers: `wgslKernel` (prelude + common part + one `//#kernel` section of a file) and
 * `weightLoader` (widening f16 / bf16 weights packed two per u32, or reading f32 through u32 words).
 */
import code from '../../shaders/elementwise.wgsl?raw';
import { type Gpu, type Recorder, params } from '../gpu/context';
import { GpuError, GpuLimitError } from '../gpu/errors';
import { DTYPE_BYTES, type Tensor } from '../gpu/tensor';
import type { Workspace } from '../gpu/workspace';
import type { WeightDType } from './matmul';

export type { WeightDType } from './matmul';

// ------------------------------------------------------------------ template helpers

const MARK = /^\/\/#kernel (\w+)[^\n]*$/gm;
const sectionCache = new Map<string, { common: string; kernels: Map<string, string> }>();

function sections(source: string): { common: string; kernels: Map<string, string> } {
  let s = sectionCache.get(source);
  if (!s) {
    const marks = [...source.matchAll(MARK)];
    const kernels = new Map<string, string>();
    for (let i = 0; i < marks.length; i++) {
      const start = marks[i]!.index;
      const end = i + 1 < marks.length ? marks[i + 1]!.index : source.length;
      kernels.set(marks[i]![1]!, source.slice(start, end));
    }
    s = { common: marks.length ? source.slice(0, marks[0]!.index) : source, kernels };
    sectionCache.set(source, s);
  }
  return s;
}

/**
 * The WGSL of one kernel of a template file: `prelude` lines (generated consts, loaders), then the
 * file's common part (text before the first `//#kernel` marker), then the kernel's section.
 */
export function wgslKernel(source: string, kernel: string, prelude: readonly string[] = []): string {
  const s = sections(source);
  const body = s.kernels.get(kernel);
  if (!body) throw new GpuError(`No kernel "${kernel}" in the shader template.`);
  return `// ---- generated prelude (${kernel})\n${prelude.join('\n')}\n// ---- end of prelude\n${s.common}\n${body}`;
}

/** The weight element type of `t`, or a clear error. */
export function weightDType(t: Tensor, what: string): WeightDType {
  if (t.dtype === 'f32' || t.dtype === 'f16' || t.dtype === 'bf16') return t.dtype;
  throw new GpuError(`${what}: "${t.label}" has dtype ${t.dtype}; expected f32, f16 or bf16.`);
}

/**
 * WGSL `fn <fnName>(i: u32) -> f32` reading element i of a weight bound as `array<u32>` named `arr`:
 * f32 through bitcast, f16 with unpack2x16float, bf16 as the high half of an f32. Element i of a
 * 16-bit tensor is the low half of word i/2 when i is even, the high half when odd.
 */
export function weightLoader(fnName: string, arr: string, dtype: WeightDType): string {
  if (dtype === 'f32') return `fn ${fnName}(i: u32) -> f32 { return bitcast<f32>(${arr}[i]); }`;
  if (dtype === 'f16') return `fn ${fnName}(i: u32) -> f32 { return unpack2x16float(${arr}[i >> 1u])[i & 1u]; }`;
  return `fn ${fnName}(i: u32) -> f32 { return bitcast<f32>((${arr}[i >> 1u] >> ((i & 1u) << 4u)) << 16u); }`;
}

/** Throws unless `t` holds at least `elems` elements of its dtype. */
export function needElems(what: string, name: string, t: Tensor, elems: number, dtypes?: readonly string[]): void {
  if (dtypes && !dtypes.includes(t.dtype)) {
    throw new GpuError(`${what}: ${name} "${t.label}" must be ${dtypes.join(' or ')}, got ${t.dtype}.`);
  }
  const bytes = elems * DTYPE_BYTES[t.dtype];
  if (t.buffer.size < bytes) {
    throw new GpuError(`${what}: ${name} "${t.label}" has ${t.buffer.size} bytes; the shapes need ${bytes}.`);
  }
}

/** Throws unless every value is a non-negative integer. */
export function needDims(what: string, dims: Record<string, number>): void {
  for (const [k, x] of Object.entries(dims)) {
    if (!Number.isInteger(x) || x < 0) throw new GpuError(`${what}: ${k} must be a non-negative integer, got ${x}.`);
  }
}

/** Throws if two bindings of one dispatch share a buffer and one of them is written. */
export function noAlias(what: string, written: Tensor, others: Record<string, Tensor | undefined>): void {
  for (const [k, t] of Object.entries(others)) {
    if (t && t.buffer === written.buffer) {
      throw new GpuError(`${what}: "${written.label}" (written) must not share a buffer with ${k} "${t.label}".`);
    }
  }
}

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

const f32Bits = new Float32Array(1);
const f32Word = new Uint32Array(f32Bits.buffer);

// ------------------------------------------------------------------ element-wise

export interface AddArgs {
  a: Tensor; // f32 [n]
  b: Tensor; // f32 [n]
  /** f32 [n]: out = a + alpha·b. Omitted: a += alpha·b in place. Must not alias b. */
  out?: Tensor;
  n: number;
  /** Multiplier of b (default 1). */
  alpha?: number;
}

/** out = a + alpha·b, or a += alpha·b when `out` is omitted. */
export function recordAdd(gpu: Gpu, rec: Recorder, a: AddArgs): void {
  const what = 'recordAdd';
  needDims(what, { n: a.n });
  needElems(what, 'a', a.a, a.n, ['f32']);
  needElems(what, 'b', a.b, a.n, ['f32']);
  if (a.n === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, a.n);
  const u = params(a.n, stride, { f: a.alpha ?? 1 }, 0);
  if (a.out && a.out.buffer !== a.a.buffer) {
    needElems(what, 'out', a.out, a.n, ['f32']);
    noAlias(what, a.out, { b: a.b });
    rec.dispatch(gpu.pipeline('ew_add', wgslKernel(code, 'ew_add')), [a.a, a.b, a.out], [gx, gy], u);
  } else {
    noAlias(what, a.a, { b: a.b });
    rec.dispatch(gpu.pipeline('ew_axpy', wgslKernel(code, 'ew_axpy')), [a.a, a.b], [gx, gy], u);
  }
}

export interface ScaleArgs {
  x: Tensor; // f32 [n]
  /** f32 [n]; omitted: x *= scale in place. */
  out?: Tensor;
  n: number;
  scale: number;
}

/** out = x·scale, or x *= scale when `out` is omitted. */
export function recordScale(gpu: Gpu, rec: Recorder, a: ScaleArgs): void {
  const what = 'recordScale';
  needDims(what, { n: a.n });
  needElems(what, 'x', a.x, a.n, ['f32']);
  if (a.n === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, a.n);
  const u = params(a.n, stride, { f: a.scale }, 0);
  if (a.out && a.out.buffer !== a.x.buffer) {
    needElems(what, 'out', a.out, a.n, ['f32']);
    rec.dispatch(gpu.pipeline('ew_scale', wgslKernel(code, 'ew_scale')), [a.x, a.out], [gx, gy], u);
  } else {
    rec.dispatch(gpu.pipeline('ew_scale_ip', wgslKernel(code, 'ew_scale_ip')), [a.x], [gx, gy], u);
  }
}

export interface FillArgs {
  /** f32, u32 or i32 tensor; elements [offset, offset + n) are set. */
  out: Tensor;
  n: number;
  /** Stored as f32 for f32 tensors, as an integer for u32 / i32 ones. */
  value: number;
  /** First element (default 0). */
  offset?: number;
}

/** out[offset + i] = value for i < n. */
export function recordFill(gpu: Gpu, rec: Recorder, a: FillArgs): void {
  const what = 'recordFill';
  const off = a.offset ?? 0;
  needDims(what, { n: a.n, offset: off });
  needElems(what, 'out', a.out, off + a.n, ['f32', 'u32', 'i32']);
  if (a.n === 0) return;
  let bits: number;
  if (a.out.dtype === 'f32') {
    f32Bits[0] = a.value;
    bits = f32Word[0]!;
  } else {
    if (!Number.isInteger(a.value))
      throw new GpuError(`${what}: ${a.out.dtype} fill value must be an integer, got ${a.value}.`);
    bits = a.value >>> 0;
  }
  const [gx, gy, stride] = flatGrid(gpu, a.n);
  rec.dispatch(gpu.pipeline('ew_fill', wgslKernel(code, 'ew_fill')), [a.out], [gx, gy], params(a.n, stride, bits, off));
}

export interface CopyArgs {
  /** 4-byte elements (f32 / u32 / i32). */
  src: Tensor;
  dst: Tensor;
  /** Elements copied. */
  n: number;
  /** First element read / written (default 0). */
  srcOffset?: number;
  dstOffset?: number;
}

/**
 * dst[dstOffset + i] = src[srcOffset + i] for i < n, bit for bit (copyBufferToBuffer: it ends the
 * current compute pass; src and dst must be different buffers).
 */
export function recordCopy(gpu: Gpu, rec: Recorder, a: CopyArgs): void {
  const what = 'recordCopy';
  const so = a.srcOffset ?? 0,
    dO = a.dstOffset ?? 0;
  needDims(what, { n: a.n, srcOffset: so, dstOffset: dO });
  const types = ['f32', 'u32', 'i32'];
  needElems(what, 'src', a.src, so + a.n, types);
  needElems(what, 'dst', a.dst, dO + a.n, types);
  noAlias(what, a.dst, { src: a.src });
  if (a.n === 0) return;
  rec.copy(a.src, a.dst, a.n * 4, so * 4, dO * 4);
}

export interface CopyRowsArgs {
  /** 4-byte elements (f32 / u32 / i32), row pitch srcStride. */
  src: Tensor;
  /** Same element size, row pitch dstStride; must not share src's buffer. */
  dst: Tensor;
  rows: number;
  /** Elements copied per row. */
  width: number;
  /** Row pitches in elements (default width). */
  srcStride?: number;
  dstStride?: number;
  /** First row / column read and written (default 0). */
  srcRow0?: number;
  srcCol0?: number;
  dstRow0?: number;
  dstCol0?: number;
  /** Add as f32 instead of copying bits (default false). */
  accumulate?: boolean;
}

/**
 * dst[(dstRow0 + t)·dstStride + dstCol0 + j] (+)= src[(srcRow0 + t)·srcStride + srcCol0 + j] for
 * t < rows, j < width, e.g. appending [T, W] keys into a [Lmax, W] cache at row `past`.
 */
export function recordCopyRows(gpu: Gpu, rec: Recorder, a: CopyRowsArgs): void {
  const what = 'recordCopyRows';
  const srcStride = a.srcStride ?? a.width;
  const dstStride = a.dstStride ?? a.width;
  const sr = a.srcRow0 ?? 0,
    sc = a.srcCol0 ?? 0,
    dr = a.dstRow0 ?? 0,
    dc = a.dstCol0 ?? 0;
  needDims(what, {
    rows: a.rows,
    width: a.width,
    srcStride,
    dstStride,
    srcRow0: sr,
    srcCol0: sc,
    dstRow0: dr,
    dstCol0: dc,
  });
  if (a.rows === 0 || a.width === 0) return;
  const types = a.accumulate ? ['f32'] : ['f32', 'u32', 'i32'];
  needElems(what, 'src', a.src, (sr + a.rows - 1) * srcStride + sc + a.width, types);
  needElems(what, 'dst', a.dst, (dr + a.rows - 1) * dstStride + dc + a.width, types);
  noAlias(what, a.dst, { src: a.src });
  const maxWg = gpu.limits.maxComputeWorkgroupsPerDimension;
  const gx = Math.ceil(a.width / 64);
  if (gx > maxWg) throw new GpuLimitError(`${what}: rows of ${a.width} elements are too wide for one dispatch.`);
  const yGroups = Math.ceil(a.rows / 4);
  const gy = Math.min(yGroups, maxWg);
  const gz = Math.ceil(yGroups / gy);
  const u = params(a.rows, a.width, srcStride, sr, sc, dstStride, dr, dc, a.accumulate ? 1 : 0, gy * 4, 0, 0);
  rec.dispatch(gpu.pipeline('ew_copy_rows', wgslKernel(code, 'ew_copy_rows')), [a.src, a.dst], [gx, gy, gz], u);
}

// ------------------------------------------------------------------ sum of squares

const SUMSQ_WG = 256;
/** Elements one workgroup of the first stage reduces. */
export const SUMSQ_CHUNK = SUMSQ_WG * 16;

export interface SumSquaresArgs {
  /** f32 tensors; the first n elements of each are included. */
  tensors: { t: Tensor; n: number }[];
  /** f32: out[outIndex] = Σ over tensors Σ_i t[i]² (overwritten). */
  out: Tensor;
  /** Scratch for the per-workgroup partial sums ('sumsq.partials'). */
  ws: Workspace;
  outIndex?: number;
}

/**
 * out[outIndex] = Σ_k Σ_{i<n_k} t_k[i]², in two deterministic stages: one dispatch per tensor writes
 * one partial per SUMSQ_CHUNK elements, then one workgroup adds all partials in a fixed order.
 * Nothing is read back; the optimizers read `out` for global-norm clipping.
 */
export function recordSumSquares(gpu: Gpu, rec: Recorder, a: SumSquaresArgs): void {
  const what = 'recordSumSquares';
  const outIndex = a.outIndex ?? 0;
  needDims(what, { outIndex });
  needElems(what, 'out', a.out, outIndex + 1, ['f32']);
  let count = 0;
  const groups: number[] = [];
  for (const [k, { t, n }] of a.tensors.entries()) {
    needDims(what, { [`n of tensor ${k}`]: n });
    needElems(what, `tensor ${k}`, t, n, ['f32']);
    noAlias(what, a.out, { [`tensor ${k}`]: t });
    const g = Math.ceil(n / SUMSQ_CHUNK);
    groups.push(g);
    count += g;
  }
  const partials = a.ws.get('sumsq.partials', [Math.max(1, count)]);
  const prelude = [`const WG: u32 = ${SUMSQ_WG}u;`];
  const part = gpu.pipeline('sumsq_partial', wgslKernel(code, 'sumsq_partial', prelude));
  let base = 0;
  a.tensors.forEach(({ t, n }, k) => {
    const g = groups[k]!;
    if (g === 0) return;
    const [gx, gy] = itemGrid(gpu, g);
    rec.dispatch(part, [t, partials], [gx, gy], params(n, SUMSQ_CHUNK, base, gx));
    base += g;
  });
  const fin = gpu.pipeline('sumsq_final', wgslKernel(code, 'sumsq_final', prelude));
  rec.dispatch(fin, [partials, a.out], [1], params(count, outIndex, 0, 0));
}
