/**
 * The device's ceilings for the kernel bench: multiply-add throughput (shaders/bench_fma.wgsl)
 * and buffer-to-buffer copy bandwidth (64 MiB), each the median of a few timed submits. `scale`
 * (at most 1) shrinks both problems and the time budget, for a short run (the app's smallest bench).
 */
import fmaSource from '../../shaders/bench_fma.wgsl?raw';
import { type Gpu, params } from '../gpu/context';
import { variantPipeline } from '../kernels/common';
import { timeGpu } from './timing';

export async function benchCeilings(gpu: Gpu, scale = 1): Promise<{ fma_gflops: number; copy_gbps: number }> {
  const groups = Math.max(16, Math.round(1024 * scale));
  const iters = 2048;
  const out = gpu.tensor('fma out', [groups * 64], 'f32', 'scratch');
  const bytes = Math.max(1, Math.round(64 * scale)) * 1024 * 1024;
  const budgetMs = 1500 * Math.max(scale, 0.2);
  const src = gpu.tensor('copy src', [bytes / 4], 'f32', 'scratch');
  const dst = gpu.tensor('copy dst', [bytes / 4], 'f32', 'scratch');
  try {
    const pipe = variantPipeline(gpu, 'bench_fma', () => ({ source: fmaSource }));
    const fma = await timeGpu(gpu, (rec) => rec.dispatch(pipe, [out], [groups], params(iters, 0, 0, 0)), {
      budgetMs,
      minReps: 3,
    });
    const copy = await timeGpu(gpu, (rec) => rec.copy(src, dst), { budgetMs, minReps: 3 });
    return {
      fma_gflops: (2 * 4 * 16 * iters * groups * 64) / (fma.medianMs * 1e6),
      copy_gbps: bytes / (copy.medianMs * 1e6),
    };
  } finally {
    for (const t of [out, src, dst]) gpu.free(t);
  }
}
