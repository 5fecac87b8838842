// The GPU greedy pick against the CPU's (src/generate/sampling.ts argmax, src/reference/finite.ts
// firstNonFinite) on odd sizes: ties (the first index wins), the maximum at either end, a limit
// below the row's length, all-negative rows, and NaN / ±Inf logits reported by their first index.
import { describe, expect, it } from 'vitest';
import { argmax } from '../../src/generate/sampling';
import { NO_NON_FINITE, recordArgmax } from '../../src/kernels/argmax';
import { firstNonFinite } from '../../src/reference/finite';
import { randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';

async function pick(values: Float32Array, n: number) {
  const gpu = await getGpu();
  const logits = gpu.tensor('argmax.logits', [values.length], 'f32', 'scratch', values);
  const out = gpu.tensor('argmax.pick', [4], 'u32', 'scratch');
  const rec = gpu.recorder('argmax-test');
  recordArgmax(gpu, rec, { logits, n, pick: out });
  rec.submit();
  const got = await gpu.readU32(out);
  gpu.free(logits);
  gpu.free(out);
  return { index: got[0]!, bad: got[1]!, badValue: new Float32Array(got.buffer.slice(8, 12))[0]! };
}

describe('recordArgmax', () => {
  it('picks the first maximum of odd-sized rows, within the limit n', async () => {
    const cases: { v: Float32Array; n: number }[] = [];
    for (const [len, seed] of [
      [1, 1],
      [7, 2],
      [255, 3],
      [257, 4],
      [1000, 5],
      [4099, 6],
    ] as const) {
      cases.push({ v: Float32Array.from(randArray(len, seed, 5)), n: len });
    }
    const ties = new Float32Array(777).fill(-2);
    ties[300] = 4;
    ties[45] = 4;
    ties[700] = 4;
    cases.push({ v: ties, n: 777 });
    const last = Float32Array.from(randArray(513, 9, 1));
    last[512] = 9;
    cases.push({ v: last, n: 513 });
    const negatives = Float32Array.from(randArray(333, 10, 1), (x) => -100 - Math.abs(x));
    cases.push({ v: negatives, n: 333 });
    const limited = Float32Array.from(randArray(600, 11, 1));
    limited[590] = 50; // past the limit: not a candidate
    cases.push({ v: limited, n: 517 });
    for (const c of cases) {
      const got = await pick(c.v, c.n);
      expect(got.index, `len ${c.v.length} n ${c.n}`).toBe(argmax(c.v, c.n));
      expect(got.bad).toBe(NO_NON_FINITE);
    }
  });

  it('reports the first NaN or infinite logit and its value', async () => {
    for (const [len, bad] of [
      [1, [0]],
      [301, [300]],
      [1001, [999, 17, 500]],
    ] as const) {
      for (const kind of [NaN, Infinity, -Infinity]) {
        const v = Float32Array.from(randArray(len, len, 3));
        for (const i of bad) v[i] = kind;
        const got = await pick(v, len);
        const first = firstNonFinite([...v]);
        expect(got.bad).toBe(first);
        if (Number.isNaN(kind)) expect(Number.isNaN(got.badValue)).toBe(true);
        else expect(got.badValue).toBe(kind);
        // The pick among the finite ones still matches the CPU's.
        const finite = Float32Array.from(v, (x) => (Number.isFinite(x) ? x : -Infinity));
        if (len > bad.length) expect(got.index).toBe(argmax(finite, len));
      }
    }
  });
});
