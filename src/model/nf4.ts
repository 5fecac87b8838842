/**
 * NF4 quantization of a frozen weight on the CPU, bit for bit as bitsandbytes' CUDA kernels do it
 * (kQuantizeBlockwise with NF4 / General8bit, csrc/kernels.cu), so a weight quantized here holds the
 * same bytes as one in a "...-bnb-4bit" checkpoint. The rule and its float64 spec are in
 * src/reference/nf4.ts; here is the float32 arithmetic that decides near-ties:
 *   x = f32(w) · f32(1 / absmax)                  (one float32 product; a zero block gives NaN -> index 0)
 *   idx = how many of the 15 thresholds lie strictly below x, the thresholds being the midpoints of
 *         neighbouring NF4 codes rounded to float32 (dQuantizeNF4's decision tree)
 * and for double quantization offset = mean(absmax) (exact mean rounded to float32: torch's float32
 * reduction may differ in the last bit), v = f32(absmax - offset), x = f32(v · f32(1 / absmax2)),
 * then dQuantize's binary search over the 256 sorted dynamic-map values, which picks the nearest
 * value (a tie goes to the even index).
 *
 * Works one tensor at a time on its checkpoint bytes (F32, F16 or BF16), never widening a whole
 * model: the loader calls it as each weight finishes streaming in.
 */
import { bf16BitsToF32, f16BitsToF32 } from '../gpu/half';
import { ownCopy } from './safetensors';
import {
  NESTED_BLOCK,
  NF4_BLOCK,
  NF4_CODE,
  type Nf4Host,
  dynamicMap,
  nestedBlocks,
  nf4Blocks,
  nf4Index,
} from '../reference/nf4';

/** Float32 thresholds between neighbouring NF4 codes: T[k] separates code k from code k + 1. */
export const NF4_THRESHOLDS: Float32Array = Float32Array.from({ length: 15 }, (_, k) =>
  Math.fround((NF4_CODE[k]! + NF4_CODE[k + 1]!) / 2),
);

const T = NF4_THRESHOLDS;

/** dQuantizeNF4: the NF4 index of a value already divided by its block's absmax (NaN -> 0). */
export function nf4Quantize(x: number): number {
  if (x > T[7]!) {
    if (x > T[11]!) {
      if (x > T[13]!) return x > T[14]! ? 15 : 14;
      return x > T[12]! ? 13 : 12;
    }
    if (x > T[9]!) return x > T[10]! ? 11 : 10;
    return x > T[8]! ? 9 : 8;
  }
  if (x > T[3]!) {
    if (x > T[5]!) return x > T[6]! ? 7 : 6;
    return x > T[4]! ? 5 : 4;
  }
  if (x > T[1]!) return x > T[2]! ? 3 : 2;
  return x > T[0]! ? 1 : 0;
}

/**
 * dQuantize<0>: bitsandbytes' 8-bit blockwise rule over a sorted 256-value code. A 7-step binary
 * search lands on an even index p with code[p-1] < x <= code[p+1]; x then goes to p - 1, p or p + 1
 * by the float32 midpoints.
 */
export function dynamicQuantize(code: ArrayLike<number>, x: number): number {
  let pivot = 127;
  let upperPivot = 255;
  let lowerPivot = 0;
  let lower = -1;
  let upper = 1;
  let val = code[pivot]!;
  for (let i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lowerPivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upperPivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot]!;
  }
  if (upperPivot === 255) upper = code[upperPivot]!;
  if (lowerPivot === 0) lower = code[lowerPivot]!;
  if (x > val) return x > Math.fround((upper + val) * 0.5) ? upperPivot : pivot;
  return x < Math.fround((lower + val) * 0.5) ? lowerPivot : pivot;
}

export type FloatDType = 'F32' | 'F16' | 'BF16';

/** The checkpoint bytes of one tensor. */
export interface FloatBytes {
  dtype: FloatDType;
  data: Uint8Array;
}

/**
 * Fills dst[0..len) with the float32 values of stored elements start, start + stride, ... (bf16 is the
 * top half of a float32; f16 is widened exactly). The bytes are copied once when not aligned.
 */
type BlockReader = (dst: Float32Array, start: number, len: number, stride: number) => void;

function blockReader(t: FloatBytes): BlockReader {
  const size = t.dtype === 'F32' ? 4 : 2;
  const bytes = t.data.byteOffset % size === 0 ? t.data : ownCopy(t.data);
  const count = bytes.byteLength / size;
  if (t.dtype === 'F32') {
    const a = new Float32Array(bytes.buffer, bytes.byteOffset, count);
    return (dst, start, len, stride) => {
      for (let j = 0, i = start; j < len; j++, i += stride) dst[j] = a[i]!;
    };
  }
  const h = new Uint16Array(bytes.buffer, bytes.byteOffset, count);
  if (t.dtype === 'F16') {
    return (dst, start, len, stride) => {
      for (let j = 0, i = start; j < len; j++, i += stride) dst[j] = f16BitsToF32(h[i]!);
    };
  }
  return (dst, start, len, stride) => {
    const u = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
    for (let j = 0, i = start; j < len; j++, i += stride) u[j] = h[i]! << 16;
  };
}

/**
 * The first element (in stored order) that is a NaN or an infinity, with its value, or null. Read
 * from the bits: an all-ones exponent (F32 0x7f800000, F16 0x7c00, BF16 0x7f80).
 */
