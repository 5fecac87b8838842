import { describe, expect, it } from 'vitest';
import { routerBackwardRef, routerRef } from '../../src/reference/moe';

describe('float64 mixture-of-experts router', () => {
  it('matches softmax -> top-k -> renormalise written out, and its backward matches finite differences', () => {
    const T = 3;
    const E = 5;
    const K = 2;
    const logits = [0.3, -1.2, 2.0, 0.9, 0.1, 1.5, 1.4, -0.3, 0.0, 2.2, -0.5, 0.25, 0.7, 0.72, -2];
    const w = routerRef(logits, T, E, K);
    // token 0: experts 2 and 3; weights e^2 / (e^2 + e^0.9) and the rest
    const a = Math.exp(2.0);
    const b = Math.exp(0.9);
    expect(w[2]).toBeCloseTo(a / (a + b), 14);
    expect(w[3]).toBeCloseTo(b / (a + b), 14);
    expect([w[0], w[1], w[4]]).toEqual([0, 0, 0]);
    // L = Σ g·w: central differences on every logit
    const g = logits.map((_, i) => Math.sin(i + 1));
    const loss = (l: number[]) => routerRef(l, T, E, K).reduce((s, x, i) => s + x * g[i]!, 0);
    const dl = routerBackwardRef(w, g, T, E);
    const h = 1e-6;
    logits.forEach((_, i) => {
      const up = [...logits];
      const dn = [...logits];
      up[i]! += h;
      dn[i]! -= h;
      expect(dl[i]).toBeCloseTo((loss(up) - loss(dn)) / (2 * h), 7);
    });
  });
});
