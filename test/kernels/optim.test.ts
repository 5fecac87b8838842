import { describe, expect, it } from 'vitest';
import { type TensorSpec } from '../../src/kernel-check';
import { recordSumSquares } from '../../src/kernels/elementwise';
import { recordAdamW, recordSgd } from '../../src/kernels/optim';
import { adamWRef, gradMultiplierRef, sgdRef, sumSquaresRef } from '../../src/reference/optim';
import { randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';
import { checkKernel, filled, rand, values } from '../helpers/kernel';

/** Trainable tensors of odd sizes (a LoRA A [7, 37], a B [70, 3], and a single element). */
const SIZES = [7 * 37, 70 * 3, 1];

/** New raw gradients for a step: mostly O(1), one tensor much larger so the norm is dominated. */
function gradsFor(step: number): Float32Array[] {
  return SIZES.map((n, k) => randArray(n, 1000 * step + k, k === 1 ? 3 : 0.5));
}

interface Case {
  name: string;
  maxNorm?: number;
  gradScale?: number;
  weightDecay: number;
  /** Whether the clip coefficient is < 1 at every step (asserted, so the case means what it says). */
  clips: boolean;
  /** Default 0.9; <= 0.5 takes torch lerp's other branch (end - (end - start)·(1 - w)). */
  beta1?: number;
}

// Raw gradient norm here is about sqrt(210·3) + ... ≈ 26: maxNorm 1 clips hard, 1e3 never does.
const CASES: Case[] = [
  { name: 'no clipping', weightDecay: 0.01, clips: false },
  { name: 'clipping active (maxNorm 1)', maxNorm: 1, weightDecay: 0.1, clips: true },
  { name: 'clipping inactive (maxNorm 1000)', maxNorm: 1000, weightDecay: 0, clips: false },
  {
    name: 'gradScale 1/37 then clipping active (maxNorm 0.3)',
    maxNorm: 0.3,
    gradScale: 1 / 37,
    weightDecay: 0.05,
    clips: true,
  },
  {
    name: 'gradScale 1/37, clipping inactive (maxNorm 1)',
    maxNorm: 1,
    gradScale: 1 / 37,
    weightDecay: 0.05,
    clips: false,
  },
  {
    name: 'beta1 0.3 (lerp weight >= 0.5), clipping active (maxNorm 2)',
    maxNorm: 2,
    weightDecay: 0.01,
    clips: true,
    beta1: 0.3,
  },
];

/**
 * `steps` optimizer steps recorded into one submit, each from its own gradient tensors (g<step>_<k>)
 * with its own global norm (normSq<step>), against the float64 optimizer run step by step.
 */
async function runSteps(kind: 'adamw' | 'sgd', c: Case, steps: number): Promise<void> {
  const hp = { lr: 3e-2, beta1: c.beta1 ?? 0.9, beta2: 0.999, eps: 1e-8, weightDecay: c.weightDecay };
  const sgdLr = 0.05;
  const clip = c.maxNorm !== undefined;
  const grads = Array.from({ length: steps }, (_, s) => gradsFor(s + 1));
  const tensors: Record<string, TensorSpec> = {};
  SIZES.forEach((n, k) => {
    tensors[`p${k}`] = rand([n], { seed: 100 + k });
    tensors[`m${k}`] = filled([n]);
    tensors[`v${k}`] = filled([n]);
    grads.forEach((g, s) => (tensors[`g${s + 1}_${k}`] = values([n], g[k]!)));
  });
  for (let s = 1; s <= steps; s++) tensors[`normSq${s}`] = filled([1]);
  await checkKernel({
    label: `${kind} ${c.name}`,
    tensors,
    record: (gpu, rec, t, ws) => {
      for (let step = 1; step <= steps; step++) {
        const normSq = t[`normSq${step}`]!;
        const g = (k: number) => t[`g${step}_${k}`]!;
        if (clip) recordSumSquares(gpu, rec, { tensors: SIZES.map((n, k) => ({ t: g(k), n })), out: normSq, ws });
        const clipArgs = { normSq: clip ? normSq : undefined, maxNorm: c.maxNorm, gradScale: c.gradScale };
        SIZES.forEach((n, k) => {
          const param = t[`p${k}`]!;
          if (kind === 'adamw')
            recordAdamW(gpu, rec, { ...hp, ...clipArgs, param, grad: g(k), m: t[`m${k}`]!, v: t[`v${k}`]!, n, step });
          else recordSgd(gpu, rec, { ...clipArgs, param, grad: g(k), n, lr: sgdLr, weightDecay: c.weightDecay });
        });
      }
    },
    reference: (v) => {
      const state = SIZES.map((_, k) => ({
        param: Float64Array.from(v[`p${k}`]!),
        m: new Float64Array(SIZES[k]!),
        v: new Float64Array(SIZES[k]!),
      }));
      const out: Record<string, ArrayLike<number>> = {};
      grads.forEach((g, s) => {
        const step = s + 1;
        const nsq = sumSquaresRef(g.map((t, k) => ({ t, n: SIZES[k]! })));
        const gs = c.gradScale ?? 1;
        expect(gradMultiplierRef(nsq, c.maxNorm, gs) < gs, `clip coefficient < 1 at step ${step}`).toBe(c.clips);
        if (clip) out[`normSq${step}`] = [nsq];
        const clipArgs = { normSq: nsq, maxNorm: c.maxNorm, gradScale: c.gradScale };
        SIZES.forEach((n, k) => {
          const st = state[k]!;
          if (kind === 'adamw') adamWRef({ ...hp, ...clipArgs, ...st, grad: g[k]!, n, step });
          else sgdRef({ ...clipArgs, param: st.param, grad: g[k]!, n, lr: sgdLr, weightDecay: c.weightDecay });
        });
      });
      // The parameters really moved (by about lr per step).
      expect(Math.abs(state[0]!.param[0]! - v.p0![0]!)).toBeGreaterThan(1e-3);
      SIZES.forEach((_, k) => {
        out[`p${k}`] = state[k]!.param;
        if (kind === 'adamw') {
          out[`m${k}`] = state[k]!.m;
          out[`v${k}`] = state[k]!.v;
        }
      });
      return out;
    },
    tol: { atol: 1e-6, rtol: 1e-6 },
    tols: Object.fromEntries(
      SIZES.flatMap((_, k) => [
        [`m${k}`, { atol: 1e-7, rtol: 1e-5 }],
        [`v${k}`, { atol: 1e-9, rtol: 1e-5 }],
      ]).concat(Array.from({ length: steps }, (_, s) => [`normSq${s + 1}`, { atol: 0, rtol: 2e-6 }])),
    ),
  });
}

describe('AdamW (torch.optim.AdamW) with GPU global-norm clipping', () => {
  for (const c of CASES) it(`5 steps, bias correction at t=1..5, ${c.name}`, () => runSteps('adamw', c, 5));

  it('clipping changes the step only when the norm exceeds maxNorm', () => {
    // A reference-level sanity check of the clip coefficient wiring.
    const n = 4;
    const grad = [3, 4, 0, 0]; // norm 5
    const run = (maxNorm?: number) => {
      const st = { param: new Float64Array(n).fill(1), m: new Float64Array(n), v: new Float64Array(n) };
      adamWRef({
        ...st,
        grad,
        n,
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: 0,
        step: 2,
        normSq: 25,
        maxNorm,
      });
      return st.m[0]!;
    };
    expect(run()).toBeCloseTo(0.3, 12);
    expect(run(10)).toBeCloseTo(0.3, 12);
    expect(run(1)).toBeCloseTo(0.3 / (5 + 1e-6), 9);
  });
});

describe('SGD with GPU global-norm clipping', () => {
  for (const c of CASES.slice(0, 4)) it(`3 steps, ${c.name}`, () => runSteps('sgd', c, 3));

  it('asks for normSq when maxNorm is set', async () => {
    const gpu = await getGpu();
    const p = gpu.tensorF32('p', [3], 'lora');
    const g = gpu.tensorF32('g', [3], 'lora');
    expect(() => recordSgd(gpu, gpu.recorder(), { param: p, grad: g, n: 3, lr: 1, maxNorm: 1 })).toThrow(/normSq/);
    gpu.free(p);
    gpu.free(g);
  });
});
