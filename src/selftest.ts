/**
 * A quick correctness check of the GPU engine on whatever adapter is present: a few kernels on odd
 * shapes (not multiples of any tile) against the float64 references in src/reference/. Used by the
 * start page, the CLI (`tabtune selftest`) and the browser tests. No DOM, no React.
 *
 * Every check runs on src/kernel-check.ts, the harness of the kernel tests: elementwise
 * |got - ref| <= atol + rtol·|ref|, atol scaled by the largest |ref| of that output (f32
 * accumulation against float64). 16-bit weights are compared against references computed from
 * the same rounded values, so only accumulation error remains.
 */

import { type Gpu, type GpuInfo, params } from './gpu/context';
import { type KernelCheckResult, filled, rand, runKernelCheck } from './kernel-check';
import { recordAttention, recordAttentionBackward } from './kernels/attention';
import { attentionDirect } from './kernels/attention-variants';
import { type FrozenLinear, type LoraParams, recordLinearBackward, recordLinearForward } from './kernels/linear';
import { type WeightDType, recordMatmul } from './kernels/matmul';
import { attentionBackwardRef, attentionRef } from './reference/attention';
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

// ------------------------------------------------------------------ checks

/** Every output within atol = 1e-4·max|ref|, rtol = 1e-3 (f32 accumulation against float64). */
const TOL = { atol: 1e-4, rtol: 1e-3, atolOfMax: true };

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
function recorderCheck(gpu: Gpu): Promise<KernelCheckResult<string>> {
  const n = 1003;
  const alphas = [2, -0.5, 0.25];
  return runKernelCheck(gpu, {
    label: 'selftest.recorder',
    tensors: { x: rand([n]), y: rand([n]) },
    record: (g, rec, t) => {
      const pipe = g.pipeline('selftest_axpy', AXPY);
      for (const a of alphas) rec.dispatch(pipe, [t.x, t.y], [Math.ceil(n / 64)], params(n, { f: a }));
    },
    reference: (v) => ({ y: v.y.map((y, i) => alphas.reduce((s, a) => s + Math.fround(a) * v.x[i]!, y)) }),
    tol: TOL,
  });
}

/** C = X·Wᵀ + bias with W [N, K] stored as `wType` (an nn.Linear), odd M, N, K. */
function matmulCheck(gpu: Gpu, wType: WeightDType, M = 37, N = 45, K = 70): Promise<KernelCheckResult<string>> {
  return runKernelCheck(gpu, {
    label: 'selftest.matmul',
    tensors: {
      x: rand([M, K]),
      w: rand([N, K], { dtype: wType, scale: 1 / Math.sqrt(K) }),
      bias: rand([N], { dtype: wType }),
      c: filled([M, N]),
    },
    record: (g, rec, t) => recordMatmul(g, rec, { a: t.x, b: t.w, c: t.c, M, N, K, transB: true, bias: t.bias }),
    reference: (v) => {
      const c = new Float64Array(M * N);
      matmulRef({ a: v.x, b: v.w, c, M, N, K, transB: true, bias: v.bias });
      return { c };
    },
    tol: TOL,
  });
}

const LINEAR = { M: 19, inF: 53, outF: 41, r: 5, dropout: 0.1, seed: 1234567 };

