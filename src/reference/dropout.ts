/**
 * Dropout masks in float64 from the hash defined in src/numerics/dropout.ts (the one the GPU kernels
 * use): 0 for a dropped element, 1 / (1 - p) for a kept one.
 */

import { dropoutHash, dropoutThreshold } from '../numerics/dropout';

/** 0 for a dropped element, 1 / (1 - p) for a kept one (1 when p = 0). */
export function dropoutMultiplier(seed: number, p: number, row: number, col: number): number {
  if (p === 0) return 1;
  return dropoutHash(seed, row, col) >= dropoutThreshold(p) ? 1 / (1 - p) : 0;
}

/** The multipliers of a [rows, cols] tensor, row-major. */
export function dropoutMask(seed: number, p: number, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[i * cols + j] = dropoutMultiplier(seed, p, i, j);
  return out;
}
