import { describe, expect, it } from 'vitest';
import type { LoraConfig } from '../../src/lora/config';
import { Rng, deriveSeed, initLoraA, initLoraModules } from '../../src/lora/init';
import { resolveTargets } from '../../src/lora/targets';
import { llamaModules } from './fixtures';

describe('Rng', () => {
  it('is deterministic and resumable from its state', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const xs = Array.from({ length: 10 }, () => a.nextU32());
    expect(Array.from({ length: 10 }, () => b.nextU32())).toEqual(xs);
    expect(new Rng(43).nextU32()).not.toBe(xs[0]);
    const saved = a.state();
    const more = Array.from({ length: 5 }, () => a.next());
    const c = Rng.fromState(JSON.parse(JSON.stringify(saved)));
    expect(Array.from({ length: 5 }, () => c.next())).toEqual(more);
  });

  it('draws uniforms, integers and normals with the right moments', () => {
    const rng = new Rng(7);
    const n = 200_000;
    let s = 0;
    let s2 = 0;
    for (let i = 0; i < n; i++) {
      const x = rng.normal();
      s += x;
      s2 += x * x;
    }
    expect(Math.abs(s / n)).toBeLessThan(0.01);
    expect(Math.abs(s2 / n - 1)).toBeLessThan(0.02);
    const counts = new Array(6).fill(0);
    for (let i = 0; i < 60_000; i++) counts[rng.int(6)]++;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(400);
    for (let i = 0; i < 1000; i++) {
      const u = rng.next();
      expect(u >= 0 && u < 1).toBe(true);
    }
  });

  it('shuffles into a permutation; derived seeds differ', () => {
    const p = new Rng(1).shuffle([...Array(50).keys()]);
    expect([...p].sort((x, y) => x - y)).toEqual([...Array(50).keys()]);
    expect(p).not.toEqual([...Array(50).keys()]);
    expect(deriveSeed(1, 0)).not.toBe(deriveSeed(1, 1));
    expect(deriveSeed(1, 0)).toBe(deriveSeed(1, 0));
    expect(deriveSeed(2 ** 32 + 1)).not.toBe(deriveSeed(1));
    expect(() => Rng.fromState([1, 2, 3])).toThrow(/four unsigned 32-bit/);
  });
});

describe('LoRA init (PEFT)', () => {
  it('kaiming_uniform(a=sqrt(5)) is U(-1/sqrt(in), 1/sqrt(in))', () => {
    const inF = 256;
    const a = initLoraA(16, inF, true, new Rng(3));
    const bound = 1 / Math.sqrt(inF);
    let max = 0;
    let s2 = 0;
    for (const x of a) {
      max = Math.max(max, Math.abs(x));
      s2 += x * x;
    }
    expect(max).toBeLessThanOrEqual(bound);
    expect(max).toBeGreaterThan(bound * 0.99);
    // Var of U(-b, b) = b^2 / 3.
    expect(s2 / a.length).toBeCloseTo((bound * bound) / 3, 4);
  });

  it("'gaussian' is N(0, std 1/r)", () => {
    const r = 4;
    const a = initLoraA(r, 4096, 'gaussian', new Rng(5));
    let s = 0;
    let s2 = 0;
    for (const x of a) {
      s += x;
      s2 += x * x;
    }
    const n = a.length;
    expect(Math.abs(s / n)).toBeLessThan(0.005);
    expect(Math.sqrt(s2 / n)).toBeCloseTo(1 / r, 2);
  });

  it('B = 0, shapes from rank_pattern, per-module streams independent of the target set', () => {
    const mods = llamaModules(2);
    const cfg: LoraConfig = {
      r: 8,
      lora_alpha: 16,
      lora_dropout: 0,
      target_modules: ['q_proj', 'v_proj'],
      use_rslora: false,
      bias: 'none',
      fan_in_fan_out: false,
      init_lora_weights: true,
      rank_pattern: { v_proj: 4 },
    };
    const w = initLoraModules(cfg, resolveTargets(cfg, mods), 42);
    expect(w.map((m) => [m.path, m.r, m.a.length, m.b.length])).toEqual([
      ['model.layers.0.self_attn.q_proj', 8, 8 * 64, 64 * 8],
      ['model.layers.0.self_attn.v_proj', 4, 4 * 64, 32 * 4],
      ['model.layers.1.self_attn.q_proj', 8, 8 * 64, 64 * 8],
      ['model.layers.1.self_attn.v_proj', 4, 4 * 64, 32 * 4],
    ]);
    for (const m of w) expect(m.b.every((x) => x === 0)).toBe(true);
    expect(w[0]!.a).not.toEqual(w[2]!.a);
    const again = initLoraModules(
      { ...cfg, target_modules: ['q_proj'] },
      resolveTargets({ target_modules: ['q_proj'] }, mods),
      42,
    );
    expect(again[0]!.a).toEqual(w[0]!.a);
    expect(initLoraModules(cfg, resolveTargets(cfg, mods), 43)[0]!.a).not.toEqual(w[0]!.a);
  });
});
