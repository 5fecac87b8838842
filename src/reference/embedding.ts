/**
 * Float64 reference of src/kernels/embedding.ts: out[t, :] (+)= table[ids[t], :]·scale, with ids
 * >= V (or negative) giving a zero row, or nothing when accumulating.
 */
export interface EmbeddingRefArgs {
  table: ArrayLike<number>; // [V, H]
  ids: ArrayLike<number>; // [T]
  T: number;
  H: number;
  V: number;
  scale?: number;
  /** Existing output to add into (with accumulate) or to overwrite; default zeros. */
  out?: Float64Array;
  accumulate?: boolean;
}

export function embeddingRef(a: EmbeddingRefArgs): Float64Array {
  const { T, H, V } = a;
  const scale = a.scale ?? 1;
  const out = a.out ?? new Float64Array(T * H);
  for (let t = 0; t < T; t++) {
    const id = a.ids[t]!;
    const valid = Number.isInteger(id) && id >= 0 && id < V;
    for (let j = 0; j < H; j++) {
      const v = valid ? a.table[id * H + j]! * scale : 0;
      out[t * H + j] = a.accumulate ? out[t * H + j]! + v : v;
    }
  }
  return out;
}
