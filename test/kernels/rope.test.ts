import { describe, expect, it } from 'vitest';
import { recordRope } from '../../src/kernels/rope';
import { ropeInvFreq, ropeRef } from '../../src/reference/rope';
import { expectClose, randArray, rng } from '../helpers/close';
import { getGpu } from '../helpers/gpu';
import { numericGrad, dot } from '../helpers/fd';

/** Positions of a padded batch: several sequences restarting at 0, then a KV-cache style offset. */
function positionsFor(rows: number, seed: number, maxPos: number): Uint32Array {
  const r = rng(seed);
  const out = new Uint32Array(rows);
  let p = 0;
  for (let t = 0; t < rows; t++) {
    if (t % 11 === 0) p = t < rows / 2 ? 0 : Math.floor(r() * maxPos);
    out[t] = p++;
  }
  return out;
}

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

  for (const rotaryDim of [10, 6]) {
    it(`backward (inverse rotation) = transpose, by finite differences (rotaryDim ${rotaryDim} of 10)`, () => {
      const rows = 4,
        heads = 2,
        headDim = 10;
      const x = Float64Array.from(randArray(rows * heads * headDim, 21));
      const g = Float64Array.from(randArray(rows * heads * headDim, 22));
      const positions = [0, 3, 17, 250];
      const base = { positions, rows, heads, headDim, theta: 10000, rotaryDim };
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

interface Case {
  rows: number;
  heads: number;
  headDim: number;
  rotaryDim?: number;
  theta: number;
  maxPos: number;
  outOfPlace: boolean;
  inverse?: boolean;
  attentionScaling?: number;
}

const CASES: Case[] = [
  { rows: 37, heads: 3, headDim: 10, theta: 10000, maxPos: 4000, outOfPlace: false },
  { rows: 37, heads: 3, headDim: 10, theta: 10000, maxPos: 4000, outOfPlace: false, inverse: true },
  { rows: 37, heads: 3, headDim: 6, theta: 1000000, maxPos: 3000, outOfPlace: true },
  { rows: 37, heads: 3, headDim: 10, rotaryDim: 6, theta: 10000, maxPos: 2000, outOfPlace: true, inverse: true },
  {
    rows: 29,
    heads: 2,
    headDim: 14,
    rotaryDim: 4,
    theta: 500000,
    maxPos: 2000,
    outOfPlace: false,
    attentionScaling: 1.25,
  },
  { rows: 16, heads: 1, headDim: 128, theta: 10000, maxPos: 300000, outOfPlace: false }, // angles to 3e5: range reduction
];

describe('rope kernel', () => {
  for (const c of CASES) {
    const name =
      `rows=${c.rows} heads=${c.heads} headDim=${c.headDim} rot=${c.rotaryDim ?? c.headDim} theta=${c.theta} ` +
      `${c.outOfPlace ? 'out-of-place' : 'in place'}${c.inverse ? ' inverse' : ''}${c.attentionScaling ? ' scaled' : ''}`;
    it(name, async () => {
      const gpu = await getGpu();
      const n = c.rows * c.heads * c.headDim;
      const xv = randArray(n, 31, 2);
      const pos = positionsFor(c.rows, 32, c.maxPos);
      const x = gpu.tensorF32('x', [c.rows, c.heads, c.headDim], 'scratch', xv);
      const positions = gpu.tensor('pos', [c.rows], 'u32', 'io', pos);
      const out = c.outOfPlace
        ? gpu.tensorF32('out', [c.rows, c.heads, c.headDim], 'scratch', new Float32Array(n).fill(7))
        : undefined;
      const rec = gpu.recorder();
      const args = {
        x,
        out,
        positions,
        rows: c.rows,
        heads: c.heads,
        headDim: c.headDim,
        theta: c.theta,
        rotaryDim: c.rotaryDim,
        inverse: c.inverse,
        attentionScaling: c.attentionScaling,
      };
      recordRope(gpu, rec, args);
      rec.submit();
      const ref = ropeRef({ ...args, x: xv, positions: pos });
      // The f32 angle is the same number transformers forms; the kernel's own cos/sin of it
      // (quadrant reduction + polynomials) is good to ~2e-7 on lavapipe and SwiftShader (measured).
      expectClose(ref, await gpu.read(out ?? x), { name: 'rope(x)', atol: 1e-6, rtol: 1e-6 });
      if (out) expectClose(xv, await gpu.read(x), { name: 'x untouched', atol: 0, rtol: 0 });
      for (const t of [x, positions, out]) gpu.free(t);
    });
  }

  it('forward then inverse restores x (the backward of an orthogonal map)', async () => {
    const gpu = await getGpu();
    const rows = 37,
      heads = 3,
      headDim = 10;
    const xv = randArray(rows * heads * headDim, 41);
    const x = gpu.tensorF32('x', [rows, heads, headDim], 'scratch', xv);
    const positions = gpu.tensor('pos', [rows], 'u32', 'io', positionsFor(rows, 42, 4000));
    const rec = gpu.recorder();
    const args = { x, positions, rows, heads, headDim, theta: 10000 };
    recordRope(gpu, rec, args);
    recordRope(gpu, rec, { ...args, inverse: true });
    rec.submit();
    expectClose(xv, await gpu.read(x), { name: 'x', atol: 1e-6, rtol: 1e-6 });
    gpu.free(x);
    gpu.free(positions);
  });
});
