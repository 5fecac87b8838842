/**
 * The matmul family: every member as data (its kernel and block sizes), which device class each is
 * a default candidate for, and how a member becomes a concrete variant for one problem. recordMatmul
 * picks the member by, in order: the call's `variant` (benchmarks, tests), the pinned one
 * (Gpu.kernels.pin), the autotuned choice of the problem's shape class (Gpu.kernels.choices), else
 * the baseline (the kernels every device ran before the family).
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
 */
import type { Gpu } from '../../gpu/context';
import { GpuError } from '../../gpu/errors';
import type { MatmulBType } from '../common';

export type MatmulKernel = 'tiled' | 'direct' | 'small';

export interface MatmulConfig {
  name: string;
  kernel: MatmulKernel;
  /** direct: rows x columns of C per invocation, and invocations per workgroup (x along N). */
  tm?: number;
  tn?: number;
  wx?: number;
  wy?: number;
  /** What it is for, shown in the bench and Diagnostics. */
  about: string;
  /** Not a tuning candidate on CPU devices (why; pinning it still works). */
  notOnCpu?: string;
}

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
];

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
 * The shape class of a problem, the unit of autotuning: layouts, weight dtype, the LoRA segment
 * and a size class per dimension (<= 8, <= 32, <= 256, <= 2048, larger).
 */
export function shapeClass(s: ShapeOf): string {
  return (
    `${s.transA ? 't' : 'n'}${s.transB ? 't' : 'n'}_${s.bType}${s.lora ? '_lora' : ''}` +
    `_m${sizeClass(s.M)}_n${sizeClass(s.N)}_k${sizeClass(s.K)}`
  );
}

/**
 * Members that can serve a problem of this shape, the device class's likely best first (the order
 * the tuner tries them in): the small-M kernels for M <= SMALL_M (unless `noSmall`: they have no
 * split-K), else the direct kernels (less those marked notOnCpu on CPU devices) before the
 * workgroup-memory one on CPU devices and after it on GPUs.
 */
export function candidatesFor(gpu: Gpu, s: ShapeOf, noSmall = false): MatmulConfig[] {
  const cpu = isCpuDevice(gpu);
  const small = (cpu ? ['rows', 'gemv'] : ['gemv', 'rows']).map(matmulConfig);
  if (s.M <= SMALL_M && !noSmall) return small.filter((c) => serves(c, s, noSmall));
  const direct = MATMUL_FAMILY.filter(
    (c) => c.kernel === 'direct' && c.tm !== 0 && !(cpu && c.notOnCpu) && serves(c, s, noSmall),
  );
  const tiled = MATMUL_FAMILY.filter((c) => c.kernel === 'tiled');
  return cpu ? [...direct, ...tiled] : [...tiled, ...direct];
}

/**
 * Whether a member can serve this problem (`noSmall`: split over K). Every member reads every
 * weight format: f32, f16 / bf16, and a 4-bit NF4 weight through its dequantizing loader
 * (shaders/nf4.wgsl; the direct kernels read it with scalar loads).
 */
function serves(c: MatmulConfig, s: ShapeOf, noSmall: boolean): boolean {
  const smallOnly = c.kernel === 'small' || c.tm === 0;
  return !smallOnly || (s.M <= SMALL_M && !noSmall);
}

/** A problem met without a tuned choice (gpu.kernels.seen), for src/kernels/matmul/tune.ts. */
export interface SeenShape {
  shape: ShapeOf;
  /** Split-K slices (1: none). */
  splitK: number;
}

/**
 * The member for a problem: the call's, the pinned, the tuned, or the baseline (gemv for a few
 * rows, tile64 otherwise: the kernels that ran before the family; the direct members are chosen by
 * tuning or pinning). `splits` > 1: the problem is split over K, which the small-M kernels cannot do.
 */
export function chooseConfig(gpu: Gpu, s: ShapeOf, forced?: string, splits = 1): MatmulConfig {
  const noSmall = splits > 1;
  if (forced) {
    const c = matmulConfig(forced);
    if (!serves(c, s, noSmall)) {
      throw new GpuError(`matmul: the "${forced}" kernel serves at most ${SMALL_M} rows without split-K.`);
    }
    return c;
  }
  // A pinned or tuned member that cannot serve this problem (gemv for many rows) yields.
  for (const name of [gpu.kernels.pin, gpu.kernels.choices.get(shapeClass(s))]) {
    const c = name ? MATMUL_FAMILY.find((x) => x.name === name) : undefined;
    if (c && serves(c, s, noSmall)) return c;
  }
  const cls = shapeClass(s);
  if (!gpu.kernels.pin && !gpu.kernels.seen.has(cls)) gpu.kernels.seen.set(cls, { shape: s, splitK: splits });
  return matmulConfig(s.M <= SMALL_M && !noSmall ? 'gemv' : BASELINE);
}
