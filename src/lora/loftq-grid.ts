/**
 * Is a base model a LoftQ adapter's backbone? A LoftQ adapter (init_lora_weights "loftq") fits the
 * quantized base Q = dequant(NF4(...)) it was initialised with, not the original weights; merging
 * it into (or training it on) the original model gives a silently wrong result, and PEFT does not
 * check. No extra metadata is needed to tell: a weight that is an NF4 round trip (src/lora/loftq.ts,
 * bitsandbytes' rule: blocks of 64 along the flattened [out, in] weight, no double quantization) has
 * in each block only values NF4_CODE[k]·absmax, where absmax is the block's largest |value| (the
 * codes ±1 map to it exactly). So each block has at most 16 distinct values and every value/absmax
 * lies on the code book, up to the rounding of a 16-bit store. An original weight fails this in its
 * first block with overwhelming probability (64 continuous values each within 1% of 16 points).
 */
import { NF4_BLOCK, NF4_CODE } from '../reference/nf4';

/** Whether adapter_config.json (parsed) describes a LoftQ adapter. */
export function isLoftqAdapterConfig(cfg: Record<string, unknown>): boolean {
  if (typeof cfg.init_lora_weights === 'string' && cfg.init_lora_weights.toLowerCase() === 'loftq') return true;
  const q = cfg.loftq_config;
  return !!q && typeof q === 'object' && Object.keys(q).length > 0;
}

/** The first block of a weight that is not on the NF4 grid, and where. */
export interface Nf4GridMiss {
  block: number;
  /** Index (in the flat order checked) of the value furthest from the grid in that block. */
  index: number;
  value: number;
  absmax: number;
  /** |value/absmax - nearest code|. */
  distance: number;
  /** Distinct values in the block (NF4 allows 16). */
  distinct: number;
}

/** value/absmax may be off a code by this much: float32 storage rounds once, bf16/f16 twice (the value and absmax). */
function gridTolerance(dtype: string): number {
  return dtype === 'F32' || dtype === 'F64' ? 1e-4 : 1e-2;
}

function nearestCodeDistance(r: number): number {
  let d = Infinity;
  for (const c of NF4_CODE) d = Math.min(d, Math.abs(r - c));
  return d;
}

/**
 * The first NF4 block of `w` (`at(i)` = the i-th value of the flattened weight of `n` values) off
 * the grid, or null when every block is on it.
 */
function nf4GridMiss(n: number, at: (i: number) => number, tol: number): Nf4GridMiss | null {
  for (let start = 0, block = 0; start < n; start += NF4_BLOCK, block++) {
    const end = Math.min(n, start + NF4_BLOCK);
    let absmax = 0;
    const seen = new Set<number>();
    for (let i = start; i < end; i++) {
      const v = at(i);
      seen.add(v);
      absmax = Math.max(absmax, Math.abs(v));
    }
    if (absmax === 0) continue; // an all-zero block is on the grid
    let worst = { index: start, distance: 0 };
    for (let i = start; i < end; i++) {
      const d = nearestCodeDistance(at(i) / absmax);
      if (!(d <= worst.distance)) worst = { index: i, distance: d };
    }
    if (!(worst.distance <= tol) || seen.size > NF4_CODE.length) {
      return { block, ...worst, value: at(worst.index), absmax, distinct: seen.size };
    }
  }
  return null;
}

/**
 * nf4GridMiss of a 2-D weight stored row-major [rows, cols]: on the grid in its stored order, or
 * (a GPT-2 Conv1D weight, stored [in, out]) in the transposed order Tabtune quantizes. Null when
 * either holds; otherwise the stored order's miss.
 */
export function weightGridMiss(w: Float32Array, rows: number, cols: number, dtype: string): Nf4GridMiss | null {
  const tol = gridTolerance(dtype);
  const stored = nf4GridMiss(w.length, (i) => w[i]!, tol);
  if (!stored || rows * cols !== w.length || rows === 1 || cols === 1) return stored;
  const transposed = nf4GridMiss(w.length, (i) => w[(i % rows) * cols + Math.floor(i / rows)]!, tol);
  return transposed ? stored : null;
}
