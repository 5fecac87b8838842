/**
 * NF4 weights on the GPU: the dequantize kernel (shaders/nf4.wgsl's loads) against the float64
 * reference and bitsandbytes' float32 dequantization, on odd shapes (a last block shorter than 64,
 * an odd element count, more than 256 blocks so double quantization has two nested blocks); the
 * matmul reading an NF4 B directly (the split-K path and its limits; the linear layer's forward,
 * backward and small-M paths are in test/kernels/linear.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { f32ToBf16Bits } from '../../src/gpu/half';
import { recordMatmul } from '../../src/kernels/matmul';
import { nf4GpuBytes, nf4StatsLayout, recordDequantizeNf4, uploadNf4, freeNf4 } from '../../src/kernels/nf4';
import { dequantizeNf4, quantizeNf4 } from '../../src/model/nf4';
import { matmulRef } from '../../src/reference/matmul';
import { dequantizeNf4Ref, quantizeNf4Ref } from '../../src/reference/nf4';
import { expectClose, randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';
import { checkKernel, rand } from '../helpers/kernel';

const SHAPES: [number, number][] = [
  [7, 37], // n = 259: last block of 3, odd n
  [130, 129], // 263 blocks: two absmax2 blocks, the second of 7
  [1, 64],
];

describe('NF4 dequantize kernel', () => {
  for (const [rows, cols] of SHAPES) {
    for (const doubleQuant of [true, false]) {
      it(`[${rows}, ${cols}]${doubleQuant ? ' double-quant' : ''}`, async () => {
        const gpu = await getGpu();
        const v = randArray(rows * cols, rows + cols, 0.03);
        v[5] = -0.2;
        const bits = Uint16Array.from(v, f32ToBf16Bits);
        const host = quantizeNf4({ dtype: 'BF16', data: new Uint8Array(bits.buffer) }, rows, cols, {
          transposed: false,
          doubleQuant,
        });
        const w = uploadNf4(gpu, 'w', host, rows, cols);
        expect(w.q.buffer.size + w.stats.buffer.size).toBe(nf4GpuBytes(rows * cols, doubleQuant));
        expect(w.layout).toEqual(nf4StatsLayout(rows * cols, doubleQuant));
        const out = gpu.tensorF32('out', [rows, cols], 'scratch', new Float32Array(rows * cols).fill(7));
        const rec = gpu.recorder();
        recordDequantizeNf4(gpu, rec, w, out);
        rec.submit();
        const got = await gpu.read(out);
        expectClose(dequantizeNf4Ref(host), got, { name: 'vs float64', atol: 1e-9, rtol: 3e-7 });
        expectClose(dequantizeNf4(host), got, { name: 'vs bitsandbytes float32', atol: 1e-9, rtol: 3e-7 });
        freeNf4(gpu, w);
        gpu.free(out);
      });
    }
  }
});

describe('matmul with an NF4 B (dequantized in the loader)', () => {
  for (const [M, N, K, transB, splitK] of [
    [5, 37, 300, false, 4], // split-K over K = 300 rows of B [300, 37]: n = 11100, last block of 28
    [33, 7, 259, true, 1], // Bᵀ [7, 259]: n = 1813, last block of 21
  ] as const) {
    for (const doubleQuant of [true, false]) {
      it(`M=${M} N=${N} K=${K}${transB ? ' Bᵀ' : ''}${splitK > 1 ? ` split-K ${splitK}` : ''}${doubleQuant ? ' double-quant' : ''}`, async () => {
        const gpu = await getGpu();
        const host = quantizeNf4Ref(randArray(N * K, M + N + K, 0.1), doubleQuant);
        const w = transB ? uploadNf4(gpu, 'b', host, N, K) : uploadNf4(gpu, 'b', host, K, N);
        try {
          await checkKernel({
            tensors: { a: rand([M, K]), c: rand([M, N]) },
            record: (g, rec, t, ws) =>
              recordMatmul(g, rec, { a: t.a, b: w, c: t.c, M, N, K, transB, alpha: 0.5, accumulate: true, splitK, ws }),
            reference: (v) => {
              const c = Float64Array.from(v.c);
              matmulRef({ a: v.a, b: dequantizeNf4Ref(host), c, M, N, K, transB, alpha: 0.5, accumulate: true });
              return { c };
            },
            tol: { atol: 2e-5, rtol: 1e-4, atolOfMax: true },
          });
        } finally {
          freeNf4(gpu, w);
        }
      });
    }
  }

  it('an NF4 B is bound whole: over the binding limit, or too small for the shapes, it is refused', async () => {
    const gpu = await getGpu();
    const w = uploadNf4(gpu, 'w', quantizeNf4Ref(randArray(64 * 40, 3), false), 64, 40);
    const a = gpu.tensor('a', [2, 40], 'f32', 'scratch');
    const c = gpu.tensor('c', [2, 64], 'f32', 'scratch');
    const mm = (N: number, maxBindingBytes?: number) => () =>
      recordMatmul(gpu, gpu.recorder(), { a, b: w, c, M: 2, N, K: 40, transB: true, maxBindingBytes });
    expect(mm(64, 1024)).toThrow(/NF4 weight "w.nf4" \(1280 bytes\) must fit one binding \(1024 bytes\)/);
    expect(mm(65)).toThrow(/NF4 weight "w" has 2560 elements \(\[64, 40\]\); the shapes need 2600/);
    freeNf4(gpu, w);
    gpu.free(a);
    gpu.free(c);
  });
});
