import { it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { matmulShader } from '../src/kernels/matmul';
it('gen', () => {
  for (const [bm, bn] of [[64, 64], [16, 16]]) {
    writeFileSync(`/tmp/cc/mm${bm}x${bn}.wgsl`, matmulShader({ bm, bn, transA: false, transB: true, bType: 'f32', seg2: null, bias: null, dropA: false, dropB: false, outDrop: false }));
  }
  writeFileSync(`/tmp/cc/full.wgsl`, matmulShader({ bm: 64, bn: 64, transA: false, transB: true, bType: 'bf16', seg2: { transA: false, transB: true }, bias: 'f16', dropA: true, dropB: false, outDrop: true }));
  writeFileSync(`/tmp/cc/fwd.wgsl`, matmulShader({ bm: 64, bn: 64, transA: false, transB: true, bType: 'f16', seg2: { transA: false, transB: true }, bias: 'f16', dropA: false, dropB: false, outDrop: false }));
});
