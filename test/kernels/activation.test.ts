import { describe, it } from 'vitest';
import {
  type Activation,
  recordGelu,
  recordGeluBackward,
  recordSilu,
  recordSiluBackward,
  recordSwiGlu,
  recordSwiGluBackward,
} from '../../src/kernels/activation';
import {
  actGradRef,
  actRef,
  activationBackwardRef,
  activationRef,
  splitGateUp,
  swiGluBackwardRef,
  swiGluRef,
} from '../../src/reference/activation';
import { expectClose, randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';

const TOL = { atol: 1e-6, rtol: 1e-5 };

/** Inputs over [-8, 8] plus a few extremes and exact zeros. */
function inputs(n: number, seed: number): Float32Array {
  const x = randArray(n, seed, 8);
  const special = [0, -0, 30, -30, 90, -90, 1e-4, -1e-4];
  special.forEach((v, i) => {
    if (i * 7 < n) x[i * 7] = v;
  });
  return x;
}

describe('activation references: finite differences', () => {
  for (const act of ['silu', 'gelu_tanh'] as const) {
    it(`${act}' matches central differences`, () => {
      const h = 1e-6;
      for (let x = -9; x <= 9; x += 0.37) {
        const num = (actRef(x + h, act) - actRef(x - h, act)) / (2 * h);
        expectClose([num], [actGradRef(x, act)], { name: `${act}'(${x.toFixed(2)})`, atol: 1e-8, rtol: 1e-7 });
      }
    });

    it(`gated ${act}: dg, du match central differences of Σ h·dh`, () => {
      const n = 9;
      const g = Float64Array.from(randArray(n, 1, 4));
      const u = Float64Array.from(randArray(n, 2, 2));
      const dh = Float64Array.from(randArray(n, 3));
      const loss = () => swiGluRef(g, u, act).reduce((s, v, i) => s + v * dh[i]!, 0);
      const { dg, du } = swiGluBackwardRef(dh, g, u, act);
      const num = (p: Float64Array) =>
        Float64Array.from(p, (v, i) => {
          const hh = 1e-6;
          p[i] = v + hh;
          const up = loss();
          p[i] = v - hh;
          const down = loss();
          p[i] = v;
          return (up - down) / (2 * hh);
        });
      expectClose(num(g), dg, { name: 'dg', atol: 1e-8, rtol: 1e-7 });
      expectClose(num(u), du, { name: 'du', atol: 1e-8, rtol: 1e-7 });
    });
  }
});

describe('activation kernels', () => {
  const fns = {
    silu: [recordSilu, recordSiluBackward],
    gelu_tanh: [recordGelu, recordGeluBackward],
  } as const;

  for (const act of ['silu', 'gelu_tanh'] as const) {
    it(`${act} forward + backward (n = 37·70, overwrite and accumulate)`, async () => {
      const gpu = await getGpu();
      const n = 37 * 70;
      const xv = inputs(n, 10);
      const dyv = randArray(n, 11);
      const dx0 = randArray(n, 12);
      const x = gpu.tensorF32('x', [n], 'scratch', xv);
      const y = gpu.tensorF32('y', [n], 'scratch');
      const dy = gpu.tensorF32('dy', [n], 'scratch', dyv);
      const dx = gpu.tensorF32('dx', [n], 'scratch');
      const dxAcc = gpu.tensorF32('dxAcc', [n], 'scratch', dx0);
      const [fwd, bwd] = fns[act];
      const rec = gpu.recorder();
      fwd(gpu, rec, { x, y, n });
      bwd(gpu, rec, { dy, x, dx, n });
      bwd(gpu, rec, { dy, x, dx: dxAcc, n, accumulate: true });
      rec.submit();
      expectClose(activationRef(xv, act), await gpu.read(y), { name: 'y', ...TOL });
      expectClose(activationBackwardRef(dyv, xv, act), await gpu.read(dx), { name: 'dx', ...TOL });
      expectClose(activationBackwardRef(dyv, xv, act, Float64Array.from(dx0), true), await gpu.read(dxAcc), {
        name: 'dx (accumulate)',
        ...TOL,
      });
      for (const t of [x, y, dy, dx, dxAcc]) gpu.free(t);
    });
  }

  const gated: { act: Activation; fused: boolean }[] = [
    { act: 'silu', fused: false },
    { act: 'silu', fused: true },
    { act: 'gelu_tanh', fused: false },
  ];
  for (const { act, fused } of gated) {
    it(`gated ${act} (${fused ? 'fused [T, 2I]' : 'separate g, u'}) forward + backward, T=37 I=70`, async () => {
      const gpu = await getGpu();
      const rows = 37,
        cols = 70,
        n = rows * cols;
      const dhv = randArray(n, 20);
      const h = gpu.tensorF32('h', [rows, cols], 'scratch');
      const dh = gpu.tensorF32('dh', [rows, cols], 'scratch', dhv);
      let gv: ArrayLike<number>, uv: ArrayLike<number>;
      const rec = gpu.recorder();
      let read: () => Promise<{ dg: ArrayLike<number>; du: ArrayLike<number> }>;
      const free = [h, dh];
      if (fused) {
        const guv = inputs(2 * n, 21);
        ({ g: gv, u: uv } = splitGateUp(guv, rows, cols));
        const gu = gpu.tensorF32('gu', [rows, 2 * cols], 'scratch', guv);
        const dgu = gpu.tensorF32('dgu', [rows, 2 * cols], 'scratch');
        free.push(gu, dgu);
        recordSwiGlu(gpu, rec, { gu, h, rows, cols, act });
        recordSwiGluBackward(gpu, rec, { dh, gu, dgu, rows, cols, act });
        read = async () => {
          const s = splitGateUp(await gpu.read(dgu), rows, cols);
          return { dg: s.g, du: s.u };
        };
      } else {
        gv = inputs(n, 22);
        uv = randArray(n, 23, 3);
        const g = gpu.tensorF32('g', [n], 'scratch', gv);
        const u = gpu.tensorF32('u', [n], 'scratch', uv);
        const dg = gpu.tensorF32('dg', [n], 'scratch');
        const du = gpu.tensorF32('du', [n], 'scratch');
        free.push(g, u, dg, du);
        recordSwiGlu(gpu, rec, { g, u, h, n, act });
        recordSwiGluBackward(gpu, rec, { dh, g, u, dg, du, n, act });
        read = async () => ({ dg: await gpu.read(dg), du: await gpu.read(du) });
      }
      rec.submit();
      expectClose(swiGluRef(gv, uv, act), await gpu.read(h), { name: 'h', ...TOL });
      const ref = swiGluBackwardRef(dhv, gv, uv, act);
      const got = await read();
      expectClose(ref.dg, got.dg, { name: 'dg', ...TOL });
      expectClose(ref.du, got.du, { name: 'du', ...TOL });
      for (const t of free) gpu.free(t);
    });
  }
});
