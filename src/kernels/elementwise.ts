/**
 * Element-wise helpers (add, axpy, scale, fill, strided row copy) and the deterministic global
 * sum of squares used for gradient-norm clipping (see shaders/elementwise.wgsl).
 */
import code from '../../shaders/elementwise.wgsl?raw';
import { type Gpu, type Recorder, params } from '../gpu/context';
import { GpuError, GpuLimitError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import type { Workspace } from '../gpu/workspace';
import { flatGrid, itemGrid, needDims, needElems, noAlias, variantPipeline } from './common';

/** The pipeline of one section of shaders/elementwise.wgsl (no generated prelude). */
function kernel(gpu: Gpu, name: string): GPUComputePipeline {
  return variantPipeline(gpu, name, () => ({ source: code, kernel: name }));
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
    rec.dispatch(kernel(gpu, 'ew_add'), [a.a, a.b, a.out], [gx, gy], u);
  } else {
    noAlias(what, a.a, { b: a.b });
    rec.dispatch(kernel(gpu, 'ew_axpy'), [a.a, a.b], [gx, gy], u);
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
    rec.dispatch(kernel(gpu, 'ew_scale'), [a.x, a.out], [gx, gy], u);
  } else {
    rec.dispatch(kernel(gpu, 'ew_scale_ip'), [a.x], [gx, gy], u);
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
  rec.dispatch(kernel(gpu, 'ew_fill'), [a.out], [gx, gy], params(a.n, stride, bits, off));
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
  rec.dispatch(kernel(gpu, 'ew_copy_rows'), [a.src, a.dst], [gx, gy, gz], u);
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
  const part = variantPipeline(gpu, 'sumsq_partial', () => ({ source: code, kernel: 'sumsq_partial', prelude }));
  let base = 0;
  a.tensors.forEach(({ t, n }, k) => {
    const g = groups[k]!;
    if (g === 0) return;
    const [gx, gy] = itemGrid(gpu, g);
    rec.dispatch(part, [t, partials], [gx, gy], params(n, SUMSQ_CHUNK, base, gx));
    base += g;
  });
  const fin = variantPipeline(gpu, 'sumsq_final', () => ({ source: code, kernel: 'sumsq_final', prelude }));
  rec.dispatch(fin, [partials, a.out], [1], params(count, outIndex, 0, 0));
}
