/**
 * Benchmarks of the frozen matmul and of the LoRA linear layer, side by side in one run:
 *   plain    : Y = X·Wᵀ, then dX = dY·W                     (what a frozen layer costs anyway)
 *   fused    : recordLinearForward + recordLinearBackward    (S, one GEMM with r extra K columns; dS/dB, dA, one dX GEMM)
 *   unfused  : separate matmuls and element-wise adds (y = base(x) + s·B(A(x)), as a framework runs it)
 *   unfused, epilogue adds : separate matmuls whose adds are folded into the matmul (accumulate)
 * Shapes are M x K x N (tokens x in x out). Weights are bf16 like real checkpoints.
 */

import type { Gpu, Recorder } from '../gpu/context';
import { packHalf } from '../gpu/half';
import type { Tensor } from '../gpu/tensor';
import { Workspace } from '../gpu/workspace';
import { type FrozenLinear, type LoraParams, recordLinearBackward, recordLinearForward } from '../kernels/linear';
import { recordAdd } from '../kernels/elementwise';
import { recordMatmul } from '../kernels/matmul';
import { randomValues } from '../reference/check';
import { timeGpu, timeGpuInterleaved } from './timing';

export interface MatmulBench {
  shape: string;
  ms: number;
  gflops: number;
}

export async function benchMatmul(
  gpu: Gpu,
  M: number,
  K: number,
  N: number,
  budgetMs = 3000,
  dtype: 'bf16' | 'f16' = 'bf16',
): Promise<MatmulBench> {
  const x = gpu.tensor('x', [M, K], 'f32', 'scratch', randomValues(M * K, 1, 1));
  const w = gpu.tensor('w', [N, K], dtype, 'scratch', packHalf(randomValues(N * K, 2, 0.05), dtype));
  const y = gpu.tensor('y', [M, N], 'f32', 'scratch');
  try {
    const t = await timeGpu(gpu, (rec) => recordMatmul(gpu, rec, { a: x, b: w, c: y, M, N, K, transB: true }), {
      budgetMs,
    });
    return { shape: `${M}x${K}x${N}`, ms: t.medianMs, gflops: (2 * M * K * N) / (t.medianMs * 1e6) };
  } finally {
    for (const t of [x, w, y]) gpu.free(t);
  }
}

export interface LoraLinearBench {
  shape: string;
  r: number;
  ms_forward: number;
  ms_backward: number;
  ms_plain: number;
  /** Separate matmuls and adds, as a framework runs y = base(x) + s·B(A(x)) and its backward. */
  ms_unfused: number;
  /** Separate matmuls with the adds folded into their epilogues (accumulate, alpha): a stricter baseline. */
  ms_unfused_epilogue: number;
  /** fused (fwd + bwd) / plain (fwd + dX): target <= 1.15 */
  ratio_vs_plain: number;
  /** unfused / fused: target >= 1.25 */
  speedup_vs_unfused: number;
  /** unfused_epilogue / fused */
  speedup_vs_unfused_epilogue: number;
  gflops: number;
}

