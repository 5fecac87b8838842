/** Float64 reference of column-block copies (recordCopyRows with column offsets in src/kernels/elementwise.ts). */
export function copyColumnsRef(
  src: ArrayLike<number>,
  dst: Float64Array,
  a: {
    rows: number;
    width: number;
    srcStride: number;
    srcCol0: number;
    dstStride: number;
    dstCol0: number;
    accumulate?: boolean;
  },
): void {
  for (let t = 0; t < a.rows; t++) {
    for (let j = 0; j < a.width; j++) {
      const v = src[t * a.srcStride + a.srcCol0 + j]!;
      const d = t * a.dstStride + a.dstCol0 + j;
      dst[d] = a.accumulate ? dst[d]! + v : v;
    }
  }
}
