import { describe, expect, it } from 'vitest';
import { type Gpu } from '../../src/gpu';
import { matmulShader, recordMatmul } from '../../src/kernels/matmul';
import { expectClose, randArray } from '../helpers/close';
import { getGpu, getPlainGpu } from '../helpers/gpu';
import { type Case, type ExtraCase, check, checkExtra, checkStrided } from '../helpers/matmul';

const layouts: [string, boolean, boolean][] = [
  ['A·Bᵀ', false, true],
  ['A·B', false, false],
  ['Aᵀ·B', true, false],
  ['Aᵀ·Bᵀ', true, true],
];

describe('matmul', () => {
  it('compiles every tile size', async () => {
    const gpu = await getGpu();
    for (const bm of [16, 32, 64]) {
      for (const bn of [16, 32, 64]) {
        const code = matmulShader({
          kernel: 'tiled',
          bm,
          bn,
          transA: false,
          transB: true,
          bType: 'bf16',
          seg2: { transA: false, transB: true },
          bias: 'f16',
          dropA: true,
          dropB: false,
          outDrop: true,
        });
        await gpu.compileCheck(`matmul ${bm}x${bn}`, code);
        if (gpu.features.f16) {
          // Native f16 loads of B and bias, without and with segment 2.
          for (const seg2 of [null, { transA: false, transB: true }]) {
            const f = matmulShader({
              kernel: 'tiled',
              bm,
              bn,
              f16: true,
              transA: true,
              transB: false,
              bType: 'f16',
              seg2,
              bias: 'f16',
              dropA: false,
              dropB: false,
              outDrop: false,
            });
            await gpu.compileCheck(`matmul ${bm}x${bn} f16${seg2 ? ' seg2' : ''}`, f);
          }
        }
      }
    }
  });

  it('compiles every small-M variant', async () => {
    const gpu = await getGpu();
    for (const mr of [1, 2, 4, 8]) {
      for (const pairs of [false, true]) {
        const code = matmulShader({
          kernel: 'small',
          bm: 16,
          bn: 64,
          mr,
          pairs,
          transA: false,
          transB: true,
          bType: 'bf16',
          seg2: { transA: false, transB: true },
          bias: 'f16',
          dropA: true,
          dropB: false,
          outDrop: true,
        });
        await gpu.compileCheck(`matmul small ${mr}${pairs ? ' pairs' : ''}`, code);
      }
    }
    // Subgroup lanes of other GPUs (32: NVIDIA, most AMD; 16; 64 is capped to 32) and native f16.
    for (const sg of gpu.features.subgroups ? [4, 8, 16, 32] : []) {
      for (const f16 of gpu.features.f16 ? [false, true] : [false]) {
        const code = matmulShader({
          kernel: 'small',
          bm: 16,
          bn: 64,
          mr: 4,
          pairs: true,
          sg,
          f16,
          transA: false,
          transB: true,
          bType: 'f16',
          seg2: { transA: false, transB: true },
          bias: 'f16',
          dropA: true,
          dropB: false,
          outDrop: true,
        });
        await gpu.compileCheck(`matmul small sg${sg}${f16 ? ' f16' : ''}`, code);
      }
    }
  });

  for (const [name, transA, transB] of layouts) {
    for (const bType of ['f32', 'f16', 'bf16'] as const) {
      it(`${name}, B ${bType}, M=37 K=70 N=129`, async () => {
        await check({ M: 37, N: 129, K: 70, transA, transB, bType });
      });
    }
  }

  for (const [M, N, K] of [
    [1, 1, 1],
    [5, 3, 200],
    [5, 200, 3],
    [64, 64, 64],
    [17, 33, 15],
    [130, 9, 33],
  ]) {
    it(`A·Bᵀ and Aᵀ·B at M=${M} N=${N} K=${K}`, async () => {
      await check({ M: M!, N: N!, K: K!, transB: true, bType: 'f16' });
      await check({ M: M!, N: N!, K: K!, transA: true, bType: 'f32' });
    });
  }

  it('K = 0 gives bias only (or leaves C with accumulate)', async () => {
    await check({ M: 3, N: 5, K: 0, transB: true, bias: 'f32' });
    await check({ M: 3, N: 5, K: 0, transB: true, accumulate: true });
  });

  it('bias (f32, f16, bf16), alpha, accumulate', async () => {
    await check({ M: 37, N: 129, K: 70, transB: true, bType: 'f32', bias: 'f32', alpha: 0.75 });
    await check({ M: 37, N: 129, K: 70, transB: true, bType: 'f16', bias: 'f16', alpha: -1.5, accumulate: true });
    await check({ M: 9, N: 31, K: 40, transB: true, bType: 'bf16', bias: 'bf16', accumulate: true });
    await check({ M: 37, N: 129, K: 70, bType: 'f32', accumulate: true, alpha: 2 });
    await check({ M: 9, N: 31, K: 40, transA: true, bType: 'bf16', accumulate: true });
  });

  it('splits oversized operands into chunks bound with aligned offsets', async () => {
    // A·Bᵀ (LM head layout): N chunks of B, M chunks of A and C.
    await check({ M: 37, N: 129, K: 70, transB: true, bType: 'f16', bias: 'f16', maxBindingBytes: 4096 });
    await check({ M: 37, N: 129, K: 70, transB: true, bType: 'bf16', accumulate: true, maxBindingBytes: 8192 });
    await check({ M: 37, N: 129, K: 70, transB: true, bType: 'f32', bias: 'f32', maxBindingBytes: 6000 });
    // A·B and Aᵀ·B: K chunks accumulate, the bias is added once.
    await check({ M: 37, N: 129, K: 70, bType: 'f32', bias: 'f32', maxBindingBytes: 4096 });
    await check({ M: 37, N: 129, K: 70, transA: true, bType: 'f32', accumulate: true, maxBindingBytes: 4096 });
  });

  it('binds a real weight over maxStorageBufferBindingSize in chunks (LM head X·Wᵀ)', async () => {
    const gpu = await getGpu();
    const M = 3,
      K = 64;
    const N = Math.ceil((gpu.limits.maxStorageBufferBindingSize * 1.05) / (K * 4)); // f32 W just over the limit
    const wv = randArray(N * K, 41);
    const xv = randArray(M * K, 42);
    const w = gpu.tensor('w', [N, K], 'f32', 'scratch', wv);
    const x = gpu.tensor('x', [M, K], 'f32', 'scratch', xv);
    const y = gpu.tensor('y', [M, N], 'f32', 'scratch');
    const rec = gpu.recorder();
    recordMatmul(gpu, rec, { a: x, b: w, c: y, M, N, K, transB: true });
    expect(rec.length).toBe(2);
    rec.submit();
    const got = await gpu.read(y);
    await gpu.sync();
    // Spot-check rows of W on both sides of the chunk boundary and at the end.
    for (const n of [0, 1, Math.floor(N / 2) - 1, Math.floor(N / 2), N - 2, N - 1, 123457 % N]) {
      for (let m = 0; m < M; m++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += xv[m * K + k]! * wv[n * K + k]!;
        expect(Math.abs(got[m * N + n]! - s), `y[${m}, ${n}]`).toBeLessThan(1e-4);
      }
    }
    let bad = 0;
    for (let n = 0; n < N; n += 97) {
      let s = 0;
      for (let k = 0; k < K; k++) s += xv[k]! * wv[n * K + k]!;
      if (Math.abs(got[n]! - s) > 1e-4) bad++;
    }
    expect(bad).toBe(0);
    for (const t of [w, x, y]) gpu.free(t);
  });

  it('split-K matches and is bit-identical from run to run', async () => {
    await check({ M: 5, N: 7, K: 300, transA: true, splitK: 4, repeat: true });
    await check({ M: 64, N: 70, K: 513, transA: true, splitK: 5, accumulate: true, repeat: true });
  });

  it('honours strides and offsets', async () => {
    // C[2:5, 3:9] of a [6, 10] matrix = A[1:4, 0:7] (rows of a [5, 8] matrix) · (B[2:8, :] of [10, 7])ᵀ
    await checkStrided({
      M: 3,
      N: 6,
      K: 7,
      a: [5, 8],
      aOffset: 8,
      b: [10, 7],
      bOffset: 2 * 7,
      c: [6, 10],
      cOffset: 23,
      bType: 'f16',
    });
  });

  it('rejects wrong dtypes and too-small buffers with named errors', async () => {
    const gpu = await getGpu();
    const a = gpu.tensorF32('a', [2, 3], 'scratch');
    const b = gpu.tensorF32('bsmall', [2, 3], 'scratch');
    const c = gpu.tensorF32('c', [2, 4], 'scratch');
    const rec = gpu.recorder();
    expect(() => recordMatmul(gpu, rec, { a, b, c, M: 2, N: 4, K: 3, transB: true })).toThrow(/bsmall/);
    expect(() =>
      recordMatmul(gpu, rec, {
        a: c,
        b: a,
        c: b,
        M: 2,
        N: 2,
        K: 3,
        transB: true,
        bias: gpu.tensor('ib', [2], 'i32', 'scratch'),
      }),
    ).toThrow(/i32/);
    for (const t of [a, b, c]) gpu.free(t);
  });
});

