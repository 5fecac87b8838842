/**
 * shader-f16 and subgroup kernel variants against the plain f32 paths, side by side: the same
 * matmul on the default device (which takes the variants where the adapter has the features) and
 * on a second device created without them. Measurements alternate between the two devices so
 * that load on a shared machine hits both alike; the ratio is plain time / variant time.
 */

import type { Gpu } from '../gpu/context';
import { benchMatmul } from './linear-bench';

export interface FeatureBench {
  what: string;
  shape: string;
  ms_variant: number;
  ms_plain: number;
  /** plain / variant: above 1 means the variant is faster. */
  speedup: number;
}

async function pair(
  gpu: Gpu,
  plain: Gpu,
  what: string,
  M: number,
  K: number,
  N: number,
  dtype: 'bf16' | 'f16',
  budgetMs: number,
  rounds: number,
): Promise<FeatureBench> {
  const v: number[] = [];
  const p: number[] = [];
  for (let i = 0; i < rounds; i++) {
    v.push((await benchMatmul(gpu, M, K, N, budgetMs / rounds, dtype)).ms);
    p.push((await benchMatmul(plain, M, K, N, budgetMs / rounds, dtype)).ms);
  }
  const med = (a: number[]) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  const msV = med(v);
  const msP = med(p);
  return { what, shape: `${M}x${K}x${N} ${dtype} W`, ms_variant: msV, ms_plain: msP, speedup: msP / msV };
}

/** Runs the comparisons the default device's features allow; an empty list when it has neither. */
export async function benchFeatures(
  gpu: Gpu,
  plain: Gpu,
  opts: { quick: boolean; log: (line: string) => void },
): Promise<FeatureBench[]> {
  const out: FeatureBench[] = [];
  const budget = opts.quick ? 1200 : 4000;
  const rounds = 3;
  const M = opts.quick ? 128 : 512;
  if (gpu.features.f16) {
    out.push(
      await pair(gpu, plain, 'shader-f16: native f16 weight loads (tiled X·Wᵀ)', M, 576, 1536, 'f16', budget, rounds),
    );
  }
  if (gpu.features.subgroupLanes > 0) {
    out.push(
      await pair(
        gpu,
        plain,
        `subgroups: shuffle reduction, ${gpu.features.subgroupLanes} lanes (decode GEMV)`,
        1,
        576,
        1536,
        'bf16',
        budget,
        rounds,
      ),
    );
    out.push(
      await pair(
        gpu,
        plain,
        `subgroups: shuffle reduction, ${gpu.features.subgroupLanes} lanes (decode LM head)`,
        1,
        576,
        opts.quick ? 8192 : 49152,
        'bf16',
        budget,
        rounds,
      ),
    );
  }
  for (const b of out) {
    opts.log(
      `${b.what} ${b.shape}: ${b.ms_variant.toFixed(3)} ms vs plain ${b.ms_plain.toFixed(3)} ms (${b.speedup.toFixed(2)}x)`,
    );
  }
  return out;
}
