/**
 * Per-kernel GPU time from timestamp queries (the `timestamp-query` feature), for the benchmark's
 * profile of a training step or a decoded token: while `gpu.profiler` is set, every Recorder puts
 * each dispatch in its own compute pass with begin / end timestamps, and the times are summed per
 * pipeline label once the submit has run. Profiling changes what it measures a little (one pass
 * per dispatch); it is a tool for finding the hot kernels, not a benchmark.
 */

/** Timestamps per query set (WebGPU allows 4096 queries per set: 2 per dispatch). */
const PER_SET = 2048;

interface Batch {
  labels: string[];
  sets: GPUQuerySet[];
  readback: GPUBuffer;
}

export interface KernelTime {
  label: string;
  ms: number;
  count: number;
}

export class Profiler {
  private readonly totals = new Map<string, { ns: number; count: number }>();
  private readonly waiting: Promise<void>[] = [];

  constructor(private readonly device: GPUDevice) {}

  /**
   * Timestamp writes for the dispatches of one submit, in order (call `finish` after encoding
   * them). Returns one GPUComputePassTimestampWrites per dispatch.
   */
  begin(labels: string[]): {
    writes: GPUComputePassTimestampWrites[];
    finish(enc: GPUCommandEncoder): void;
    after(): void;
  } {
    const sets: GPUQuerySet[] = [];
    const writes: GPUComputePassTimestampWrites[] = [];
    labels.forEach((_, i) => {
      if (i % PER_SET === 0) {
        const count = 2 * Math.min(PER_SET, labels.length - i);
        sets.push(this.device.createQuerySet({ type: 'timestamp', count }));
      }
      const j = i % PER_SET;
      writes.push({
        querySet: sets[sets.length - 1]!,
        beginningOfPassWriteIndex: 2 * j,
        endOfPassWriteIndex: 2 * j + 1,
      });
    });
    const bytes = labels.length * 16;
    const resolve = this.device.createBuffer({
      size: Math.max(16, bytes),
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const readback = this.device.createBuffer({
      size: Math.max(16, bytes),
      usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ,
    });
    const batch: Batch = { labels, sets, readback };
    return {
      writes,
      finish: (enc) => {
        sets.forEach((s, k) => {
          const n = Math.min(PER_SET, labels.length - k * PER_SET);
          enc.resolveQuerySet(s, 0, 2 * n, resolve, k * PER_SET * 16);
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
    b.labels.forEach((label, i) => {
      const ns = Number(t[2 * i + 1]! - t[2 * i]!);
      const e = this.totals.get(label) ?? { ns: 0, count: 0 };
      e.ns += Math.max(0, ns);
      e.count++;
      this.totals.set(label, e);
    });
  }

  /** Waits for every submit so far and returns the time per kernel label, largest first. */
  async report(): Promise<KernelTime[]> {
    await Promise.all(this.waiting.splice(0));
    return [...this.totals.entries()]
      .map(([label, e]) => ({ label, ms: e.ns / 1e6, count: e.count }))
      .sort((a, b) => b.ms - a.ms);
  }

  reset(): void {
    this.totals.clear();
  }
}
