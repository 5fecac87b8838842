/**
 * Every member of the matmul family (src/kernels/matmul/variants.ts), forced with `variant`, against
 * the float64 reference on odd shapes: each layout and weight dtype, the vector-load paths (strides
 * that are multiples of 4) and the scalar ones, chunked operands whose chunks start off a multiple
 * of 4, bias / alpha / accumulate, split-K, the fused LoRA segment with dropout. The default
 * (baseline) members are also covered by test/kernels/matmul.test.ts.
 *
 * A cold compile of a direct member takes seconds on lavapipe (its block is unrolled), longer on a
 * loaded machine; Mesa keeps compiled shaders in its disk cache, so later runs take about a second.
 */
import { describe, expect, it } from 'vitest';
import { MATMUL_FAMILY, SMALL_M, candidatesFor, chooseConfig, shapeClass } from '../../src/kernels/matmul/variants';
import { recordMatmul } from '../../src/kernels/matmul';
import { type Nf4Tensor, freeNf4, uploadNf4 } from '../../src/kernels/nf4';
import { dequantizeNf4Ref, quantizeNf4Ref } from '../../src/reference/nf4';
import { randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';
import { checkKernel, rand, values } from '../helpers/kernel';
import { check, checkExtra } from '../helpers/matmul';

const big = MATMUL_FAMILY.filter((c) => c.kernel !== 'small' && c.kernel !== 'wg' && c.tm !== 0).map((c) => c.name);
/** Cold compiles on a loaded CPU driver (see the file comment). */
const COLD = 600_000;

const small = MATMUL_FAMILY.filter((c) => c.kernel === 'small' || c.tm === 0).map((c) => c.name);

describe.each(big)('matmul family member %s', (variant) => {
  it(
    'each layout and weight dtype (scalar loads), bias, alpha, accumulate',
    async () => {
      await check({ variant, M: 37, N: 129, K: 70, transB: true, bType: 'f16', bias: 'f16', alpha: 0.75 });
      await check({ variant, M: 37, N: 129, K: 70, bType: 'bf16', accumulate: true });
      await check({ variant, M: 37, N: 129, K: 70, transA: true, bType: 'f32', accumulate: true, alpha: -1.5 });
      await check({ variant, M: 37, N: 129, K: 70, transA: true, transB: true, bType: 'bf16' });
    },
    COLD,
  );

  it(
    'vector loads (strides multiple of 4), edges of 1',
    async () => {
      await check({ variant, M: 37, N: 132, K: 72, transB: true, bType: 'f32', bias: 'f32', accumulate: true });
      await check({ variant, M: 37, N: 132, K: 72, bType: 'bf16' });
      await check({ variant, M: 68, N: 36, K: 72, transA: true, bType: 'f32' });
      await check({ variant, M: 9, N: 1, K: 1, transB: true, bType: 'f16' });
    },
    COLD,
  );

  it(
    'chunked operands (chunks starting off a multiple of 4), split-K',
    async () => {
      await check({
        variant,
        M: 37,
        N: 129,
        K: 70,
        transA: true,
        bType: 'f32',
        accumulate: true,
        maxBindingBytes: 4096,
      });
      await check({ variant, M: 37, N: 129, K: 70, transB: true, bType: 'f16', bias: 'f16', maxBindingBytes: 4096 });
      await check({ variant, M: 64, N: 72, K: 513, transA: true, splitK: 5, accumulate: true, repeat: true });
    },
    COLD,
  );

  it(
    'the fused LoRA segment with A dropout and output dropout',
    async () => {
      const lora = { variant, M: 37, N: 129, K: 70, K2: 5, transB: true, bias: true } as const;
      await checkExtra({ ...lora, bType: 'f16', dropA: 0.25, dropOut: 0.1, accumulate: true, alpha2: 0.5 });
      await checkExtra({ ...lora, bType: 'bf16', K: 72, N: 132, alpha: 1.5 });
    },
    COLD,
  );
});

// The GPU members share one kernel (shaders/matmul_wg.wgsl) that differs only in its constants; each
// of their shaders takes 10-50 s to compile on lavapipe, so wg64 runs every layout and epilogue in
// few shaders and wg128 (8x8 per invocation, two vectors staged per operand) the two that exercise
// its constants most.
describe('matmul family members wg64 and wg128 (GPU tiles)', () => {
  it(
    'wg64: each layout, dtype and epilogue; vector and scalar loads; chunks; split-K; the LoRA segment',
    async () => {
      const variant = 'wg64';
      await check({ variant, M: 37, N: 129, K: 70, transB: true, bType: 'f16', bias: 'f16', alpha: 0.75 });
      await check({ variant, M: 37, N: 132, K: 72, bType: 'bf16', accumulate: true });
      await check({ variant, M: 9, N: 1, K: 1, transB: true, bType: 'f16' });
      await check({ variant, M: 68, N: 36, K: 72, transA: true, transB: true, bType: 'bf16' });
      const chunked = { variant, M: 37, N: 129, K: 70, transA: true, bType: 'f32', accumulate: true } as const;
      await check({ ...chunked, alpha: -1.5, maxBindingBytes: 4096 });
      await check({ variant, M: 64, N: 72, K: 513, transA: true, splitK: 5, accumulate: true, repeat: true });
      const lora = { variant, M: 37, N: 129, K: 70, K2: 5, transB: true, bias: true } as const;
      await checkExtra({ ...lora, bType: 'f16', dropA: 0.25, dropOut: 0.1, accumulate: true, alpha2: 0.5 });
    },
    COLD,
  );

  it(
    'wg128: the LoRA segment with output dropout (vector loads), split-K of Aᵀ·B',
    async () => {
      const variant = 'wg128';
      await checkExtra({
        variant,
        M: 150,
        N: 132,
        K: 72,
        K2: 5,
        transB: true,
        bType: 'bf16',
        bias: true,
        dropOut: 0.1,
      });
      await check({ variant, M: 64, N: 72, K: 513, transA: true, splitK: 5, accumulate: true, repeat: true });
    },
    COLD,
  );
});

describe.each(small)('matmul family member %s (M <= 8)', (variant) => {
  it(
    'layouts, dtypes, bias, accumulate, chunks, the LoRA segment',
    async () => {
      for (const M of [1, 3, 8]) {
        await check({ variant, M, N: 129, K: 70, transB: true, bType: 'bf16', bias: 'bf16', accumulate: true });
        await check({ variant, M, N: 132, K: 72, bType: 'f32', alpha: -0.75 });
      }
      await check({ variant, M: 5, N: 1000, K: 37, transB: true, bType: 'f16', maxBindingBytes: 4096 });
      await checkExtra({ variant, M: 2, N: 129, K: 70, K2: 8, transB: true, bType: 'f16', bias: true, dropOut: 0.5 });
    },
    COLD,
  );
});

/** C = A·opB(W) with W a 4-bit NF4 weight (double-quantized or not), forced to `variant`, against the dequantized weight in float64. */
async function checkNf4(variant: string, M: number, N: number, K: number, transB: boolean, dq: boolean): Promise<void> {
  const [rows, cols] = transB ? [N, K] : [K, N];
  const host = quantizeNf4Ref(randArray(rows * cols, 7, 0.1), dq);
  const w = dequantizeNf4Ref(host);
  let nf4: Nf4Tensor | null = null;
  try {
    await checkKernel({
      label: `nf4 matmul ${variant} ${JSON.stringify({ M, N, K, transB, dq })}`,
      tensors: { a: rand([M, K]), c: values([M, N], new Float32Array(M * N)) },
      record: (gpu, rec, t) => {
        nf4 = uploadNf4(gpu, 'w', host, rows, cols);
        recordMatmul(gpu, rec, { a: t.a, b: nf4, c: t.c, M, N, K, transB, variant });
      },
      reference: (v) => {
        const out = new Float64Array(M * N);
        for (let m = 0; m < M; m++) {
          for (let n = 0; n < N; n++) {
            let acc = 0;
            for (let k = 0; k < K; k++) acc += v.a[m * K + k]! * (transB ? w[n * K + k]! : w[k * N + n]!);
            out[m * N + n] = acc;
          }
        }
        return { c: out };
      },
      tol: { atol: 1e-4 * Math.sqrt(K + 1), rtol: 1e-4 },
    });
  } finally {
    if (nf4) freeNf4(await getGpu(), nf4);
  }
}

// wg128 reads NF4 through the same loaders as wg64 (its shaders take the longest to compile).
const nf4Members = MATMUL_FAMILY.map((c) => c.name).filter((n) => n !== 'wg128');
describe.each(nf4Members)('matmul family member %s, 4-bit NF4 weight', (variant) => {
  const M = small.includes(variant) ? 3 : 37;
  it(
    'X·Wᵀ (double-quantized) and X·W, odd shapes',
    async () => {
      await checkNf4(variant, M, 67, 130, true, true);
      await checkNf4(variant, M, 67, 130, false, false);
    },
    COLD,
  );
});

describe('choosing a member', () => {
  it('forced, pinned, tuned, else the baseline; a member that cannot serve the shape yields', async () => {
    const gpu = await getGpu();
    const s = { M: 512, N: 1024, K: 1024, transA: false, transB: true, bType: 'f32' as const, lora: true };
    const g = { ...s, M: 1 };
    expect(chooseConfig(gpu, s).name).toBe('tile64');
    expect(chooseConfig(gpu, g).name).toBe('gemv');
    expect(chooseConfig(gpu, g, undefined, 4).name).toBe('tile64'); // split-K: no small-M kernel
    expect(chooseConfig(gpu, s, 'direct8x4').name).toBe('direct8x4');
    expect(() => chooseConfig(gpu, s, 'rows')).toThrow(/at most 8 rows/);
    expect(() => chooseConfig(gpu, s, 'nope')).toThrow(/Unknown matmul kernel "nope".*tile64/);
    gpu.kernels.choices.set(shapeClass(s), 'direct4x4');
    gpu.kernels.pin = 'gemv';
    try {
      expect(chooseConfig(gpu, s).name).toBe('direct4x4'); // the pin cannot serve 512 rows
      expect(chooseConfig(gpu, g).name).toBe('gemv');
      gpu.kernels.pin = 'direct8x4';
      expect(chooseConfig(gpu, s).name).toBe('direct8x4');
    } finally {
      gpu.kernels.pin = null;
      gpu.kernels.choices.clear();
    }
    expect(candidatesFor(gpu, g).every((c) => c.kernel === 'small' || c.tm === 0)).toBe(true);
    expect(candidatesFor(gpu, s).map((c) => c.name)).toContain('tile64');
    expect(SMALL_M).toBe(8);
  });

  it('token counts (M, and K of Aᵀ) fall in coarse classes; a class is tuned on its biggest problem met', async () => {
    const gpu = await getGpu();
    const s = { M: 24, N: 64, K: 64, transA: false, transB: true, bType: 'bf16' as const, lora: true };
    expect(shapeClass({ ...s, M: 2048 })).toBe(shapeClass(s));
    expect(shapeClass({ ...s, M: 2049 })).not.toBe(shapeClass(s));
    expect(shapeClass({ ...s, M: 8 })).not.toBe(shapeClass(s));
    const t = { ...s, transA: true, transB: false, M: 64, K: 24 };
    expect(shapeClass({ ...t, K: 500 })).toBe(shapeClass(t));
    expect(shapeClass({ ...s, K: 500 })).not.toBe(shapeClass(s)); // K of a weight: the finer classes
    gpu.kernels.seen.clear();
    for (const M of [80, 24, 512, 100]) chooseConfig(gpu, { ...s, M });
    expect([...gpu.kernels.seen.values()].map((v) => (v as { shape: { M: number } }).shape.M)).toEqual([512]);
    gpu.kernels.seen.clear();
  });
});

// The direct kernel reads the LoRA segment's layout, the bias' dtype and the output dropout from
// uniforms (src/kernels/matmul/direct.ts): problems that differ only in those share one shader.
describe.each(big.filter((v) => v.startsWith('direct')))('matmul family member %s', (variant) => {
  it(
    'one shader for every LoRA layout, bias dtype and output dropout (uniforms), each against float64',
    async () => {
      const gpu = await getGpu();
      const used = new Set<string>();
      const pipeline = gpu.pipeline.bind(gpu);
      gpu.pipeline = (label, code, entryPoint) => {
        if (label.startsWith('matmul_')) used.add(label);
        return pipeline(label, code, entryPoint);
      };
      try {
        const lora = { variant, M: 37, N: 132, K: 72, K2: 5, transB: true, bType: 'bf16', bias: true } as const;
        await checkExtra({ ...lora, biasType: 'bf16', dropOut: 0.2, alpha2: 0.5 });
        await checkExtra({ ...lora, biasType: 'f32', transA2: true, transB2: false, accumulate: true });
        await checkExtra({ ...lora, biasType: 'bf16', transA2: true, dropOut: 0.1 });
        await checkExtra({ ...lora, biasType: 'f32', transB2: false, M: 9, N: 8, K: 4, K2: 3 });
      } finally {
        gpu.pipeline = pipeline;
      }
      expect([...used]).toHaveLength(1);
    },
    COLD,
  );
});

// Depth tails (src/kernels/matmul/direct.ts step1) are compiled only where a K chunk needs one; one
// member covers the plan's choice (the family's checks above run both forms of every member).
describe('matmul direct kernel, depth tails', () => {
  const variant = 'direct4x4';
  it(
    'depths a multiple of 4 run shaders without the one-depth step (_k4), others with it; chunks, split-K, against float64',
    async () => {
      const gpu = await getGpu();
      const used: string[] = [];
      const pipeline = gpu.pipeline.bind(gpu);
      gpu.pipeline = (label, code, entryPoint) => {
        if (label.startsWith('matmul_direct')) used.push(label);
        return pipeline(label, code, entryPoint);
      };
      const uses = async (k4: boolean, run: () => Promise<unknown>) => {
        used.length = 0;
        await run();
        expect(used.length).toBeGreaterThan(0);
        for (const l of used) expect(l.includes('_k4'), l).toBe(k4);
      };
      try {
        // Along K in chunks (the binding limit): of 16 (A's rows) or of 7 (B's long rows, so a tail).
        const chunked = { variant, M: 37, N: 36, transA: true, accumulate: true, maxBindingBytes: 4096 } as const;
        await uses(true, () => check({ ...chunked, K: 72 }));
        await uses(false, () => check({ ...chunked, K: 71 }));
        await uses(false, () => check({ ...chunked, N: 129, K: 72 }));
        await uses(true, () => check({ variant, M: 64, N: 72, K: 512, transA: true, splitK: 5, accumulate: true }));
        await uses(false, () => check({ variant, M: 64, N: 72, K: 510, transA: true, splitK: 5 }));
        await uses(true, () => check({ variant: 'rows', M: 5, N: 36, K: 44, transB: true, bType: 'bf16' }));
        await uses(false, () => check({ variant: 'rows', M: 5, N: 36, K: 45, transB: true, bType: 'bf16' }));
      } finally {
        gpu.pipeline = pipeline;
      }
    },
    COLD,
  );
});
