/**
 * A quick correctness check of the GPU engine on whatever adapter is present: a few kernels on odd
 * shapes (not multiples of any tile) against the float64 references in src/reference/. Used by the
 * start page, the CLI (`tabtune selftest`) and the browser tests. No DOM, no React.
 *
 * Every check compares elementwise with |got - ref| <= atol + rtol·|ref|, atol scaled by the
 * largest |ref| of that output (f32 accumulation against float64). 16-bit weights are compared
 * against references computed from the same rounded values, so only accumulation error remains.
 */

import { type Gpu, type GpuInfo, params } from './gpu/context';
import { packHalf, roundThroughHalf } from './gpu/half';
import type { Tensor } from './gpu/tensor';
import { Workspace } from './gpu/workspace';
import { type FrozenLinear, type LoraParams, recordLinearBackward, recordLinearForward } from './kernels/linear';
import { type WeightDType, recordMatmul } from './kernels/matmul';
import { linearBackwardRef, linearForwardRef } from './reference/linear';
import { matmulRef } from './reference/matmul';

export interface SelfTestCheck {
  name: string;
  /** Largest |got - ref| over every output of the check (Infinity when it failed to run). */
  maxAbsErr: number;
  ok: boolean;
  /** Wall time of the check: upload, record, submit, readback. */
  ms: number;
  /** Why it failed (an exception, or the worst element). */
  error?: string;
}

export interface SelfTestReport {
  adapter: GpuInfo;
  f16: boolean;
  subgroups: boolean;
  /** Subgroup lanes the kernels use (0: none; see src/gpu/subgroups.ts). */
  subgroupLanes: number;
  checks: SelfTestCheck[];
  ok: boolean;
  ms: number;
}

export interface SelfTestOptions {
  /** Called after each check (progress in a UI). */
  onCheck?: (check: SelfTestCheck) => void;
}

/** One line naming the adapter and what it supports (printed by the CLI and the tests). */
export function describeAdapter(gpu: Gpu): string {
  const { vendor, architecture, device, description, runtime } = gpu.info;
  const name = [vendor || '?', architecture || '?'].join(' / ');
  const extra = description || device;
  return (
    `WebGPU adapter (${runtime}): ${name}${extra ? ` (${extra})` : ''}; ` +
    `shader-f16=${gpu.features.f16} subgroups=${gpu.features.subgroups}; ` +
    `maxStorageBufferBindingSize=${gpu.limits.maxStorageBufferBindingSize}`
  );
}

// ------------------------------------------------------------------ helpers

/** Deterministic data in [-scale, scale) (mulberry32). */
function randomValues(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

interface Compared {
  maxAbs: number;
  /** null when within tolerance, else a description of the worst element. */
  problem: string | null;
}

function compare(name: string, ref: ArrayLike<number>, got: ArrayLike<number>): Compared {
  if (ref.length !== got.length)
    return { maxAbs: Infinity, problem: `${name}: ${got.length} values, expected ${ref.length}` };
  let big = 0;
  for (let i = 0; i < ref.length; i++) big = Math.max(big, Math.abs(ref[i]!));
  const atol = 1e-4 * Math.max(big, 1e-3);
  const rtol = 1e-3;
  let maxAbs = 0;
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i]!;
    const g = got[i]!;
    if (!Number.isFinite(g)) return { maxAbs: Infinity, problem: `${name}[${i}] = ${g}, expected ${r}` };
    const d = Math.abs(g - r);
    if (d > maxAbs) maxAbs = d;
    const excess = d - (atol + rtol * Math.abs(r));
    if (excess > worstExcess) {
      worstExcess = excess;
      worst = i;
    }
  }
  if (worst < 0) return { maxAbs, problem: null };
  return {
    maxAbs,
    problem: `${name}[${worst}] = ${got[worst]}, expected ${ref[worst]} (max abs err ${maxAbs.toExponential(2)}, atol ${atol.toExponential(1)}, rtol ${rtol})`,
  };
}

/** Runs `body`, which returns its comparisons; turns them (or an exception) into a check. */
async function check(name: string, body: () => Promise<Compared[]>): Promise<SelfTestCheck> {
  const t0 = performance.now();
  try {
    const results = await body();
    const maxAbsErr = results.reduce((m, r) => Math.max(m, r.maxAbs), 0);
    const problems = results.map((r) => r.problem).filter((p): p is string => p !== null);
    const c: SelfTestCheck = { name, maxAbsErr, ok: problems.length === 0, ms: performance.now() - t0 };
    if (problems.length) c.error = problems.join('; ');
    return c;
  } catch (e) {
    return {
      name,
      maxAbsErr: Infinity,
      ok: false,
      ms: performance.now() - t0,
      error: (e as Error).message ?? String(e),
    };
  }
}

