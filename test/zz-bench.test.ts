import { it } from 'vitest';
import { recordMatmul } from '../src/kernels/matmul';
import { getGpu } from './helpers/gpu';
it('bench', async () => {
  const gpu = await getGpu();
  for (const n of [256, 512]) {
    const a = gpu.tensorF32('a', [n, n], 'scratch', new Float32Array(n*n).fill(0.5));
    const b = gpu.tensorF32('b', [n, n], 'scratch', new Float32Array(n*n).fill(0.5));
    const c = gpu.tensorF32('c', [n, n], 'scratch');
    for (const [transA, transB] of [[false, true], [false, false], [true, false]]) {
      let best = 0;
      for (let rep = 0; rep < 8; rep++) {
        const t0 = performance.now();
        const rec = gpu.recorder();
        const R = 4;
        for (let i = 0; i < R; i++) recordMatmul(gpu, rec, { a, b, c, M: n, N: n, K: n, transA, transB });
        rec.submit();
        await gpu.sync();
        const dt = (performance.now() - t0) / 1000;
        if (rep > 0) best = Math.max(best, R * 2 * n ** 3 / dt / 1e9);
      }
      console.log(n, transA, transB, 'GFLOP/s', best.toFixed(2));
    }
  }
});
