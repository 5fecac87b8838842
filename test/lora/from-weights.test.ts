/**
 * The adapter pieces made from the frozen weights (src/lora/from-weights.ts), against float64:
 * PiSSA's and OLoRA's A0, B0 (s·B0·A0 is the top-r part of W, or Q_r·R_r), the residual weight
 * written to the GPU in the weight's own dtype and restored bit for bit, PEFT's conversion of the
 * trained adapter (A' = [A; A0], B' = [B, -B0]: s·B'·A' = s·(B·A - B0·A0), r and alpha doubled), and
 * DoRA's ||W||² and initial magnitude read from f16 and Conv1D weights; LoftQ's Q written in bf16
 * and handed back for saving.
 */
import { describe, expect, it } from 'vitest';
import { packHalf, roundThroughHalf } from '../../src/gpu/half';
import type { LoraConfig } from '../../src/lora/config';
import { doraWeightStats, peftConversion, prepareWeightInit, weightInit } from '../../src/lora/from-weights';
import type { LinearModule } from '../../src/model/registry';
import { loftqInit } from '../../src/lora/loftq';
import { topSingular } from '../../src/numerics/lowrank';
import { randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';

const cfg: LoraConfig = {
  r: 2,
  lora_alpha: 4,
  lora_dropout: 0,
  target_modules: ['q_proj'],
  use_rslora: false,
  bias: 'none',
  fan_in_fan_out: false,
  init_lora_weights: 'pissa',
};

/** s·B·A [outF, inF] in float64. */
function product(a: ArrayLike<number>, b: ArrayLike<number>, outF: number, inF: number, r: number, s: number) {
  const out = new Float64Array(outF * inF);
  for (let o = 0; o < outF; o++)
    for (let i = 0; i < inF; i++) {
      let d = 0;
      for (let j = 0; j < r; j++) d += b[o * r + j]! * a[j * inF + i]!;
      out[o * inF + i] = s * d;
    }
  return out;
}

const maxDiff = (x: ArrayLike<number>, y: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
};

describe('PiSSA / OLoRA initial A0, B0', () => {
  const [outF, inF, r, s] = [7, 9, 3, 0.5];
  const w = Float64Array.from(randArray(outF * inF, 21));
  it('pissa: s·B0·A0 is the top-r singular part of W, split evenly (B0 = U·√(S/s), A0 = √(S/s)·Vᵀ)', () => {
    const { a, b } = weightInit('pissa', w, outF, inF, r, s, 1);
    const svd = topSingular(w, outF, inF, r, { exact: true });
    const top = new Float64Array(outF * inF);
    for (let o = 0; o < outF; o++)
      for (let i = 0; i < inF; i++)
        for (let j = 0; j < r; j++)
          top[o * inF + i] = top[o * inF + i]! + svd.u[o * r + j]! * svd.s[j]! * svd.vt[j * inF + i]!;
    expect(maxDiff(product(a, b, outF, inF, r, s), top)).toBeLessThan(1e-12);
    // PEFT's split: the column norms of B0 equal the row norms of A0 (both √(S_j / s)).
    for (let j = 0; j < r; j++) {
      let na = 0;
      let nb = 0;
      for (let i = 0; i < inF; i++) na += a[j * inF + i]! ** 2;
      for (let o = 0; o < outF; o++) nb += b[o * r + j]! ** 2;
      expect(na).toBeCloseTo(svd.s[j]! / s, 10);
      expect(nb).toBeCloseTo(svd.s[j]! / s, 10);
    }
  });
  it('olora: B0 = Q_r, A0 = R_r with no scaling (PEFT subtracts s·Q_r·R_r)', () => {
    const { a, b } = weightInit('olora', w, outF, inF, r, s, 1);
    // The first r columns of W are Q_r·R_r[:, :r].
    for (let o = 0; o < outF; o++)
      for (let i = 0; i < r; i++) {
        let d = 0;
        for (let j = 0; j < r; j++) d += b[o * r + j]! * a[j * inF + i]!;
        expect(d).toBeCloseTo(w[o * inF + i]!, 12);
      }
  });
});

describe('the frozen weight on the GPU', () => {
  it('pissa on an f16 Conv1D weight: W - s·B0·A0 written in f16, restored bit for bit; A, B set to A0, B0', async () => {
    const gpu = await getGpu();
    const [outF, inF] = [6, 5];
    const raw = randArray(inF * outF, 5); // stored [in, out]
    const bits = packHalf(raw, 'f16');
    const t = gpu.tensor('w', [inF, outF], 'f16', 'weights', bits);
    const module = { path: 'h.0.attn.c_attn', name: 'c_attn', inF, outF } as LinearModule;
    const model = { linears: [module], frozen: () => ({ w: t, bias: null, inF, outF, transposed: true }) };
    const mods = [{ path: module.path, r: 2, inF, outF, a: new Float32Array(2 * inF), b: new Float32Array(outF * 2) }];
    const mutated = await prepareWeightInit(gpu, model, cfg, mods, 1, false);
    const w = roundThroughHalf(raw, 'f16');
    const rowMajor = Float64Array.from({ length: outF * inF }, (_, e) => w[(e % inF) * outF + Math.floor(e / inF)]!);
    const ba = product(mods[0]!.a, mods[0]!.b, outF, inF, 2, 2);
    mutated.apply();
    const res = await gpu.read(t);
    for (let o = 0; o < outF; o++)
      for (let i = 0; i < inF; i++) {
        const want = rowMajor[o * inF + i]! - ba[o * inF + i]!;
        expect(Math.abs(res[i * outF + o]! - want)).toBeLessThan(2e-3 * Math.max(1, Math.abs(want)));
      }
    mutated.restore();
    expect(new Uint16Array(await gpu.readBytes(t.buffer)).slice(0, bits.length)).toEqual(bits);
    gpu.free(t);
  });

  it('loftq on a bf16 weight: Q (bitsandbytes NF4) written in bf16 and handed back, A, B as loftqInit; restored bit for bit; Conv1D refused', async () => {
    const gpu = await getGpu();
    const [outF, inF, r] = [9, 23, 2]; // 207 elements: the last NF4 block is partial
    const raw = randArray(outF * inF, 8);
    const bits = packHalf(raw, 'bf16');
    const t = gpu.tensor('w', [outF, inF], 'bf16', 'weights', bits);
    const module = { path: 'layers.0.mlp.down_proj', name: 'down_proj', inF, outF } as LinearModule;
    const lin = { w: t, bias: null, inF, outF, transposed: false };
    const model = { linears: [module], frozen: () => lin };
    const mods = [{ path: module.path, r, inF, outF, a: new Float32Array(r * inF), b: new Float32Array(outF * r) }];
    const c: LoraConfig = { ...cfg, init_lora_weights: 'loftq', loftq_config: { loftq_bits: 4, loftq_iter: 2 } };
    const mutated = await prepareWeightInit(gpu, model, c, mods, 1, false);
    const want = loftqInit(roundThroughHalf(raw, 'bf16'), outF, inF, r, 2);
    expect(mutated.quantizedBase.get(module.path)).toEqual(want.q);
    expect(mods[0]!.a).toEqual(Float32Array.from(want.a));
    expect(mods[0]!.b).toEqual(Float32Array.from(want.b));
    mutated.apply();
    expect(new Uint16Array(await gpu.readBytes(t.buffer)).slice(0, bits.length)).toEqual(packHalf(want.q, 'bf16'));
    mutated.restore();
    expect(new Uint16Array(await gpu.readBytes(t.buffer)).slice(0, bits.length)).toEqual(bits);
    const conv = { linears: [module], frozen: () => ({ ...lin, transposed: true }) };
    await expect(prepareWeightInit(gpu, conv, c, mods, 1, false)).rejects.toThrow(/does not support Conv1D/);
    gpu.free(t);
  });

  it('DoRA: ||W_o||² and ||W_o + s·B·A|| from an f16 Conv1D weight', async () => {
    const gpu = await getGpu();
    const [outF, inF, r] = [4, 3, 1];
    const raw = randArray(inF * outF, 9);
    const t = gpu.tensor('w', [inF, outF], 'f16', 'weights', packHalf(raw, 'f16'));
    const a = Float32Array.from([0.5, -1, 2]);
    const b = Float32Array.from([1, 0, -2, 0.25]);
    const { wn2, norm } = await doraWeightStats(gpu, { w: t, bias: null, inF, outF, transposed: true }, { a, b, r }, 3);
    const w = roundThroughHalf(raw, 'f16');
    for (let o = 0; o < outF; o++) {
      let p = 0;
      let q = 0;
      for (let i = 0; i < inF; i++) {
        const v = w[i * outF + o]!;
        p += v * v;
        q += (v + 3 * b[o]! * a[i]!) ** 2;
      }
      expect(wn2[o]).toBeCloseTo(p, 6);
      expect(norm[o]).toBeCloseTo(Math.sqrt(q), 6);
    }
    gpu.free(t);
  });
});

describe("PEFT's conversion of a PiSSA / OLoRA adapter", () => {
  it('s·B′·A′ = s·(B·A - B0·A0); r, alpha and the patterns doubled; rsLoRA alpha·√2', () => {
    const [outF, inF, r] = [5, 4, 2];
    const m = { path: 'q', r, inF, outF, a: randArray(r * inF, 1), b: randArray(outF * r, 2) };
    const init = { a: randArray(r * inF, 3), b: randArray(outF * r, 4) };
    const c = { ...cfg, rank_pattern: { q: 2 }, alpha_pattern: { q: 4 } };
    const { config, modules } = peftConversion(c, [m], new Map([['q', init]]));
    expect(config).toMatchObject({
      r: 4,
      lora_alpha: 8,
      init_lora_weights: true,
      rank_pattern: { q: 4 },
      alpha_pattern: { q: 8 },
    });
    const got = product(modules[0]!.a, modules[0]!.b, outF, inF, 2 * r, 1);
    const want = product(m.a, m.b, outF, inF, r, 1).map((x, e) => x - product(init.a, init.b, outF, inF, r, 1)[e]!);
    expect(maxDiff(got, want)).toBeLessThan(1e-6);
    expect(peftConversion({ ...c, use_rslora: true }, [m], new Map([['q', init]])).config.lora_alpha).toBeCloseTo(
      4 * Math.SQRT2,
      12,
    );
  });
});
