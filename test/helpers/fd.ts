/** Finite differences for gradient checks of the float64 references. */
import { expect } from 'vitest';
import type { FrozenLinearRef, LoraParamsRef } from '../../src/reference/linear';
import { randArray } from './close';

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

/** Each analytic gradient element within 1e-7 (relative above 1) of its central difference. */
export function expectGradClose(name: string, analytic: Float64Array, numeric: Float64Array): void {
  for (let i = 0; i < analytic.length; i++) {
    const tol = 1e-7 * Math.max(1, Math.abs(numeric[i]!));
    expect(Math.abs(analytic[i]! - numeric[i]!), `${name}[${i}]: ${analytic[i]} vs ${numeric[i]}`).toBeLessThan(tol);
  }
}

/** A seeded random frozen linear (with bias) and LoRA factors, the operands of the linear and DoRA checks. */
export function randomLoraLinear(o: {
  inF: number;
  outF: number;
  r: number;
  transposed: boolean;
  bias: boolean;
  scale: number;
  dropout: number;
  seed: number;
}): { lin: FrozenLinearRef; lora: LoraParamsRef; a: Float64Array; b: Float64Array } {
  const lin: FrozenLinearRef = {
    w: Float64Array.from(randArray(o.inF * o.outF, o.seed)),
    bias: o.bias ? Float64Array.from(randArray(o.outF, o.seed + 1)) : null,
    inF: o.inF,
    outF: o.outF,
    transposed: o.transposed,
  };
  const a = Float64Array.from(randArray(o.r * o.inF, o.seed + 2));
  const b = Float64Array.from(randArray(o.outF * o.r, o.seed + 3));
  return { lin, lora: { a, b, r: o.r, scale: o.scale, dropout: o.dropout }, a, b };
}
