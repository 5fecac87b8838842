/**
 * The matmul checks shared by the matmul tests: recordMatmul (any member of the family, forced with
 * `variant`) against a float64 reference, for plain, LoRA-segment (extra) and strided problems.
 */
import { expect } from 'vitest';
import { type Gpu, type Recorder } from '../../src/gpu';
import { type WeightDType, recordMatmul } from '../../src/kernels/matmul';
import { dropoutMultiplier } from '../../src/reference/dropout';
import { matmulRef } from '../../src/reference/matmul';
import { getGpu } from './gpu';
import { checkKernel, rand } from './kernel';

/** Makes `rec` check that every binding of the dispatches recorded into it fits `limit` bytes. */
function watchBindings(gpu: Gpu, rec: Recorder, limit: number): void {
  const dispatch = rec.dispatch.bind(rec);
  rec.dispatch = (pipeline, bindings, workgroups, u) => {
    for (const b of bindings) {
      if ('shape' in b) expect(b.buffer.size).toBeLessThanOrEqual(limit);
      else if ('buffer' in b) {
        expect(b.size ?? b.buffer.size).toBeLessThanOrEqual(limit);
        expect((b.offset ?? 0) % gpu.limits.minStorageBufferOffsetAlignment).toBe(0);
      }
    }
    return dispatch(pipeline, bindings, workgroups, u);
  };
}

export interface Case {
  M: number;
  N: number;
  K: number;
  transA?: boolean;
  transB?: boolean;
  bType?: WeightDType;
  bias?: WeightDType | null;
  alpha?: number;
  accumulate?: boolean;
  maxBindingBytes?: number;
  splitK?: number;
  /** Run twice and require bit-identical results. */
  repeat?: boolean;
  /** The member of the matmul family to run (src/kernels/matmul/variants.ts). */
  variant?: string;
}

/** recordMatmul against matmulRef; returns C as read back. */
export async function check(c: Case, seed = 1, device: () => Promise<Gpu> = getGpu): Promise<Float32Array> {
  const { M, N, K, maxBindingBytes: limit, bias, bType, repeat, ...flags } = c;
  const got = await checkKernel(
    {
      seed,
      repeat,
      label: `matmul ${JSON.stringify(c)}`,
      tensors: {
        a: rand(c.transA ? [K, M] : [M, K]),
        b: rand(c.transB ? [N, K] : [K, N], { dtype: bType ?? 'f32' }),
        bias: bias ? rand([N], { dtype: bias }) : undefined,
        c: rand([M, N]),
      },
      record: (gpu, rec, t, ws) => {
        if (limit) watchBindings(gpu, rec, limit);
        recordMatmul(gpu, rec, { ...flags, a: t.a, b: t.b, c: t.c, M, N, K, bias: t.bias, maxBindingBytes: limit, ws });
        if (limit) expect(rec.length, 'dispatches of the chunked path').toBeGreaterThan(2);
      },
      reference: (v) => {
        const out = Float64Array.from(v.c);
        matmulRef({ ...flags, a: v.a, b: v.b, c: out, M, N, K, bias: v.bias });
        return { c: out };
      },
      tol: { atol: 1e-4 * Math.sqrt(K + 1), rtol: 1e-4 },
    },
    device,
  );
  return got.c as Float32Array;
}

export interface ExtraCase {
  M: number;
  N: number;
  K: number;
  K2: number;
  transB: boolean;
  bType: WeightDType;
  bias?: boolean;
  accumulate?: boolean;
  alpha?: number;
  alpha2?: number;
  dropA?: number;
  dropOut?: number;
  maxBindingBytes?: number;
  variant?: string;
  /** Layout of the LoRA segment: A2 stored [K2, M] (transA2), B2 stored [K2, N] (not transB2; default Bᵀ [N, K2]). */
  transA2?: boolean;
  transB2?: boolean;
  /** The bias' dtype (default B's). */
  biasType?: WeightDType;
}

