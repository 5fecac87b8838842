/**
 * The attention kernels' variants (used by src/kernels/attention.ts): the WGSL of each kernel
 * variant assembled from its template, the tile sizes of the tiled kernels (shaders/attention.wgsl)
 * per head dim and workgroup-storage budget, and when and with which register blocks the direct
 * subgroup kernels (shaders/attention_direct.wgsl) run instead.
 */
import source from '../../shaders/attention.wgsl?raw';
import directSource from '../../shaders/attention_direct.wgsl?raw';
import type { Gpu } from '../gpu/context';
import { GpuError, GpuLimitError } from '../gpu/errors';
import { templateSections, variantPipeline, wgslModule } from './common';
import { isCpuDevice } from './matmul/variants';

// ------------------------------------------------------------------ template

export type KernelName = 'attn_fwd' | 'attn_bwd_d' | 'attn_bwd_dq' | 'attn_bwd_dkdv' | 'attn_decode_rows';

export interface Variant {
  hd: number;
  br: number;
  bc: number;
  /** attn_fwd only: write the logsumexp (binding 5). */
  lse?: boolean;
  softcap?: boolean;
  alibi?: boolean;
  /** attn_fwd / attn_bwd_dq / attn_bwd_dkdv: bind keyStart after the other buffers (packed examples). */
  seg?: boolean;
  /**
   * The subgroup kernels of shaders/attention_direct.wgsl instead (attn_fwd, attn_bwd_dq,
   * attn_bwd_dkdv): wl invocations per workgroup, tq query rows and tk keys per block.
   */
  direct?: DirectShape;
}

/** The binding of keyStart in each kernel that can take it (after its other buffers). */
const KEY_START_BINDING: Partial<Record<KernelName, number>> = { attn_fwd: 6, attn_bwd_dq: 8, attn_bwd_dkdv: 9 };

/** Heads whose ALiBi slopes fit the uniform block. */
export const MAX_ALIBI_HEADS = 256;

/** Threads of attn_decode_rows (a power of two for its tree reduction). */
const WD = 64;

/** Full WGSL of one kernel variant (exported for compile checks in tests). */
export function attentionShader(kernel: KernelName, v: Variant): string {
  const d = v.direct;
  if (d && (kernel === 'attn_bwd_d' || kernel === 'attn_decode_rows')) {
    throw new GpuError(`attention: ${kernel} has no direct variant.`);
  }
  if (d && v.hd % 4 !== 0)
    throw new GpuError(`attention: the direct kernels need a head dim divisible by 4, got ${v.hd}.`);
  // The direct kernels take the head dim at run time (see shaders/attention_direct.wgsl): only
  // the chunks per invocation and whether they need a mask are baked in.
  const L = d
    ? [
        `const WL: u32 = ${d.wl}u;`,
        `const NCH: u32 = ${directChunks(v.hd, d.wl)}u;`,
        `const GUARD: bool = ${directGuard(v.hd, d.wl)};`,
        `const TQ: u32 = ${d.tq}u;`,
        `const TK: u32 = ${d.tk}u;`,
      ]
    : [
        `const HD: u32 = ${v.hd}u;`,
        `const BR: u32 = ${v.br}u;`,
        `const BC: u32 = ${v.bc}u;`,
        `const NT: u32 = ${v.br * v.bc}u;`,
        `const PSTR: u32 = ${v.hd + 1}u;`,
        `const DPC: u32 = ${Math.ceil(v.hd / v.bc)}u;`,
        `const DPR: u32 = ${Math.ceil(v.hd / v.br)}u;`,
        `const WD: u32 = ${WD}u;`,
        `const DPW: u32 = ${Math.ceil(v.hd / WD)}u;`,
      ];
  L.push(
    `const SOFTCAP: bool = ${!!v.softcap};`,
    `const ALIBI: bool = ${!!v.alibi};`,
    `const NSLOPE: u32 = ${v.alibi ? MAX_ALIBI_HEADS / 4 : 1}u;`,
  );
  if (kernel === 'attn_fwd') {
    if (v.lse) {
      L.push('@group(0) @binding(5) var<storage, read_write> lse: array<f32>;');
      L.push('fn store_lse(i: u32, x: f32) { lse[i] = x; }');
    } else {
      L.push('fn store_lse(i: u32, x: f32) {}');
    }
  }
  const segBinding = KEY_START_BINDING[kernel];
  if (v.seg) {
    if (segBinding === undefined || (kernel === 'attn_fwd' && !v.lse)) {
      throw new GpuError(`attention: ${kernel} has no packed-sequence variant.`);
    }
    L.push(`@group(0) @binding(${segBinding}) var<storage, read> kstart: array<u32>;`);
    L.push('fn key_start(row: u32) -> u32 { return kstart[row]; }');
  } else if (segBinding !== undefined) {
    L.push('fn key_start(row: u32) -> u32 { return 0u; }');
  }
  const describe = d
    ? `${kernel} ${JSON.stringify({ ...d, nch: directChunks(v.hd, d.wl), guard: directGuard(v.hd, d.wl), lse: v.lse, softcap: v.softcap, alibi: v.alibi, seg: v.seg })}`
    : `${kernel} ${JSON.stringify(v)}`;
  if (!d) return wgslModule({ source, kernel, prelude: L, describe });
  return wgslModule({
    source: directSource,
    kernel,
    prelude: L,
    describe,
    enable: ['subgroups'],
    libs: [templateSections(source).common],
  });
}

