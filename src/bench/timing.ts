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

export async function timeGpu(
  gpu: Gpu,
  record: (rec: Recorder) => void,
  opts: { budgetMs?: number; maxReps?: number; minReps?: number } = {},
): Promise<Timing> {
  const once = async () => {
    const rec = gpu.recorder('bench');
    record(rec);
    const t0 = performance.now();
    rec.submit();
    await gpu.sync();
    return performance.now() - t0;
  };
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
