/**
 * src/numerics/lowrank.ts (PiSSA's top-r SVD, OLoRA's QR) against float64 references on odd shapes:
 * the defining identities (orthonormal factors, W·v = s·u, Q·R = W with r = min(rows, cols)),
 * classical Gram-Schmidt for QR's sign-free product Q_r·R_r, LAPACK's reflector sign on R's
 * diagonal (what torch.linalg.qr returns), and the randomized form against the exact one.
 */
import { describe, expect, it } from 'vitest';
import { householderQrTop, topSingular } from '../../src/numerics/lowrank';
import { randArray } from '../helpers/close';

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** C [m, n] = A [m, k] · B [k, n]. */
function mul(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let l = 0; l < k; l++)
      for (let j = 0; j < n; j++) c[i * n + j] = c[i * n + j]! + a[i * k + l]! * b[l * n + j]!;
  return c;
}

/** Columns j of [rows, cols] X are orthonormal. */
function expectOrthonormalColumns(x: ArrayLike<number>, rows: number, cols: number): void {
  for (let p = 0; p < cols; p++) {
    for (let q = 0; q < cols; q++) {
      let d = 0;
      for (let i = 0; i < rows; i++) d += x[i * cols + p]! * x[i * cols + q]!;
      expect(Math.abs(d - (p === q ? 1 : 0))).toBeLessThan(1e-12);
    }
  }
}

/** Classical Gram-Schmidt QR's first r columns (the reference: positive R diagonal). */
function gramSchmidt(
  w: ArrayLike<number>,
  rows: number,
  cols: number,
  r: number,
): { q: Float64Array; rTop: Float64Array } {
  const q = new Float64Array(rows * r);
  const rTop = new Float64Array(r * cols);
  for (let j = 0; j < r; j++) {
    const v = Float64Array.from({ length: rows }, (_, i) => w[i * cols + j]!);
    for (let p = 0; p < j; p++) {
      let d = 0;
      for (let i = 0; i < rows; i++) d += q[i * r + p]! * w[i * cols + j]!;
      for (let i = 0; i < rows; i++) v[i] = v[i]! - d * q[i * r + p]!;
    }
    const n = Math.hypot(...v);
    for (let i = 0; i < rows; i++) q[i * r + j] = v[i]! / n;
  }
  for (let p = 0; p < r; p++) {
    for (let j = 0; j < cols; j++) {
      let d = 0;
      for (let i = 0; i < rows; i++) d += q[i * r + p]! * w[i * cols + j]!;
      rTop[p * cols + j] = p <= j || j >= r ? d : 0;
    }
  }
  return { q, rTop };
}

describe('OLoRA QR (Householder, first r reflections)', () => {
  for (const [rows, cols, r] of [
    [9, 7, 3],
    [5, 11, 4],
    [6, 6, 6],
  ] as const) {
    it(`[${rows}, ${cols}], r = ${r}`, () => {
      const w = randArray(rows * cols, rows * 31 + cols);
      const { q, rTop } = householderQrTop(w, rows, cols, r);
      expectOrthonormalColumns(q, rows, r);
      const ref = gramSchmidt(w, rows, cols, r);
      // Q_r·R_r is the same whatever the signs; the first r columns of W are reproduced exactly.
      expect(maxAbsDiff(mul(q, rTop, rows, r, cols), mul(ref.q, ref.rTop, rows, r, cols))).toBeLessThan(1e-12);
      const firstCols = mul(q, rTop, rows, r, cols);
      for (let i = 0; i < rows; i++)
        for (let j = 0; j < r; j++) expect(firstCols[i * cols + j]).toBeCloseTo(w[i * cols + j]!, 12);
      // LAPACK's convention (torch.linalg.qr): R[k, k] = -sign(W'[k, k])·norm, so R's diagonal sign is opposite the pivot's.
      expect(Math.sign(rTop[0]!)).toBe(-Math.sign(w[0]!));
      for (let k = 0; k < r; k++) for (let j = 0; j < k; j++) expect(rTop[k * cols + j]).toBe(0);
    });
  }
  it('reproduces W when r = min(rows, cols)', () => {
    const w = randArray(8 * 5, 3);
    const { q, rTop } = householderQrTop(w, 8, 5, 5);
    expect(maxAbsDiff(mul(q, rTop, 8, 5, 5), w)).toBeLessThan(1e-12);
  });
});

describe('PiSSA top-r SVD', () => {
  for (const [rows, cols] of [
    [9, 7],
    [5, 13],
  ] as const) {
    it(`exact, [${rows}, ${cols}]: the defining identities and the Frobenius norm`, () => {
      const w = randArray(rows * cols, rows + 7 * cols);
      const n = Math.min(rows, cols);
      const { u, s, vt } = topSingular(w, rows, cols, n, { exact: true });
      expectOrthonormalColumns(u, rows, n);
      const v = new Float64Array(cols * n);
      for (let j = 0; j < n; j++) for (let i = 0; i < cols; i++) v[i * n + j] = vt[j * cols + i]!;
      expectOrthonormalColumns(v, cols, n);
      for (let j = 1; j < n; j++) expect(s[j]).toBeLessThanOrEqual(s[j - 1]!);
      // W·V = U·S and U·S·Vᵀ = W.
      const wv = mul(w, v, rows, cols, n);
      const us = Float64Array.from(u, (x, e) => x * s[e % n]!);
      expect(maxAbsDiff(wv, us)).toBeLessThan(1e-12);
      expect(maxAbsDiff(mul(us, vt, rows, n, cols), w)).toBeLessThan(1e-12);
      // The top 3 are the first 3 of the full decomposition.
      const top = topSingular(w, rows, cols, 3, { exact: true });
      expect(maxAbsDiff(top.s, s.slice(0, 3))).toBeLessThan(1e-12);
    });
  }
  it('the randomized form (pissa_niter_N) converges to the exact top-r product', () => {
    const [rows, cols, r] = [12, 9, 2];
    const w = randArray(rows * cols, 5);
    const exact = topSingular(w, rows, cols, r, { exact: true });
    const fast = topSingular(w, rows, cols, r, { exact: false, niter: 60, seed: 1 });
    const prod = (t: typeof exact) =>
      mul(
        Float64Array.from(t.u, (x, e) => x * t.s[e % r]!),
        t.vt,
        rows,
        r,
        cols,
      );
    expect(maxAbsDiff(fast.s, exact.s)).toBeLessThan(1e-9);
    expect(maxAbsDiff(prod(fast), prod(exact))).toBeLessThan(1e-8);
    // Few iterations approximate: within 10% on the leading value.
    const rough = topSingular(w, rows, cols, r, { exact: false, niter: 1, seed: 1 });
    expect(Math.abs(rough.s[0]! - exact.s[0]!) / exact.s[0]!).toBeLessThan(0.1);
  });
});
