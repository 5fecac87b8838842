/**
 * Autotuning of the matmul family (src/kernels/matmul/tune.ts): the shape classes a recording meets
 * without a choice are timed on this device, the choice is kept and used, saved choices apply to
 * another device object, a pin overrides and unknown names are refused; while tuning is on a class
 * not tuned yet runs the prior (the device class's first candidate), and a member that lost
 * clearly is left out of later classes without compiling its shaders. Nothing here asserts which
 * member is fastest (that depends on the machine and its load); the bench measures that.
 */
import { describe, expect, it } from 'vitest';
import {
  applyChoices,
  currentChoices,
  deviceKey,
  pinMember,
  tuneMatmul,
  untunedClasses,
} from '../../src/kernels/matmul/tune';
import {
  BASELINE,
  RULED_OUT,
  WIDE,
  candidatesFor,
  chooseConfig,
  countOutcome,
  ruledOut,
} from '../../src/kernels/matmul/variants';
import { getGpu, getPlainGpu } from '../helpers/gpu';
import { check, checkExtra } from '../helpers/matmul';

describe('matmul autotuning', () => {
  it('tunes each class met once, keeps and uses the choice, saves and applies it', async () => {
    const gpu = await getGpu();
    gpu.kernels.choices.clear();
    gpu.kernels.seen.clear();
    // Aᵀ·B f32 with strides multiple of 4 (the members' vector paths), as test/kernels/matmul-family runs it.
    const c = { M: 68, N: 36, K: 72, transA: true, bType: 'f32' } as const;
    await check(c); // recorded with the baseline; the class is now "seen"
    const classes = untunedClasses(gpu);
    expect(classes).toHaveLength(1);
    const shape = { ...c, transB: false, lora: false };
    expect(chooseConfig(gpu, shape).name).toBe(BASELINE);

    const progress: number[] = [];
    const [r] = await tuneMatmul(gpu, { budgetMs: 100, onProgress: (p) => progress.push(p.done) });
    expect(progress).toEqual([0, 1]);
    expect(r!.shapeClass).toBe(classes[0]);
    const names = candidatesFor(gpu, shape).map((x) => x.name);
    expect(Object.keys(r!.ms).sort()).toEqual([...names].sort());
    for (const ms of Object.values(r!.ms)) expect(ms).toBeGreaterThan(0);
    expect(names).toContain(r!.chosen);
    expect(untunedClasses(gpu)).toEqual([]);
    expect(chooseConfig(gpu, shape).name).toBe(r!.chosen);
    await check(c); // the chosen member, still right

    const saved = currentChoices(gpu);
    expect(saved).toEqual({ [classes[0]!]: r!.chosen });
    const other = await getPlainGpu();
    expect(deviceKey(other)).not.toBe(deviceKey(gpu)); // no shader-f16 there: another key
    expect(applyChoices(other, { ...saved, nn_f32_mxs_nxs_kxs: 'a-member-from-another-version' })).toBe(1);
    expect(chooseConfig(other, shape).name).toBe(r!.chosen);
    other.kernels.choices.clear();
    gpu.kernels.choices.clear();
    gpu.kernels.seen.clear();
  });

  it('a pin overrides the choices and stops tuning; unknown names are refused with the family', async () => {
    const gpu = await getGpu();
    const shape = { M: 64, N: 64, K: 64, transA: false, transB: true, bType: 'bf16' as const, lora: false };
    gpu.kernels.seen.clear();
    chooseConfig(gpu, shape);
    expect(untunedClasses(gpu)).toHaveLength(1);
    pinMember(gpu, 'direct4x4');
    try {
      expect(untunedClasses(gpu)).toEqual([]);
      expect(await tuneMatmul(gpu)).toEqual([]);
      expect(chooseConfig(gpu, shape).name).toBe('direct4x4');
      expect(() => pinMember(gpu, 'fastest')).toThrow(/Unknown matmul kernel "fastest".*tile64.*direct8x4/);
    } finally {
      pinMember(gpu, null);
      gpu.kernels.seen.clear();
    }
    expect(chooseConfig(gpu, shape).name).toBe(BASELINE);
    gpu.kernels.seen.clear();
  });
  it('times the very shaders the run uses (LoRA layout, bias, dropouts), so the tuned run compiles nothing more', async () => {
    const gpu = await getGpu();
    gpu.kernels.choices.clear();
    gpu.kernels.seen.clear();
    // A fused LoRA dX-style problem (A2 [M, r], B2 [r, N]) with a bf16 bias and both dropouts.
    const c = { M: 40, N: 36, K: 72, K2: 4, transB: false, transB2: false, bType: 'bf16', bias: true } as const;
    const lora = { ...c, dropA: 0.1, dropOut: 0.2 };
    await checkExtra(lora); // the baseline; the class is now "seen" with these flags
    expect(untunedClasses(gpu)).toHaveLength(1);
    const made: string[] = [];
    gpu.onShader = (label) => made.push(label);
    try {
      const [r] = await tuneMatmul(gpu, { budgetMs: 50 });
      expect(r!.compiled).toBe(made.length);
      expect(r!.compileMs).toBeGreaterThanOrEqual(0);
      expect(r!.timedMs).toBeGreaterThan(0);
      made.length = 0;
      await checkExtra(lora); // the tuned member, still right
      expect(made.filter((l) => l.startsWith('matmul_'))).toEqual([]);
    } finally {
      gpu.onShader = null;
      gpu.kernels.choices.clear();
      gpu.kernels.seen.clear();
    }
  });

  it('rules a member out after RULED_OUT clear losses in a regime and no clear win; a close win delays it', async () => {
    const gpu = await getGpu();
    const f32 = { M: 64, bType: 'f32' as const };
    gpu.kernels.tally.clear();
    try {
      const lose = (s: { M: number; bType: 'f32' | 'bf16' }) =>
        countOutcome(gpu, s, { direct4x4: 1, tile64: WIDE }, 'direct4x4');
      for (let i = 0; i < RULED_OUT - 1; i++) lose(f32);
      expect(ruledOut(gpu, 'tile64', f32)).toBe(false);
      countOutcome(gpu, f32, { direct4x4: 1, tile64: 1.2 }, 'direct4x4'); // a close loss: not counted
      expect(ruledOut(gpu, 'tile64', f32)).toBe(false);
      lose(f32);
      expect(ruledOut(gpu, 'tile64', f32)).toBe(true);
      expect(ruledOut(gpu, 'direct4x4', f32)).toBe(false);
      // Other regimes keep it: another weight dtype, few rows.
      expect(ruledOut(gpu, 'tile64', { M: 64, bType: 'bf16' })).toBe(false);
      expect(ruledOut(gpu, 'tile64', { M: 8, bType: 'f32' })).toBe(false);

      // A close win: twice as many clear losses needed; a clear win: never ruled out.
      gpu.kernels.tally.clear();
      countOutcome(gpu, f32, { direct4x4: 1.1, tile64: 1 }, 'tile64');
      for (let i = 0; i < RULED_OUT; i++) lose(f32);
      expect(ruledOut(gpu, 'tile64', f32)).toBe(true);
      gpu.kernels.tally.clear();
      countOutcome(gpu, f32, { direct4x4: 1, tile64: 1 }, 'tile64');
      countOutcome(gpu, f32, { direct4x4: 1, tile64: 1 }, 'tile64');
      for (let i = 0; i < RULED_OUT; i++) lose(f32);
      expect(ruledOut(gpu, 'tile64', f32)).toBe(false);
      lose(f32);
      expect(ruledOut(gpu, 'tile64', f32)).toBe(true);
      gpu.kernels.tally.clear();
      countOutcome(gpu, f32, { direct4x4: WIDE, tile64: 1 }, 'tile64');
      for (let i = 0; i < 10; i++) lose(f32);
      expect(ruledOut(gpu, 'tile64', f32)).toBe(false);
    } finally {
      gpu.kernels.tally.clear();
    }
  });

  it('with the prior, an untuned class runs the first candidate; a ruled-out member is neither compiled nor timed', async () => {
    const gpu = await getGpu();
    gpu.kernels.choices.clear();
    gpu.kernels.seen.clear();
    gpu.kernels.tally.clear();
    gpu.kernels.prior = true;
    const made: string[] = [];
    gpu.onShader = (label) => made.push(label);
    // Two classes of f32 problems (different N classes), odd sizes, checked against float64.
    const c1 = { M: 44, N: 20, K: 36, transB: true, bType: 'f32' } as const;
    const c2 = { M: 44, N: 300, K: 36, transB: true, bType: 'f32' } as const;
    const shape = (c: typeof c1 | typeof c2) => ({ ...c, transA: false, lora: false });
    try {
      const first = candidatesFor(gpu, shape(c1))[0]!.name;
      expect(first).not.toBe(BASELINE);
      await check(c1);
      expect(chooseConfig(gpu, shape(c1)).name).toBe(first);
      expect(untunedClasses(gpu)).toHaveLength(1); // noted for tuning all the same
      expect(made.some((l) => /^matmul_\d+x\d+_/.test(l))).toBe(false); // the baseline never compiled

      // The baseline lost this regime clearly RULED_OUT times on this device: left out of c1's class.
      for (let i = 0; i < RULED_OUT; i++) countOutcome(gpu, shape(c1), { [first]: 1, [BASELINE]: 2 * WIDE }, first);
      made.length = 0;
      const [r] = await tuneMatmul(gpu, { budgetMs: 50 });
      expect(r!.skipped).toEqual([BASELINE]);
      expect(r!.chosen).toBe(first);
      expect(r!.ms).toEqual({}); // one candidate left: nothing timed
      expect(made).toEqual([]);
      await check(c1); // the chosen member, right, nothing compiled
      expect(made).toEqual([]);

      // Without that evidence the baseline is a candidate again: compiled and timed.
      gpu.kernels.tally.clear();
      await check(c2);
      made.length = 0;
      const [r2] = await tuneMatmul(gpu, { budgetMs: 50 });
      expect(r2!.skipped).toEqual([]);
      expect(Object.keys(r2!.ms).sort()).toEqual(
        candidatesFor(gpu, shape(c2))
          .map((x) => x.name)
          .sort(),
      );
      expect(made.some((l) => /^matmul_\d+x\d+_/.test(l))).toBe(true);
      made.length = 0;
      await check(c2);
      expect(made.filter((l) => l.startsWith('matmul_'))).toEqual([]);
    } finally {
      gpu.onShader = null;
      gpu.kernels.prior = false;
      gpu.kernels.tally.clear();
      gpu.kernels.choices.clear();
      gpu.kernels.seen.clear();
    }
  });
});
