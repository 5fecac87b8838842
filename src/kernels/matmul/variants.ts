/**
 * The matmul family: every member as data (its kernel and block sizes), which device class each is
 * a default candidate for, and how a member becomes a concrete variant for one problem. recordMatmul
 * picks the member by, in order: the call's `variant` (benchmarks, tests), the pinned one
 * (Gpu.kernels.pin), the autotuned choice of the problem's shape class (Gpu.kernels.choices), else
 * the device class's first candidate while autotuning is on and the class is not tuned yet
 * (Gpu.kernels.prior), else the baseline (the kernels every device ran before the family).
 *
 * Members (see docs/ENGINE.md for what each is for):
 *   tile64      shaders/matmul.wgsl: 64x64 workgroup tiles staged in workgroup memory, BK 16, 4x4
 *               per invocation. The kernel every device ran before the family; the bench's baseline.
 *   direct8x4   shaders/matmul_direct.wgsl: 8x4 register blocks from direct vector loads, no
 *   direct4x4   workgroup memory (CPU drivers: lavapipe, SwiftShader); 4x4: smaller blocks, more
 *               invocations. (8x8 blocks took 5-10x as long as 4x4 to compile on lavapipe, tens of
 *               seconds per variant on a loaded machine: not a member until that is cut.)
 *   rows        shaders/matmul_direct.wgsl for M <= 8 rows (generation): every row and 4 columns
 *               per invocation, the depth read with vector loads, no reduction (CPU drivers).
 *   gemv        shaders/matmul_small.wgsl: M <= 8 rows (generation), depth split over lanes and
 *               summed in workgroup memory or with subgroup shuffles.
 *   wg64        shaders/matmul_wg.wgsl, for GPUs: workgroup-memory tiles staged with coalesced
 *   wg128       vec4 loads and double-buffered (the next stage is read into registers while the
 *               current one is multiplied); 64x64 tiles, BK 16, 4x4 per invocation (16 KiB of
 *               workgroup memory, the WebGPU default limit), or 128x128, BK 16, 8x8 (32 KiB).
 *               Not tuning candidates on CPU drivers (workgroup memory and barriers are slow there).
 */
import type { Gpu } from '../../gpu/context';
import { GpuError } from '../../gpu/errors';
import type { MatmulBType, WeightDType } from '../common';

export type MatmulKernel = 'tiled' | 'direct' | 'small' | 'wg';

export interface MatmulConfig {
  name: string;
  kernel: MatmulKernel;
  /** direct, wg: rows x columns of C per invocation, and invocations per workgroup (x along N). */
  tm?: number;
  tn?: number;
  wx?: number;
  wy?: number;
  /** wg: depths per stage. */
  bk?: number;
  /** What it is for, shown in the bench and Diagnostics. */
  about: string;
  /** Not a tuning candidate on CPU devices (why; pinning it still works). */
  notOnCpu?: string;
}

const WG_ON_CPU =
  'workgroup memory and barriers are slow on CPU drivers (tile64, the same design, is their slowest ' +
  'member), and each shader takes seconds to compile there';

