/**
 * ALiBi (BLOOM, Falcon's alibi form): the score of query row i against key j gets a per-head bias
 * slope[h] · pos(j), with pos(j) the key's position (0-based, right-padded batches). transformers
 * adds it before the softmax (the query's own -slope·pos(i) would be a constant per row, so it is
 * left out, as transformers leaves it out).
 *
 * Slopes as transformers' build_alibi_tensor computes them in float32: with n heads and
 * c = 2^floor(log2 n), base = 2^(-2^-(log2 c - 3)) and slopes base^1 .. base^c, then, when n is not
 * a power of two, extra_base = 2^(-2^-(log2 2c - 3)) raised to the odd powers 1, 3, .. for the
 * remaining n - c heads. Falcon rounds the slopes, and the products slope·pos, to bfloat16, then
 * divides by sqrt(head_dim) (its scores are scaled after the bias is added).
 */

import { bf16BitsToF32, f32ToBf16Bits } from '../gpu/half';

const f = Math.fround;

/** Per-head ALiBi slopes (float32 values). */
export function alibiSlopes(numHeads: number): number[] {
  const closest = 2 ** Math.floor(Math.log2(numHeads));
  const base = f(2 ** -(2 ** -(Math.log2(closest) - 3)));
  const slopes: number[] = [];
  for (let k = 1; k <= closest; k++) slopes.push(f(base ** k));
  if (closest !== numHeads) {
    const extra = f(2 ** -(2 ** -(Math.log2(2 * closest) - 3)));
    const remaining = Math.min(closest, numHeads - closest);
    for (let k = 1; k < 1 + 2 * remaining; k += 2) slopes.push(f(extra ** k));
  }
  return slopes;
}

/** x rounded to bfloat16 (round to nearest, ties to even), as a number. */
function roundBf16(x: number): number {
  return bf16BitsToF32(f32ToBf16Bits(x));
}

/** The bias ALiBi adds for head `h` at key position `pos` (see AlibiConfig in src/model/config.ts). */
export function alibiBias(
  a: { slopes: ArrayLike<number>; bf16: boolean; mul: number },
  h: number,
  pos: number,
): number {
  const s = a.slopes[h]!;
  const v = a.bf16 ? roundBf16(roundBf16(s) * pos) : f(s * pos);
  return f(v * a.mul);
}
