/**
 * 4-bit NF4 frozen weights on the GPU (bitsandbytes' QLoRA format, src/reference/nf4.ts): the
 * storage layout the loader writes and the matmuls read, and a dequantize kernel (tests, the
 * self-test, the interop dump).
 *
 * One weight of [rows, cols] (out, in; always nn.Linear's order, a Conv1D weight was transposed
 * before quantizing) is two buffers:
 *   q      u32 words holding the ceil(n / 2) packed bytes exactly as bitsandbytes stores them
 *   stats  u32 words (nf4StatsLayout): the 16 code values, then either one f32 absmax per block of
 *          64, or (double quantization) the 256-value dynamic map, the offset, one f32 absmax2 per
 *          256 blocks and one u8 absmax index per block packed four to a word.
 * The WGSL reads (shaders/nf4.wgsl) take the section offsets as arguments.
 */
import dequantCode from '../../shaders/nf4_dequant.wgsl?raw';
import library from '../../shaders/nf4.wgsl?raw';
import { type Gpu, type Recorder, params } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { MemoryCategory, Tensor } from '../gpu/tensor';
import { type Nf4Host, nestedBlocks, nf4Blocks } from '../numerics/nf4';
import { flatGrid, variantPipeline } from './common';

export interface Nf4StatsLayout {
  /** Word offset of the absmax section (f32 per block, or u8 indices four per word). */
  absOff: number;
  /** Word offset of absmax2 (double quantization; 0 without). */
  abs2Off: number;
  words: number;
}

/** Word offsets of the statistics buffer of an n-element weight. */
export function nf4StatsLayout(n: number, doubleQuant: boolean): Nf4StatsLayout {
  const nb = nf4Blocks(n);
  if (!doubleQuant) return { absOff: 16, abs2Off: 0, words: 16 + nb };
  const abs2Off = 16 + 256 + 1;
  const absOff = abs2Off + nestedBlocks(n);
  return { absOff, abs2Off, words: absOff + Math.ceil(nb / 4) };
}

/** A frozen NF4 weight on the GPU, [rows, cols] = [out, in]. */
export interface Nf4Tensor {
  readonly format: 'nf4';
  readonly label: string;
  readonly rows: number;
  readonly cols: number;
  readonly doubleQuant: boolean;
  readonly q: Tensor;
  readonly stats: Tensor;
  readonly layout: Nf4StatsLayout;
}

/** GPU bytes of an NF4 weight of n elements (both buffers, each rounded up to 16 bytes as Gpu.buffer does). */
export function nf4GpuBytes(n: number, doubleQuant: boolean): number {
  const pad = (bytes: number) => Math.max(16, Math.ceil(bytes / 16) * 16);
  return pad(Math.ceil(n / 2)) + pad(4 * nf4StatsLayout(n, doubleQuant).words);
}

/** The statistics words of a host weight, laid out as nf4StatsLayout says. */
export function nf4StatsWords(w: Nf4Host): Uint32Array {
  const dq = !w.absmax;
  const L = nf4StatsLayout(w.n, dq);
  const words = new Uint32Array(L.words);
  const f = new Float32Array(words.buffer);
  f.set(w.code.subarray(0, 16), 0);
  if (!dq) {
    f.set(w.absmax!, L.absOff);
    return words;
  }
  f.set(w.nestedCode!, 16);
  f[272] = w.offset;
  f.set(w.absmax2!, L.abs2Off);
  new Uint8Array(words.buffer, 4 * L.absOff).set(w.qAbsmax!);
  return words;
}

/** Uploads a host weight of [rows, cols]. */
export function uploadNf4(
  gpu: Gpu,
  label: string,
  w: Nf4Host,
  rows: number,
  cols: number,
  category: MemoryCategory = 'weights',
): Nf4Tensor {
  if (w.n !== rows * cols) throw new GpuError(`NF4 weight "${label}": ${w.n} elements, but [${rows}, ${cols}].`);
  const doubleQuant = !w.absmax;
  const layout = nf4StatsLayout(w.n, doubleQuant);
  const q = gpu.tensor(`${label}.nf4`, [Math.ceil(w.packed.byteLength / 4)], 'u32', category, w.packed);
  const stats = gpu.tensor(`${label}.nf4_stats`, [layout.words], 'u32', category, nf4StatsWords(w));
  return { format: 'nf4', label, rows, cols, doubleQuant, q, stats, layout };
}

export function freeNf4(gpu: Gpu, w: Nf4Tensor): void {
  gpu.free(w.q);
  gpu.free(w.stats);
}

/** Records out [rows, cols] f32 = the dequantized weight. */
export function recordDequantizeNf4(gpu: Gpu, rec: Recorder, w: Nf4Tensor, out: Tensor): void {
  const n = w.rows * w.cols;
  if (out.dtype !== 'f32' || out.buffer.size < 4 * n) {
    throw new GpuError(`dequantize NF4 "${w.label}": the output must be f32 with ${n} elements.`);
  }
  if (n === 0) return;
  const pipe = variantPipeline(gpu, `nf4_dequant_${w.doubleQuant ? 'dq' : 'f32'}`, () => ({
    source: dequantCode,
    prelude: [`const NF4_DQ = ${w.doubleQuant ? 'true' : 'false'};`],
    libs: [library],
    describe: `nf4_dequant ${w.doubleQuant ? 'double-quantized absmax' : 'f32 absmax'}`,
  }));
  const [gx, gy, stride] = flatGrid(gpu, n);
  rec.dispatch(pipe, [w.q, w.stats, out], [gx, gy], params(n, w.layout.absOff, w.layout.abs2Off, stride));
}
