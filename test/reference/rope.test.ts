/** Checks of the float64 RoPE reference: inv_freq like transformers, backward by finite differences. */
import { describe, expect, it } from 'vitest';
import { ropeInvFreq } from '../../src/numerics/rope';
import { ropeRef } from '../../src/reference/rope';
import { expectClose, randArray } from '../helpers/close';
import { dot, numericGrad } from '../helpers/fd';

describe('rope reference', () => {
  it('inv_freq in float32 like transformers (default, linear, llama3)', () => {
    const inv = ropeInvFreq(128, 500000);
    expect(inv.length).toBe(64);
    expect(inv[0]).toBe(1);
    for (let i = 0; i < 64; i++) expect(Math.abs(inv[i]! - 500000 ** (-(2 * i) / 128)) / inv[i]!).toBeLessThan(2e-7);
    const lin = ropeInvFreq(128, 500000, { type: 'linear', factor: 4 });
    for (let i = 0; i < 64; i++) expect(lin[i]).toBe(Math.fround(inv[i]! / 4));
    const l3 = ropeInvFreq(128, 500000, {
      type: 'llama3',
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
    let high = 0,
      low = 0,
      mid = 0;
    for (let i = 0; i < 64; i++) {
      const wl = (2 * Math.PI) / inv[i]!;
      if (wl < 8192 / 4) {
        expect(l3[i]).toBe(inv[i]);
        high++;
      } else if (wl > 8192) {
        expect(l3[i]).toBe(Math.fround(inv[i]! / 8));
        low++;
      } else {
        expect(l3[i]!).toBeLessThan(inv[i]!);
        expect(l3[i]!).toBeGreaterThan(inv[i]! / 8);
        mid++;
      }
    }
    expect(high * low * mid).toBeGreaterThan(0);
  });

  it('longrope: inv_freq = 1 / (short factor · theta^(2i/rot)) in float32, as transformers', () => {
    const short = [1, 1.25, 2.5, 4];
    const lr = ropeInvFreq(8, 10000, {
      type: 'longrope',
      shortFactor: short,
      longFactor: [9, 9, 9, 9],
      originalMaxPositionEmbeddings: 64,
    });
    for (let i = 0; i < 4; i++) {
      const base = Math.fround(10000 ** Math.fround((2 * i) / 8));
      expect(lr[i]).toBe(Math.fround(1 / Math.fround(short[i]! * base)));
    }
  });

  it('interleaved pairs (GPT-J): dims (2i, 2i + 1) rotate by the angle of pair i', () => {
    const x = Float64Array.from([1, 2, 3, 4, 5, 6]);
    const base = { positions: [7], rows: 1, heads: 1, headDim: 6, theta: 10000, rotaryDim: 4, interleaved: true };
    const out = ropeRef({ ...base, x });
    const inv = ropeInvFreq(4, 10000);
    for (let i = 0; i < 2; i++) {
      const a = Math.fround(7 * inv[i]!);
      expect(out[2 * i]).toBeCloseTo(x[2 * i]! * Math.cos(a) - x[2 * i + 1]! * Math.sin(a), 12);
      expect(out[2 * i + 1]).toBeCloseTo(x[2 * i + 1]! * Math.cos(a) + x[2 * i]! * Math.sin(a), 12);
    }
    expect([out[4], out[5]]).toEqual([5, 6]);
  });

  for (const [rotaryDim, interleaved] of [
    [10, false],
    [6, false],
    [6, true],
  ] as const) {
    it(`backward (inverse rotation) = transpose, by finite differences (rotaryDim ${rotaryDim} of 10${interleaved ? ', interleaved' : ''})`, () => {
      const rows = 4,
        heads = 2,
        headDim = 10;
      const x = Float64Array.from(randArray(rows * heads * headDim, 21));
      const g = Float64Array.from(randArray(rows * heads * headDim, 22));
      const positions = [0, 3, 17, 250];
      const base = { positions, rows, heads, headDim, theta: 10000, rotaryDim, interleaved };
      const loss = () => dot(ropeRef({ ...base, x }), g);
      const dx = ropeRef({ ...base, x: g, inverse: true });
      expectClose(numericGrad(x, loss), dx, { name: 'dx', atol: 1e-8, rtol: 1e-7 });
      // and the inverse undoes the forward
      expectClose(x, ropeRef({ ...base, x: ropeRef({ ...base, x }), inverse: true }), {
        name: 'roundtrip',
        atol: 1e-12,
        rtol: 0,
      });
    });
  }
});