/** `tm: 0`: as many rows as the problem has (1, 2, 4 or 8), for the small-M members. */
export const MATMUL_FAMILY: readonly MatmulConfig[] = [
  { name: 'tile64', kernel: 'tiled', about: 'workgroup-memory tiles 64x64, BK 16, 4x4 per invocation (baseline)' },
  {
    name: 'direct8x4',
    kernel: 'direct',
    tm: 8,
    tn: 4,
    wx: 8,
    wy: 8,
    about: '8x4 register blocks, direct vector loads, no workgroup memory',
    notOnCpu:
      'lavapipe compiles it in about twice the time of direct4x4 (seconds per shader on a cold cache), ' +
      'and direct4x4 ran the LoRA layer as fast or faster',
  },
  {
    name: 'direct4x4',
    kernel: 'direct',
    tm: 4,
    tn: 4,
    wx: 8,
    wy: 8,
    about: '4x4 register blocks, direct vector loads, no workgroup memory',
  },
  {
    name: 'rows',
    kernel: 'direct',
    tm: 0,
    tn: 4,
    wx: 32,
    wy: 1,
    about: 'M <= 8 rows: all rows and 4 columns per invocation, direct vector loads, no reduction',
  },
  { name: 'gemv', kernel: 'small', about: 'M <= 8 rows: depth over lanes, fixed-order lane sums' },
  {
    name: 'wg64',
    kernel: 'wg',
    tm: 4,
    tn: 4,
    wx: 16,
    wy: 16,
    bk: 16,
    about: 'GPUs: 64x64 workgroup tiles, BK 16, 4x4 per invocation, vec4 loads, double-buffered',
    notOnCpu: WG_ON_CPU,
  },
  {
    name: 'wg128',
    kernel: 'wg',
    tm: 8,
    tn: 8,
    wx: 16,
    wy: 16,
    bk: 16,
    about: 'GPUs: 128x128 workgroup tiles, BK 16, 8x8 per invocation, vec4 loads, double-buffered',
    notOnCpu: WG_ON_CPU,
  },
];

/** Bytes of workgroup memory a member needs (0: none or within every device's limits). */
export function workgroupBytes(c: MatmulConfig): number {
  if (c.kernel !== 'wg') return 0;
  // Two halves of a BM x BK tile of A and a BK x BN tile of B, f32.
  return 2 * (c.wy! * c.tm! + c.wx! * c.tn!) * c.bk! * 4;
}

/** The baseline member (today's kernel before the family existed). */
export const BASELINE = 'tile64';

export function matmulConfig(name: string): MatmulConfig {
  const c = MATMUL_FAMILY.find((x) => x.name === name);
  if (!c) {
    throw new GpuError(
      `Unknown matmul kernel "${name}"; the family has ${MATMUL_FAMILY.map((x) => x.name).join(', ')}.`,
    );
  }
  return c;
}

/** Devices whose WebGPU runs on the CPU (a software Vulkan driver), where direct loads win. */
export function isCpuDevice(gpu: Gpu): boolean {
  const i = gpu.info;
  const text = `${i.vendor} ${i.architecture} ${i.device} ${i.description}`.toLowerCase();
  return /llvmpipe|lavapipe|swiftshader|software|cpu/.test(text);
}

/** Largest M served by the small-M (GEMV-style) kernel. */
export const SMALL_M = 8;

/** What selects a variant: sizes, layouts, dtypes (no tensors). */
export interface ShapeOf {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  bType: MatmulBType;
  lora: boolean;
}

function sizeClass(x: number): string {
  return x <= 8 ? 'xs' : x <= 32 ? 's' : x <= 256 ? 'm' : x <= 2048 ? 'l' : 'xl';
}

/**
 * The class of a dimension that counts tokens (it changes with every batch shape): few rows
 * (<= 8, the small-M kernels), up to 2048, or more. Coarser than sizeClass so that a run whose
 * batches vary in length meets few classes: a tiny model over six batch shapes met 36 classes
 * with sizeClass for every dimension, 11 with this (README's performance section has the measurement).
 */
function tokenClass(x: number): string {
  return x <= SMALL_M ? 'xs' : x <= 2048 ? 't' : 'T';
}

/**
 * The shape class of a problem, the unit of autotuning: layouts, weight dtype, the LoRA segment
 * and a size class per dimension. M counts tokens, and so does K of a transposed A (the weight
 * gradients' Xᵀ·dY sums over tokens): they get the coarse tokenClass; N and the other K are the
 * model's widths, fixed for a run (<= 8, <= 32, <= 256, <= 2048, larger).
 */
export function shapeClass(s: ShapeOf): string {
  const k = s.transA ? tokenClass(s.K) : sizeClass(s.K);
  return (
    `${s.transA ? 't' : 'n'}${s.transB ? 't' : 'n'}_${s.bType}${s.lora ? '_lora' : ''}` +
    `_m${tokenClass(s.M)}_n${sizeClass(s.N)}_k${k}`
  );
}