export function firstNonFinite(t: FloatBytes): { index: number; value: number } | null {
  const size = t.dtype === 'F32' ? 4 : 2;
  const bytes = t.data.byteOffset % size === 0 ? t.data : ownCopy(t.data);
  const count = bytes.byteLength / size;
  if (t.dtype === 'F32') {
    const u = new Uint32Array(bytes.buffer, bytes.byteOffset, count);
    for (let i = 0; i < count; i++) {
      if ((u[i]! & 0x7f800000) === 0x7f800000) return { index: i, value: new Float32Array(u.buffer, u.byteOffset)[i]! };
    }
    return null;
  }
  const h = new Uint16Array(bytes.buffer, bytes.byteOffset, count);
  const mask = t.dtype === 'F16' ? 0x7c00 : 0x7f80;
  for (let i = 0; i < count; i++) {
    if ((h[i]! & mask) === mask) {
      return { index: i, value: t.dtype === 'F16' ? f16BitsToF32(h[i]!) : bf16BitsToF32(h[i]!) };
    }
  }
  return null;
}

/**
 * Quantizes one weight of `rows` x `cols` (out x in). `transposed`: the bytes are stored [cols, rows]
 * (GPT-2's Conv1D [in, out]) and are read in [rows, cols] order, as transformers transposes a Conv1D
 * weight before bitsandbytes quantizes it.
 */
export function quantizeNf4(
  t: FloatBytes,
  rows: number,
  cols: number,
  o: { transposed: boolean; doubleQuant: boolean },
): Nf4Host {
  const n = rows * cols;
  const read = blockReader(t);
  const nb = nf4Blocks(n);
  const absmax = new Float32Array(nb);
  const packed = new Uint8Array(Math.ceil(n / 2));
  const blk = new Float32Array(NF4_BLOCK + 1); // + the zero that pads an odd n
  const scaled = new Float32Array(NF4_BLOCK + 1); // float32 stores round each product once
  for (let b = 0; b < nb; b++) {
    const start = b * NF4_BLOCK;
    const len = Math.min(NF4_BLOCK, n - start);
    if (!o.transposed) read(blk, start, len, 1);
    else {
      // Logical element e = (r, c) is stored at c·rows + r; a block may straddle rows.
      for (let j = 0; j < len;) {
        const r = Math.floor((start + j) / cols);
        const c = (start + j) % cols;
        const run = Math.min(len - j, cols - c);
        read(blk.subarray(j), c * rows + r, run, rows);
        j += run;
      }
    }
    let m = 0;
    for (let j = 0; j < len; j++) {
      const a = Math.abs(blk[j]!);
      if (a > m) m = a;
    }
    absmax[b] = m;
    const inv = Math.fround(1 / m);
    // An odd n pads the last byte with a zero element, quantized like the others.
    const padded = len + (len % 2);
    blk[len] = 0;
    for (let j = 0; j < padded; j++) scaled[j] = blk[j]! * inv;
    for (let j = 0; j < padded; j += 2) {
      packed[(start + j) >> 1] = (nf4Quantize(scaled[j]!) << 4) | nf4Quantize(scaled[j + 1]!);
    }
  }
  const base = { n, packed, code: NF4_CODE };
  if (!o.doubleQuant) return { ...base, absmax, qAbsmax: null, absmax2: null, offset: 0, nestedCode: null };
  return { ...base, ...doubleQuantize(absmax), absmax: null };
}

/** bitsandbytes' compress_statistics: absmax less its mean, in 8 bits per block of 256. */
function doubleQuantize(absmax: Float32Array): {
  qAbsmax: Uint8Array;
  absmax2: Float32Array;
  offset: number;
  nestedCode: Float32Array;
} {
  const nb = absmax.length;
  let sum = 0;
  for (let b = 0; b < nb; b++) sum += absmax[b]!;
  const offset = Math.fround(sum / nb);
  const code = dynamicMap();
  const nb2 = Math.ceil(nb / NESTED_BLOCK);
  const absmax2 = new Float32Array(nb2);
  const qAbsmax = new Uint8Array(nb);
  const v = new Float32Array(NESTED_BLOCK);
  for (let c = 0; c < nb2; c++) {
    const start = c * NESTED_BLOCK;
    const len = Math.min(NESTED_BLOCK, nb - start);
    let m = 0;
    for (let j = 0; j < len; j++) {
      v[j] = absmax[start + j]! - offset; // Float32Array store: one float32 rounding
      const a = Math.abs(v[j]!);
      if (a > m) m = a;
    }
    absmax2[c] = m;
    const inv = Math.fround(1 / m);
    for (let j = 0; j < len; j++) qAbsmax[start + j] = dynamicQuantize(code, Math.fround(v[j]! * inv));
  }
  return { qAbsmax, absmax2, offset, nestedCode: code };
}

/** Block b's absmax as bitsandbytes computes it in float32 (dequantize_blockwise, then + offset). */
export function blockAbsmax(q: Nf4Host, b: number): number {
  if (q.absmax) return q.absmax[b]!;
  const f = Math.fround;
  return f(f(q.nestedCode![q.qAbsmax![b]!]! * q.absmax2![Math.floor(b / NESTED_BLOCK)]!) + q.offset);
}

/** bitsandbytes' float32 dequantization (before its cast to the compute dtype), [rows, cols] order. */
export function dequantizeNf4(q: Nf4Host): Float32Array {
  const out = new Float32Array(q.n);
  for (let b = 0; b < nf4Blocks(q.n); b++) {
    const a = blockAbsmax(q, b);
    const end = Math.min(q.n, (b + 1) * NF4_BLOCK);
    for (let i = b * NF4_BLOCK; i < end; i++) out[i] = q.code[nf4Index(q.packed, i)]! * a;
  }
  return out;
}

/** Bytes a quantized weight of n elements occupies as bitsandbytes stores it (packed + statistics). */
export function nf4HostBytes(n: number, doubleQuant: boolean): number {
  const nb = nf4Blocks(n);
  return Math.ceil(n / 2) + (doubleQuant ? nb + 4 * nestedBlocks(n) : 4 * nb);
}
