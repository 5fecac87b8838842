/**
 * The CPU NF4 quantizer (bitsandbytes' float32 rule, src/model/nf4.ts) against the float64
 * reference (src/reference/nf4.ts) on odd shapes, with all three checkpoint dtypes and GPT-2's
 * transposed Conv1D layout; the codebooks against bitsandbytes' own numbers.
 */
import { describe, expect, it } from 'vitest';
import { f32ToBf16Bits, f32ToF16Bits } from '../../src/gpu/half';
import {
  NF4_THRESHOLDS,
  type FloatBytes,
  blockAbsmax,
  dequantizeNf4,
  dynamicQuantize,
  nf4HostBytes,
  nf4Quantize,
  quantizeNf4,
} from '../../src/model/nf4';
import {
  NF4_BLOCK,
  NF4_CODE,
  dequantizeNf4Ref,
  dynamicMap,
  nearestCode,
  nf4Index,
  quantizeNf4Ref,
} from '../../src/reference/nf4';
import { expectClose, randArray } from '../helpers/close';

/** Bytes of `w` in a checkpoint dtype, and the values those bytes hold. */
function asBytes(w: Float64Array, dtype: FloatBytes['dtype']): { t: FloatBytes; values: Float64Array } {
  if (dtype === 'F32') {
    const f = Float32Array.from(w);
    return { t: { dtype, data: new Uint8Array(f.buffer) }, values: Float64Array.from(f) };
  }
  const bits = Uint16Array.from(w, (x) => (dtype === 'BF16' ? f32ToBf16Bits(x) : f32ToF16Bits(x)));
  const view = new Uint8Array(bits.buffer);
  const dec = new Float32Array(new Uint16Array(bits).length);
  if (dtype === 'BF16') new Uint32Array(dec.buffer).set(Uint32Array.from(bits, (b) => b << 16));
  else
    for (let i = 0; i < bits.length; i++) {
      const h = bits[i]!;
      const e = (h >> 10) & 31;
      const m = h & 1023;
      const v = e === 0 ? m * 2 ** -24 : e === 31 ? NaN : (1 + m / 1024) * 2 ** (e - 15);
      dec[i] = h & 0x8000 ? -v : v;
    }
  return { t: { dtype, data: view }, values: Float64Array.from(dec) };
}

/** Stored [cols, rows] -> [rows, cols]. */
function transpose(w: Float64Array, storedRows: number, storedCols: number): Float64Array {
  const out = new Float64Array(w.length);
  for (let i = 0; i < storedRows; i++)
    for (let j = 0; j < storedCols; j++) out[j * storedRows + i] = w[i * storedCols + j]!;
  return out;
}

/** Whether x / absmax lies within tol of a threshold (float32 and float64 may then disagree). */
function nearTie(x: number, absmax: number, tol = 1e-6): boolean {
  const s = x / absmax;
  return NF4_THRESHOLDS.some((t) => Math.abs(s - t) < tol);
}

describe('NF4 codebooks', () => {
  it("thresholds are bitsandbytes' dQuantizeNF4 decision-tree constants", () => {
    const cuda = [
      -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544, -0.23460740596055984,
      -0.13791173323988914, -0.045525018125772476, 0.03979014977812767, 0.1202552504837513, 0.2035212516784668,
      0.2920137718319893, 0.3893125355243683, 0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
    ];
    expect(Array.from(NF4_THRESHOLDS)).toEqual(cuda.map(Math.fround));
    // Every code value maps to itself; just above a threshold goes up, at it stays down.
    for (let k = 0; k < 16; k++) expect(nf4Quantize(NF4_CODE[k]!)).toBe(k);
    for (let k = 0; k < 15; k++) {
      expect(nf4Quantize(NF4_THRESHOLDS[k]!)).toBe(k);
      expect(nf4Quantize(NF4_THRESHOLDS[k]! + 1e-7)).toBe(k + 1);
    }
    expect(nf4Quantize(NaN)).toBe(0);
  });

  it('the dynamic map holds torch/bitsandbytes float32 values (spot checks; test:peft compares all 256)', () => {
    const d = dynamicMap();
    expect(d.length).toBe(256);
    for (let i = 1; i < 256; i++) expect(d[i]!).toBeGreaterThanOrEqual(d[i - 1]!);
    const spots: [number, number][] = [
      [0, -0.992968738079071],
      [1, -0.9789062738418579],
      [100, -0.0074687497690320015],
      [127, 0],
      [128, 5.500000384017767e-7],
      [129, 3.250000190746505e-6],
      [200, 0.23359374701976776],
      [254, 0.992968738079071],
      [255, 1],
    ];
    for (const [i, v] of spots) expect(d[i]).toBe(v);
  });

  it('the 8-bit binary search picks the nearest dynamic-map value', () => {
    const d = dynamicMap();
    const xs = [...randArray(2000, 7), -1, 1, 0, ...Array.from(d)];
    for (const x0 of xs) {
      const x = Math.fround(x0);
      const q = dynamicQuantize(d, x);
      const ref = nearestCode(d, x);
      if (q !== ref) expect(Math.abs(Math.abs(x - d[q]!) - Math.abs(x - d[ref]!))).toBeLessThan(1e-12);
    }
  });
});

