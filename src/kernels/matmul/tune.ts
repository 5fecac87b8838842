/**
 * Autotuning of the matmul family: the shape classes a run meets (recorded by chooseConfig when it
 * has no choice for them: gpu.kernels.seen) are each timed on this device with every member
 * that can serve them, and the fastest is kept in gpu.kernels.choices, so the next recordings use
 * it. Choices are plain data ({ shape class: member }) under a device key, for the caller to keep
 * (a cache file for the CLI, IndexedDB in the app) and give back with applyChoices on the next run,
 * which then tunes nothing. gpu.kernels.pin (TABTUNE_KERNELS) overrides every choice.
 *
 * Cost. What a class costs is compiling its candidates' shaders and timing them; on a CPU driver
 * compiling is nearly all of it (lavapipe compiles a direct shader at its first dispatch, 0.5-1 s
 * of CPU each), and the shaders of the member the run then uses are paid by any run of it. What
 * tuning adds to a cold first run is measured by `tabtune bench tune` (src/bench/tune-bench.ts:
 * the same run tuning, and given the choices up front): on lavapipe with an empty shader cache
 * about 0.2 s of CPU per class (0.6 s before the two changes below), under 0.1 s of it in
 * tuneMatmul itself; README's performance section has the figures. How it is kept small:
 *   - while tuning is on (gpu.kernels.prior, set by engine/device.ts), a class not tuned yet runs
 *     the device class's likely best member (the first candidate, e.g. direct4x4 on a CPU driver)
 *     rather than the baseline, so the first steps compile the shaders the tuned run uses;
 *   - a member that lost RULED_OUT classes of a regime clearly (WIDE times slower than the winner,
 *     e.g. tile64 on a CPU driver), won none by that margin and at most half as many as it lost,
 *     is not a candidate for the rest of the regime on this device (variants.ts ruledOut;
 *     gpu.kernels.tally): its shaders are not compiled for them, and a class left with one
 *     candidate is not timed at all;
 *   - the candidates are compiled first, all at once and off the caller's thread
 *     (Gpu.precompile: createComputePipelineAsync), then run once untimed (lavapipe compiles at
 *     the first dispatch, not at pipeline creation); pipelines are cached by their WGSL, so
 *     classes whose candidates have the same shader (shapes are uniforms) share them, and tuning
 *     times each class on a problem with the shader flags of the one met, so it compiles the very
 *     shaders the run uses;
 *   - on CPU devices direct8x4 is not a candidate (variants.ts: its compile takes about twice
 *     direct4x4's there, and direct4x4 was as fast or faster on the LoRA layer);
 *   - the timed problem keeps the class's N and K but only as many rows as TUNE_MACS multiply-adds
 *     allow (at least TUNE_MIN_M);
 *   - after two rounds, candidates slower than DROP x the fastest (best of each's two) are not
 *     timed again.
 * The timing is round-robin (every candidate once per round) so a machine's background load falls
 * on all alike; a member wins only by more than 3% over the baseline (when the baseline was timed),
 * so noise does not swap kernels.
 */
import type { Gpu, Recorder } from '../../gpu/context';
import type { Tensor } from '../../gpu/tensor';
import { Workspace } from '../../gpu/workspace';
import { recordMatmul } from '../matmul';
import { type Nf4Tensor, nf4StatsLayout } from '../nf4';
import {
  MATMUL_FAMILY,
  type SeenShape,
  candidatesFor,
  countOutcome,
  matmulConfig,
  ruledOut,
  untunedMember,
} from './variants';

/** Rank of the LoRA segment; the rows of a timed problem: M, at most TUNE_MACS / (N K), at least TUNE_MIN_M. */
const TUNE_RANK = 16;
const TUNE_MACS = 2 ** 24;
const TUNE_MIN_M = 64;
/** The dropout of a timed problem whose class met one (any p > 0 compiles the same shader). */
const TUNE_DROPOUT = { seed: 1, p: 0.1 };
/** A candidate slower than this times the fastest after two rounds is not timed again. */
const DROP = 1.3;

