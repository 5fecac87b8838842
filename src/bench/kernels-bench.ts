/**
 * `tabtune bench kernels`: the matmul family side by side in one process (round-robin, so the load
 * of a shared machine falls on every member alike and the ratios hold):
 *   - the device's ceilings: an FMA-only kernel (GFLOP/s) and buffer copy bandwidth (GB/s);
 *   - each member on the layer's GEMMs (Y = X·Wᵀ, dX = dY·W; bf16 W), GFLOP/s and ratio to tile64
 *     (the GPU members wg64 / wg128 on GPUs only);
 *   - the LoRA linear layer forward + backward with every member pinned, against tile64 (the
 *     kernel every device ran before the family: the fixed baseline), and with the tuned choices;
 *   - which attention kernel set the device runs (tiled or direct) and why, beside the choices.
 */
import type { Gpu, Recorder } from '../gpu/context';
import { packHalf } from '../gpu/half';
import type { Tensor } from '../gpu/tensor';
import { Workspace } from '../gpu/workspace';
import { type AttentionSet, attentionSet } from '../kernels/attention-variants';
import { type FrozenLinear, type LoraParams, recordLinearBackward, recordLinearForward } from '../kernels/linear';
import { recordMatmul } from '../kernels/matmul';
import { type TuneResult, tuneMatmul } from '../kernels/matmul/tune';
import { BASELINE, MATMUL_FAMILY, isCpuDevice } from '../kernels/matmul/variants';
import { benchCeilings } from './ceilings';
import { randomValues } from '../reference/check';
import { timeGpuInterleaved } from './timing';

export interface KernelsBench {
  fma_gflops: number;
  copy_gbps: number;
  /** Per GEMM shape and member: GFLOP/s, and time relative to the baseline (baseline / member). */
  matmul: { shape: string; member: string; gflops: number; speedup: number }[];
  /** LoRA linear forward + backward per pinned member (and `tuned`), ms and speed-up over tile64. */
  lora: { shape: string; r: number; member: string; ms: number; gflops: number; speedup: number }[];
  /** What tuning chose for each of the layer's shape classes (with `tuned`). */
  tuning: TuneResult[];
  /** The attention kernel set in use (gpu.kernels.attention, or the device class's) and why. */
  attention: { set: AttentionSet; why: string };
}

/** Pins `member` (null: the tuned / default choice) while `record` runs. */
function pinned(gpu: Gpu, member: string | null, record: (rec: Recorder) => void): (rec: Recorder) => void {
  return (rec) => {
    const before = gpu.kernels.pin;
    gpu.kernels.pin = member;
    try {
      record(rec);
    } finally {
      gpu.kernels.pin = before;
    }
  };
}

