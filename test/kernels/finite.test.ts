// The non-finite scan against its reference (first NaN/±Inf index) on odd sizes, every weight dtype,
// bad values at the start, middle and end, big finite values that are not infinite, several tensors
// sharing one flags buffer, and a tensor scanned in binding windows.
import { describe, expect, it } from 'vitest';
import { type Gpu, bf16BitsToF32, f16BitsToF32, packHalf } from '../../src/gpu';
import { ALL_FINITE, recordFiniteScan } from '../../src/kernels/finite';
import { firstNonFinite } from '../../src/reference/finite';
import { randArray, rng } from '../helpers/close';
import { getGpu } from '../helpers/gpu';

type WType = 'f32' | 'f16' | 'bf16';

/** Raw element bits and their decoded values, with `bad` positions set to NaN / ±Inf. */
function tensorData(dtype: WType, n: number, bad: number[], seed: number): { raw: ArrayBufferView; values: number[] } {
  const v = randArray(n, seed, 1000);
  const r = rng(seed + 1);
  const kinds = [NaN, Infinity, -Infinity];
  if (dtype === 'f32') {
    const f = Float32Array.from(v);
    f[0] = 3.4e38; // large but finite
    for (const i of bad) f[i] = kinds[Math.floor(r() * 3)]!;
    return { raw: f, values: [...f] };
  }
  const bits = packHalf(v, dtype);
  const big = dtype === 'f16' ? 0x7bff : 0x7f7f; // largest finite
  bits[0] = big;
  const inf = dtype === 'f16' ? [0x7e00, 0x7c00, 0xfc00] : [0x7fc0, 0x7f80, 0xff80];
  for (const i of bad) bits[i] = inf[Math.floor(r() * 3)]!;
  const decode = dtype === 'f16' ? f16BitsToF32 : bf16BitsToF32;
  return { raw: bits, values: [...bits].map(decode) };
}

async function scan(gpu: Gpu, cases: { dtype: WType; n: number; bad: number[] }[], maxBindingBytes?: number) {
  const flags = gpu.tensor('finite.flags', [cases.length], 'u32', 'scratch');
  gpu.write(flags, new Uint32Array(cases.length).fill(ALL_FINITE));
  const refs: number[] = [];
  const rec = gpu.recorder('finite-test');
  const tensors = cases.map((c, slot) => {
    const { raw, values } = tensorData(c.dtype, c.n, c.bad, 11 + slot);
    refs.push(firstNonFinite(values));
    const x = gpu.tensor(`x${slot}`, [c.n], c.dtype, 'weights', raw);
    recordFiniteScan(gpu, rec, { x, n: c.n, flags, slot, maxBindingBytes });
    return x;
  });
  rec.submit();
  const got = [...(await gpu.readU32(flags))].map((f) => (f === ALL_FINITE ? -1 : f));
  for (const t of [...tensors, flags]) gpu.free(t);
  return { got, refs };
}

describe('recordFiniteScan', () => {
  it('finds the first NaN/Inf of f32, f16 and bf16 tensors of odd sizes, several per flags buffer', async () => {
    const gpu = await getGpu();
    const cases = [
      { dtype: 'f32' as const, n: 1, bad: [] },
      { dtype: 'f32' as const, n: 1001, bad: [] },
      { dtype: 'f32' as const, n: 1001, bad: [1000] },
      { dtype: 'f32' as const, n: 777, bad: [400, 3, 700] },
      { dtype: 'f16' as const, n: 999, bad: [] },
      { dtype: 'f16' as const, n: 999, bad: [998] }, // the last element: low half of the last word
      { dtype: 'f16' as const, n: 1000, bad: [501, 777] }, // odd index: high half
      { dtype: 'bf16' as const, n: 515, bad: [] },
      { dtype: 'bf16' as const, n: 515, bad: [1] },
      { dtype: 'bf16' as const, n: 4097, bad: [4000, 2048] },
    ];
    const { got, refs } = await scan(gpu, cases);
    expect(refs).toEqual([-1, -1, 1000, 3, -1, 998, 501, -1, 1, 2048]);
    expect(got).toEqual(refs);
  });

  it('scans a tensor bigger than the binding limit in windows', async () => {
    const gpu = await getGpu();
    const cases = [
      { dtype: 'f32' as const, n: 10_000, bad: [9_999] },
      { dtype: 'f16' as const, n: 10_001, bad: [7_777, 9_000] },
      { dtype: 'bf16' as const, n: 10_001, bad: [] },
    ];
    const { got, refs } = await scan(gpu, cases, 1024);
    expect(got).toEqual(refs);
    expect(refs).toEqual([9_999, 7_777, -1]);
  });
});
