/**
 * The comparison and the seeded generator of src/reference/check.ts (shared with the self-test),
 * plus `expectClose`, which turns a failed comparison into a test failure naming the tensor and the
 * worst element.
 */
import { expect } from 'vitest';
import { type CloseOptions, type CloseReport, compareClose } from '../../src/reference/check';

export { mulberry32 as rng, randomValues as randArray } from '../../src/reference/check';

/** Asserts closeness; the failure message names the tensor and the worst element. */
export function expectClose(ref: ArrayLike<number>, got: ArrayLike<number>, o: CloseOptions): CloseReport {
  const r = compareClose(ref, got, o);
  expect(r.ok, r.message).toBe(true);
  return r;
}
