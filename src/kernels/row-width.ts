/**
 * How wide a kernel that reduces a row in workgroup memory runs (the norms, the cross-entropy's row
 * statistics): its own width on GPUs, one SIMD group on CPU drivers. Data, not a copy of a kernel:
 * the width is a prelude constant of the same shader.
 */
import type { Gpu } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import { isCpuDevice } from './matmul/variants';

/** Invocations per workgroup of the row-reduction kernels on CPU drivers: one SIMD group. */
const CPU_ROW_WIDTH = 8;

/**
 * Invocations per workgroup of a kernel that reduces a row with barriers: `gpuWidth` (the kernel's
 * own choice) on GPUs; on CPU drivers (lavapipe, SwiftShader) 8, one SIMD group, where each barrier
 * of a wider workgroup switches between its SIMD groups (measured on lavapipe, one run: RMSNorm of
 * 128 rows of 576 7x faster than with 256 invocations, of one row 1.5x). gpu.kernels.rowWidth pins
 * it (the tests run every width). Always a power of two (the kernels' tree reductions need it).
 */
export function rowWidth(gpu: Gpu, gpuWidth: number): number {
  const w = gpu.kernels.rowWidth ?? (isCpuDevice(gpu) ? CPU_ROW_WIDTH : gpuWidth);
  if (!Number.isInteger(Math.log2(w)) || w > gpu.limits.maxComputeInvocationsPerWorkgroup) {
    throw new GpuError(
      `Row-reduction width ${w} must be a power of two of at most ${gpu.limits.maxComputeInvocationsPerWorkgroup}.`,
    );
  }
  return w;
}