/** 16-byte chunks of a head-dim row per invocation of the direct kernels. */
function directChunks(hd: number, wl: number): number {
  return Math.ceil(hd / 4 / wl);
}

/** Whether the direct kernels' chunks overrun the head dim (then masked). */
function directGuard(hd: number, wl: number): boolean {
  return (hd / 4) % wl !== 0;
}

export function pipelineFor(gpu: Gpu, kernel: KernelName, v: Variant): GPUComputePipeline {
  const d = v.direct;
  const lse = v.lse === false ? '_nolse' : '';
  const seg = v.seg ? '_seg' : '';
  const cap = `${v.softcap ? '_cap' : ''}${v.alibi ? '_alibi' : ''}`;
  // A direct module serves every head dim with its chunk count and mask.
  const name = d
    ? `${kernel}_direct${d.wl}_c${directChunks(v.hd, d.wl)}${directGuard(v.hd, d.wl) ? 'g' : ''}_${d.tq}x${d.tk}${lse}${cap}${seg}`
    : `${kernel}_hd${v.hd}_${v.br}x${v.bc}${lse}${cap}${seg}`;
  return variantPipeline(gpu, name, () => attentionShader(kernel, v));
}

// ------------------------------------------------------------------ tiles

/** Workgroup bytes of each tiled kernel for head dim hd and tiles (br, bc). */
const STORAGE: Record<'attn_fwd' | 'attn_bwd_dq' | 'attn_bwd_dkdv', (hd: number, br: number, bc: number) => number> = {
  attn_fwd: (hd, br, bc) => 4 * (br * hd + bc * (hd + 1) + bc * hd + br * bc),
  attn_bwd_dq: (hd, br, bc) => 4 * (2 * br * hd + 2 * bc * (hd + 1) + br * bc),
  attn_bwd_dkdv: (hd, br, bc) => 4 * (2 * bc * hd + 2 * br * (hd + 1) + 2 * br * bc + 2 * br),
};

const CANDIDATES: Record<keyof typeof STORAGE, [number, number][]> = {
  // [br, bc]: query rows x key columns (attn_bwd_dkdv: br query rows per tile, bc keys per workgroup)
  attn_fwd: [
    [16, 16],
    [8, 8],
    [4, 4],
    [2, 2],
    [1, 1],
  ],
  attn_bwd_dq: [
    [16, 16],
    [16, 8],
    [8, 8],
    [8, 4],
    [4, 4],
    [4, 2],
    [2, 2],
    [2, 1],
    [1, 1],
  ],
  attn_bwd_dkdv: [
    [16, 16],
    [8, 16],
    [8, 8],
    [4, 8],
    [4, 4],
    [2, 4],
    [2, 2],
    [1, 2],
    [1, 1],
  ],
};

/** The largest tiles of `kernel` whose workgroup storage fits 16 KiB (or the device limit). */
export function attentionTiles(gpu: Gpu, kernel: keyof typeof STORAGE, hd: number): { br: number; bc: number } {
  const budget = Math.min(16384, gpu.limits.maxComputeWorkgroupStorageSize);
  const threads = Math.min(256, gpu.limits.maxComputeInvocationsPerWorkgroup);
  for (const [br, bc] of CANDIDATES[kernel]) {
    if (br * bc <= threads && STORAGE[kernel](hd, br, bc) <= budget) return { br, bc };
  }
  throw new GpuLimitError(
    `attention: head dim ${hd} needs ${STORAGE[kernel](hd, 1, 1)} bytes of workgroup storage even with 1x1 tiles; ` +
      `this GPU allows ${budget}.`,
  );
}

// ------------------------------------------------------------------ direct kernels

/** The register blocks of a direct kernel: wl invocations, tq query rows and tk keys per block. */
export interface DirectShape {
  wl: number;
  tq: number;
  tk: number;
}

