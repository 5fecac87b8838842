import { describe, expect, it } from 'vitest';
import { recordRouter, recordRouterBackward, recordRowDot, recordScaleRows } from '../../src/kernels/moe';
import { routerBackwardRef, routerRef } from '../../src/reference/moe';
import { checkKernel, filled, rand, values } from '../helpers/kernel';

// Odd shapes: 37 tokens, 7 experts, 3 per token, rows of 53.
const T = 37;
const E = 7;
const K = 3;
const H = 53;

describe('mixture-of-experts kernels', () => {
  it('router: softmax, top-3 of 7, renormalised; then its backward', async () => {
    const got = await checkKernel({
      tensors: { logits: rand([T, E], { scale: 3 }), w: filled([T, E]), g: rand([T, E]), dl: filled([T, E]) },
      record: (gpu, rec, t) => {
        recordRouter(gpu, rec, { logits: t.logits, w: t.w, T, E, K });
        recordRouterBackward(gpu, rec, { w: t.w, g: t.g, dl: t.dl, T, E });
      },
      reference: (v) => {
        const w = routerRef(v.logits, T, E, K);
        return { w, dl: routerBackwardRef(w, v.g, T, E) };
      },
      tol: { atol: 1e-6, rtol: 1e-5 },
    });
    // every token: K nonzero weights summing to 1
    for (let t = 0; t < T; t++) {
      const row = Array.from(got.w!.subarray(t * E, (t + 1) * E));
      expect(row.filter((x) => x > 0)).toHaveLength(K);
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    }
  });

  it('router: top-1 and top-all (every expert), equal logits choose the lower index', async () => {
    const flat = new Float32Array(3 * 4).fill(0.5); // three tokens with four equal logits
    await checkKernel({
      tensors: { l1: values([3, 4], flat), w1: filled([3, 4], 9), lAll: rand([5, 4]), wAll: filled([5, 4]) },
      record: (gpu, rec, t) => {
        recordRouter(gpu, rec, { logits: t.l1, w: t.w1, T: 3, E: 4, K: 1 });
        recordRouter(gpu, rec, { logits: t.lAll, w: t.wAll, T: 5, E: 4, K: 4 });
      },
      reference: (v) => ({ w1: routerRef(v.l1, 3, 4, 1), wAll: routerRef(v.lAll, 5, 4, 4) }),
      tol: { atol: 1e-7, rtol: 1e-6 },
    });
    expect(Array.from(routerRef(flat, 1, 4, 2))).toEqual([0.5, 0.5, 0, 0]);
  });

  it('scale rows by one expert column (set, then accumulate) and per-token dot products', async () => {
    await checkKernel({
      tensors: {
        w: rand([T, E]),
        x: rand([T, H]),
        y: rand([T, H]),
        out: filled([T, H], 5),
        g: filled([T, E], 7),
      },
      record: (gpu, rec, t) => {
        recordScaleRows(gpu, rec, { w: t.w, x: t.x, out: t.out, T, H, E, expert: 2, accumulate: false });
        recordScaleRows(gpu, rec, { w: t.w, x: t.y, out: t.out, T, H, E, expert: 6, accumulate: true });
        recordRowDot(gpu, rec, { a: t.x, b: t.y, g: t.g, T, H, E, expert: 4 });
      },
      reference: (v) => {
        const out = new Float64Array(T * H);
        const g = new Float64Array(T * E).fill(7);
        for (let t = 0; t < T; t++) {
          for (let j = 0; j < H; j++) {
            const i = t * H + j;
            out[i] = v.w[t * E + 2]! * v.x[i]! + v.w[t * E + 6]! * v.y[i]!;
          }
          let s = 0;
          for (let j = 0; j < H; j++) s += v.x[t * H + j]! * v.y[t * H + j]!;
          g[t * E + 4] = s;
        }
        return { out, g };
      },
      tol: { atol: 1e-6, rtol: 1e-5 },
    });
  });
});
