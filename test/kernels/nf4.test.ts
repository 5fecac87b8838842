/**
 * NF4 weights on the GPU: the dequantize kernel (shaders/nf4.wgsl's loads) against the float64
 * reference and bitsandbytes' float32 dequantization, on odd shapes (a last block shorter than 64,
 * an odd element count, more than 256 blocks so double quantization has two nested blocks).
 */
import { describe, expect, it } from 'vitest';
import { f32ToBf16Bits } from '../../src/gpu/half';
import { nf4GpuBytes, nf4StatsLayout, recordDequantizeNf4, uploadNf4, freeNf4 } from '../../src/kernels/nf4';
import { dequantizeNf4, quantizeNf4 } from '../../src/model/nf4';
import { dequantizeNf4Ref } from '../../src/reference/nf4';
import { expectClose, randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';

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
