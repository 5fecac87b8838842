import { describe, it } from 'vitest';
import { recordRope } from '../../src/kernels/rope';
import { ropeRef } from '../../src/reference/rope';
import { rng } from '../helpers/close';
import { checkKernel, filled, rand, values } from '../helpers/kernel';

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
  interleaved?: boolean;
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
  // GPT-J's interleaved pairs with a partial rotary dim
  { rows: 23, heads: 3, headDim: 10, rotaryDim: 6, theta: 10000, maxPos: 2000, outOfPlace: false, interleaved: true },
  {
    rows: 23,
    heads: 3,
    headDim: 12,
    rotaryDim: 8,
    theta: 10000,
    maxPos: 2000,
    outOfPlace: true,
    inverse: true,
    interleaved: true,
  },
];

describe('rope kernel', () => {
  for (const c of CASES) {
    const name =
      `rows=${c.rows} heads=${c.heads} headDim=${c.headDim} rot=${c.rotaryDim ?? c.headDim} theta=${c.theta} ` +
      `${c.outOfPlace ? 'out-of-place' : 'in place'}${c.inverse ? ' inverse' : ''}${c.attentionScaling ? ' scaled' : ''}` +
      `${c.interleaved ? ' interleaved' : ''}`;
    it(name, async () => {
      const shape = [c.rows, c.heads, c.headDim];
      const pos = positionsFor(c.rows, 32, c.maxPos);
      const args = {
        rows: c.rows,
        heads: c.heads,
        headDim: c.headDim,
        theta: c.theta,
        rotaryDim: c.rotaryDim,
        inverse: c.inverse,
        attentionScaling: c.attentionScaling,
        interleaved: c.interleaved,
      };
      await checkKernel({
        tensors: {
          x: rand(shape, { scale: 2 }),
          positions: values([c.rows], pos, 'u32'),
          out: c.outOfPlace ? filled(shape, 7) : undefined,
        },
        record: (gpu, rec, t) => recordRope(gpu, rec, { ...args, ...t }),
        // The f32 angle is the same number transformers forms; the kernel's own cos/sin of it
        // (quadrant reduction + polynomials) is good to ~2e-7 on lavapipe and SwiftShader (measured).
        reference: (v) => {
          const y = ropeRef({ ...args, x: v.x, positions: pos });
          return c.outOfPlace ? { out: y, x: v.x } : { x: y };
        },
        tol: { atol: 1e-6, rtol: 1e-6 },
        tols: { x: c.outOfPlace ? { atol: 0, rtol: 0 } : { atol: 1e-6, rtol: 1e-6 } },
      });
    });
  }

  it('forward then inverse restores x (the backward of an orthogonal map)', async () => {
    const rows = 37,
      heads = 3,
      headDim = 10;
    await checkKernel({
      tensors: { x: rand([rows, heads, headDim]), positions: values([rows], positionsFor(rows, 42, 4000), 'u32') },
      record: (gpu, rec, t) => {
        const args = { ...t, rows, heads, headDim, theta: 10000 };
        recordRope(gpu, rec, args);
        recordRope(gpu, rec, { ...args, inverse: true });
      },
      reference: (v) => ({ x: v.x }),
      tol: { atol: 1e-6, rtol: 1e-6 },
    });
  });
});