export async function benchLoraLinear(
  gpu: Gpu,
  M: number,
  K: number,
  N: number,
  r: number,
  budgetMs = 3000,
): Promise<LoraLinearBench> {
  const owned: Tensor[] = [];
  const t = (label: string, shape: number[], data?: Float32Array, dtype: 'f32' | 'bf16' = 'f32') => {
    const tensor = gpu.tensor(label, shape, dtype, 'scratch', data && dtype === 'bf16' ? packHalf(data, 'bf16') : data);
    owned.push(tensor);
    return tensor;
  };
  const ws = new Workspace(gpu);
  try {
    const x = t('x', [M, K], randomValues(M * K, 1, 1));
    const w = t('w', [N, K], randomValues(N * K, 2, 0.05), 'bf16');
    const dy = t('dy', [M, N], randomValues(M * N, 3, 0.01));
    const y = t('y', [M, N]);
    const dx = t('dx', [M, K]);
    const lin: FrozenLinear = { w, bias: null, inF: K, outF: N, transposed: false };
    const a = t('A', [r, K], randomValues(r * K, 4, 1 / Math.sqrt(K)));
    const b = t('B', [N, r], randomValues(N * r, 5, 0.01));
    const lora: LoraParams = { a, b, r, scale: 2, dropout: 0 };
    const s = t('S', [M, r]);
    const dA = t('dA', [r, K]);
    const dB = t('dB', [N, r]);
    const dS = t('dS', [M, r]);

    const forward = (rec: Recorder) => recordLinearForward(gpu, rec, { x, M, lin, lora, y, s });
    const backward = (rec: Recorder) => recordLinearBackward(gpu, rec, { dy, x, M, lin, lora, s, dx, dA, dB, ws });
    const plain = (rec: Recorder) => {
      recordMatmul(gpu, rec, { a: x, b: w, c: y, M, N, K, transB: true });
      recordMatmul(gpu, rec, { a: dy, b: w, c: dx, M, N: K, K: N });
    };
    const tmpY = t('T', [M, N]);
    const tmpDx = t('dX lora', [M, K]);
    const unfused = (rec: Recorder) => {
      // forward: Y = X·Wᵀ ; S = X·Aᵀ ; T = S·Bᵀ ; Y += s·T
      recordMatmul(gpu, rec, { a: x, b: w, c: y, M, N, K, transB: true });
      recordMatmul(gpu, rec, { a: x, b: a, c: s, M, N: r, K, transB: true });
      recordMatmul(gpu, rec, { a: s, b, c: tmpY, M, N, K: r, transB: true });
      recordAdd(gpu, rec, { a: y, b: tmpY, n: M * N, alpha: 2 });
      // backward: dX = dY·W ; dS = s·dY·B ; dXl = dS·A ; dX += dXl ; dA = dSᵀ·X ; dB = s·dYᵀ·S
      recordMatmul(gpu, rec, { a: dy, b: w, c: dx, M, N: K, K: N });
      recordMatmul(gpu, rec, { a: dy, b, c: dS, M, N: r, K: N, alpha: 2 });
      recordMatmul(gpu, rec, { a: dS, b: a, c: tmpDx, M, N: K, K: r });
      recordAdd(gpu, rec, { a: dx, b: tmpDx, n: M * K });
      recordMatmul(gpu, rec, { a: dS, b: x, c: dA, M: r, N: K, K: M, transA: true });
      recordMatmul(gpu, rec, { a: dy, b: s, c: dB, M: N, N: r, K: M, transA: true, alpha: 2 });
    };
    const unfusedEpilogue = (rec: Recorder) => {
      // forward: Y = X·Wᵀ ; S = X·Aᵀ ; Y += s·S·Bᵀ (accumulated by the matmul)
      recordMatmul(gpu, rec, { a: x, b: w, c: y, M, N, K, transB: true });
      recordMatmul(gpu, rec, { a: x, b: a, c: s, M, N: r, K, transB: true });
      recordMatmul(gpu, rec, { a: s, b, c: y, M, N, K: r, transB: true, alpha: 2, accumulate: true });
      // backward: dX = dY·W ; dS = s·dY·B ; dX += dS·A ; dA = dSᵀ·X ; dB = s·dYᵀ·S
      recordMatmul(gpu, rec, { a: dy, b: w, c: dx, M, N: K, K: N });
      recordMatmul(gpu, rec, { a: dy, b, c: dS, M, N: r, K: N, alpha: 2 });
      recordMatmul(gpu, rec, { a: dS, b: a, c: dx, M, N: K, K: r, accumulate: true });
      recordMatmul(gpu, rec, { a: dS, b: x, c: dA, M: r, N: K, K: M, transA: true });
      recordMatmul(gpu, rec, { a: dy, b: s, c: dB, M: N, N: r, K: M, transA: true, alpha: 2 });
    };
    const all = await timeGpuInterleaved(
      gpu,
      { forward, backward, plain, unfused, unfusedEpilogue },
      { budgetMs: 5 * budgetMs },
    );
    const [tf, tb, tp, tu, te] = [all.forward, all.backward, all.plain, all.unfused, all.unfusedEpilogue];
    const fused = tf.medianMs + tb.medianMs;
    // forward 2MKN + backward dX 2MKN (+ rank-r terms, counted as useful work too)
    const flops = 4 * M * K * N + 2 * M * r * (K + N) * 3;
    return {
      shape: `${M}x${K}x${N}`,
      r,
      ms_forward: tf.medianMs,
      ms_backward: tb.medianMs,
      ms_plain: tp.medianMs,
      ms_unfused: tu.medianMs,
      ms_unfused_epilogue: te.medianMs,
      ratio_vs_plain: fused / tp.medianMs,
      speedup_vs_unfused: tu.medianMs / fused,
      speedup_vs_unfused_epilogue: te.medianMs / fused,
      gflops: flops / (fused * 1e6),
    };
  } finally {
    ws.dispose();
    for (const x of owned) gpu.free(x);
  }
}
