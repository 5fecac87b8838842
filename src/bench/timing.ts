/**
 * Wall-clock timing of recorded GPU work: warm up once (pipeline compilation), then repeat until a
 * time budget is used and report the median. Each repetition records into a fresh Recorder, submits
 * and waits for the queue, so the time includes dispatch overhead the way training sees it.
 */

import type { Gpu, Recorder } from '../gpu/context';

export interface Timing {
  medianMs: number;
  minMs: number;
  reps: number;
}

async function timeOnce(gpu: Gpu, record: (rec: Recorder) => void): Promise<number> {
  const rec = gpu.recorder('bench');
  record(rec);
  const t0 = performance.now();
  rec.submit();
  await gpu.sync();
  return performance.now() - t0;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * Times several variants of the same work round-robin (a, b, c, a, b, c, ...) after one warm-up
 * each, so that load from other jobs on a shared machine falls on all of them alike and their
 * ratios stay meaningful. `budgetMs` is for all variants together.
 */
export async function timeGpuInterleaved<K extends string>(
  gpu: Gpu,
  variants: Record<K, (rec: Recorder) => void>,
  opts: { budgetMs?: number; maxReps?: number; minReps?: number } = {},
): Promise<Record<K, Timing>> {
  const names = Object.keys(variants) as K[];
  let round = 0;
  for (const n of names) round += await timeOnce(gpu, variants[n]); // warm-up: compiles
  const reps = Math.max(
    opts.minReps ?? 3,
    Math.min(opts.maxReps ?? 9, Math.floor((opts.budgetMs ?? 6000) / Math.max(round, 1))),
  );
  const times = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<K, number[]>;
  for (let i = 0; i < reps; i++) {
    for (const n of names) times[n].push(await timeOnce(gpu, variants[n]));
  }
  return Object.fromEntries(
    names.map((n) => [n, { medianMs: median(times[n]), minMs: Math.min(...times[n]), reps }]),
  ) as Record<K, Timing>;
}

export async function timeGpu(
  gpu: Gpu,
  record: (rec: Recorder) => void,
  opts: { budgetMs?: number; maxReps?: number; minReps?: number } = {},
): Promise<Timing> {
  const once = () => timeOnce(gpu, record);
  const first = await once(); // includes compilation
  const budget = opts.budgetMs ?? 3000;
  const maxReps = opts.maxReps ?? 7;
  const minReps = opts.minReps ?? 1;
  const reps = Math.max(minReps, Math.min(maxReps, Math.floor(budget / Math.max(first, 1))));
  const times: number[] = [];
  for (let i = 0; i < reps; i++) times.push(await once());
  times.sort((a, b) => a - b);
  return { medianMs: times[Math.floor(times.length / 2)]!, minMs: times[0]!, reps };
}
