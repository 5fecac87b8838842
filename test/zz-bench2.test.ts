import { it } from 'vitest';
import code from '../shaders/slice.wgsl?raw';
import { getGpu } from './helpers/gpu';
it('compile', async () => {
  const gpu = await getGpu();
    const t0 = performance.now();
    const pipe = gpu.pipeline('slice', code);
    const a = gpu.tensorF32('a', [4], 'scratch');
    const rec = gpu.recorder();
    rec.dispatch(pipe, [a, gpu.tensorF32('c', [4], 'scratch')], [1, 1, 1], new Uint32Array(8));
    rec.submit();
    await gpu.sync();
    console.log('slice first dispatch ms', (performance.now() - t0).toFixed(0));
});
