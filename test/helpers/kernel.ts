/**
 * One-call kernel tests on src/kernel-check.ts (the harness the self-test uses too): upload,
 * record, read back, compare every output with its float64 reference and its tolerance, free.
 *
 *   await checkKernel({
 *     tensors: { x: rand([M, K]), w: rand([N, K], { dtype: 'bf16' }), y: filled([M, N]) },
 *     record: (gpu, rec, t) => recordMatmul(gpu, rec, { a: t.x, b: t.w, c: t.y, M, N, K, transB: true }),
 *     reference: (v) => ({ y: matmulOut(v) }),
 *   });
 *
 * A mismatch fails the test with every failing output's worst element named. Returns the outputs
 * (f32, or u32 / i32 for integer tensors).
 */
import { expect } from 'vitest';
import type { Gpu } from '../../src/gpu';
import { type KernelCheck, runKernelCheck } from '../../src/kernel-check';
import { getGpu } from './gpu';

export { filled, rand, values } from '../../src/kernel-check';

export async function checkKernel<N extends string>(
  c: KernelCheck<N>,
  device: () => Promise<Gpu> = getGpu,
): Promise<Partial<Record<N, Float32Array | Uint32Array | Int32Array>>> {
  const r = await runKernelCheck(await device(), c);
  const failures = r.reports.filter((x) => !x.ok).map((x) => x.message);
  expect(failures, failures.join('\n')).toEqual([]);
  return r.got;
}
