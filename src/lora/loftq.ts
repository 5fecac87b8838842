/**
 * LoftQ initialisation (init_lora_weights "loftq", LoftQConfig(loftq_bits=4, loftq_iter=N)) as PEFT
 * 0.21's utils/loftq_utils.loftq_init computes it for one weight W [out, in] (nn.Linear layout):
 *
 *   R = W (float32)
 *   repeat loftq_iter times:
 *     Q = dequantize(NF4(R))                       bitsandbytes' Params4bit(compress_statistics=False,
 *                                                  quant_type="nf4"): blocks of 64, no double quantization
 *     U·S·Vᵀ = SVD(W - Q);  L = U_r·√S_r,  Rr = √S_r·V_rᵀ
 *     R = W - L·Rr                                 (skipped after the last iteration)
 *   lora_A = Rr [r, in], lora_B = L [out, r], and the base weight becomes Q in its own dtype.
 *
 * Both factors get √S (as PiSSA with scale 1). The LoRA scaling is NOT folded in: PEFT assigns L
 * and Rr as they are, so the adapted layer starts at Q + (lora_alpha / r)·L·Rr, which approximates W
 * best when lora_alpha = r (PEFT's own LoftQ examples pick their alpha freely; so does Tabtune).
 *
 * The quantization is Tabtune's bitsandbytes-exact NF4 rule in float32 (src/model/nf4.ts), the
 * differences W - Q and W - L·Rr are rounded to float32 as torch's float32 arithmetic does, and the
 * SVD is the exact one-sided Jacobi SVD in float64 (src/numerics/lowrank.ts). The float64 spec of
 * the same iteration is src/reference/loftq.ts.
 */
import { dequantizeNf4, quantizeNf4 } from '../model/nf4';
import { topSingular } from '../numerics/lowrank';

export interface LoftqResult {
  /** The quantized base weight Q, float32 [out, in] (bitsandbytes' float32 dequantization). */
  q: Float32Array;
  /** lora_A = √S_r·V_rᵀ [r, in]. */
  a: Float64Array;
  /** lora_B = U_r·√S_r [out, r]. */
  b: Float64Array;
}

/** NF4(x) dequantized, for a float32 [out, in] weight (no double quantization, as PEFT's LoftQ). */
function nf4RoundTrip(x: Float32Array, outF: number, inF: number): Float32Array {
  const data = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  return dequantizeNf4(quantizeNf4({ dtype: 'F32', data }, outF, inF, { transposed: false, doubleQuant: false }));
}

/** The √S-balanced rank-r factors of E [out, in]: A = √S·Vᵀ [r, in], B = U·√S [out, r]. */
export function balancedFactors(
  e: ArrayLike<number>,
  outF: number,
  inF: number,
  r: number,
  svd: Parameters<typeof topSingular>[4] = { exact: true },
): { a: Float64Array; b: Float64Array } {
  const t = topSingular(e, outF, inF, r, svd);
  const a = new Float64Array(r * inF);
  const b = new Float64Array(outF * r);
  for (let j = 0; j < r; j++) {
    const root = Math.sqrt(t.s[j]!);
    for (let i = 0; i < inF; i++) a[j * inF + i] = root * t.vt[j * inF + i]!;
    for (let o = 0; o < outF; o++) b[o * r + j] = t.u[o * r + j]! * root;
  }
  return { a, b };
}

/** The previous iteration's factors, from which the last iteration's Q is quantized (none after 1 iteration). */
export interface LoftqPrevious {
  a: Float64Array; // [r, in]
  b: Float64Array; // [out, r]
}

/**
 * Q = dequant(NF4(W - B·A)) for a float32 W [out, in] and the previous iteration's factors (W itself
 * when `prev` is null): the last step of loftqInit, deterministic, so Q is rebuilt bit for bit from
 * W and `prev` alone (src/lora/loftq-backbone.ts keeps only these, not Q).
 */
export function loftqQuantize(
  w32: Float32Array,
  outF: number,
  inF: number,
  r: number,
  prev: LoftqPrevious | null,
): Float32Array {
  if (!prev) return nf4RoundTrip(w32, outF, inF);
  const res = new Float32Array(outF * inF);
  for (let o = 0; o < outF; o++) {
    for (let i = 0; i < inF; i++) {
      let lr = 0;
      for (let j = 0; j < r; j++) lr += prev.b[o * r + j]! * prev.a[j * inF + i]!;
      res[o * inF + i] = w32[o * inF + i]! - Math.fround(lr);
    }
  }
  return nf4RoundTrip(res, outF, inF);
}

/** LoftQ of one weight W [out, in] (any precision; used as float32, as PEFT does). */
export function loftqInit(
  w: ArrayLike<number>,
  outF: number,
  inF: number,
  r: number,
  iters: number,
): LoftqResult & { prev: LoftqPrevious | null } {
  if (!Number.isInteger(iters) || iters < 1) throw new RangeError(`LoftQ needs loftq_iter >= 1, got ${iters}.`);
  const n = outF * inF;
  const w32 = Float32Array.from(w);
  let prev: LoftqPrevious | null = null;
  for (let it = 0; ; it++) {
    const q = loftqQuantize(w32, outF, inF, r, prev);
    const err = new Float32Array(n);
    for (let k = 0; k < n; k++) err[k] = w32[k]! - q[k]!;
    const f = balancedFactors(err, outF, inF, r);
    if (it + 1 === iters) return { q, a: f.a, b: f.b, prev };
    prev = f;
  }
}