/** The rows of the problem timed for a class met with M rows (multiples of 8 beyond 8). */
export function tuneRows(M: number, N: number, K: number): number {
  const fit = Math.floor(TUNE_MACS / Math.max(1, N * K) / 8) * 8;
  return Math.min(M, Math.max(TUNE_MIN_M, fit));
}

export interface TuneProgress {
  done: number;
  total: number;
  shapeClass: string;
}

export interface TuneResult {
  shapeClass: string;
  /** Median ms per member timed (the lower one of an even count; the rows: `rows`), in the order tried. */
  ms: Record<string, number>;
  chosen: string;
  /** Candidates left out as clear losers on this device (variants.ts ruledOut). */
  skipped: string[];
  rows: number;
  /**
   * Wall ms of the class, in two parts: compiling its candidates (`compiled` new pipelines: their
   * creation, and what each first run took beyond a timed run, as drivers such as lavapipe compile
   * at the first dispatch), and the rest (running and timing them).
   */
  compileMs: number;
  compiled: number;
  timedMs: number;
}

interface Timed {
  ms: Record<string, number>;
  rows: number;
  compileMs: number;
  compiled: number;
  timedMs: number;
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

/** The lower median: of two runs the faster (a machine's load only ever adds time; the upper one of two is the slower). */
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)]!;

/** Compiles, then times the candidates of one seen shape (see the file comment). */
async function timeShape(gpu: Gpu, seen: SeenShape, names: string[], budgetMs: number): Promise<Timed> {
  const s = seen.shape;
  const M = tuneRows(s.M, s.N, s.K);
  const owned: Tensor[] = [];
  const t = (label: string, shape: number[], dtype: Tensor['dtype'] = 'f32') => {
    const x = gpu.tensor(label, shape, dtype, 'scratch');
    owned.push(x);
    return x;
  };
  const ws = new Workspace(gpu);
  try {
    // The seen problem's shader flags (variants.ts ShaderFlags): the same shaders compile and run.
    const f = seen.flags;
    const offA = f && !f.alignA ? 1 : 0;
    const offB = f && !f.alignB && s.bType !== 'nf4' ? 1 : 0;
    const a = t('tune a', [offA + M * s.K]);
    // A 4-bit weight: zero indices and statistics (the time does not depend on the values).
    const [rows, cols] = s.transB ? [s.N, s.K] : [s.K, s.N];
    let b: Tensor | Nf4Tensor;
    if (s.bType === 'nf4') {
      const layout = nf4StatsLayout(rows * cols, true);
      const q = t('tune b.nf4', [Math.ceil((rows * cols) / 8)], 'u32');
      const stats = t('tune b.nf4_stats', [layout.words], 'u32');
      b = { format: 'nf4', label: 'tune b', rows, cols, doubleQuant: true, q, stats, layout };
    } else b = t('tune b', [offB + rows * cols], s.bType);
    const c = t('tune c', [M, s.N]);
    const seg2 = f ? f.seg2 : s.lora ? { transA: false, transB: true } : null;
    const extra = seg2
      ? {
          a: t('tune a2', [M * TUNE_RANK]),
          b: t('tune b2', [s.N * TUNE_RANK]),
          K: TUNE_RANK,
          ...seg2,
          dropoutOut: f?.dropOut ? TUNE_DROPOUT : null,
        }
      : undefined;
    const bias = f?.bias ? t('tune bias', [s.N], f.bias) : null;
    const dropoutA = f?.dropA ? TUNE_DROPOUT : null;
    const dropoutB = f?.dropB ? TUNE_DROPOUT : null;
    const { transA, transB } = s;
    const splitK = seen.splitK;
    const shared = { a, b, c, M, N: s.N, K: s.K, transA, transB, extra, bias, dropoutA, dropoutB, splitK, ws };
    const run = (variant: string) => (rec: Recorder) =>
      recordMatmul(gpu, rec, { ...shared, aOffset: offA, bOffset: offB, variant });
    const c0 = performance.now();
    const compiled = await gpu.precompile((rec) => {
      for (const n of names) run(n)(rec);
    });
    // One untimed run each: some drivers (lavapipe) compile a pipeline only at its first dispatch.
    const first: Record<string, number> = {};
    for (const n of names) first[n] = await timeOnce(gpu, run(n));
    const precompiled = performance.now() - c0;
    const t0 = performance.now();
    const times: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
    let timing = names;
    // Two rounds at least: one slow run (a machine's load) does not drop a candidate.
    for (let rep = 0; rep < 5 && (rep < 2 || performance.now() - t0 < budgetMs); rep++) {
      for (const n of timing) times[n]!.push(await timeOnce(gpu, run(n)));
      if (rep === 1) {
        const fastest = (n: string) => Math.min(...times[n]!);
        const best = Math.min(...timing.map(fastest));
        timing = timing.filter((n) => fastest(n) <= DROP * best);
        if (timing.length < 2) break;
      }
    }
    const ms = Object.fromEntries(names.map((n) => [n, median(times[n]!)]));
    // Compiling: creating the pipelines, and what the first runs took beyond a timed run.
    const firstRuns = names.reduce((sum, n) => sum + first[n]!, 0);
    const compileMs = precompiled - firstRuns + names.reduce((sum, n) => sum + Math.max(0, first[n]! - ms[n]!), 0);
    return { ms, rows: M, compileMs, compiled, timedMs: performance.now() - c0 - compileMs };
  } finally {
    ws.dispose();
    for (const x of owned) gpu.free(x);
  }
}

