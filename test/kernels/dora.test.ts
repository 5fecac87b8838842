/**
 * DoRA on the LoRA linear (src/kernels/dora.ts + src/kernels/linear.ts) against the float64
 * reference written from PEFT's code (src/reference/dora.ts): forward y, and backward dX, dA, dB
 * and the magnitude's gradient dm, on odd shapes, for every weight storage (f32, f16, bf16, NF4,
 * Conv1D [in, out]), with and without dropout, overwriting and accumulating.
 */
import { describe, it } from 'vitest';
import type { WeightDType } from '../../src/kernels/matmul';
import {
  type FrozenLinear,
  type LoraParams,
  recordLinearBackward,
  recordLinearForward,
} from '../../src/kernels/linear';
import { type Nf4Tensor, freeNf4, uploadNf4 } from '../../src/kernels/nf4';
import { roundThroughHalf } from '../../src/gpu/half';
import { doraBackwardRef, doraForwardRef } from '../../src/reference/dora';
import { dequantizeNf4Ref, quantizeNf4Ref } from '../../src/reference/nf4';
import { randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';
import { checkKernel, filled, rand, values } from '../helpers/kernel';

interface Case {
  M: number;
  inF: number;
  outF: number;
  r: number;
  w: WeightDType | 'nf4';
  bias: boolean;
  transposed: boolean;
  dropout: number;
  accumulate?: boolean;
}

/** ||W_o||² per output row, in float64, of the weight as stored (Conv1D [in, out]). */
function rowNormsSq(w: ArrayLike<number>, outF: number, inF: number, transposed: boolean): Float64Array {
  const out = new Float64Array(outF);
  for (let o = 0; o < outF; o++) {
    for (let i = 0; i < inF; i++) {
      const v = transposed ? w[i * outF + o]! : w[o * inF + i]!;
      out[o] = out[o]! + v * v;
    }
  }
  return out;
}

async function runCase(c: Case, seed = 11): Promise<void> {
  const { M, inF, outF, r, dropout } = c;
  const acc = !!c.accumulate;
  const scale = 2 / r;
  const dropSeed = (seed * 2654435761) >>> 0;
  // The weight as the GPU will compute with it (16-bit rounding, NF4 dequantization).
  const raw = randArray(outF * inF, seed + 1, 1 / Math.sqrt(inF));
  const host = c.w === 'nf4' ? quantizeNf4Ref(raw, true) : null;
  const wRef = host
    ? dequantizeNf4Ref(host)
    : c.w === 'f32'
      ? Float64Array.from(raw)
      : roundThroughHalf(raw, c.w as 'f16' | 'bf16');
  const wn2 = rowNormsSq(wRef, outF, inF, c.transposed);
  // Magnitudes near the norms, so g = m / n is near 1 but not 1.
  const m = Float64Array.from(randArray(outF, seed + 2, 0.2), (d, o) => Math.sqrt(wn2[o]!) * (1 + d));
  let nf4W: Nf4Tensor | null = null;
  try {
    await checkKernel({
      seed,
      label: `dora ${JSON.stringify(c)}`,
      tensors: {
        x: rand([M, inF]),
        w: host ? undefined : values(c.transposed ? [inF, outF] : [outF, inF], raw, c.w as WeightDType),
        bias: c.bias ? rand([outF]) : undefined,
        A: rand([r, inF], { scale: 1 / Math.sqrt(inF) }),
        B: rand([outF, r], { scale: 1 / Math.sqrt(r) }),
        m: values([outF], m),
        wn2: values([outF], wn2),
        gi: filled([2 * outF]),
        dy: rand([M, outF]),
        y: rand([M, outF]),
        s: filled([M, r]),
        z: filled([M, outF]),
        dx: rand([M, inF]),
        dA: rand([r, inF]),
        dB: rand([outF, r]),
        dm: rand([outF]),
      },
      record: (gpu, rec, t, ws) => {
        const w = host ? (nf4W ??= uploadNf4(gpu, 'w', host, outF, inF)) : t.w;
        const lin: FrozenLinear = { w, bias: t.bias ?? null, inF, outF, transposed: c.transposed };
        const lora: LoraParams = { a: t.A, b: t.B, r, scale, dropout, dora: { m: t.m, wn2: t.wn2, gi: t.gi } };
        const common = { x: t.x, M, lin, lora, seed: dropSeed, s: t.s, z: t.z, ws };
        recordLinearForward(gpu, rec, { ...common, y: t.y, accumulate: acc });
        recordLinearBackward(gpu, rec, {
          ...common,
          dy: t.dy,
          dx: t.dx,
          accumulateDx: acc,
          dA: t.dA,
          dB: t.dB,
          dM: t.dm,
          accumulateGrads: acc,
        });
      },
      reference: (v) => {
        const lin = { w: wRef, bias: v.bias ?? null, inF, outF, transposed: c.transposed };
        const args = { x: v.x, M, lin, lora: { a: v.A, b: v.B, r, scale, dropout }, m: v.m, seed: dropSeed };
        const y = doraForwardRef(args);
        const g = doraBackwardRef({ ...args, dy: v.dy });
        const plus = (before: ArrayLike<number>, d: Float64Array) => (acc ? d.map((x, i) => x + before[i]!) : d);
        return {
          y: plus(v.y, y),
          dx: plus(v.dx, g.dx),
          dA: plus(v.dA, g.dA),
          dB: plus(v.dB, g.dB),
          dm: plus(v.dm, g.dm),
        };
      },
      tol: { atol: 3e-5, rtol: 1e-4, atolOfMax: true },
    });
  } finally {
    if (nf4W) freeNf4(await getGpu(), nf4W);
  }
}

describe('DoRA linear vs float64 reference (PEFT semantics)', () => {
  const cases: [string, Case][] = [
    [
      'f32 nn.Linear, bias, no dropout',
      { M: 7, inF: 13, outF: 11, r: 3, w: 'f32', bias: true, transposed: false, dropout: 0 },
    ],
    [
      'f16 nn.Linear, no bias, accumulate',
      { M: 5, inF: 21, outF: 19, r: 4, w: 'f16', bias: false, transposed: false, dropout: 0, accumulate: true },
    ],
    [
      'bf16 Conv1D, dropout 0.25, accumulate',
      { M: 13, inF: 11, outF: 23, r: 5, w: 'bf16', bias: true, transposed: true, dropout: 0.25, accumulate: true },
    ],
    [
      'NF4 nn.Linear, dropout 0.1',
      { M: 6, inF: 70, outF: 33, r: 3, w: 'nf4', bias: false, transposed: false, dropout: 0.1 },
    ],
    ['1 token, r=1', { M: 1, inF: 5, outF: 3, r: 1, w: 'f32', bias: true, transposed: false, dropout: 0 }],
  ];
  for (const [name, c] of cases) it(name, () => runCase(c));
});
