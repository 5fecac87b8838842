/** Finite differences for gradient checks of the float64 references. */

/** Central differences of f() with respect to every element of p (perturbed in place, then restored). */
export function numericGrad(p: Float64Array, f: () => number, h = 1e-6): Float64Array {
  const out = new Float64Array(p.length);
  for (let i = 0; i < p.length; i++) {
    const v = p[i]!;
    p[i] = v + h;
    const up = f();
    p[i] = v - h;
    const down = f();
    p[i] = v;
    out[i] = (up - down) / (2 * h);
  }
  return out;
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}
