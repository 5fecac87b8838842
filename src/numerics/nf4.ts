/**
 * The layout of a 4-bit NF4 weight as bitsandbytes stores it (block sizes, the host-side arrays, block
 * counts), shared by the float64 reference (src/reference/nf4.ts, which describes the format), the
 * quantizer (src/model/nf4.ts) and the GPU kernels (src/kernels/nf4.ts), so neither of the kernels
 * and the reference imports the other.
 */

/** Elements per absmax block of a 4-bit weight. */
export const NF4_BLOCK = 64;
/** absmax values per block of the double quantization. */
export const NESTED_BLOCK = 256;

/** One quantized weight, host side: what a bitsandbytes checkpoint stores for it. */
export interface Nf4Host {
  /** Elements of the weight (out · in). */
  n: number;
  /** ceil(n / 2) bytes, two 4-bit indices each (first element in the high nibble). */
  packed: Uint8Array;
  /** Without double quantization: absmax per block of 64 (ceil(n / 64) floats). */
  absmax: Float32Array | null;
  /** With double quantization: the 8-bit index of each block's absmax in `nestedCode`. */
  qAbsmax: Uint8Array | null;
  /** With double quantization: absmax per 256 blocks (ceil(ceil(n / 64) / 256) floats). */
  absmax2: Float32Array | null;
  /** With double quantization: the mean subtracted from absmax before quantizing it. */
  offset: number;
  /** The 16 NF4 code values (`quant_map`). */
  code: Float32Array;
  /** The 256 dynamic-map values (`nested_quant_map`), with double quantization. */
  nestedCode: Float32Array | null;
}

export const nf4Blocks = (n: number): number => Math.ceil(n / NF4_BLOCK);
export const nestedBlocks = (n: number): number => Math.ceil(nf4Blocks(n) / NESTED_BLOCK);