/**
 * Members that can serve a problem of this shape, the device class's likely best first (the order
 * the tuner tries them in): the small-M kernels for M <= SMALL_M (unless `noSmall`: they have no
 * split-K), else on CPU devices the direct kernels (less those marked notOnCpu) before the
 * baseline, on GPUs the wg kernels (largest tile first, those within the device's workgroup memory)
 * then the baseline and the direct kernels.
 */
export function candidatesFor(gpu: Gpu, s: ShapeOf, noSmall = false): MatmulConfig[] {
  const cpu = isCpuDevice(gpu);
  const small = (cpu ? ['rows', 'gemv'] : ['gemv', 'rows']).map(matmulConfig);
  if (s.M <= SMALL_M && !noSmall) return small.filter((c) => serves(c, s, noSmall, gpu));
  const ok = (c: MatmulConfig) => !(cpu && c.notOnCpu) && serves(c, s, noSmall, gpu);
  const direct = MATMUL_FAMILY.filter((c) => c.kernel === 'direct' && c.tm !== 0 && ok(c));
  const tiled = MATMUL_FAMILY.filter((c) => c.kernel === 'tiled');
  const wg = MATMUL_FAMILY.filter((c) => c.kernel === 'wg' && ok(c)).reverse();
  return cpu ? [...direct, ...tiled] : [...wg, ...tiled, ...direct];
}

/**
 * Whether a member can serve this problem (`noSmall`: split over K). Every member reads every
 * weight format: f32, f16 / bf16, and a 4-bit NF4 weight through its dequantizing loader
 * (shaders/nf4.wgsl; the direct kernels read it with scalar loads).
 */
function serves(c: MatmulConfig, s: ShapeOf, noSmall: boolean, gpu: Gpu): boolean {
  const smallOnly = c.kernel === 'small' || c.tm === 0;
  return (!smallOnly || (s.M <= SMALL_M && !noSmall)) && fits(gpu, c);
}

/** Whether the device has the workgroup memory the member needs. */
function fits(gpu: Gpu, c: MatmulConfig): boolean {
  return workgroupBytes(c) <= gpu.limits.maxComputeWorkgroupStorageSize;
}

const macs = (s: ShapeOf) => s.M * s.N * s.K;

/**
 * What else of a problem decides which shader runs it (src/kernels/matmul/shader.ts), so that
 * tuning times, and compiles, the very shaders the run then uses: the LoRA segment's layout, the
 * bias' dtype, the dropouts, and whether A's and B's strides and offsets allow vector loads.
 */
export interface ShaderFlags {
  seg2: null | { transA: boolean; transB: boolean };
  bias: WeightDType | null;
  dropA: boolean;
  dropB: boolean;
  dropOut: boolean;
  alignA: boolean;
  alignB: boolean;
}

/** A problem met without a tuned choice (gpu.kernels.seen), for src/kernels/matmul/tune.ts. */
export interface SeenShape {
  shape: ShapeOf;
  /** Split-K slices (1: none). */
  splitK: number;
  flags?: ShaderFlags;
}

/**
 * The member for a problem: the call's, the pinned, the tuned, the prior's (candidatesFor's first,
 * while autotuning is on), or the baseline (gemv for a few rows, tile64 otherwise: the kernels
 * that ran before the family). `splits` > 1: the problem is split over K, which the small-M
 * kernels cannot do.
 */