describe('NF4 quantization (bitsandbytes float32 rule vs float64 reference)', () => {
  const shapes: [number, number][] = [
    [5, 37], // n = 185: blocks straddle rows, last block of 57, odd n (padded nibble)
    [3, 64],
    [7, 129],
    [1, 1],
    [33, 300], // 155 blocks of absmax
  ];
  for (const dtype of ['BF16', 'F16', 'F32'] as const) {
    for (const [rows, cols] of shapes) {
      for (const transposed of [false, true]) {
        for (const doubleQuant of [true, false]) {
          it(`${dtype} [${rows}, ${cols}]${transposed ? ' Conv1D' : ''}${doubleQuant ? ' double-quant' : ''}`, () => {
            const seed = rows * 1000 + cols + (transposed ? 7 : 0);
            const raw = Float64Array.from(randArray(rows * cols, seed, 0.05));
            raw[3 % raw.length] = 0.4; // an outlier, as real weights have
            const { t, values } = asBytes(raw, dtype);
            const logical = transposed ? transpose(values, cols, rows) : values;
            const q = quantizeNf4(t, rows, cols, { transposed, doubleQuant });
            const ref = quantizeNf4Ref(logical, doubleQuant);
            expect(q.packed.length).toBe(Math.ceil((rows * cols) / 2));
            expect(nf4HostBytes(q.n, doubleQuant)).toBe(
              q.packed.length + (doubleQuant ? q.qAbsmax!.length + 4 * q.absmax2!.length : 4 * q.absmax!.length),
            );
            // Same indices except where x / absmax is within float32 rounding of a threshold.
            for (let i = 0; i < q.n; i++) {
              const m = Math.max(...absOfBlock(logical, Math.floor(i / NF4_BLOCK)));
              if (nearTie(logical[i]!, m)) continue;
              expect(nf4Index(q.packed, i), `index of element ${i}`).toBe(nf4Index(ref.packed, i));
            }
            if (q.n % 2) expect(q.packed[q.packed.length - 1]! & 15).toBe(7);
            if (doubleQuant) {
              expectClose([ref.offset], [q.offset], { name: 'offset', rtol: 1e-6, atol: 0 });
              expectClose(ref.absmax2!, q.absmax2!, { name: 'absmax2', rtol: 1e-5, atol: 1e-7 * ref.offset });
              for (let b = 0; b < q.qAbsmax!.length; b++) {
                const d = Math.abs(q.qAbsmax![b]! - ref.qAbsmax![b]!);
                expect(d, `absmax index of block ${b}`).toBeLessThanOrEqual(1);
              }
            }
            // The float32 dequantization equals the float64 one of the same indices to float32 rounding.
            const deq = dequantizeNf4(q);
            expectClose(dequantizeNf4Ref(q), deq, { name: 'dequantized', rtol: 2e-7, atol: 1e-12 });
            // Quantization error: at most half the widest NF4 gap (0.1387) times the block's absmax,
            // plus the absmax's own 8-bit error with double quantization.
            for (let i = 0; i < q.n; i++) {
              const a = blockAbsmax(q, Math.floor(i / NF4_BLOCK));
              expect(Math.abs(deq[i]! - logical[i]!)).toBeLessThanOrEqual(0.14 * a + 0.02 * Math.abs(a) + 1e-9);
            }
          });
        }
      }
    }
  }

  it('an all-zero block dequantizes to zeros (index 0 as the CUDA kernel gives it)', () => {
    const w = new Float64Array(130);
    w[100] = 0.5;
    const { t } = asBytes(w, 'F32');
    const q = quantizeNf4(t, 2, 65, { transposed: false, doubleQuant: false });
    expect(q.absmax![0]).toBe(0);
    expect(nf4Index(q.packed, 0)).toBe(0);
    expect(Array.from(dequantizeNf4(q)).every((v, i) => (i === 100 ? v === 0.5 : v === 0))).toBe(true);
  });
});

function absOfBlock(w: Float64Array, b: number): number[] {
  return Array.from(w.subarray(b * NF4_BLOCK, Math.min(w.length, (b + 1) * NF4_BLOCK)), Math.abs);
}
