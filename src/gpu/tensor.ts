/**
 * A tensor on the GPU: one GPUBuffer plus shape and element type.
 *
 * 16-bit types (f16, bf16) are stored packed two per u32 (element i in the low half of word i/2
 * when i is even, the high half when odd), which is how safetensors bytes lie in little-endian
 * memory, so checkpoint bytes upload unchanged. Shaders widen them in their loaders; no
 * `shader-f16` feature is needed to read them.
 */

export type DType = 'f32' | 'f16' | 'bf16' | 'u32' | 'i32';

export const DTYPE_BYTES: Record<DType, number> = { f32: 4, f16: 2, bf16: 2, u32: 4, i32: 4 };

/** What a buffer is for, so memory can be reported per category. */
export type MemoryCategory = 'weights' | 'lora' | 'optimizer' | 'activations' | 'scratch' | 'io';

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Bytes a tensor of this shape and type occupies, rounded up to a multiple of 4. */
export function tensorBytes(shape: readonly number[], dtype: DType): number {
  const raw = numel(shape) * DTYPE_BYTES[dtype];
  return Math.max(4, Math.ceil(raw / 4) * 4);
}

export interface Tensor {
  readonly buffer: GPUBuffer;
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly label: string;
  readonly category: MemoryCategory;
}

export function shapeString(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}