/** Uploads f32 values as `dtype`; returns the tensor and the values the GPU will see. */
function upload(
  gpu: Gpu,
  label: string,
  shape: number[],
  v: Float32Array,
  dtype: WeightDType,
  held: Tensor[],
): [Tensor, Float64Array] {
  const t =
    dtype === 'f32'
      ? gpu.tensor(label, shape, 'f32', 'scratch', v)
      : gpu.tensor(label, shape, dtype, 'scratch', packHalf(v, dtype));
  held.push(t);
  return [t, dtype === 'f32' ? Float64Array.from(v) : roundThroughHalf(v, dtype)];
}

function f32(gpu: Gpu, label: string, shape: number[], v: Float32Array | null, held: Tensor[]): Tensor {
  const t = gpu.tensor(label, shape, 'f32', 'scratch', v ?? undefined);
  held.push(t);
  return t;
}

// ------------------------------------------------------------------ checks

const AXPY = /* wgsl */ `
struct P { n: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x < p.n) { y[g.x] = y[g.x] + p.alpha * x[g.x]; }
}`;

/** The runtime alone: three dispatches with their own uniforms in one submit, in order. */
async function recorderCheck(gpu: Gpu): Promise<Compared[]> {
  const held: Tensor[] = [];
  try {
    const n = 1003;
    const xv = randomValues(n, 11);
    const yv = randomValues(n, 12);
    const x = f32(gpu, 'selftest.x', [n], xv, held);
    const y = f32(gpu, 'selftest.y', [n], yv, held);
    const pipe = gpu.pipeline('selftest_axpy', AXPY);
    const alphas = [2, -0.5, 0.25];
    const rec = gpu.recorder('selftest-recorder');
    for (const a of alphas) rec.dispatch(pipe, [x, y], [Math.ceil(n / 64)], params(n, { f: a }));
    rec.submit();
    const got = await gpu.read(y);
    const ref = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let v = yv[i]!;
      for (const a of alphas) v += Math.fround(a) * xv[i]!;
      ref[i] = v;
    }
    return [compare('y', ref, got)];
  } finally {
    for (const t of held) gpu.free(t);
  }
}

/** C = X·Wᵀ + bias with W [N, K] stored as `wType` (an nn.Linear), odd M, N, K. */
async function matmulCheck(gpu: Gpu, wType: WeightDType, M = 37, N = 45, K = 70): Promise<Compared[]> {
  const held: Tensor[] = [];
  try {
    const xv = randomValues(M * K, 21);
    const [x] = upload(gpu, 'selftest.x', [M, K], xv, 'f32', held);
    const [w, wRef] = upload(gpu, 'selftest.w', [N, K], randomValues(N * K, 22, 1 / Math.sqrt(K)), wType, held);
    const [bias, biasRef] = upload(gpu, 'selftest.bias', [N], randomValues(N, 23), wType, held);
    const c = f32(gpu, 'selftest.c', [M, N], null, held);
    const rec = gpu.recorder('selftest-matmul');
    recordMatmul(gpu, rec, { a: x, b: w, c, M, N, K, transB: true, bias });
    rec.submit();
    const got = await gpu.read(c);
    const ref = new Float64Array(M * N);
    matmulRef({ a: xv, b: wRef, c: ref, M, N, K, transB: true, bias: biasRef });
    return [compare('C', ref, got)];
  } finally {
    for (const t of held) gpu.free(t);
  }
}

interface LinearCase {
  M: number;
  inF: number;
  outF: number;
  r: number;
  dropout: number;
  seed: number;
}

const LINEAR: LinearCase = { M: 19, inF: 53, outF: 41, r: 5, dropout: 0.1, seed: 1234567 };

