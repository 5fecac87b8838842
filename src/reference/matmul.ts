/**
 * Float64 reference of recordMatmul (src/kernels/matmul.ts), dense operands:
 *
 *   C[M, N] = (accumulate ? C : 0) + alpha * opA(A)·opB(B) + bias
 *
 * opA(A) = A [M, K] or, with transA, the transpose of A stored [K, M]; opB(B) = B [K, N] or, with
 * transB, the transpose of B stored [N, K]. Row-major arrays; `c` is updated in place.
 */
export interface MatmulRefArgs {
  a: ArrayLike<number>;
  b: ArrayLike<number>;
  c: Float64Array;
  M: number;
  N: number;
  K: number;
  transA?: boolean;
  transB?: boolean;
  bias?: ArrayLike<number> | null;
  alpha?: number;
  accumulate?: boolean;
}

export function matmulRef(r: MatmulRefArgs): void {
  const { a, b, c, M, N, K } = r;
  const alpha = r.alpha ?? 1;
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        const av = r.transA ? a[k * M + m]! : a[m * K + k]!;
        const bv = r.transB ? b[n * K + k]! : b[k * N + n]!;
        s += av * bv;
      }
      let v = alpha * s + (r.bias ? r.bias[n]! : 0);
      if (r.accumulate) v += c[m * N + n]!;
      c[m * N + n] = v;
    }
  }
}
