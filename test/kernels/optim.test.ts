import { describe, expect, it } from 'vitest';
import { type Gpu, type Tensor, Workspace } from '../../src/gpu';
import { recordSumSquares } from '../../src/kernels/elementwise';
import { recordAdamW, recordSgd } from '../../src/kernels/optim';
import { adamWRef, gradMultiplierRef, sgdRef, sumSquaresRef } from '../../src/reference/optim';
import { expectClose, randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';

/** Trainable tensors of odd sizes (a LoRA A [7, 37], a B [70, 3], and a single element). */
const SIZES = [7 * 37, 70 * 3, 1];

interface Slot {
  param: Tensor;
  grad: Tensor;
  m: Tensor;
  v: Tensor;
  ref: { param: Float64Array; m: Float64Array; v: Float64Array };
  n: number;
}

function makeSlots(gpu: Gpu): Slot[] {
  return SIZES.map((n, k) => {
    const p0 = randArray(n, 100 + k);
    return {
      n,
      param: gpu.tensorF32(`p${k}`, [n], 'lora', p0),
      grad: gpu.tensorF32(`g${k}`, [n], 'lora'),
      m: gpu.tensorF32(`m${k}`, [n], 'optimizer', new Float32Array(n)),
      v: gpu.tensorF32(`v${k}`, [n], 'optimizer', new Float32Array(n)),
      ref: { param: Float64Array.from(p0), m: new Float64Array(n), v: new Float64Array(n) },
    };
  });
}

function freeSlots(gpu: Gpu, slots: Slot[]): void {
  for (const s of slots) for (const t of [s.param, s.grad, s.m, s.v]) gpu.free(t);
}

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

describe('AdamW (torch.optim.AdamW) with GPU global-norm clipping', () => {
  for (const c of CASES) {
    it(`5 steps, bias correction at t=1..5, ${c.name}`, async () => {
      const gpu = await getGpu();
      const slots = makeSlots(gpu);
      const ws = new Workspace(gpu);
      const normSq = gpu.tensorF32('normSq', [1], 'scratch');
      const hp = { lr: 3e-2, beta1: c.beta1 ?? 0.9, beta2: 0.999, eps: 1e-8, weightDecay: c.weightDecay };
      const clip = c.maxNorm !== undefined;
      for (let step = 1; step <= 5; step++) {
        const grads = gradsFor(step);
        slots.forEach((s, k) => gpu.write(s.grad, grads[k]!));
        const rec = gpu.recorder();
        if (clip) recordSumSquares(gpu, rec, { tensors: slots.map((s) => ({ t: s.grad, n: s.n })), out: normSq, ws });
        for (const s of slots) {
          recordAdamW(gpu, rec, {
            ...hp,
            param: s.param,
            grad: s.grad,
            m: s.m,
            v: s.v,
            n: s.n,
            step,
            normSq: clip ? normSq : undefined,
            maxNorm: c.maxNorm,
            gradScale: c.gradScale,
          });
        }
        rec.submit();
        const nsq = sumSquaresRef(grads.map((g, k) => ({ t: g, n: SIZES[k]! })));
        const gs = c.gradScale ?? 1;
        expect(gradMultiplierRef(nsq, c.maxNorm, gs) < gs, 'clip coefficient < 1').toBe(c.clips);
        if (clip) expectClose([nsq], await gpu.read(normSq), { name: `normSq@${step}`, atol: 0, rtol: 2e-6 });
        for (const [k, s] of slots.entries()) {
          adamWRef({
            ...hp,
            ...s.ref,
            grad: grads[k]!,
            n: s.n,
            step,
            normSq: nsq,
            maxNorm: c.maxNorm,
            gradScale: c.gradScale,
          });
          expectClose(s.ref.m, await gpu.read(s.m), { name: `m${k}@${step}`, atol: 1e-7, rtol: 1e-5 });
          expectClose(s.ref.v, await gpu.read(s.v), { name: `v${k}@${step}`, atol: 1e-9, rtol: 1e-5 });
          expectClose(s.ref.param, await gpu.read(s.param), { name: `param${k}@${step}`, atol: 1e-6, rtol: 1e-6 });
        }
      }
      // The parameters really moved (by about lr per step) and, with clipping, by the clipped amount.
      const moved = Math.abs(slots[0]!.ref.param[0]! - randArray(SIZES[0]!, 100)[0]!);
      expect(moved).toBeGreaterThan(1e-3);
      freeSlots(gpu, slots);
      gpu.free(normSq);
      ws.dispose();
    });
  }

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
  for (const c of CASES.slice(0, 4)) {
    it(`3 steps, ${c.name}`, async () => {
      const gpu = await getGpu();
      const slots = makeSlots(gpu);
      const ws = new Workspace(gpu);
      const normSq = gpu.tensorF32('normSq', [1], 'scratch');
      const clip = c.maxNorm !== undefined;
      const lr = 0.05;
      for (let step = 1; step <= 3; step++) {
        const grads = gradsFor(step);
        slots.forEach((s, k) => gpu.write(s.grad, grads[k]!));
        const rec = gpu.recorder();
        if (clip) recordSumSquares(gpu, rec, { tensors: slots.map((s) => ({ t: s.grad, n: s.n })), out: normSq, ws });
        for (const s of slots) {
          recordSgd(gpu, rec, {
            param: s.param,
            grad: s.grad,
            n: s.n,
            lr,
            weightDecay: c.weightDecay,
            normSq: clip ? normSq : undefined,
            maxNorm: c.maxNorm,
            gradScale: c.gradScale,
          });
        }
        rec.submit();
        const nsq = sumSquaresRef(grads.map((g, k) => ({ t: g, n: SIZES[k]! })));
        for (const [k, s] of slots.entries()) {
          sgdRef({
            param: s.ref.param,
            grad: grads[k]!,
            n: s.n,
            lr,
            weightDecay: c.weightDecay,
            normSq: nsq,
            maxNorm: c.maxNorm,
            gradScale: c.gradScale,
          });
          expectClose(s.ref.param, await gpu.read(s.param), { name: `param${k}@${step}`, atol: 1e-6, rtol: 1e-6 });
        }
      }
      freeSlots(gpu, slots);
      gpu.free(normSq);
      ws.dispose();
    });
  }

  it('asks for normSq when maxNorm is set', async () => {
    const gpu = await getGpu();
    const p = gpu.tensorF32('p', [3], 'lora');
    const g = gpu.tensorF32('g', [3], 'lora');
    expect(() => recordSgd(gpu, gpu.recorder(), { param: p, grad: g, n: 3, lr: 1, maxNorm: 1 })).toThrow(/normSq/);
    gpu.free(p);
    gpu.free(g);
  });
});