/** The fused LoRA linear (bf16 frozen weight, dropout), forward and/or backward. */
async function linearCheck(gpu: Gpu, part: 'forward' | 'backward'): Promise<Compared[]> {
  const held: Tensor[] = [];
  const ws = new Workspace(gpu);
  try {
    const { M, inF, outF, r, dropout, seed } = LINEAR;
    const scale = 2 / r;
    const xv = randomValues(M * inF, 31);
    const av = randomValues(r * inF, 34, 1 / Math.sqrt(inF));
    const bv = randomValues(outF * r, 35, 1 / Math.sqrt(r));
    const dyv = randomValues(M * outF, 36);
    const x = f32(gpu, 'selftest.x', [M, inF], xv, held);
    const [w, wRef] = upload(
      gpu,
      'selftest.w',
      [outF, inF],
      randomValues(outF * inF, 32, 1 / Math.sqrt(inF)),
      'bf16',
      held,
    );
    const [bias, biasRef] = upload(gpu, 'selftest.bias', [outF], randomValues(outF, 33), 'bf16', held);
    const lin: FrozenLinear = { w, bias, inF, outF, transposed: false };
    const lora: LoraParams = {
      a: f32(gpu, 'selftest.A', [r, inF], av, held),
      b: f32(gpu, 'selftest.B', [outF, r], bv, held),
      r,
      scale,
      dropout,
    };
    const y = f32(gpu, 'selftest.y', [M, outF], null, held);
    const s = f32(gpu, 'selftest.s', [M, r], null, held);
    const rec = gpu.recorder(`selftest-linear-${part}`);
    recordLinearForward(gpu, rec, { x, M, lin, lora, seed, y, s });
    const linRef = { w: wRef, bias: biasRef, inF, outF, transposed: false };
    const loraRef = { a: av, b: bv, r, scale, dropout };
    if (part === 'forward') {
      rec.submit();
      const [gy, gs] = [await gpu.read(y), await gpu.read(s)];
      const ry = new Float64Array(M * outF);
      const rs = new Float64Array(M * r);
      linearForwardRef({ x: xv, M, lin: linRef, lora: loraRef, seed, y: ry, s: rs });
      return [compare('y', ry, gy), compare('S', rs, gs)];
    }
    const dy = f32(gpu, 'selftest.dy', [M, outF], dyv, held);
    const dx = f32(gpu, 'selftest.dx', [M, inF], null, held);
    const dA = f32(gpu, 'selftest.dA', [r, inF], null, held);
    const dB = f32(gpu, 'selftest.dB', [outF, r], null, held);
    recordLinearBackward(gpu, rec, { dy, x, M, lin, lora, seed, s, dx, dA, dB, ws });
    rec.submit();
    const [gdx, gdA, gdB] = [await gpu.read(dx), await gpu.read(dA), await gpu.read(dB)];
    const rdx = new Float64Array(M * inF);
    const rdA = new Float64Array(r * inF);
    const rdB = new Float64Array(outF * r);
    linearBackwardRef({ dy: dyv, x: xv, M, lin: linRef, lora: loraRef, seed, dx: rdx, dA: rdA, dB: rdB });
    return [compare('dX', rdx, gdx), compare('dA', rdA, gdA), compare('dB', rdB, gdB)];
  } finally {
    await gpu.device.queue.onSubmittedWorkDone();
    ws.dispose();
    for (const t of held) gpu.free(t);
  }
}

// ------------------------------------------------------------------ entry point

/** Runs every check on `gpu` (never throws for a failing check; see `ok`). */
export async function runSelfTest(gpu: Gpu, opts: SelfTestOptions = {}): Promise<SelfTestReport> {
  const t0 = performance.now();
  const { M, inF, outF, r } = LINEAR;
  const plan: [string, () => Promise<Compared[]>][] = [
    ['recorder: 3 dispatches, 1 submit (n=1003)', () => recorderCheck(gpu)],
    ['matmul X·Wᵀ+b, f32 W [37x70]·[70x45]', () => matmulCheck(gpu, 'f32')],
    ['matmul X·Wᵀ+b, bf16 W [37x70]·[70x45]', () => matmulCheck(gpu, 'bf16')],
    ['matmul X·Wᵀ+b, f16 W [37x70]·[70x45]', () => matmulCheck(gpu, 'f16')],
    [
      `matmul small-M (generation) X·Wᵀ+b, bf16 W [3x70]·[70x1000], ${gpu.features.subgroupLanes ? `subgroup reduction, ${Math.min(32, gpu.features.subgroupLanes)} lanes` : 'workgroup-memory reduction'}`,
      () => matmulCheck(gpu, 'bf16', 3, 1000, 70),
    ],
    [`LoRA linear forward, bf16 W, M=${M} ${inF}→${outF} r=${r} dropout`, () => linearCheck(gpu, 'forward')],
    [`LoRA linear backward (dX, dA, dB), same shape`, () => linearCheck(gpu, 'backward')],
  ];
  const checks: SelfTestCheck[] = [];
  for (const [name, body] of plan) {
    const c = await check(name, body);
    checks.push(c);
    opts.onCheck?.(c);
  }
  return {
    adapter: gpu.info,
    f16: gpu.features.f16,
    subgroups: gpu.features.subgroups,
    subgroupLanes: gpu.features.subgroupLanes,
    checks,
    ok: checks.every((c) => c.ok),
    ms: performance.now() - t0,
  };
}
