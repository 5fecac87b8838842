/**
 * RoPE's inverse frequencies, defined once for the GPU path (src/kernels/rope.ts uploads them) and
 * the float64 reference (src/reference/rope.ts):
 *   inv_freq[i] = 1 / theta^(2i / rot)     (i < rot/2, computed in float32 like torch)
 * with transformers' "linear", "llama3" and "longrope" rope_scaling adjustments.
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

/** The rotation's parameters, shared by the kernel (src/kernels/rope.ts) and the reference. */
export interface RopeParams {
  /** Tokens. */
  rows: number;
  heads: number;
  headDim: number;
  theta: number;
  /** Rotated dims per head (even, <= headDim, default headDim); the rest pass through. */
  rotaryDim?: number;
  /** Rotate by -angle (the backward pass). */
  inverse?: boolean;
  /** Frequencies overriding ropeInvFreq(rotaryDim, theta) (rotaryDim / 2 values, used as f32). */
  invFreq?: ArrayLike<number>;
  /** Multiplies cos and sin (transformers' attention_scaling, default 1). */
  attentionScaling?: number;
  /** GPT-J: rotate pairs (2i, 2i + 1) instead of (i, i + rotaryDim/2). */
  interleaved?: boolean;
}

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