const devices: [string, () => Promise<Gpu>][] = [
  ['subgroups', getGpu],
  ['plain', getPlainGpu],
];

describe.each(devices)('matmul, small M (generation GEMV path), %s device', (_, device) => {
  const check1 = (c: Case) => check(c, 1, device);
  for (const M of [1, 2, 3, 8]) {
    for (const bType of ['f32', 'f16', 'bf16'] as const) {
      it(`M=${M}, B ${bType}: A·Bᵀ and A·B, bias, alpha, accumulate`, async () => {
        for (const transB of [true, false]) {
          await check1({ M, N: 129, K: 70, transB, bType, bias: bType, accumulate: true });
          await check1({ M, N: 1000, K: 37, transB, bType, bias: bType, alpha: -0.75 });
        }
      });
    }
  }

  it('odd strides and offsets of a 16-bit Bᵀ (unpaired words), and a K of one', async () => {
    await check1({ M: 2, N: 129, K: 1, transB: true, bType: 'bf16', bias: 'f32' });
    await check1({ M: 1, N: 65, K: 2, transB: true, bType: 'f16', accumulate: true });
    // C[0, 1:7] = A[1, 0:9] · (B[1:7, 1:10] of a bf16 [8, 11])ᵀ: odd ldb and offset.
    await checkStrided(
      { M: 1, N: 6, K: 9, a: [2, 9], aOffset: 9, b: [8, 11], bOffset: 12, c: [1, 8], cOffset: 1, bType: 'bf16' },
      device,
    );
  });

  it('chunks a big B into windows (A·Bᵀ N chunks, A·B K chunks)', async () => {
    await check1({ M: 1, N: 1000, K: 37, transB: true, bType: 'bf16', bias: 'bf16', maxBindingBytes: 4096 });
    await check1({ M: 3, N: 129, K: 70, transB: true, bType: 'f16', accumulate: true, maxBindingBytes: 2048 });
    await check1({ M: 8, N: 129, K: 70, transB: false, bType: 'f32', bias: 'f32', maxBindingBytes: 4096 });
    await check1({ M: 2, N: 1000, K: 37, transB: false, bType: 'bf16', accumulate: true, maxBindingBytes: 4096 });
  });

  it('is bit-identical from run to run', async () => {
    await check1({ M: 3, N: 1000, K: 37, transB: true, bType: 'bf16', repeat: true });
  });

  it('fuses the LoRA segment (extra): alpha2, output dropout, A dropout, bias, accumulate', async () => {
    const checkExtra1 = (c: ExtraCase) => checkExtra(c, 5, device);
    for (const M of [1, 2, 3, 8]) {
      await checkExtra1({ M, N: 129, K: 70, K2: 8, transB: true, bType: 'bf16', bias: true, alpha2: 0.5 });
      await checkExtra1({ M, N: 1000, K: 37, K2: 3, transB: false, bType: 'f16', accumulate: true, alpha: 1.5 });
    }
    await checkExtra1({
      M: 2,
      N: 129,
      K: 70,
      K2: 8,
      transB: true,
      bType: 'f32',
      dropA: 0.25,
      dropOut: 0.1,
      accumulate: true,
    });
    await checkExtra1({ M: 1, N: 1000, K: 37, K2: 5, transB: true, bType: 'f16', bias: true, dropOut: 0.5 });
    await checkExtra1({ M: 3, N: 129, K: 70, K2: 8, transB: true, bType: 'bf16', bias: true, maxBindingBytes: 4096 });
  });
});