/**
 * Tunes the shape classes met and not tuned yet (all, or those in `only`; see the file comment);
 * `budgetMs` is the timing budget per class after its candidates have compiled. Returns what was
 * measured.
 */
export async function tuneMatmul(
  gpu: Gpu,
  opts: {
    budgetMs?: number;
    only?: string[];
    onProgress?: (p: TuneProgress) => void;
    /** Time every candidate, clear losers too (`bench tune` measures tuning as it was before). */
    everyCandidate?: boolean;
  } = {},
): Promise<TuneResult[]> {
  const classes = untunedClasses(gpu).filter((c) => !opts.only || opts.only.includes(c));
  const out: TuneResult[] = [];
  for (const [i, cls] of classes.entries()) {
    opts.onProgress?.({ done: i, total: classes.length, shapeClass: cls });
    const seen = gpu.kernels.seen.get(cls) as SeenShape;
    const all = candidatesFor(gpu, seen.shape, seen.splitK > 1).map((c) => c.name);
    const kept = opts.everyCandidate ? all : all.filter((n) => !ruledOut(gpu, n, seen.shape));
    const names = kept.length ? kept : all;
    // The baseline, when a candidate, is the fallback when nothing beats it clearly.
    const fallback = untunedMember(seen.shape, seen.splitK);
    let chosen = names.includes(fallback) ? fallback : names[0]!;
    let timed: Timed = { ms: {}, rows: 0, compileMs: 0, compiled: 0, timedMs: 0 };
    if (names.length > 1) {
      timed = await timeShape(gpu, seen, names, opts.budgetMs ?? 250);
      const ms = timed.ms;
      const best = names.reduce((x, y) => (ms[y]! < ms[x]! ? y : x));
      if (!names.includes(fallback) || ms[best]! < ms[fallback]! / 1.03) chosen = best;
      countOutcome(gpu, seen.shape, ms, chosen);
    }
    gpu.kernels.choices.set(cls, chosen);
    out.push({ shapeClass: cls, chosen, skipped: all.filter((n) => !names.includes(n)), ...timed });
  }
  opts.onProgress?.({ done: classes.length, total: classes.length, shapeClass: '' });
  return out;
}
