/**
 * The kernel profiler (src/gpu/profiler.ts) on a known workload: a recorder of interleaved
 * dispatches of two pipelines, a copy among them, more dispatches than one query set holds. Each
 * label is counted once per dispatch with the FLOPs its dispatches declared, every time is
 * non-negative and their sum fits in the submit's wall time, and the dispatches compute what they
 * compute without the profiler.
 */
import { describe, expect, it } from 'vitest';
import { Profiler } from '../src/gpu/profiler';
import { getGpu } from './helpers/gpu';

/** x[i] += ADD for the first 64 elements (binding 1, as every kernel's storage starts). */
const kernel = (add: number) => `
@group(0) @binding(1) var<storage, read_write> x: array<u32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x < arrayLength(&x)) { x[g.x] = x[g.x] + ${add}u; }
}`;

describe('Profiler', () => {
  it('times every dispatch under its label, counts and FLOPs per label, within the wall time', async () => {
    const gpu = await getGpu();
    expect(gpu.features.timestampQuery).toBe(true); // lavapipe offers it; a profile needs it
    const a = gpu.pipeline('prof_add1', kernel(1));
    const b = gpu.pipeline('prof_add2', kernel(2));
    const x = gpu.tensor('x', [64], 'u32', 'scratch', new Uint32Array(64));
    const y = gpu.tensor('y', [64], 'u32', 'scratch', new Uint32Array(64));
    // 2 × 1100 dispatches: past the 2048 one query set holds, so a second set is resolved too.
    const N = 1100;
    const rec = gpu.recorder('profiled');
    for (let i = 0; i < N; i++) {
      rec.dispatch(a, [x], [1], undefined, 10);
      rec.dispatch(b, [x], [1]);
      if (i === N / 2) rec.copy(x, y); // a copy ends the pass; the next dispatch opens its own
    }
    const profiler = new Profiler(gpu.device);
    const c0 = gpu.counters.dispatches;
    await gpu.sync();
    gpu.profiler = profiler;
    const t0 = performance.now();
    try {
      rec.submit();
      await gpu.sync();
    } finally {
      gpu.profiler = null;
    }
    const wallMs = performance.now() - t0;
    const times = await profiler.report();
    expect(gpu.counters.dispatches - c0).toBe(2 * N);
    expect(times.map((t) => t.label).sort()).toEqual(['prof_add1', 'prof_add2']);
    const byLabel = new Map(times.map((t) => [t.label, t]));
    expect(byLabel.get('prof_add1')!.count).toBe(N);
    expect(byLabel.get('prof_add2')!.count).toBe(N);
    expect(byLabel.get('prof_add1')!.flops).toBe(10 * N);
    expect(byLabel.get('prof_add2')!.flops).toBe(0);
    const sum = times.reduce((s, t) => s + t.ms, 0);
    for (const t of times) expect(t.ms).toBeGreaterThanOrEqual(0);
    expect(sum).toBeGreaterThan(0);
    expect(sum).toBeLessThanOrEqual(wallMs);
    expect(times[0]!.ms).toBeGreaterThanOrEqual(times[1]!.ms); // largest first
    // The work itself is what it is without the profiler.
    expect(Array.from(await gpu.readU32(x))).toEqual(new Array(64).fill(3 * N));
    expect(Array.from(await gpu.readU32(y))).toEqual(new Array(64).fill(3 * (N / 2 + 1)));
    gpu.free(x);
    gpu.free(y);
  });
});
