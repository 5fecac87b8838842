// NF4 weight loads (bitsandbytes' 4-bit NormalFloat, src/reference/nf4.ts): a library of functions
// only, prepended to every module that reads a 4-bit frozen weight. The including module declares
//   const NF4_DQ: bool                      double-quantized absmax (bnb_4bit_use_double_quant)
//   NF4W: array<u32>                        the packed indices, bitsandbytes' byte order: byte j holds
//                                           element 2j in its high nibble and 2j + 1 in its low one;
//                                           bytes are little-endian in the words (byte j in word j / 4)
//   NF4S: array<u32>                        the statistics (src/kernels/nf4.ts nf4StatsLayout):
//                                             [0, 16)    the 16 NF4 code values (f32)
//                                           with NF4_DQ:
//                                             [16, 272)  the 256 dynamic-map values (f32)
//                                             272        the offset (mean of absmax, f32)
//                                             abs2Off..  absmax2, one f32 per 256 blocks
//                                             absOff..   one u8 absmax index per block, 4 per word
//                                           without:
//                                             absOff..   one f32 absmax per block
// Element i of the weight (row-major [out, in], blocks of 64 consecutive elements) is
//   code[idx(i)] * absmax(i / 64),   absmax(b) = NF4_DQ ? dyn[q(b)] * absmax2[b / 256] + offset : absmax[b]

// The absmax of block b.
fn nf4_scale(b: u32, absOff: u32, abs2Off: u32) -> f32 {
  if (NF4_DQ) {
    let q = (NF4S[absOff + (b >> 2u)] >> ((b & 3u) << 3u)) & 0xffu;
    return bitcast<f32>(NF4S[16u + q]) * bitcast<f32>(NF4S[abs2Off + (b >> 8u)]) + bitcast<f32>(NF4S[272u]);
  }
  return bitcast<f32>(NF4S[absOff + b]);
}

// The 4-bit index of element i.
fn nf4_index(i: u32) -> u32 {
  let byte = (NF4W[i >> 3u] >> (((i >> 1u) & 3u) << 3u)) & 0xffu;
  return select(byte & 15u, byte >> 4u, (i & 1u) == 0u);
}

// The code value of element i (not yet scaled by its block's absmax).
fn nf4_code(i: u32) -> f32 {
  return bitcast<f32>(NF4S[nf4_index(i)]);
}

// Element i, dequantized.
fn nf4_load(i: u32, absOff: u32, abs2Off: u32) -> f32 {
  return nf4_code(i) * nf4_scale(i >> 6u, absOff, abs2Off);
}