export function chooseConfig(gpu: Gpu, s: ShapeOf, forced?: string, splits = 1, flags?: ShaderFlags): MatmulConfig {
  const noSmall = splits > 1;
  if (forced) {
    const c = matmulConfig(forced);
    if (!fits(gpu, c)) {
      throw new GpuError(
        `matmul: the "${forced}" kernel needs ${workgroupBytes(c)} bytes of workgroup memory; this device ` +
          `allows ${gpu.limits.maxComputeWorkgroupStorageSize}. Pick another member.`,
      );
    }
    if (!serves(c, s, noSmall, gpu)) {
      throw new GpuError(`matmul: the "${forced}" kernel serves at most ${SMALL_M} rows without split-K.`);
    }
    return c;
  }
  // A pinned or tuned member that cannot serve this problem (gemv for many rows, a tile bigger than
  // the device's workgroup memory) yields.
  for (const name of [gpu.kernels.pin, gpu.kernels.choices.get(shapeClass(s))]) {
    const c = name ? MATMUL_FAMILY.find((x) => x.name === name) : undefined;
    if (c && serves(c, s, noSmall, gpu)) return c;
  }
  // The class is tuned on the biggest problem of it met (the one whose time matters most).
  const cls = shapeClass(s);
  const met = gpu.kernels.seen.get(cls) as SeenShape | undefined;
  if (!gpu.kernels.pin && (!met || macs(s) > macs(met.shape)))
    gpu.kernels.seen.set(cls, { shape: s, splitK: splits, flags });
  // While autotuning is on, the device class's likely best until the class is tuned (the first
  // candidate tuning has not ruled out): the shaders the tuned run will use compile now, and
  // tuning need not compile the baseline's once it has lost clearly (tune.ts).
  if (gpu.kernels.prior && !gpu.kernels.pin) {
    const cands = candidatesFor(gpu, s, noSmall);
    const first = cands.find((c) => !ruledOut(gpu, c.name, s)) ?? cands[0];
    if (first) return first;
  }
  return matmulConfig(untunedMember(s, splits));
}

/** The member a problem runs without a choice, a pin or the prior: the kernels before the family. */
export function untunedMember(s: Pick<ShapeOf, 'M'>, splits: number): string {
  return s.M <= SMALL_M && splits <= 1 ? 'gemv' : BASELINE;
}

/** A member at least WIDE times slower than a class's winner lost it clearly; the winner, if all were, won it clearly. */
export const WIDE = 1.5;
/** After this many clear losses in a regime a member is no longer a candidate in it (see ruledOut). */
export const RULED_OUT = 3;

/**
 * The regime a tuning outcome counts in (Gpu.kernels.tally): members compare differently with
 * another weight dtype and with few rows, so the evidence of one does not rule on the other.
 */
function regime(member: string, s: Pick<ShapeOf, 'M' | 'bType'>): string {
  return `${member}|${s.bType}|${s.M <= SMALL_M ? 'xs' : 'm'}`;
}

/**
 * Whether tuning leaves `member` out of a class like `s` on this device (e.g. tile64 against the
 * direct kernels on a CPU driver, so its shaders need not compile for the rest): it has lost at
 * least RULED_OUT classes of the regime clearly, at least twice as many as it won, and won none
 * clearly. A close win (within WIDE, often the noise of a small problem) only delays it.
 */
export function ruledOut(gpu: Gpu, member: string, s: Pick<ShapeOf, 'M' | 'bType'>): boolean {
  const t = gpu.kernels.tally.get(regime(member, s));
  return !!t && t.clear === 0 && t.lost >= RULED_OUT && t.lost >= 2 * t.won;
}

/**
 * Counts a tuned class's outcome (median ms per member timed): a win for the chosen member (clear
 * when every other is WIDE times slower), a clear loss for each member WIDE times slower than it.
 */
export function countOutcome(
  gpu: Gpu,
  s: Pick<ShapeOf, 'M' | 'bType'>,
  ms: Record<string, number>,
  chosen: string,
): void {
  const best = ms[chosen];
  if (best === undefined) return;
  const others = Object.entries(ms).filter(([n]) => n !== chosen);
  for (const [name, t] of Object.entries(ms)) {
    const key = regime(name, s);
    const c = gpu.kernels.tally.get(key) ?? { lost: 0, won: 0, clear: 0 };
    if (name === chosen) {
      c.won++;
      if (others.every(([, o]) => o >= WIDE * best)) c.clear++;
    } else if (t >= WIDE * best) c.lost++;
    gpu.kernels.tally.set(key, c);
  }
}
