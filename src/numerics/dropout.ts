/**
 * The dropout mask, defined once: a pure integer hash of (seed, row, col) of the dropped tensor's
 * row-major storage. The WGSL twin is shaders/dropout.wgsl; the GPU kernels (which pass the
 * threshold as a uniform) and the float64 reference (src/reference/dropout.ts, which builds masks
 * from the hash) both import it from here, and produce bit-identical masks from the same seed, so
 * backward regenerates the forward's mask.
 *
 *   h = pcg(pcg(pcg(seed) + row) + col)     (u32, wrapping)
 *   keep = h >= dropoutThreshold(p); a kept element is scaled by 1 / (1 - p)
 */

/** PCG-RXS-M-XS output permutation after one LCG step, on u32. */
function dropoutPcg(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul((state >>> ((state >>> 28) + 4)) ^ state, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

export function dropoutHash(seed: number, row: number, col: number): number {
  const h1 = (dropoutPcg(seed >>> 0) + (row >>> 0)) >>> 0;
  const h2 = (dropoutPcg(h1) + (col >>> 0)) >>> 0;
  return dropoutPcg(h2);
}

/** The u32 threshold below which an element is dropped: min(2^32 - 1, round(p * 2^32)). */
export function dropoutThreshold(p: number): number {
  if (!(p >= 0 && p < 1)) throw new RangeError(`Dropout probability must be in [0, 1), got ${p}.`);
  return Math.min(0xffffffff, Math.round(p * 2 ** 32));
}