/** The fused LoRA linear (bf16 frozen weight, dropout), forward and/or backward. */
function linearCheck(gpu: Gpu, part: 'forward' | 'backward'): Promise<KernelCheckResult<string>> {
  const { M, inF, outF, r, dropout, seed } = LINEAR;
  const scale = 2 / r;
  const backward = part === 'backward';
  return runKernelCheck(gpu, {
    label: `selftest.linear.${part}`,
    tensors: {
      x: rand([M, inF]),
      w: rand([outF, inF], { dtype: 'bf16', scale: 1 / Math.sqrt(inF) }),
      bias: rand([outF], { dtype: 'bf16' }),
      A: rand([r, inF], { scale: 1 / Math.sqrt(inF) }),
      B: rand([outF, r], { scale: 1 / Math.sqrt(r) }),
      y: filled([M, outF]),
      s: filled([M, r]),
      dy: rand([M, outF]),
      dx: filled([M, inF]),
      dA: filled([r, inF]),
      dB: filled([outF, r]),
    },
    record: (g, rec, t, ws) => {
      const lin: FrozenLinear = { w: t.w, bias: t.bias, inF, outF, transposed: false };
      const lora: LoraParams = { a: t.A, b: t.B, r, scale, dropout };
      recordLinearForward(g, rec, { x: t.x, M, lin, lora, seed, y: t.y, s: t.s });
      if (backward) {
        const grads = { dx: t.dx, dA: t.dA, dB: t.dB };
        recordLinearBackward(g, rec, { dy: t.dy, x: t.x, M, lin, lora, seed, s: t.s, ...grads, ws });
      }
    },
    reference: (v) => {
      const lin = { w: v.w, bias: v.bias, inF, outF, transposed: false };
      const lora = { a: v.A, b: v.B, r, scale, dropout };
      if (!backward) {
        const out = { y: new Float64Array(M * outF), s: new Float64Array(M * r) };
        linearForwardRef({ x: v.x, M, lin, lora, seed, ...out });
        return out;
      }
      const out = { dx: new Float64Array(M * inF), dA: new Float64Array(r * inF), dB: new Float64Array(outF * r) };
      linearBackwardRef({ dy: v.dy, x: v.x, M, lin, lora, seed, ...out });
      return out;
    },
    tol: TOL,
  });
}

const ATTENTION = { batch: 2, seq: 13, heads: 4, kvHeads: 2, headDim: 16, window: 9 };

/**
 * Causal grouped-query attention with a sliding window, forward and backward, on the kernels the
 * device runs by default (the direct subgroup kernels on CPU drivers, the tiled ones elsewhere).
 */
function attentionCheck(gpu: Gpu): Promise<KernelCheckResult<string>> {
  const a = ATTENTION;
  const rows = a.batch * a.seq;
  const qs = [rows, a.heads, a.headDim];
  const ks = [rows, a.kvHeads, a.headDim];
  return runKernelCheck(gpu, {
    label: 'selftest.attention',
    tensors: {
      q: rand(qs),
      k: rand(ks),
      v: rand(ks),
      dO: rand(qs),
      o: filled(qs),
      lse: filled([rows, a.heads]),
      dq: filled(qs),
      dk: filled(ks),
      dv: filled(ks),
    },
    record: (g, rec, t, ws) => {
      recordAttention(g, rec, { q: t.q, k: t.k, v: t.v, o: t.o, lse: t.lse, ...a });
      recordAttentionBackward(g, rec, { ...t, ws, ...a });
    },
    reference: (v) => {
      const d = { q: v.q, k: v.k, v: v.v, dO: v.dO, ...a };
      return { ...attentionRef(d), ...attentionBackwardRef(d) };
    },
    tol: TOL,
  });
}

/** Runs `body`; turns its comparisons (or an exception) into a check. */
async function check(name: string, body: () => Promise<KernelCheckResult<string>>): Promise<SelfTestCheck> {
  const t0 = performance.now();
  try {
    const r = await body();
    const maxAbsErr = r.reports.reduce((m, x) => Math.max(m, x.maxAbs), 0);
    const c: SelfTestCheck = { name, maxAbsErr, ok: r.ok, ms: performance.now() - t0 };
    if (!r.ok)
      c.error = r.reports
        .filter((x) => !x.ok)
        .map((x) => x.message)
        .join('; ');
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

// ------------------------------------------------------------------ entry point

/** Runs every check on `gpu` (never throws for a failing check; see `ok`). */
export async function runSelfTest(gpu: Gpu, opts: SelfTestOptions = {}): Promise<SelfTestReport> {
  const t0 = performance.now();
  const { M, inF, outF, r } = LINEAR;
  const plan: [string, () => Promise<KernelCheckResult<string>>][] = [
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
    [
      `attention forward + backward, B=2 S=13 heads 4/2 hd 16 window 9, ${attentionDirect(gpu, ATTENTION.headDim) ? 'direct subgroup' : 'tiled'} kernels`,
      () => attentionCheck(gpu),
    ],
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