/** The fused LoRA linear: C (+)= alpha·(drop(A)·opB(B) + dropOut ∘ alpha2·A2·B2ᵀ) + bias, against float64. */
export async function checkExtra(c: ExtraCase, seed = 5, device: () => Promise<Gpu> = getGpu): Promise<Float32Array> {
  const { M, N, K, K2 } = c;
  const dA = c.dropA ? { seed: 77, p: c.dropA } : null;
  const dO = c.dropOut ? { seed: 99, p: c.dropOut } : null;
  const alpha = c.alpha ?? 1;
  const alpha2 = c.alpha2 ?? 1;
  const got = await checkKernel(
    {
      seed,
      label: `matmul+extra ${JSON.stringify(c)}`,
      tensors: {
        a: rand([M, K]),
        b: rand(c.transB ? [N, K] : [K, N], { dtype: c.bType }),
        a2: rand(c.transA2 ? [K2, M] : [M, K2]),
        b2: rand(c.transB2 === false ? [K2, N] : [N, K2]),
        bias: c.bias ? rand([N], { dtype: c.biasType ?? c.bType }) : undefined,
        c: rand([M, N]),
      },
      record: (gpu, rec, t) => {
        if (c.maxBindingBytes) watchBindings(gpu, rec, c.maxBindingBytes);
        recordMatmul(gpu, rec, {
          a: t.a,
          b: t.b,
          c: t.c,
          M,
          N,
          K,
          transB: c.transB,
          bias: t.bias,
          alpha: c.alpha,
          accumulate: c.accumulate,
          dropoutA: dA,
          maxBindingBytes: c.maxBindingBytes,
          variant: c.variant,
          extra: {
            a: t.a2,
            b: t.b2,
            K: K2,
            transA: c.transA2,
            transB: c.transB2 ?? true,
            alpha: c.alpha2,
            dropoutOut: dO,
          },
        });
      },
      reference: (v) => {
        const out = new Float64Array(M * N);
        for (let m = 0; m < M; m++) {
          for (let n = 0; n < N; n++) {
            let s1 = 0;
            for (let k = 0; k < K; k++) {
              const x = v.a[m * K + k]! * (dA ? dropoutMultiplier(dA.seed, dA.p, m, k) : 1);
              s1 += x * (c.transB ? v.b[n * K + k]! : v.b[k * N + n]!);
            }
            let s2 = 0;
            for (let k = 0; k < K2; k++) {
              const a2 = c.transA2 ? v.a2[k * M + m]! : v.a2[m * K2 + k]!;
              s2 += a2 * (c.transB2 === false ? v.b2[k * N + n]! : v.b2[n * K2 + k]!);
            }
            const d = dO ? dropoutMultiplier(dO.seed, dO.p, m, n) : 1;
            const acc = c.accumulate ? v.c[m * N + n]! : 0;
            out[m * N + n] = acc + alpha * (s1 + d * alpha2 * s2) + (v.bias ? v.bias[n]! : 0);
          }
        }
        return { c: out };
      },
      tol: { atol: 1e-4 * Math.sqrt(K + K2 + 1), rtol: 1e-4 },
    },
    device,
  );
  return got.c as Float32Array;
}

export interface Strided {
  M: number;
  N: number;
  K: number;
  /** Stored [rows, row pitch] of A, Bᵀ ([N, K] rows) and C, and the element offset of each operand. */
  a: [number, number];
  b: [number, number];
  c: [number, number];
  aOffset: number;
  bOffset: number;
  cOffset: number;
  bType: WeightDType;
}

/** C = A·Bᵀ on sub-blocks of bigger stored matrices (strides, offsets); C outside the block is untouched. */
export async function checkStrided(s: Strided, device: () => Promise<Gpu> = getGpu): Promise<void> {
  const { M, N, K } = s;
  const [lda, ldb, ldc] = [s.a[1], s.b[1], s.c[1]];
  await checkKernel(
    {
      label: `strided matmul ${JSON.stringify(s)}`,
      tensors: { a: rand(s.a), b: rand(s.b, { dtype: s.bType }), c: rand(s.c) },
      record: (gpu, rec, t) =>
        recordMatmul(gpu, rec, {
          a: t.a,
          b: t.b,
          c: t.c,
          M,
          N,
          K,
          transB: true,
          lda,
          aOffset: s.aOffset,
          ldb,
          bOffset: s.bOffset,
          ldc,
          cOffset: s.cOffset,
        }),
      reference: (v) => {
        const out = Float64Array.from(v.c);
        for (let m = 0; m < M; m++) {
          for (let n = 0; n < N; n++) {
            let acc = 0;
            for (let k = 0; k < K; k++) acc += v.a[s.aOffset + m * lda + k]! * v.b[s.bOffset + n * ldb + k]!;
            out[s.cOffset + m * ldc + n] = acc;
          }
        }
        return { c: out };
      },
    },
    device,
  );
}
