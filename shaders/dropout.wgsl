// Dropout mask library: functions only (no bindings, no entry point). It is prepended to every
// module that applies dropout (the matmul template in src/kernels/matmul.ts, shaders/lora.wgsl).
//
// The mask is a pure function of (seed, row, col) of the dropped tensor's row-major storage, so a
// backward pass regenerates exactly the forward's mask instead of saving it. Its twin in TypeScript,
// src/reference/dropout.ts, must agree bit for bit (tested).
//
//   h         = pcg(pcg(pcg(seed) + row) + col)            (u32 arithmetic, wrapping)
//   keep      = h >= threshold,   threshold = min(2^32 - 1, round(p * 2^32))
//   multiplier = keep ? scale : 0, scale = 1 / (1 - p)
//
// pcg is the output permutation of the PCG-RXS-M-XS 32-bit generator after one LCG step.

fn dropout_pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

fn dropout_hash(seed: u32, row: u32, col: u32) -> u32 {
  return dropout_pcg(dropout_pcg(dropout_pcg(seed) + row) + col);
}

// The factor element (row, col) is multiplied by: 0 when dropped, `scale` when kept.
fn dropout_mul(seed: u32, threshold: u32, scale: f32, row: u32, col: u32) -> f32 {
  return select(0.0, scale, dropout_hash(seed, row, col) >= threshold);
}
