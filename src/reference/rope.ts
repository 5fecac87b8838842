/**
 * Rotary position embedding as transformers' `apply_rotary_pos_emb` with the default (and
 * "linear" / "llama3" / "longrope") `rope_type`:
 *   inv_freq[i] = 1 / theta^(2i / rot)     (i < rot/2, computed in float32 like torch)
 *   angle       = f32(pos · inv_freq[i])   (the f32 product of transformers' f32 freqs)
 *   out = x·cos + rotate(x)·sin on the first `rot` dims of each head, the rest unchanged, where
 *   pair i is (i, i + rot/2) (rotate_half, Llama / NeoX) or, `interleaved`, (2i, 2i + 1)
 *   (GPT-J's rotate_every_two).
 * The reference takes cos / sin of the f32 angle in float64, which is what an exact f32 cos would
 * round from. `inverse` rotates by -angle (the backward pass).
 */

const f = Math.fround;

/** transformers' rope_scaling variants that only change inv_freq. */
export type RopeScaling =
  | { type: 'linear'; factor: number }
  | {
      /**
       * Phi-3's longrope: inv_freq[i] = 1 / (ext[i] · theta^(2i / rot)) with ext the short factors,
       * which transformers uses while positions stay below originalMaxPositionEmbeddings (Tabtune
       * caps positions there, see the phi3 family). cos / sin are scaled by the attention factor
       * (RopeConfig.attentionScaling).
       */
      type: 'longrope';
      shortFactor: number[];
      longFactor: number[];
      originalMaxPositionEmbeddings: number;
    }
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
    const base = f(Math.pow(f(theta), expo));
    // longrope: 1 / (ext · base^expo), the product in float32 as torch forms it
    out[i] = scaling?.type === 'longrope' ? f(1 / f(f(scaling.shortFactor[i]!) * base)) : f(1 / base);
  }
  if (!scaling || scaling.type === 'longrope') return out;
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
  /** GPT-J pairs (2i, 2i + 1) instead of (i, i + rot/2). */
  interleaved?: boolean;
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
