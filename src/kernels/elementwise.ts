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
export function recordAdd(gpu: Gpu, rec: Recorder, args: AddArgs): void {
  const what = 'recordAdd';
  needDims(what, { n: args.n });
  needElems(what, 'a', args.a, args.n, ['f32']);
  needElems(what, 'b', args.b, args.n, ['f32']);
  if (args.n === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, args.n);
  const u = params(args.n, stride, { f: args.alpha ?? 1 }, 0);
  if (args.out && args.out.buffer !== args.a.buffer) {
    needElems(what, 'out', args.out, args.n, ['f32']);
    noAlias(what, args.out, { b: args.b });
    rec.dispatch(kernel(gpu, 'ew_add'), [args.a, args.b, args.out], [gx, gy], u);
  } else {
    noAlias(what, args.a, { b: args.b });
    rec.dispatch(kernel(gpu, 'ew_axpy'), [args.a, args.b], [gx, gy], u);
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
export function recordScale(gpu: Gpu, rec: Recorder, args: ScaleArgs): void {
  const what = 'recordScale';
  needDims(what, { n: args.n });
  needElems(what, 'x', args.x, args.n, ['f32']);
  if (args.n === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, args.n);
  const u = params(args.n, stride, { f: args.scale }, 0);
  if (args.out && args.out.buffer !== args.x.buffer) {
    needElems(what, 'out', args.out, args.n, ['f32']);
    rec.dispatch(kernel(gpu, 'ew_scale'), [args.x, args.out], [gx, gy], u);
  } else {
    rec.dispatch(kernel(gpu, 'ew_scale_ip'), [args.x], [gx, gy], u);
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
export function recordFill(gpu: Gpu, rec: Recorder, args: FillArgs): void {
  const what = 'recordFill';
  const off = args.offset ?? 0;
  needDims(what, { n: args.n, offset: off });
  needElems(what, 'out', args.out, off + args.n, ['f32', 'u32', 'i32']);
  if (args.n === 0) return;
  let bits: number;
  if (args.out.dtype === 'f32') {
    f32Bits[0] = args.value;
    bits = f32Word[0]!;
  } else {
    if (!Number.isInteger(args.value))
      throw new GpuError(`${what}: ${args.out.dtype} fill value must be an integer, got ${args.value}.`);
    bits = args.value >>> 0;
  }
  const [gx, gy, stride] = flatGrid(gpu, args.n);
  rec.dispatch(kernel(gpu, 'ew_fill'), [args.out], [gx, gy], params(args.n, stride, bits, off));
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
export function recordCopy(gpu: Gpu, rec: Recorder, args: CopyArgs): void {
  const what = 'recordCopy';
  const so = args.srcOffset ?? 0,
    dO = args.dstOffset ?? 0;
  needDims(what, { n: args.n, srcOffset: so, dstOffset: dO });
  const types = ['f32', 'u32', 'i32'];
  needElems(what, 'src', args.src, so + args.n, types);
  needElems(what, 'dst', args.dst, dO + args.n, types);
  noAlias(what, args.dst, { src: args.src });
  if (args.n === 0) return;
  rec.copy(args.src, args.dst, args.n * 4, so * 4, dO * 4);
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
export function recordCopyRows(gpu: Gpu, rec: Recorder, args: CopyRowsArgs): void {
  const what = 'recordCopyRows';
  const srcStride = args.srcStride ?? args.width;
  const dstStride = args.dstStride ?? args.width;
  const sr = args.srcRow0 ?? 0,
    sc = args.srcCol0 ?? 0,
    dr = args.dstRow0 ?? 0,
    dc = args.dstCol0 ?? 0;
  needDims(what, {
    rows: args.rows,
    width: args.width,
    srcStride,
    dstStride,
    srcRow0: sr,
    srcCol0: sc,
    dstRow0: dr,
    dstCol0: dc,
  });
  if (args.rows === 0 || args.width === 0) return;
  const types = args.accumulate ? ['f32'] : ['f32', 'u32', 'i32'];
  needElems(what, 'src', args.src, (sr + args.rows - 1) * srcStride + sc + args.width, types);
  needElems(what, 'dst', args.dst, (dr + args.rows - 1) * dstStride + dc + args.width, types);
  noAlias(what, args.dst, { src: args.src });
  const maxWg = gpu.limits.maxComputeWorkgroupsPerDimension;
  const gx = Math.ceil(args.width / 64);
  if (gx > maxWg) throw new GpuLimitError(`${what}: rows of ${args.width} elements are too wide for one dispatch.`);
  const yGroups = Math.ceil(args.rows / 4);
  const gy = Math.min(yGroups, maxWg);
  const gz = Math.ceil(yGroups / gy);
  const u = params(args.rows, args.width, srcStride, sr, sc, dstStride, dr, dc, args.accumulate ? 1 : 0, gy * 4, 0, 0);
  rec.dispatch(kernel(gpu, 'ew_copy_rows'), [args.src, args.dst], [gx, gy, gz], u);
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
export function recordSumSquares(gpu: Gpu, rec: Recorder, args: SumSquaresArgs): void {
  const what = 'recordSumSquares';
  const outIndex = args.outIndex ?? 0;
  needDims(what, { outIndex });
  needElems(what, 'out', args.out, outIndex + 1, ['f32']);
  let count = 0;
  const groups: number[] = [];
  for (const [k, { t, n }] of args.tensors.entries()) {
    needDims(what, { [`n of tensor ${k}`]: n });
    needElems(what, `tensor ${k}`, t, n, ['f32']);
    noAlias(what, args.out, { [`tensor ${k}`]: t });
    const g = Math.ceil(n / SUMSQ_CHUNK);
    groups.push(g);
    count += g;
  }
  const partials = args.ws.get('sumsq.partials', [Math.max(1, count)]);
  const prelude = [`const WG: u32 = ${SUMSQ_WG}u;`];
  const part = variantPipeline(gpu, 'sumsq_partial', () => ({ source: code, kernel: 'sumsq_partial', prelude }));
  let base = 0;
  args.tensors.forEach(({ t, n }, k) => {
    const g = groups[k]!;
    if (g === 0) return;
    const [gx, gy] = itemGrid(gpu, g);
    rec.dispatch(part, [t, partials], [gx, gy], params(n, SUMSQ_CHUNK, base, gx));
    base += g;
  });
  const fin = variantPipeline(gpu, 'sumsq_final', () => ({ source: code, kernel: 'sumsq_final', prelude }));
  rec.dispatch(fin, [partials, args.out], [1], params(count, outIndex, 0, 0));
}
