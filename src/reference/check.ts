/**
 * What every kernel check shares (the tests, `tabtune selftest` and the app's Diagnostics): one
 * seeded generator for test data and one elementwise comparison against a float64 reference.
 *
 *   ok  <=>  |got - ref| <= atol + rtol·|ref| for every element (non-finite values must match)
 *
 * On failure the message names the tensor, the worst index, both values and the largest absolute
 * and relative errors.
 */

/** mulberry32: a small seeded generator of uniform numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n deterministic values uniform in [-scale, scale). */
export function randomValues(n: number, seed: number, scale = 1): Float32Array {
  const r = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}

export interface CloseOptions {
  /** Names the tensor in the message. */
  name: string;
  /** Absolute tolerance (default 1e-4). */
  atol?: number;
  /** Relative tolerance (default 1e-3). */
  rtol?: number;
  /**
   * atol is relative to the largest |ref| (floored at 1e-3) instead of absolute: for sums whose
   * f32 rounding grows with the size of the result.
   */
  atolOfMax?: boolean;
}

export interface CloseReport {
  ok: boolean;
  maxAbs: number;
  maxRel: number;
  /** Index of the element furthest outside the tolerance (-1 when ok). */
  worst: number;
  message: string;
}

/** Compares `got` with the reference elementwise (see the file comment). */
export function compareClose(ref: ArrayLike<number>, got: ArrayLike<number>, o: CloseOptions): CloseReport {
  const rtol = o.rtol ?? 1e-3;
  let atol = o.atol ?? 1e-4;
  if (o.atolOfMax) {
    let big = 0;
    for (let i = 0; i < ref.length; i++) big = Math.max(big, Math.abs(ref[i]!));
    atol *= Math.max(big, 1e-3);
  }
  const fail = (worst: number, message: string): CloseReport => ({
    ok: false,
    maxAbs: Infinity,
    maxRel: Infinity,
    worst,
    message,
  });
  if (ref.length !== got.length) return fail(-1, `${o.name}: length ${got.length}, expected ${ref.length}`);
  let maxAbs = 0;
  let maxRel = 0;
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i]!;
    const g = got[i]!;
    if (!Number.isFinite(g) && g !== r) return fail(i, `${o.name}[${i}]: got ${g}, expected ${r}`);
    const d = Math.abs(g - r);
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
      `(max abs err ${maxAbs.toExponential(3)}, max rel err ${maxRel.toExponential(3)}, ` +
      `atol ${atol.toExponential(2)}, rtol ${rtol}, n=${ref.length})`;
  return { ok, maxAbs, maxRel, worst, message };
}