/**
 * Query rows (tq) and keys (tk) per block of the direct forward for `nch` 16-byte chunks per
 * invocation: 8 x 4 up to 4 chunks (head dim 128 at 8 lanes), then fewer rows. Its blocks pass
 * through kept loops (see "Compile cost" in shaders/attention_direct.wgsl), so its compile no
 * longer grows with them. CPU time per dispatch on lavapipe, round-robin in one process (9 heads,
 * 3 KV heads): hd 64, S=512: 8x4 33.6 ms, 8x8 35.1, 16x2 36.9, 4x8 41.0, 16x4 55.0; hd 128, S=256:
 * 8x4 17.4, 4x4 19.6, 8x2 20.7, 4x2 28.1; hd 256, S=256: 8x4 39.0, 4x4 50.4, 8x2 51.2, 4x2 66.2,
 * 2x1 108 ms; compiles at hd 256: 4x4 1.4 s, 8x4 2.0 s of CPU. Decoding (one row), 4 keys beat 1
 * or 2 at every head dim.
 */
function forwardBlocks(nch: number): { tq: number; tk: number } {
  return { tq: Math.max(1, Math.min(8, 32 / nch)), tk: 4 };
}

/**
 * Query rows (dQ: tq) and keys (dK/dV: tk) per block of the direct backward for `nch` chunks per
 * invocation: the blocks shrink as the head dim grows so they stay about the same size (their
 * compile time grows with the unrolled block: hd 128 with hd 64's blocks took a minute to compile
 * on a loaded machine). Measured on lavapipe, SmolLM2-135M's layer at S=512, round-robin in one
 * process (loaded machine), forward + backward with the backward on 8x4 346 ms, 4x4 294 ms, 4x2
 * 316 ms (4 rows in dQ compiled 3x faster than 8).
 */
function backwardBlocks(nch: number): { tq: number; tk: number } {
  return { tq: Math.max(1, Math.min(4, 8 / nch)), tk: Math.max(1, Math.min(4, 8 / nch)) };
}

/** The two attention kernel sets: workgroup-memory tiles (GPUs), subgroup kernels (CPU drivers). */
export type AttentionSet = 'tiled' | 'direct';

/**
 * Which attention set runs on `gpu` when `want` is asked for (null: by device class, as
 * gpu.kernels.attention null), and why, in a sentence (the app's Diagnostics, the kernel bench).
 * The direct kernels need subgroups laid out as aligned runs (Gpu.features.subgroupLanes >= 4; a
 * workgroup is one subgroup of up to 8 lanes): where they are missing, a pinned 'direct' runs the
 * tiled kernels. (They also need a head dim divisible by 4: attentionDirect.)
 */
export function attentionSet(
  gpu: Gpu,
  want: AttentionSet | null = gpu.kernels.attention,
): { set: AttentionSet; why: string } {
  const lanes = gpu.features.subgroupLanes;
  const subgroups = lanes >= 4;
  // Only where the answer says it (attentionDirect asks on every attention call it records).
  const lack = () =>
    gpu.features.subgroups
      ? `has subgroups that do not form aligned runs of 4 or more lanes (${lanes || 'none'} usable)`
      : 'has no subgroups';
  if (want === 'tiled') return { set: 'tiled', why: 'pinned' };
  if (want === 'direct') {
    return subgroups
      ? { set: 'direct', why: 'pinned' }
      : {
          set: 'tiled',
          why: `pinned, but this device ${lack()}, which the direct kernels need, so the tiled kernels run instead`,
        };
  }
  if (!isCpuDevice(gpu)) return { set: 'tiled', why: 'this device is a GPU, where workgroup-memory tiles are fast' };
  return subgroups
    ? { set: 'direct', why: 'this device is a CPU driver with subgroups, where workgroup memory and barriers are slow' }
    : { set: 'tiled', why: `this device is a CPU driver but ${lack()}, which the direct kernels need` };
}

/**
 * The direct (subgroup) kernels' blocks for head dim hd (forward, backward), or null for the tiled
 * kernels: pinned by gpu.kernels.attention, else direct on CPU drivers (attentionSet), and only
 * for a head dim divisible by 4 (16-byte loads); elsewhere the tiled kernels run.
 */
export function attentionDirect(gpu: Gpu, hd: number): { fwd: DirectShape; bwd: DirectShape } | null {
  if (attentionSet(gpu).set !== 'direct' || hd % 4 !== 0) return null;
  const wl = Math.min(8, gpu.features.subgroupLanes);
  const nch = 2 ** Math.ceil(Math.log2(Math.ceil(hd / 4 / wl)));
  return { fwd: { wl, ...forwardBlocks(nch) }, bwd: { wl, ...backwardBlocks(nch) } };
}
