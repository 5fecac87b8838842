/**
 * Autotuning of the matmul family: the shape classes a run meets (recorded by chooseConfig when it
 * falls back to the baseline: gpu.kernels.seen) are each timed on this device with every member
 * that can serve them, and the fastest is kept in gpu.kernels.choices, so the next recordings use
 * it. Choices are plain data ({ shape class: member }) under a device key, for the caller to keep
 * (a cache file for the CLI, IndexedDB in the app) and give back with applyChoices on the next run,
 * which then tunes nothing. gpu.kernels.pin (TABTUNE_KERNELS) overrides every choice.
 *
 * The timing is round-robin (every candidate once per round) so a machine's background load falls
 * on all alike; a member wins only by more than 3% over the baseline, so noise does not swap
 * kernels. Each candidate's first run compiles it: on a CPU driver that is seconds, and dominates.
 */
import type { Gpu, Recorder } from '../../gpu/context';
import type { Tensor } from '../../gpu/tensor';
import { Workspace } from '../../gpu/workspace';
import { recordMatmul } from '../matmul';
import { type Nf4Tensor, nf4StatsLayout } from '../nf4';
import { BASELINE, MATMUL_FAMILY, type SeenShape, candidatesFor, matmulConfig } from './variants';

/** Rank of the LoRA segment and the most rows a tuning problem uses (time grows linearly in M). */
const TUNE_RANK = 16;
const TUNE_MAX_M = 512;

export interface TuneProgress {
  done: number;
  total: number;
  shapeClass: string;
}

export interface TuneResult {
  shapeClass: string;
  /** Median ms per member, in the order tried. */
  ms: Record<string, number>;
  chosen: string;
}

/** What identifies a device for cached choices: the adapter, its driver and the features used. */
export function deviceKey(gpu: Gpu): string {
  const i = gpu.info;
  return [
    i.vendor,
    i.architecture,
    i.device,
    i.description,
    i.runtime,
    gpu.features.f16 ? 'f16' : '',
    gpu.features.subgroupLanes,
  ]
    .map((x) => String(x ?? ''))
    .join('|');
}

/** Choices kept from an earlier run (unknown members, e.g. from another version, are dropped). */
export function applyChoices(gpu: Gpu, choices: Record<string, string>): number {
  let n = 0;
  for (const [cls, name] of Object.entries(choices)) {
    if (MATMUL_FAMILY.some((c) => c.name === name)) {
      gpu.kernels.choices.set(cls, name);
      n++;
    }
  }
  return n;
}

/** The current choices as plain data (to be saved under deviceKey). */
export function currentChoices(gpu: Gpu): Record<string, string> {
  return Object.fromEntries(gpu.kernels.choices);
}

/** Shape classes met but not tuned yet (none while a member is pinned). */
export function untunedClasses(gpu: Gpu): string[] {
  if (gpu.kernels.pin) return [];
  return [...gpu.kernels.seen.keys()].filter((c) => !gpu.kernels.choices.has(c));
}

/** Pins a member for every problem it serves (TABTUNE_KERNELS); an unknown name throws, naming the family. */
export function pinMember(gpu: Gpu, name: string | null): void {
  gpu.kernels.pin = name ? matmulConfig(name).name : null;
}

async function timeOnce(gpu: Gpu, record: (rec: Recorder) => void): Promise<number> {
  const rec = gpu.recorder('tune');
  record(rec);
  const t0 = performance.now();
  rec.submit();
  await gpu.sync();
  return performance.now() - t0;
}

/** Times the candidates of one seen shape and returns the median ms of each. */
async function timeShape(
  gpu: Gpu,
  seen: SeenShape,
  names: string[],
  budgetMs: number,
): Promise<Record<string, number>> {
  const s = seen.shape;
  const M = Math.min(s.M, TUNE_MAX_M);
  const owned: Tensor[] = [];
  const t = (label: string, shape: number[], dtype: Tensor['dtype'] = 'f32') => {
    const x = gpu.tensor(label, shape, dtype, 'scratch');
    owned.push(x);
    return x;
  };
  const ws = new Workspace(gpu);
  try {
    const a = t('tune a', s.transA ? [s.K, M] : [M, s.K]);
    // A 4-bit weight: zero indices and statistics (the time does not depend on the values).
    const [rows, cols] = s.transB ? [s.N, s.K] : [s.K, s.N];
    let b: Tensor | Nf4Tensor;
    if (s.bType === 'nf4') {
      const layout = nf4StatsLayout(rows * cols, true);
      const q = t('tune b.nf4', [Math.ceil((rows * cols) / 8)], 'u32');
      const stats = t('tune b.nf4_stats', [layout.words], 'u32');
      b = { format: 'nf4', label: 'tune b', rows, cols, doubleQuant: true, q, stats, layout };
    } else b = t('tune b', [rows, cols], s.bType);
    const c = t('tune c', [M, s.N]);
    const extra = s.lora
      ? { a: t('tune a2', [M, TUNE_RANK]), b: t('tune b2', [s.N, TUNE_RANK]), K: TUNE_RANK, transB: true }
      : undefined;
    const splitK = seen.splitK;
    const run = (variant: string) => (rec: Recorder) =>
      recordMatmul(gpu, rec, {
        a,
        b,
        c,
        M,
        N: s.N,
        K: s.K,
        transA: s.transA,
        transB: s.transB,
        extra,
        splitK,
        ws,
        variant,
      });
    const times: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
    let round = 0;
    for (const n of names) round += await timeOnce(gpu, run(n)); // compiles
    const t0 = performance.now();
    for (let rep = 0; rep < 5 && (rep < 1 || performance.now() - t0 + round < budgetMs); rep++) {
      for (const n of names) times[n]!.push(await timeOnce(gpu, run(n)));
    }
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    return Object.fromEntries(names.map((n) => [n, median(times[n]!)]));
  } finally {
    ws.dispose();
    for (const x of owned) gpu.free(x);
  }
}

/**
 * Tunes every shape class met and not tuned yet (see the file comment); `budgetMs` is the timing
 * budget per class after the candidates have compiled. Returns what was measured.
 */
export async function tuneMatmul(
  gpu: Gpu,
  opts: { budgetMs?: number; onProgress?: (p: TuneProgress) => void } = {},
): Promise<TuneResult[]> {
  const classes = untunedClasses(gpu);
  const out: TuneResult[] = [];
  for (const [i, cls] of classes.entries()) {
    opts.onProgress?.({ done: i, total: classes.length, shapeClass: cls });
    const seen = gpu.kernels.seen.get(cls) as SeenShape;
    const names = candidatesFor(gpu, seen.shape, seen.splitK > 1).map((c) => c.name);
    // The baseline is always a candidate (the fallback when nothing beats it clearly).
    const fallback = seen.shape.M <= 8 && seen.splitK <= 1 ? 'gemv' : BASELINE;
    let chosen = fallback;
    let ms: Record<string, number> = {};
    if (names.length > 1) {
      ms = await timeShape(gpu, seen, names, opts.budgetMs ?? 600);
      const best = names.reduce((x, y) => (ms[y]! < ms[x]! ? y : x));
      if (ms[best]! < ms[fallback]! / 1.03) chosen = best;
    }
    gpu.kernels.choices.set(cls, chosen);
    out.push({ shapeClass: cls, ms, chosen });
  }
  opts.onProgress?.({ done: classes.length, total: classes.length, shapeClass: '' });
  return out;
}
