import { it } from 'vitest';
import { Workspace } from '../../src/gpu/workspace';
import { recordAttention, recordAttentionBackward } from '../../src/kernels/attention';
import { randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';
it('prof', async () => {
  const gpu = await getGpu();
  for (const c of [{ batch: 1, seq: 37, heads: 6, kvHeads: 6, headDim: 64 }, { batch: 2, seq: 21, heads: 4, kvHeads: 1, headDim: 128 }]) {
  const rows = c.batch * c.seq;
  const qS = [rows, c.heads, c.headDim], kS = [rows, c.kvHeads, c.headDim];
  const mk = (s: number[], seed: number) => gpu.tensorF32('x', s, 'scratch', randArray(s[0]! * s[1]! * s[2]!, seed));
  const q = mk(qS, 1), k = mk(kS, 2), v = mk(kS, 3), dO = mk(qS, 4), o = mk(qS, 5), dq = mk(qS, 6), dk = mk(kS, 7), dv = mk(kS, 8);
  const lse = gpu.tensorF32('lse', [rows, c.heads], 'scratch');
  const ws = new Workspace(gpu);
  const calls: any[][] = [];
  const fake: any = { dispatch: (...a: any[]) => { calls.push(a); return fake; } };
  recordAttention(gpu, fake, { q, k, v, o, lse, ...c });
  recordAttentionBackward(gpu, fake, { q, k, v, o, lse, dO, dq, dk, dv, ws, ...c });
  for (const a of calls) {
    const t0 = performance.now();
    const rec = gpu.recorder(); (rec.dispatch as any)(...a); rec.submit(); await gpu.sync();
    console.log(c.headDim, a[0].label, (performance.now() - t0).toFixed(0), 'ms');
  }}
}, 600000);
