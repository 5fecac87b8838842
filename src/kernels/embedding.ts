/**
 * Embedding gather (see shaders/embedding.wgsl): out[t, :] = table[ids[t], :]·scale, or += with
 * `accumulate` (GPT-2 adds wpe[pos[t]] onto the token embedding this way).
 *
 * Out-of-range ids (>= V): never read; they give a zero row, or leave `out` unchanged when
 * accumulating.
 *
 * A table above the storage binding limit (f32 [151936, 2048] is 1.2 GB) is bound in windows of
 * rows, one dispatch per window; each dispatch writes only the tokens whose id falls in its window.
 */
import code from '../../shaders/embedding.wgsl?raw';
import { type Gpu, type Recorder, params } from '../gpu/context';
import { GpuError, GpuLimitError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { flatGrid, needDims, needElems, noAlias, weightDType, weightLoader, wgslKernel } from './elementwise';

export interface EmbeddingArgs {
  /** [V, H] f32 | f16 | bf16 (frozen). */
  table: Tensor;
  /** u32 [T] token ids (or positions for a position table). */
  ids: Tensor;
  /** f32 [T, H] (output). */
  out: Tensor;
  T: number;
  H: number;
  /** Rows of the table (default table.shape[0]). */
  V?: number;
  /** Multiplies the gathered rows (default 1; e.g. sqrt(H) for Gemma). */
  scale?: number;
  /** out += row·scale instead of out = row·scale (default false). */
  accumulate?: boolean;
  /** Binding size limit used for the table (default: the device's; tests lower it). */
  maxBindingBytes?: number;
}

interface Window {
  v0: number;
  vCount: number;
  elemOff: number;
  offset: number;
  size: number;
}

function windows(gpu: Gpu, table: Tensor, V: number, H: number, eb: number, maxBindingBytes?: number): Window[] | null {
  const limit = Math.floor(Math.min(gpu.limits.maxStorageBufferBindingSize, maxBindingBytes ?? Infinity) / 4) * 4;
  if (table.buffer.size <= limit) return null; // bind whole
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  const rowBytes = H * eb;
  const rowsPer = Math.floor((limit - align) / rowBytes);
  if (rowsPer < 1) {
    throw new GpuLimitError(
      `recordEmbedding: one row of "${table.label}" (${rowBytes} bytes) does not fit a ${limit}-byte storage binding.`,
    );
  }
  const out: Window[] = [];
  for (let v0 = 0; v0 < V; v0 += rowsPer) {
    const vCount = Math.min(rowsPer, V - v0);
    const start = v0 * rowBytes;
    const offset = Math.floor(start / align) * align;
    const end = Math.min(Math.ceil(((v0 + vCount) * rowBytes) / 4) * 4, table.buffer.size);
    out.push({ v0, vCount, elemOff: (start - offset) / eb, offset, size: end - offset });
  }
  return out;
}

/** out[t, :] (+)= table[ids[t], :]·scale; ids >= V give zeros (nothing when accumulating). */
export function recordEmbedding(gpu: Gpu, rec: Recorder, a: EmbeddingArgs): void {
  const what = 'recordEmbedding';
  const V = a.V ?? a.table.shape[0] ?? 0;
  needDims(what, { T: a.T, H: a.H, V });
  const dt = weightDType(a.table, what);
  if (a.table.shape.length === 2 && a.table.shape[1] !== a.H) {
    throw new GpuError(`${what}: table "${a.table.label}" is [${a.table.shape.join(', ')}] but H = ${a.H}.`);
  }
  needElems(what, 'table', a.table, V * a.H);
  needElems(what, 'ids', a.ids, a.T, ['u32', 'i32']);
  needElems(what, 'out', a.out, a.T * a.H, ['f32']);
  noAlias(what, a.out, { ids: a.ids, table: a.table });
  const n = a.T * a.H;
  if (n === 0) return;
  const eb = dt === 'f32' ? 4 : 2;
  const pipe = gpu.pipeline(`embed_${dt}`, wgslKernel(code, 'embed', [weightLoader('tload', 'table', dt)]));
  const [gx, gy, stride] = flatGrid(gpu, n);
  const acc = a.accumulate ? 1 : 0;
  const scale = { f: a.scale ?? 1 };
  const wins = windows(gpu, a.table, V, a.H, eb, a.maxBindingBytes);
  if (!wins) {
    rec.dispatch(pipe, [a.ids, a.table, a.out], [gx, gy], params(n, stride, a.H, V, 0, V, 0, acc, 1, scale, 0, 0));
    return;
  }
  wins.forEach((w, k) => {
    const table = { buffer: a.table.buffer, offset: w.offset, size: w.size };
    const u = params(n, stride, a.H, V, w.v0, w.vCount, w.elemOff, acc, k === 0 ? 1 : 0, scale, 0, 0);
    rec.dispatch(pipe, [a.ids, table, a.out], [gx, gy], u);
  });
}
