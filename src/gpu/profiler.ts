/**
 * Per-kernel GPU time from timestamp queries (the `timestamp-query` feature), for the benchmark's
 * profile of a training step or of decoded tokens (`bench profile`, src/bench/profile-bench.ts):
 * while `gpu.profiler` is set, every Recorder puts each dispatch in its own compute pass with begin
 * / end timestamps, and the times (and the FLOPs the dispatches declare) are summed per pipeline
 * label once the submit has run. Profiling changes what it measures a little (one pass per
 * dispatch, so no overlap between dispatches); it finds the hot kernels, it is not a benchmark.
 * In Node, Dawn's timestamp quantization is off (node.ts), so short kernels are not rounded away.
 */

/** Timestamps per query set (WebGPU allows 4096 queries per set: 2 per dispatch). */
const PER_SET = 2048;

/** One dispatch of a submit: its pipeline's label and its FLOPs (0: not known). */
interface Timed {
  label: string;
  flops: number;
}

interface Batch {
  dispatches: Timed[];
  sets: GPUQuerySet[];
  readback: GPUBuffer;
}

export interface KernelTime {
  label: string;
  ms: number;
  count: number;
  /** FLOPs of its dispatches, summed (0 where the kernel declares none). */
  flops: number;
}

export class Profiler {
  private readonly totals = new Map<string, { ns: number; count: number; flops: number }>();
  private readonly waiting: Promise<void>[] = [];

  constructor(private readonly device: GPUDevice) {}

  /**
   * Timestamp writes for the dispatches of one submit, in order (call `finish` after encoding
   * them). Returns one GPUComputePassTimestampWrites per dispatch.
   */
  begin(dispatches: Timed[]): {
    writes: GPUComputePassTimestampWrites[];
    finish(enc: GPUCommandEncoder): void;
    after(): void;
  } {
    const sets: GPUQuerySet[] = [];
    const writes: GPUComputePassTimestampWrites[] = [];
    const n = dispatches.length;
    dispatches.forEach((_, i) => {
      if (i % PER_SET === 0) {
        const count = 2 * Math.min(PER_SET, n - i);
        sets.push(this.device.createQuerySet({ type: 'timestamp', count }));
      }
      const j = i % PER_SET;
      writes.push({
        querySet: sets[sets.length - 1]!,
        beginningOfPassWriteIndex: 2 * j,
        endOfPassWriteIndex: 2 * j + 1,
      });
    });
    const bytes = n * 16;
    const resolve = this.device.createBuffer({
      size: Math.max(16, bytes),
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const readback = this.device.createBuffer({
      size: Math.max(16, bytes),
      usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ,
    });
    const batch: Batch = { dispatches, sets, readback };
    return {
      writes,
      finish: (enc) => {
        sets.forEach((s, k) => {
          const inSet = Math.min(PER_SET, n - k * PER_SET);
          enc.resolveQuerySet(s, 0, 2 * inSet, resolve, k * PER_SET * 16);
        });
        enc.copyBufferToBuffer(resolve, 0, readback, 0, Math.max(16, bytes));
      },
      after: () => {
        this.waiting.push(this.collect(batch).finally(() => resolve.destroy()));
      },
    };
  }

  private async collect(b: Batch): Promise<void> {
    await b.readback.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(b.readback.getMappedRange().slice(0));
    b.readback.unmap();
    b.readback.destroy();
    for (const s of b.sets) s.destroy();
    b.dispatches.forEach(({ label, flops }, i) => {
      const ns = Number(t[2 * i + 1]! - t[2 * i]!);
      const e = this.totals.get(label) ?? { ns: 0, count: 0, flops: 0 };
      e.ns += Math.max(0, ns);
      e.count++;
      e.flops += flops;
      this.totals.set(label, e);
    });
  }

  /** Waits for every submit so far and returns the time per kernel label, largest first. */
  async report(): Promise<KernelTime[]> {
    await Promise.all(this.waiting.splice(0));
    return [...this.totals.entries()]
      .map(([label, e]) => ({ label, ms: e.ns / 1e6, count: e.count, flops: e.flops }))
      .sort((a, b) => b.ms - a.ms);
  }
}
