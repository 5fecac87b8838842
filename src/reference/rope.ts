/**
 * Rotary position embedding, rotate-half convention, as transformers' `apply_rotary_pos_emb` with
 * the default (and "linear" / "llama3") `rope_type`:
 *   inv_freq[i] = 1 / theta^(2i / rot)     (i < rot/2, computed in float32 like torch)
 *   angle       = f32(pos · inv_freq[i])   (the f32 product of transformers' f32 freqs)
 *   out = x·cos + rotate_half(x)·sin on the first `rot` dims of each head, the rest unchanged.
 * The reference takes cos / sin of the f32 angle in float64, which is what an exact f32 cos would
 * round from. `inverse` rotates by -angle (the backward pass).
 */

const f = Math.fround;

/** transformers' rope_scaling variants that only change inv_freq. */
export type RopeScaling =
  | { type: 'linear'; factor: number }
  | {
      type: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    };

/**
 * inv_freq as float32 values, like transformers' `_compute_default_rope_parameters`:
 * `1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))` evaluated in float32, then the optional
 * "linear" (inv_freq / factor) or "llama3" (`_compute_llama3_parameters`) adjustment.
 */
export function ropeInvFreq(rotaryDim: number, theta: number, scaling?: RopeScaling): Float32Array {
  const half = rotaryDim >> 1;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const expo = f(f(2 * i) / rotaryDim);
    out[i] = f(1 / f(Math.pow(f(theta), expo)));
  }
  if (!scaling) return out;
  if (scaling.type === 'linear') {
    for (let i = 0; i < half; i++) out[i] = f(out[i]! / scaling.factor);
    return out;
  }
  const { factor, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositionEmbeddings: ctx } = scaling;
  const lowWavelen = ctx / lo;
  const highWavelen = ctx / hi;
  for (let i = 0; i < half; i++) {
    const inv = out[i]!;
    const wavelen = f(f(2 * Math.PI) / inv);
    if (wavelen > lowWavelen) {
      out[i] = f(inv / factor);
    } else if (wavelen >= highWavelen) {
      // medium frequencies: interpolate between the scaled and the original frequency
      const smooth = f(f(f(ctx / wavelen) - lo) / (hi - lo));
      out[i] = f(f(f(f(1 - smooth) * inv) / factor) + f(smooth * inv));
    }
  }
  return out;
}

export interface RopeRefArgs {
  x: ArrayLike<number>; // [rows, heads, headDim]
  positions: ArrayLike<number>; // [rows]
  rows: number;
  heads: number;
  headDim: number;
  theta: number;
  /** Rotated dims per head (even, <= headDim); default headDim. */
  rotaryDim?: number;
  inverse?: boolean;
  /** Overrides ropeInvFreq(rotaryDim, theta). */
  invFreq?: ArrayLike<number>;
  /** Multiplies cos and sin (transformers' attention_scaling; default 1). */
  attentionScaling?: number;
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
      for (let h = 0; h < heads; h++) {
        const base = (t * heads + h) * headDim;
        const x1 = a.x[base + i]!;
        const x2 = a.x[base + i + half]!;
        out[base + i] = x1 * c - x2 * s;
        out[base + i + half] = x2 * c + x1 * s;
      }
    }
  }
  return out;
}
