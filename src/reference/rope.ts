/**
 * Rotary position embedding as transformers' `apply_rotary_pos_emb` with the default (and
 * "linear" / "llama3" / "longrope") `rope_type`:
 *   inv_freq[i] = 1 / theta^(2i / rot)     (i < rot/2, computed in float32 like torch)
 *   angle       = f32(pos · inv_freq[i])   (the f32 product of transformers' f32 freqs)
 *   out = x·cos + rotate(x)·sin on the first `rot` dims of each head, the rest unchanged, where
 *   pair i is (i, i + rot/2) (rotate_half, Llama / NeoX) or, `interleaved`, (2i, 2i + 1)
 *   (GPT-J's rotate_every_two).
 * The reference takes cos / sin of the f32 angle in float64, which is what an exact f32 cos would
 * round from. `inverse` rotates by -angle (the backward pass). inv_freq comes from
 * src/numerics/rope.ts, the same function the GPU path uploads its frequencies from.
 */

import { type RopeParams, ropeInvFreq } from '../numerics/rope';

const f = Math.fround;

export interface RopeRefArgs extends RopeParams {
  x: ArrayLike<number>; // [rows, heads, headDim]
  positions: ArrayLike<number>; // [rows]
}

export function ropeRef(a: RopeRefArgs): Float64Array {
  const { rows, heads, headDim } = a;
  const rot = a.rotaryDim ?? headDim;
  const half = rot >> 1;
  const inv = a.invFreq ?? ropeInvFreq(rot, a.theta);
  const scale = a.attentionScaling ?? 1;
  const sign = a.inverse ? -1 : 1;
  const out = Float64Array.from(a.x);
  for (let t = 0; t < rows; t++) {
    const pos = a.positions[t]!;
    for (let i = 0; i < half; i++) {
      const ang = f(f(pos) * f(inv[i]!));
      const c = Math.cos(ang) * scale;
      const s = sign * Math.sin(ang) * scale;
      const [i1, i2] = a.interleaved ? [2 * i, 2 * i + 1] : [i, i + half];
      for (let h = 0; h < heads; h++) {
        const base = (t * heads + h) * headDim;
        const x1 = a.x[base + i1]!;
        const x2 = a.x[base + i2]!;
        out[base + i1] = x1 * c - x2 * s;
        out[base + i2] = x2 * c + x1 * s;
      }
    }
  }
  return out;
}
