/** Checks of the float64 attention reference itself: finite differences, masking, decode = forward. */
import { describe, expect, it } from 'vitest';
import { attentionBackwardRef, attentionDecodeRef, attentionRef } from '../../src/reference/attention';
import { expectClose, randArray } from '../helpers/close';
import { dot, numericGrad } from '../helpers/fd';

function data(c: { batch: number; seq: number; heads: number; kvHeads: number; headDim: number }, seed: number) {
  const rows = c.batch * c.seq;
  return {
    q: Float64Array.from(randArray(rows * c.heads * c.headDim, seed + 1, 1.5)),
    k: Float64Array.from(randArray(rows * c.kvHeads * c.headDim, seed + 2, 1.5)),
    v: Float64Array.from(randArray(rows * c.kvHeads * c.headDim, seed + 3)),
    dO: Float64Array.from(randArray(rows * c.heads * c.headDim, seed + 4)),
  };
}

describe('attention reference', () => {
  it('matches central finite differences in float64 (GQA, 2 sequences)', () => {
    const c = { batch: 2, seq: 5, heads: 4, kvHeads: 2, headDim: 3, scale: 0.7 };
    const { q, k, v, dO } = data(c, 100);
    const loss = () => dot(attentionRef({ q, k, v, ...c }).o, dO); // so dL/do = dO
    const g = attentionBackwardRef({ q, k, v, dO, ...c });
    expectClose(numericGrad(q, loss), g.dq, { name: 'dq', atol: 1e-8, rtol: 1e-6 });
    expectClose(numericGrad(k, loss), g.dk, { name: 'dk', atol: 1e-8, rtol: 1e-6 });
    expectClose(numericGrad(v, loss), g.dv, { name: 'dv', atol: 1e-8, rtol: 1e-6 });
  });

  it('matches central finite differences with packed examples (keyStart)', () => {
    const c = { batch: 2, seq: 6, heads: 2, kvHeads: 1, headDim: 3, keyStart: [0, 0, 2, 2, 2, 5, 0, 1, 1, 1, 1, 1] };
    const { q, k, v, dO } = data(c, 300);
    const loss = () => dot(attentionRef({ q, k, v, ...c }).o, dO);
    const g = attentionBackwardRef({ q, k, v, dO, ...c });
    expectClose(numericGrad(q, loss), g.dq, { name: 'dq', atol: 1e-8, rtol: 1e-6 });
    expectClose(numericGrad(k, loss), g.dk, { name: 'dk', atol: 1e-8, rtol: 1e-6 });
    expectClose(numericGrad(v, loss), g.dv, { name: 'dv', atol: 1e-8, rtol: 1e-6 });
  });

  it('sees only the first key at position 0 and ignores other sequences', () => {
    const c = { batch: 2, seq: 4, heads: 2, kvHeads: 1, headDim: 3 };
    const d = data(c, 7);
    const { o, lse } = attentionRef({ ...d, ...c });
    for (let b = 0; b < 2; b++) {
      for (let h = 0; h < 2; h++) {
        for (let dd = 0; dd < 3; dd++) {
          expect(o[(b * 4 * 2 + h) * 3 + dd]).toBeCloseTo(d.v[b * 4 * 3 + dd]!, 6);
        }
        let s = 0;
        for (let dd = 0; dd < 3; dd++) s += d.q[(b * 4 * 2 + h) * 3 + dd]! * d.k[b * 4 * 3 + dd]!;
        expect(lse[b * 4 * 2 + h]).toBeCloseTo(s / Math.sqrt(3), 6);
      }
    }
  });

  it('decode against a KV cache equals the training forward at the same positions', () => {
    const c = { batch: 1, seq: 37, heads: 6, kvHeads: 2, headDim: 12 };
    const d = data(c, 900);
    const { o } = attentionRef({ ...d, ...c });
    const qRow = c.heads * c.headDim;
    for (const [past, qLen] of [
      [36, 1],
      [0, 1],
      [30, 7],
      [0, 37],
    ] as const) {
      const got = attentionDecodeRef({
        ...c,
        q: d.q.slice(past * qRow, (past + qLen) * qRow),
        kCache: d.k,
        vCache: d.v,
        qLen,
        past,
      });
      expectClose(o.subarray(past * qRow, (past + qLen) * qRow), got, {
        name: `decode ${past}+${qLen}`,
        atol: 1e-12,
        rtol: 1e-12,
      });
    }
  });
});
