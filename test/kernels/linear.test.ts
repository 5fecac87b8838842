import { describe, expect, it } from 'vitest';
import { type Gpu, type Tensor, Workspace, packHalf, roundThroughHalf } from '../../src/gpu';
import { recordDropout } from '../../src/kernels/dropout';
import {
  type FrozenLinear,
  type LoraParams,
  recordLinearBackward,
  recordLinearForward,
} from '../../src/kernels/linear';
import type { WeightDType } from '../../src/kernels/matmul';
import { dropoutMask } from '../../src/reference/dropout';
import { linearBackwardRef, linearForwardRef } from '../../src/reference/linear';
import { expectClose, randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';

interface Case {
  M: number;
  inF: number;
  outF: number;
  r: number | null; // null: no LoRA
  w: WeightDType;
  bias: WeightDType | null;
  transposed: boolean;
  dropout?: number;
  accumulate?: boolean; // y, dx and grads all accumulate
  noDx?: boolean;
  maxBindingBytes?: number;
}

function upload(gpu: Gpu, label: string, shape: number[], v: Float32Array, dtype: WeightDType): [Tensor, Float64Array] {
  if (dtype === 'f32') return [gpu.tensor(label, shape, 'f32', 'scratch', v), Float64Array.from(v)];
  return [gpu.tensor(label, shape, dtype, 'scratch', packHalf(v, dtype)), roundThroughHalf(v, dtype)];
}

/** |got - ref| <= tol * max|ref| (f32 accumulation of O(100) terms against float64). */
function close(ref: Float64Array, got: Float32Array, name: string): void {
  let big = 0;
  for (const v of ref) big = Math.max(big, Math.abs(v));
  expectClose(ref, got, { name, atol: 3e-5 * Math.max(big, 1e-3), rtol: 1e-4 });
}

interface Run {
  y: Float32Array;
  s: Float32Array | null;
  dx: Float32Array | null;
  dA: Float32Array | null;
  dB: Float32Array | null;
}

async function runCase(c: Case, seed = 7): Promise<void> {
  const gpu = await getGpu();
  const { M, inF, outF } = c;
  const r = c.r ?? 0;
  const acc = !!c.accumulate;
  const dropout = c.dropout ?? 0;
  const dropSeed = (seed * 2654435761) >>> 0;
  const xv = randArray(M * inF, seed);
  const wv = randArray(inF * outF, seed + 1, 1 / Math.sqrt(inF));
  const bv = randArray(outF, seed + 2);
  const av = randArray(r * inF, seed + 3, 1 / Math.sqrt(inF));
  const Bv = randArray(outF * r, seed + 4, 1 / Math.sqrt(Math.max(r, 1)));
  const dyv = randArray(M * outF, seed + 5);
  const y0 = randArray(M * outF, seed + 6);
  const dx0 = randArray(M * inF, seed + 7);
  const dA0 = randArray(r * inF, seed + 8);
  const dB0 = randArray(outF * r, seed + 9);

  const x = gpu.tensor('x', [M, inF], 'f32', 'scratch', xv);
  const [w, wRef] = upload(gpu, 'w', c.transposed ? [inF, outF] : [outF, inF], wv, c.w);
  const [bias, biasRef] = c.bias ? upload(gpu, 'bias', [outF], bv, c.bias) : [null, null];
  const lin: FrozenLinear = { w, bias, inF, outF, transposed: c.transposed };
  const scale = r ? 2 / r : 0;
  const lora: LoraParams | null = r
    ? {
        a: gpu.tensor('A', [r, inF], 'f32', 'scratch', av),
        b: gpu.tensor('B', [outF, r], 'f32', 'scratch', Bv),
        r,
        scale,
        dropout,
      }
    : null;
  const y = gpu.tensor('y', [M, outF], 'f32', 'scratch', y0);
  const s = r ? gpu.tensor('s', [M, r], 'f32', 'scratch') : undefined;
  const dy = gpu.tensor('dy', [M, outF], 'f32', 'scratch', dyv);
  const dx = c.noDx ? null : gpu.tensor('dx', [M, inF], 'f32', 'scratch', dx0);
  const dA = r ? gpu.tensor('dA', [r, inF], 'f32', 'scratch', dA0) : undefined;
  const dB = r ? gpu.tensor('dB', [outF, r], 'f32', 'scratch', dB0) : undefined;
  const ws = new Workspace(gpu);

  const rec = gpu.recorder('linear-test');
  recordLinearForward(gpu, rec, {
    x,
    M,
    lin,
    lora,
    seed: dropSeed,
    y,
    s,
    accumulate: acc,
    maxBindingBytes: c.maxBindingBytes,
  });
  recordLinearBackward(gpu, rec, {
    dy,
    x,
    M,
    lin,
    lora,
    seed: dropSeed,
    s,
    dx,
    accumulateDx: acc,
    dA,
    dB,
    accumulateGrads: acc,
    ws,
    maxBindingBytes: c.maxBindingBytes,
  });
  rec.submit();
  const got: Run = {
    y: await gpu.read(y),
    s: s ? await gpu.read(s) : null,
    dx: dx ? await gpu.read(dx) : null,
    dA: dA ? await gpu.read(dA) : null,
    dB: dB ? await gpu.read(dB) : null,
  };

  const linRef = { w: wRef, bias: biasRef, inF, outF, transposed: c.transposed };
  const loraRef = r ? { a: av, b: Bv, r, scale, dropout } : null;
  const yRef = Float64Array.from(y0);
  const sRef = new Float64Array(M * r);
  linearForwardRef({ x: xv, M, lin: linRef, lora: loraRef, seed: dropSeed, y: yRef, s: sRef, accumulate: acc });
  const dxRef = c.noDx ? null : Float64Array.from(dx0);
  const dARef = Float64Array.from(dA0);
  const dBRef = Float64Array.from(dB0);
  linearBackwardRef({
    dy: dyv,
    x: xv,
    M,
    lin: linRef,
    lora: loraRef,
    seed: dropSeed,
    dx: dxRef,
    accumulateDx: acc,
    dA: r ? dARef : undefined,
    dB: r ? dBRef : undefined,
    accumulateGrads: acc,
  });
  close(yRef, got.y, 'y');
  if (got.s) close(sRef, got.s, 'S');
  if (dxRef && got.dx) close(dxRef, got.dx, 'dX');
  if (got.dA) close(dARef, got.dA, 'dA');
  if (got.dB) close(dBRef, got.dB, 'dB');
  for (const t of [x, w, bias, lora?.a, lora?.b, y, s, dy, dx, dA, dB]) gpu.free(t);
  ws.dispose();
}

describe('LoRA linear vs float64 reference', () => {
  const cases: [string, Case][] = [
    ['r=8 f32 nn.Linear, f32 bias', { M: 37, inF: 70, outF: 129, r: 8, w: 'f32', bias: 'f32', transposed: false }],
    [
      'r=8 f16 nn.Linear, f16 bias, dropout 0.1, accumulate',
      { M: 37, inF: 70, outF: 129, r: 8, w: 'f16', bias: 'f16', transposed: false, dropout: 0.1, accumulate: true },
    ],
    [
      'r=8 bf16 Conv1D, bf16 bias, dropout 0.25',
      { M: 37, inF: 70, outF: 129, r: 8, w: 'bf16', bias: 'bf16', transposed: true, dropout: 0.25 },
    ],
    [
      'r=1 f32 Conv1D, no bias, accumulate',
      { M: 37, inF: 70, outF: 129, r: 1, w: 'f32', bias: null, transposed: true, accumulate: true },
    ],
    [
      'r=3 bf16 nn.Linear, no bias, dropout 0.5',
      { M: 19, inF: 129, outF: 33, r: 3, w: 'bf16', bias: null, transposed: false, dropout: 0.5 },
    ],
    [
      'r=64 f16 Conv1D, f16 bias, dropout 0.1, accumulate',
      { M: 37, inF: 70, outF: 129, r: 64, w: 'f16', bias: 'f16', transposed: true, dropout: 0.1, accumulate: true },
    ],
    [
      'r=64 f32 nn.Linear, f32 bias, no dX',
      { M: 5, inF: 70, outF: 129, r: 64, w: 'f32', bias: 'f32', transposed: false, noDx: true },
    ],
    [
      'no LoRA, f16 nn.Linear, f16 bias',
      { M: 37, inF: 70, outF: 129, r: null, w: 'f16', bias: 'f16', transposed: false },
    ],
    [
      'no LoRA, bf16 Conv1D, accumulate',
      { M: 37, inF: 70, outF: 129, r: null, w: 'bf16', bias: null, transposed: true, accumulate: true },
    ],
    ['1 token, r=3 f32', { M: 1, inF: 3, outF: 5, r: 3, w: 'f32', bias: 'f32', transposed: false, dropout: 0.3 }],
    [
      'M=600 (split-K dA/dB), r=8 bf16, dropout 0.2, accumulate',
      { M: 600, inF: 40, outF: 24, r: 8, w: 'bf16', bias: 'bf16', transposed: false, dropout: 0.2, accumulate: true },
    ],
    [
      'chunked weight bindings, r=8 f16 nn.Linear',
      {
        M: 37,
        inF: 70,
        outF: 129,
        r: 8,
        w: 'f16',
        bias: 'f16',
        transposed: false,
        dropout: 0.1,
        maxBindingBytes: 4096,
      },
    ],
  ];
  for (const [name, c] of cases) it(name, () => runCase(c));

  it('backward is bit-identical from run to run (split-K without atomics)', async () => {
    const gpu = await getGpu();
    const M = 600,
      inF = 40,
      outF = 24,
      r = 8;
    const x = gpu.tensor('x', [M, inF], 'f32', 'scratch', randArray(M * inF, 1));
    const w = gpu.tensor('w', [outF, inF], 'bf16', 'scratch', packHalf(randArray(outF * inF, 2), 'bf16'));
    const lin: FrozenLinear = { w, bias: null, inF, outF, transposed: false };
    const lora: LoraParams = {
      a: gpu.tensor('A', [r, inF], 'f32', 'scratch', randArray(r * inF, 3)),
      b: gpu.tensor('B', [outF, r], 'f32', 'scratch', randArray(outF * r, 4)),
      r,
      scale: 0.5,
      dropout: 0.2,
    };
    const s = gpu.tensor('s', [M, r], 'f32', 'scratch');
    const y = gpu.tensor('y', [M, outF], 'f32', 'scratch');
    const dy = gpu.tensor('dy', [M, outF], 'f32', 'scratch', randArray(M * outF, 5));
    const dx = gpu.tensor('dx', [M, inF], 'f32', 'scratch');
    const dA = gpu.tensor('dA', [r, inF], 'f32', 'scratch');
    const dB = gpu.tensor('dB', [outF, r], 'f32', 'scratch');
    const ws = new Workspace(gpu);
    const runs: Uint32Array[][] = [];
    for (let i = 0; i < 2; i++) {
      const rec = gpu.recorder();
      recordLinearForward(gpu, rec, { x, M, lin, lora, seed: 99, y, s });
      recordLinearBackward(gpu, rec, { dy, x, M, lin, lora, seed: 99, s, dx, dA, dB, ws });
      rec.submit();
      runs.push([await gpu.readU32(dA, r * inF), await gpu.readU32(dB, outF * r), await gpu.readU32(dx, M * inF)]);
    }
    expect(runs[1]![0]).toEqual(runs[0]![0]);
    expect(runs[1]![1]).toEqual(runs[0]![1]);
    expect(runs[1]![2]).toEqual(runs[0]![2]);
    for (const t of [x, w, lora.a, lora.b, s, y, dy, dx, dA, dB]) gpu.free(t);
    ws.dispose();
  });

  it('requires s for a LoRA forward', async () => {
    const gpu = await getGpu();
    const t = gpu.tensor('t', [4, 4], 'f32', 'scratch');
    const lin: FrozenLinear = { w: t, bias: null, inF: 4, outF: 4, transposed: false };
    const lora: LoraParams = { a: t, b: t, r: 4, scale: 1, dropout: 0 };
    expect(() => recordLinearForward(gpu, gpu.recorder(), { x: t, M: 4, lin, lora, y: t })).toThrow(/needs `s`/);
    gpu.free(t);
  });
});

describe('dropout mask', () => {
  it('the GPU mask equals the TypeScript mask bit for bit, and keeps about 1 - p', async () => {
    const gpu = await getGpu();
    const rows = 67,
      cols = 131,
      p = 0.3,
      seed = 123456789;
    const x = gpu.tensor('x', [rows, cols], 'f32', 'scratch', new Float32Array(rows * cols).fill(1));
    const y = gpu.tensor('y', [rows, cols], 'f32', 'scratch');
    const rec = gpu.recorder();
    recordDropout(gpu, rec, { x, y, rows, cols, seed, p });
    rec.submit();
    const got = await gpu.read(y);
    const ref = dropoutMask(seed, p, rows, cols);
    let kept = 0;
    for (let i = 0; i < ref.length; i++) {
      expect(got[i]).toBe(Math.fround(ref[i]!));
      if (ref[i]) kept++;
    }
    expect(Math.abs(kept / ref.length - (1 - p))).toBeLessThan(0.02);
    // Different seeds give different masks.
    const other = dropoutMask(seed + 1, p, rows, cols);
    expect(other.some((v, i) => v !== ref[i])).toBe(true);
    gpu.free(x);
    gpu.free(y);
  });
});