export async function benchKernels(
  gpu: Gpu,
  opts: {
    M: number;
    K: number;
    N: number;
    r: number;
    budgetMs: number;
    tuned?: boolean;
    /** Size of the ceilings' problems (1: full; less for a short run). */
    ceilingScale?: number;
    log: (l: string) => void;
  },
): Promise<KernelsBench> {
  const { M, K, N, r } = opts;
  // The GPU members (workgroup tiles) only where they can be candidates: a CPU driver takes tens of
  // seconds to compile each of their shaders (pinning one with TABTUNE_KERNELS still runs it).
  const cpu = isCpuDevice(gpu);
  const members = MATMUL_FAMILY.filter((c) => c.kernel !== 'small' && c.tm !== 0 && !(cpu && c.kernel === 'wg')).map(
    (c) => c.name,
  );
  const ceil = await benchCeilings(gpu, opts.ceilingScale);
  opts.log(`device ceilings: FMA ${ceil.fma_gflops.toFixed(1)} GFLOP/s, copy ${ceil.copy_gbps.toFixed(2)} GB/s`);
  const attention = attentionSet(gpu);
  opts.log(`attention kernels: ${attention.set} (${attention.why})`);
  const owned: Tensor[] = [];
  const t = (label: string, shape: number[], data?: Float32Array, bf16 = false) => {
    const x = gpu.tensor(label, shape, bf16 ? 'bf16' : 'f32', 'scratch', data && bf16 ? packHalf(data, 'bf16') : data);
    owned.push(x);
    return x;
  };
  const ws = new Workspace(gpu);
  try {
    const x = t('x', [M, K], randomValues(M * K, 1, 1));
    const w = t('w', [N, K], randomValues(N * K, 2, 0.05), true);
    const dy = t('dy', [M, N], randomValues(M * N, 3, 0.01));
    const y = t('y', [M, N]);
    const dx = t('dx', [M, K]);

    // The layer's two big GEMMs, each member.
    const matmul: KernelsBench['matmul'] = [];
    const gemms: [string, (v: string) => (rec: Recorder) => void][] = [
      [
        `${M}x${K}x${N} X·Wᵀ`,
        (v) => (rec) => recordMatmul(gpu, rec, { a: x, b: w, c: y, M, N, K, transB: true, variant: v }),
      ],
      [
        `${M}x${N}x${K} dY·W`,
        (v) => (rec) => recordMatmul(gpu, rec, { a: dy, b: w, c: dx, M, N: K, K: N, variant: v }),
      ],
    ];
    for (const [shape, make] of gemms) {
      const times = await timeGpuInterleaved(gpu, Object.fromEntries(members.map((m) => [m, make(m)])), {
        budgetMs: opts.budgetMs,
      });
      for (const m of members) {
        const ms = times[m]!.medianMs;
        const row = { shape, member: m, gflops: (2 * M * K * N) / (ms * 1e6), speedup: times[BASELINE]!.medianMs / ms };
        matmul.push(row);
        opts.log(`matmul ${shape} ${m}: ${row.gflops.toFixed(2)} GFLOP/s (${row.speedup.toFixed(2)}x ${BASELINE})`);
      }
    }

    // The LoRA linear layer, forward + backward, each member pinned (small-M members never apply).
    const lin: FrozenLinear = { w, bias: null, inF: K, outF: N, transposed: false };
    const lora: LoraParams = {
      a: t('A', [r, K], randomValues(r * K, 4, 1 / Math.sqrt(K))),
      b: t('B', [N, r], randomValues(N * r, 5, 0.01)),
      r,
      scale: 2,
      dropout: 0,
    };
    const s = t('S', [M, r]);
    const dA = t('dA', [r, K]);
    const dB = t('dB', [N, r]);
    const step = (rec: Recorder) => {
      recordLinearForward(gpu, rec, { x, M, lin, lora, y, s });
      recordLinearBackward(gpu, rec, { dy, x, M, lin, lora, s, dx, dA, dB, ws });
    };
    // Tune the layer's shapes as a first training step would (src/kernels/matmul/tune.ts).
    const tuning: TuneResult[] = [];
    if (opts.tuned) {
      gpu.kernels.choices.clear();
      gpu.kernels.seen.clear();
      const rec = gpu.recorder('bench kernels: shapes');
      step(rec);
      rec.submit();
      await gpu.sync();
      const t0 = performance.now();
      tuning.push(...(await tuneMatmul(gpu)));
      opts.log(tuneSummary(tuning, performance.now() - t0));
      for (const t of tuning) {
        opts.log(
          `  ${t.shapeClass}: ${t.chosen} (compiled ${t.compiled} in ${t.compileMs.toFixed(0)} ms, ` +
            `timed ${t.rows} rows in ${t.timedMs.toFixed(0)} ms)`,
        );
      }
    }
    const runs: Record<string, (rec: Recorder) => void> = Object.fromEntries(
      members.map((m) => [m, pinned(gpu, m, step)]),
    );
    if (opts.tuned) runs.tuned = pinned(gpu, null, step);
    const times = await timeGpuInterleaved(gpu, runs, { budgetMs: 2 * opts.budgetMs });
    const flops = 4 * M * K * N + 2 * M * r * (K + N) * 3;
    const out: KernelsBench['lora'] = [];
    for (const m of Object.keys(runs)) {
      const ms = times[m]!.medianMs;
      const row = {
        shape: `${M}x${K}x${N}`,
        r,
        member: m,
        ms,
        gflops: flops / (ms * 1e6),
        speedup: times[BASELINE]!.medianMs / ms,
      };
      out.push(row);
      opts.log(
        `lora-linear fwd+bwd ${row.shape} r=${r} ${m}: ${ms.toFixed(1)} ms, ${row.gflops.toFixed(2)} GFLOP/s ` +
          `(${row.speedup.toFixed(2)}x ${BASELINE})`,
      );
    }
    return { ...ceil, matmul, lora: out, tuning, attention };
  } finally {
    // Later benchmarks on this device run the baseline kernels, as before the family.
    gpu.kernels.choices.clear();
    gpu.kernels.seen.clear();
    ws.dispose();
    for (const x of owned) gpu.free(x);
  }
}

/** The problem sizes of the bench: the LoRA layer M x K -> N, rank r (the app's sizes: ui/components/BenchCard.tsx). */
export interface KernelBenchSize {
  M: number;
  K: number;
  N: number;
  r: number;
  /** Timing budget per measurement, ms. */
  budgetMs: number;
  /** Size of the FMA and bandwidth problems (1: full). */
  ceilingScale: number;
}

/**
 * The bench on a device that is in use (the app's Diagnostics, in the GPU worker): tuned as a
 * first step would be, then the pin, the tuned choices and the shapes met are put back as they were.
 */
export async function benchInUse(gpu: Gpu, size: KernelBenchSize, log: (l: string) => void): Promise<KernelsBench> {
  const k = gpu.kernels;
  const before = { pin: k.pin, choices: [...k.choices], seen: [...k.seen] };
  try {
    return await benchKernels(gpu, { ...size, tuned: true, log });
  } finally {
    k.pin = before.pin;
    k.choices.clear();
    k.seen.clear();
    for (const [c, m] of before.choices) k.choices.set(c, m);
    for (const [c, s] of before.seen) k.seen.set(c, s);
  }
}

/** One line on a tuning: classes, wall time, and how much of it was compiling and how much timing. */
function tuneSummary(tuning: TuneResult[], wallMs: number): string {
  const sum = (f: (t: TuneResult) => number) => tuning.reduce((a, t) => a + f(t), 0);
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const per = tuning.length ? ` (${s(wallMs / tuning.length)} per class)` : '';
  return (
    `tuned ${tuning.length} shape classes in ${s(wallMs)}${per}: compiling ${sum((t) => t.compiled)} ` +
    `shaders ${s(sum((t) => t.compileMs))}, timing ${s(sum((t) => t.timedMs))}:`
  );
}
