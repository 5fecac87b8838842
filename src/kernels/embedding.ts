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
import { GpuError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import {
  bindingLimit,
  flatGrid,
  needDims,
  needElems,
  noAlias,
  rowsPerWindow,
  variantPipeline,
  weightDType,
  weightLoader,
  windowOf,
} from './common';

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

/** out[t, :] (+)= table[ids[t], :]·scale; ids >= V give zeros (nothing when accumulating). */
export function recordEmbedding(gpu: Gpu, rec: Recorder, args: EmbeddingArgs): void {
  const what = 'recordEmbedding';
  const V = args.V ?? args.table.shape[0] ?? 0;
  needDims(what, { T: args.T, H: args.H, V });
  const dt = weightDType(args.table, what);
  if (args.table.shape.length === 2 && args.table.shape[1] !== args.H) {
    throw new GpuError(`${what}: table "${args.table.label}" is [${args.table.shape.join(', ')}] but H = ${args.H}.`);
  }
  needElems(what, 'table', args.table, V * args.H);
  needElems(what, 'ids', args.ids, args.T, ['u32', 'i32']);
  needElems(what, 'out', args.out, args.T * args.H, ['f32']);
  noAlias(what, args.out, { ids: args.ids, table: args.table });
  const n = args.T * args.H;
  if (n === 0) return;
  const pipe = variantPipeline(gpu, `embed_${dt}`, () => ({
    source: code,
    kernel: 'embed',
    prelude: [weightLoader('tload', 'table', dt)],
  }));
  const [gx, gy, stride] = flatGrid(gpu, n);
  const acc = args.accumulate ? 1 : 0;
  const scale = { f: args.scale ?? 1 };
  const limit = bindingLimit(gpu, args.maxBindingBytes);
  const rowsPer = rowsPerWindow(gpu, args.table, args.H, limit, what);
  if (rowsPer === Infinity) {
    rec.dispatch(
      pipe,
      [args.ids, args.table, args.out],
      [gx, gy],
      params(n, stride, args.H, V, 0, V, 0, acc, 1, scale, 0, 0),
    );
    return;
  }
  for (let v0 = 0, k = 0; v0 < V; v0 += rowsPer, k++) {
    const vCount = Math.min(rowsPer, V - v0);
    const w = windowOf(gpu, args.table, v0 * args.H, (v0 + vCount) * args.H, limit, what);
    const u = params(n, stride, args.H, V, v0, vCount, v0 * args.H - w.first, acc, k === 0 ? 1 : 0, scale, 0, 0);
    rec.dispatch(pipe, [args.ids, w.binding, args.out], [gx, gy], u);
  }
}