describe('shader-f16 and subgroup variants against the plain f32 path', () => {
  it('the default device takes the variants where the adapter has the features', async () => {
    const gpu = await getGpu();
    const plain = await getPlainGpu();
    expect(plain.features.f16).toBe(false);
    expect(plain.features.subgroupLanes).toBe(0);
    console.log(
      `[tabtune] matmul variants: shader-f16 ${gpu.features.f16 ? 'yes' : 'no'}, subgroup lanes ${gpu.features.subgroupLanes}`,
    );
    await check({ M: 1, N: 129, K: 70, transB: true, bType: 'f16' });
    await check({ M: 37, N: 129, K: 70, transB: true, bType: 'f16' });
    const labels = gpu.pipelineLabels();
    if (gpu.features.subgroups) {
      expect(
        gpu.features.subgroupLanes,
        'subgroups present: the layout probe should accept this adapter',
      ).toBeGreaterThanOrEqual(4);
      expect(
        labels.some((l) => /^matmul_small1p_sg\d+_nt_f16/.test(l)),
        labels.join(' '),
      ).toBe(true);
    }
    if (gpu.features.f16)
      expect(
        labels.some((l) => /^matmul_\d+x\d+_nt_f16.*_nativef16$/.test(l)),
        labels.join(' '),
      ).toBe(true);
    expect(plain.pipelineLabels().some((l) => /_sg|_nativef16/.test(l))).toBe(false);
  });

  it('f16 weights and biases read natively give bit-identical results, tiled and small-M, with and without the LoRA segment', async () => {
    const bits = (x: Float32Array) => new Uint32Array(x.buffer);
    for (const [name, transA, transB] of layouts) {
      const c: Case = { M: 37, N: 129, K: 70, transA, transB, bType: 'f16', bias: 'f16', accumulate: true };
      expect(bits(await check(c, 3, getGpu)), name).toEqual(bits(await check(c, 3, getPlainGpu)));
    }
    const e: ExtraCase = {
      M: 37,
      N: 129,
      K: 70,
      K2: 8,
      transB: true,
      bType: 'f16',
      bias: true,
      alpha2: 0.5,
      dropOut: 0.1,
    };
    expect(bits(await checkExtra(e, 4, getGpu))).toEqual(bits(await checkExtra(e, 4, getPlainGpu)));
    // Small M, B not transposed: the workgroup-memory reduction on both devices, native f16 on one.
    const s: Case = { M: 3, N: 1000, K: 37, transB: false, bType: 'f16', bias: 'f16' };
    expect(bits(await check(s, 5, getGpu))).toEqual(bits(await check(s, 5, getPlainGpu)));
    // An f32 weight with an f16 bias.
    const fb: Case = { M: 37, N: 129, K: 70, transB: true, bType: 'f32', bias: 'f16' };
    expect(bits(await check(fb, 6, getGpu))).toEqual(bits(await check(fb, 6, getPlainGpu)));
  });

  it('the subgroup reduction agrees with the workgroup-memory reduction and is bit-identical from run to run', async () => {
    for (const bType of ['f32', 'f16', 'bf16'] as const) {
      const c: Case = { M: 8, N: 1000, K: 333, transB: true, bType, bias: bType, repeat: true };
      const a = await check(c, 6, getGpu);
      const b = await check(c, 6, getPlainGpu);
      expectClose(Float64Array.from(b), a, {
        name: `subgroup vs plain, ${bType}`,
        atol: 1e-5 * Math.sqrt(333),
        rtol: 1e-5,
      });
    }
  });
});
