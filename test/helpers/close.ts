/**
 * The one comparison helper: checks `got` against a float64 reference elementwise with
 * |got - ref| <= atol + rtol * |ref|, and on failure names the tensor, the worst index, both values,
 * the max abs and max rel error.
 */
import { expect } from 'vitest';

export interface CloseOptions {
  name: string;
  atol?: number;
  rtol?: number;
}

export interface CloseReport {
  maxAbs: number;
  maxRel: number;
  worst: number;
}

export function compareClose(
  ref: ArrayLike<number>,
  got: ArrayLike<number>,
  o: CloseOptions,
): CloseReport & { ok: boolean; message: string } {
  const atol = o.atol ?? 1e-4;
  const rtol = o.rtol ?? 1e-3;
  if (ref.length !== got.length) {
    return {
      ok: false,
      maxAbs: Infinity,
      maxRel: Infinity,
      worst: -1,
      message: `${o.name}: length ${got.length}, expected ${ref.length}`,
    };
  }
  let maxAbs = 0;
  let maxRel = 0;
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i]!;
    const g = got[i]!;
    const d = Math.abs(g - r);
    if (!Number.isFinite(g) && g !== r) {
      return {
        ok: false,
        maxAbs: Infinity,
        maxRel: Infinity,
        worst: i,
        message: `${o.name}[${i}]: got ${g}, expected ${r}`,
      };
    }
    if (d > maxAbs) maxAbs = d;
    const rel = d / Math.max(Math.abs(r), 1e-30);
    if (rel > maxRel && Math.abs(r) > atol) maxRel = rel;
    const excess = d - (atol + rtol * Math.abs(r));
    if (excess > worstExcess) {
      worstExcess = excess;
      worst = i;
    }
  }
  const ok = worst < 0;
  const message = ok
    ? `${o.name}: ok (max abs ${maxAbs.toExponential(2)}, max rel ${maxRel.toExponential(2)})`
    : `${o.name}[${worst}]: got ${got[worst]}, expected ${ref[worst]} ` +
      `(max abs err ${maxAbs.toExponential(3)}, max rel err ${maxRel.toExponential(3)}, atol ${atol}, rtol ${rtol}, n=${ref.length})`;
  return { ok, maxAbs, maxRel, worst, message };
}

/** Asserts closeness; the failure message names the tensor and the worst element. */
export function expectClose(ref: ArrayLike<number>, got: ArrayLike<number>, o: CloseOptions): CloseReport {
  const r = compareClose(ref, got, o);
  expect(r.ok, r.message).toBe(true);
  return r;
}

/** Deterministic pseudo-random numbers for test data (mulberry32). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randArray(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}
