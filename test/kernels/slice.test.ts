import { describe, it } from 'vitest';
import { recordCopyColumns } from '../../src/kernels/slice';
import { copyColumnsRef } from '../../src/reference/slice';
import { expectClose, randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';

describe('copy columns', () => {
  for (const accumulate of [false, true]) {
    it(`splits a [37, 3*70] block into [37, 70] at column 70 (accumulate=${accumulate})`, async () => {
      const gpu = await getGpu();
      const rows = 37, width = 70, srcStride = 210, dstStride = 75;
      const src = randArray(rows * srcStride, 1);
      const dst0 = randArray(rows * dstStride, 2);
      const s = gpu.tensorF32('src', [rows, srcStride], 'scratch', src);
      const d = gpu.tensorF32('dst', [rows, dstStride], 'scratch', dst0);
      const args = { rows, width, srcStride, srcCol0: 70, dstStride, dstCol0: 3, accumulate };
      const rec = gpu.recorder();
      recordCopyColumns(gpu, rec, { src: s, dst: d, ...args });
      rec.submit();
      const ref = Float64Array.from(dst0);
      copyColumnsRef(src, ref, args);
      expectClose(ref, await gpu.read(d), { name: 'dst', atol: 1e-6, rtol: 1e-6 });
      gpu.free(s);
      gpu.free(d);
    });
  }
});
