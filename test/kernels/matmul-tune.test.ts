/**
 * Autotuning of the matmul family (src/kernels/matmul/tune.ts): the shape classes a recording meets
 * without a choice are timed on this device, the choice is kept and used, saved choices apply to
 * another device object, a pin overrides and unknown names are refused. Nothing here asserts which
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
import { BASELINE, candidatesFor, chooseConfig } from '../../src/kernels/matmul/variants';
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
});
