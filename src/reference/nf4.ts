/**
 * Float64 reference of 4-bit NormalFloat (NF4) quantization as bitsandbytes does it for QLoRA
 * (`quantize_4bit(..., quant_type="nf4", blocksize=64, compress_statistics=...)`). The spec the
 * production quantizer (src/model/nf4.ts, bitsandbytes' float32 arithmetic) and the GPU
 * dequantizing loads (src/kernels/nf4.ts) are tested against.
 *
 * A weight is taken in its stored row-major [out, in] order (a GPT-2 Conv1D weight, stored
 * [in, out], is transposed to that order first) as one flat array w[0..n):
 *   block b = elements [64b, 64b + 64) (the last block may be shorter)
 *   absmax[b] = max |w| over the block
 *   idx[i] = the nearest of the 16 NF4 code values to w[i] / absmax[b]   (a tie goes to the lower)
 *   packed byte j = idx[2j] << 4 | idx[2j + 1]   (an odd n pads the last low nibble with a 0.0)
 *   w[i] ≈ NF4[idx[i]] * absmax[b]
 * Double quantization (bnb_4bit_use_double_quant, on by default) stores absmax itself in 8 bits:
 *   offset = mean(absmax); v = absmax - offset
 *   block c = absmax entries [256c, 256c + 256): absmax2[c] = max |v|,
 *   q[b] = the nearest value of the signed 8-bit dynamic map to v[b] / absmax2[c]
 *   absmax[b] ≈ DYN[q[b]] * absmax2[c] + offset
 */

import { NESTED_BLOCK, NF4_BLOCK, type Nf4Host, nestedBlocks, nf4Blocks } from '../numerics/nf4';

export { NESTED_BLOCK, NF4_BLOCK, type Nf4Host, nestedBlocks, nf4Blocks };

/**
 * bitsandbytes' NF4 code values (`get_4bit_type("nf4")`, quantiles of N(0, 1) scaled to [-1, 1]), as
 * the float32 numbers it stores (the `quant_map` of a checkpoint).
 */
export const NF4_CODE: Float32Array = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

let dynamic: Float32Array | null = null;

/**
 * bitsandbytes' signed 8-bit dynamic map (`create_dynamic_map(signed=True)`, the `nested_quant_map`
 * of a double-quantized checkpoint), computed the way torch computes it in float32: for exponent
 * e = 0..6, the midpoints of `linspace(0.1, 1, 2^e + 1)` scaled by ±10^(e - 6), then 0 and 1, sorted.
 * torch's float32 linspace is start + k·step (one rounding) for k < steps/2 and end - (steps-1-k)·step
 * above, with step = (end - start) / (steps - 1) in float32; test:peft checks the table against torch.
 */
export function dynamicMap(): Float32Array {
  if (dynamic) return dynamic;
  const f = Math.fround;
  const scales = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1];
  const data: number[] = [];
  for (let e = 0; e < 7; e++) {
    const steps = 2 ** e + 1;
    const start = f(0.1);
    const end = f(1);
    const step = f((end - start) / (steps - 1));
    // start + k·step is exact in float64 here (a 24-bit step times k < 2^7), so fround rounds once.
    const lin = Array.from({ length: steps }, (_, k) =>
      k < Math.floor(steps / 2) ? f(start + step * k) : f(end - step * (steps - 1 - k)),
    );
    const s = f(scales[e]!);
    for (let k = 0; k + 1 < steps; k++) {
      const mean = f(f(lin[k]! + lin[k + 1]!) / 2);
      data.push(f(s * mean), f(-s * mean));
    }
  }
  data.push(0, 1);
  data.sort((a, b) => a - b);
  dynamic = Float32Array.from(data);
  return dynamic;
}

/** The index of the code value nearest to x (codes sorted ascending; a tie goes to the lower index). */
export function nearestCode(code: ArrayLike<number>, x: number): number {
  let best = 0;
  let bestD = Math.abs(x - code[0]!);
  for (let i = 1; i < code.length; i++) {
    const d = Math.abs(x - code[i]!);
    if (d < bestD) {
      best = i;
      bestD = d;
    }
  }
  return best;
}

/** Float64 quantization of a row-major weight (nearest code in exact arithmetic). */
export function quantizeNf4Ref(w: ArrayLike<number>, doubleQuant: boolean): Nf4Host {
  const n = w.length;
  const nb = nf4Blocks(n);
  const absmax = new Float64Array(nb);
  const idx = new Uint8Array(n + (n % 2));
  for (let b = 0; b < nb; b++) {
    const end = Math.min(n, (b + 1) * NF4_BLOCK);
    let m = 0;
    for (let i = b * NF4_BLOCK; i < end; i++) m = Math.max(m, Math.abs(w[i]!));
    absmax[b] = m;
    // The pad element of an odd n is a zero; an all-zero block gets index 0 (bitsandbytes' CUDA
    // kernel divides by a zero absmax: NaN falls to index 0; the value is 0 either way).
    const q = (x: number) => (m === 0 ? 0 : nearestCode(NF4_CODE, x / m));
    for (let i = b * NF4_BLOCK; i < end; i++) idx[i] = q(w[i]!);
    if (end === n && n % 2 === 1) idx[n] = q(0);
  }
  const packed = new Uint8Array(idx.length / 2);
  for (let j = 0; j < packed.length; j++) packed[j] = (idx[2 * j]! << 4) | idx[2 * j + 1]!;
  const base = { n, packed, code: NF4_CODE };
  if (!doubleQuant) {
    return { ...base, absmax: Float32Array.from(absmax), qAbsmax: null, absmax2: null, offset: 0, nestedCode: null };
  }
  let sum = 0;
  for (const a of absmax) sum += a;
  const offset = sum / nb;
  const code8 = dynamicMap();
  const nb2 = Math.ceil(nb / NESTED_BLOCK);
  const absmax2 = new Float64Array(nb2);
  const qAbsmax = new Uint8Array(nb);
  for (let c = 0; c < nb2; c++) {
    const end = Math.min(nb, (c + 1) * NESTED_BLOCK);
    let m = 0;
    for (let b = c * NESTED_BLOCK; b < end; b++) m = Math.max(m, Math.abs(absmax[b]! - offset));
    absmax2[c] = m;
    for (let b = c * NESTED_BLOCK; b < end; b++) {
      qAbsmax[b] = m === 0 ? 0 : nearestCode(code8, (absmax[b]! - offset) / m);
    }
  }
  return {
    ...base,
    absmax: null,
    qAbsmax,
    absmax2: Float32Array.from(absmax2),
    offset,
    nestedCode: code8,
  };
}

/** The 4-bit index of element i. */
export function nf4Index(packed: Uint8Array, i: number): number {
  const byte = packed[i >> 1]!;
  return i % 2 === 0 ? byte >> 4 : byte & 15;
}

/** Block b's absmax in float64 (double quantization undone without rounding). */
export function blockAbsmaxRef(q: Nf4Host, b: number): number {
  if (q.absmax) return q.absmax[b]!;
  return q.nestedCode![q.qAbsmax![b]!]! * q.absmax2![Math.floor(b / NESTED_BLOCK)]! + q.offset;
}

/** Float64 dequantization: w[i] = code[idx[i]] · absmax[block of i]. */
export function dequantizeNf4Ref(q: Nf4Host): Float64Array {
  const out = new Float64Array(q.n);
  for (let i = 0; i < q.n; i++) out[i] = q.code[nf4Index(q.packed, i)]! * blockAbsmaxRef(q, Math.floor(i / NF4_BLOCK));
  return out;
}
