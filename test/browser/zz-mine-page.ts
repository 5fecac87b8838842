import { createBrowserGpu } from '../../src/gpu/browser';
import { Workspace, packHalf, roundThroughHalf } from '../../src/gpu';
import { recordRmsNorm, recordRmsNormBackward, recordLayerNorm, recordLayerNormBackward } from '../../src/kernels/norm';
import { recordRope } from '../../src/kernels/rope';
import { recordGelu, recordGeluBackward, recordSwiGlu, recordSwiGluBackward } from '../../src/kernels/activation';
import { recordEmbedding } from '../../src/kernels/embedding';
import { recordSumSquares, recordCopyRows } from '../../src/kernels/elementwise';
import { recordAdamW } from '../../src/kernels/optim';
import { rmsNormRef, rmsNormBackwardRef, layerNormRef, layerNormBackwardRef } from '../../src/reference/norm';
import { ropeRef } from '../../src/reference/rope';
import { activationRef, activationBackwardRef, swiGluRef, swiGluBackwardRef, splitGateUp } from '../../src/reference/activation';
import { embeddingRef } from '../../src/reference/embedding';
import { adamWRef, sumSquaresRef } from '../../src/reference/optim';
const rnd = (n: number, seed: number, s = 1) => { let x = seed >>> 0; const o = new Float32Array(n); for (let i = 0; i < n; i++) { x = (Math.imul(x, 1664525) + 1013904223) >>> 0; o[i] = ((x / 4294967296) * 2 - 1) * s; } return o; };
const res: { name: string; maxAbs: number; ok: boolean }[] = [];
function cmp(name: string, ref: ArrayLike<number>, got: ArrayLike<number>, atol: number, rtol: number) {
  let maxAbs = 0, ok = ref.length === got.length;
  for (let i = 0; i < ref.length; i++) { const d = Math.abs(ref[i]! - got[i]!); if (!(d <= atol + rtol * Math.abs(ref[i]!))) ok = false; if (d > maxAbs || Number.isNaN(d)) maxAbs = Number.isNaN(d) ? Infinity : d; }
  res.push({ name, maxAbs, ok });
}
(window as any).__mine = { done: false };
(async () => {
  const gpu = await createBrowserGpu();
  try {
    (window as any).__mine.f16 = gpu.features.f16; (window as any).__mine.arch = gpu.info.architecture;
    const rows = 37, dim = 69, n = rows * dim;
    for (const dt of ['f16', 'bf16'] as const) {
      const wv = rnd(dim, 1, 1.5), bv = rnd(dim, 2); const wR = roundThroughHalf(wv, dt), bR = roundThroughHalf(bv, dt);
      const w = gpu.tensor('w', [dim], dt, 'weights', packHalf(wv, dt)), b = gpu.tensor('b', [dim], dt, 'weights', packHalf(bv, dt));
      const xv = rnd(n, 3, 2), dyv = rnd(n, 4);
      const x = gpu.tensorF32('x', [n], 'scratch', xv), dy = gpu.tensorF32('dy', [n], 'scratch', dyv);
      const y = gpu.tensorF32('y', [n], 'scratch'), dx = gpu.tensorF32('dx', [n], 'scratch'), y2 = gpu.tensorF32('y2', [n], 'scratch'), dx2 = gpu.tensorF32('dx2', [n], 'scratch');
      const rstd = gpu.tensorF32('r', [rows], 'scratch'), mean = gpu.tensorF32('m', [rows], 'scratch'), rstd2 = gpu.tensorF32('r2', [rows], 'scratch');
      const rec = gpu.recorder();
      recordRmsNorm(gpu, rec, { x, w, y, rstd, rows, dim, eps: 1e-6 });
      recordRmsNormBackward(gpu, rec, { dy, x, w, rstd, dx, rows, dim });
      recordLayerNorm(gpu, rec, { x, w, b, y: y2, mean, rstd: rstd2, rows, dim, eps: 1e-5 });
      recordLayerNormBackward(gpu, rec, { dy, x, w, mean, rstd: rstd2, dx: dx2, rows, dim });
      rec.submit();
      const r1 = rmsNormRef({ x: xv, w: wR, rows, dim, eps: 1e-6 });
      cmp(`rms fwd ${dt}`, r1.y, await gpu.read(y), 1e-5, 1e-5);
      cmp(`rms bwd ${dt}`, rmsNormBackwardRef({ dy: dyv, x: xv, w: wR, rstd: r1.rstd, rows, dim }), await gpu.read(dx), 1e-5, 1e-5);
      const r2 = layerNormRef({ x: xv, w: wR, b: bR, rows, dim, eps: 1e-5 });
      cmp(`ln fwd ${dt}`, r2.y, await gpu.read(y2), 1e-5, 1e-5);
      cmp(`ln bwd ${dt}`, layerNormBackwardRef({ dy: dyv, x: xv, w: wR, mean: r2.mean, rstd: r2.rstd, rows, dim }), await gpu.read(dx2), 1e-5, 1e-5);
      // embedding in windows
      const V = 101, H = 37; const tv = rnd(V * H, 5, 2); const tR = roundThroughHalf(tv, dt);
      const table = gpu.tensor('t', [V, H], dt, 'weights', packHalf(tv, dt));
      const idv = Uint32Array.from({ length: rows }, (_, i) => (i * 13) % (V + 3));
      const ids = gpu.tensor('ids', [rows], 'u32', 'io', idv); const eo = gpu.tensorF32('eo', [rows * H], 'scratch');
      const rec2 = gpu.recorder(); recordEmbedding(gpu, rec2, { table, ids, out: eo, T: rows, H, maxBindingBytes: 1024 }); rec2.submit();
      cmp(`embedding ${dt} windows`, embeddingRef({ table: tR, ids: idv, T: rows, H, V }), await gpu.read(eo), 0, 1e-7);
    }
    { // rope partial, out of place + in place inverse
      const heads = 3, hd = 10, T = 37, N = T * heads * hd; const xv = rnd(N, 7, 2); const pv = Uint32Array.from({ length: T }, (_, i) => (i * 97) % 3000);
      const x = gpu.tensorF32('x', [N], 'scratch', xv), o = gpu.tensorF32('o', [N], 'scratch'), pos = gpu.tensor('p', [T], 'u32', 'io', pv);
      const rec = gpu.recorder(); recordRope(gpu, rec, { x, out: o, positions: pos, rows: T, heads, headDim: hd, theta: 10000, rotaryDim: 6 }); recordRope(gpu, rec, { x, positions: pos, rows: T, heads, headDim: hd, theta: 1e6, inverse: true }); rec.submit();
      cmp('rope out partial', ropeRef({ x: xv, positions: pv, rows: T, heads, headDim: hd, theta: 10000, rotaryDim: 6 }), await gpu.read(o), 1e-6, 1e-6);
      cmp('rope ip inverse', ropeRef({ x: xv, positions: pv, rows: T, heads, headDim: hd, theta: 1e6, inverse: true }), await gpu.read(x), 1e-6, 1e-6);
    }
    { // activations
      const T = 37, I = 70, N = T * I; const guv = rnd(2 * N, 8, 8), dhv = rnd(N, 9);
      const gu = gpu.tensorF32('gu', [2 * N], 'scratch', guv), dh = gpu.tensorF32('dh', [N], 'scratch', dhv), h = gpu.tensorF32('h', [N], 'scratch'), dgu = gpu.tensorF32('dgu', [2 * N], 'scratch');
      const gy = gpu.tensorF32('gy', [N], 'scratch'), gdx = gpu.tensorF32('gdx', [N], 'scratch'); const xg = gpu.tensorF32('xg', [N], 'scratch', guv.subarray(0, N));
      const rec = gpu.recorder(); recordSwiGlu(gpu, rec, { gu, h, rows: T, cols: I }); recordSwiGluBackward(gpu, rec, { dh, gu, dgu, rows: T, cols: I });
      recordGelu(gpu, rec, { x: xg, y: gy, n: N }); recordGeluBackward(gpu, rec, { dy: dh, x: xg, dx: gdx, n: N }); rec.submit();
      const { g, u } = splitGateUp(guv, T, I); const rb = swiGluBackwardRef(dhv, g, u); const got = splitGateUp(await gpu.read(dgu), T, I);
      cmp('swiglu fused fwd', swiGluRef(g, u), await gpu.read(h), 1e-6, 1e-5); cmp('swiglu fused dg', rb.dg, got.g, 1e-6, 1e-5); cmp('swiglu fused du', rb.du, got.u, 1e-6, 1e-5);
      cmp('gelu fwd', activationRef(guv.subarray(0, N), 'gelu_tanh'), await gpu.read(gy), 1e-6, 1e-5);
      cmp('gelu bwd', activationBackwardRef(dhv, guv.subarray(0, N), 'gelu_tanh'), await gpu.read(gdx), 1e-6, 1e-5);
    }
    { // sumsq + adamw clip, 3 steps
      const sizes = [259, 210, 9000]; const ws = new Workspace(gpu); const normSq = gpu.tensorF32('ns', [1], 'scratch');
      const st = sizes.map((s, k) => { const p0 = rnd(s, 20 + k); return { n: s, p: gpu.tensorF32('p', [s], 'lora', p0), g: gpu.tensorF32('g', [s], 'lora'), m: gpu.tensorF32('m', [s], 'optimizer', new Float32Array(s)), v: gpu.tensorF32('v', [s], 'optimizer', new Float32Array(s)), rp: Float64Array.from(p0), rm: new Float64Array(s), rv: new Float64Array(s) }; });
      for (let step = 1; step <= 3; step++) {
        const grads = sizes.map((s, k) => rnd(s, 100 * step + k, 0.5)); st.forEach((s, k) => gpu.write(s.g, grads[k]!));
        const rec = gpu.recorder(); recordSumSquares(gpu, rec, { tensors: st.map((s) => ({ t: s.g, n: s.n })), out: normSq, ws });
        const hp = { lr: 0.03, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step, maxNorm: 1, gradScale: 0.5 };
        for (const s of st) recordAdamW(gpu, rec, { ...hp, param: s.p, grad: s.g, m: s.m, v: s.v, n: s.n, normSq }); rec.submit();
        const nsq = sumSquaresRef(grads.map((t, k) => ({ t, n: sizes[k]! }))); cmp(`normSq@${step}`, [nsq], await gpu.read(normSq), 0, 2e-6);
        for (const [k, s] of st.entries()) { adamWRef({ ...hp, param: s.rp, m: s.rm, v: s.rv, grad: grads[k]!, n: s.n, normSq: nsq }); cmp(`adamw p${k}@${step}`, s.rp, await gpu.read(s.p), 1e-6, 1e-6); }
      }
    }
    { const src = gpu.tensorF32('s', [37 * 30], 'scratch', rnd(37 * 30, 30)); const dst = gpu.tensorF32('d', [64 * 30], 'scratch', new Float32Array(64 * 30));
      const rec = gpu.recorder(); recordCopyRows(gpu, rec, { src, dst, rows: 37, width: 30, dstRow0: 19 }); rec.submit();
      const ref = new Float64Array(64 * 30); ref.set(rnd(37 * 30, 30), 19 * 30); cmp('copy rows', ref, await gpu.read(dst), 0, 0); }
    await gpu.sync();
  } catch (e) { (window as any).__mine.error = String((e as Error).stack ?? e); }
  (window as any).__mine.results = res; (window as any).__mine.done = true;
  document.getElementById('out')!.textContent = JSON.stringify((window as any).__mine, null, 1);
})();
