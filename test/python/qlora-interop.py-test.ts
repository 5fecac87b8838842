/**
 * QLoRA interop with Hugging Face's stack and bitsandbytes' 4-bit NF4 rule (implemented in Python
 * from bitsandbytes' source in scripts/qlora_interop.py, since bitsandbytes itself does not install
 * here), on tiny bf16 models of a Linear and a Conv1D architecture:
 *   1. Tabtune's NF4 weights as its GPU holds them (packed bytes, absmax, double quantization, and
 *      the dequantized values from the GPU) equal the Python implementation's: bytes and statistics
 *      bit for bit, dequantized values to float32 rounding; the dynamic map equals torch's.
 *   2. A bitsandbytes 4-bit checkpoint written by Python loads in Tabtune as stored and gives the
 *      same loss as Tabtune's own --quantize nf4 and as Python on the dequantized weights.
 *   3. An adapter trained on the 4-bit base (`tabtune train --quantize nf4`) is an ordinary PEFT
 *      adapter: PeftModel.from_pretrained loads it on the 16-bit base. On the 4-bit base Python and
 *      Tabtune agree to 1e-4; on the 16-bit base the loss moves by the quantization error of the
 *      base model (printed; below 5% relative on these models).
 * Run by `npm test` after the vitest suite, or alone by `npm run test:peft`.
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu';
import { type Nf4Tensor, recordDequantizeNf4 } from '../../src/kernels/nf4';
import { GpuModel } from '../../src/model/gpu-model';
import { loadModelFiles } from '../../src/model/load';
import { type SafeDType, writeSafetensors } from '../../src/model/safetensors';
import { DirSource } from '../../src/model/source';
import { dynamicMap, nestedBlocks, nf4Blocks } from '../../src/reference/nf4';
import { writeTinyModel } from '../fixtures/tiny-model';
import { getGpu } from '../helpers/gpu';
import { closePython, expectSameLoss, pyScript, tabtune, corpusDir } from '../helpers/interop';

let dir = '';

const python = <T = Record<string, number>>(args: string[]) => pyScript<T>('qlora_interop.py', args);

/**
 * Every 4-bit weight as Tabtune's GPU holds it, for the Python side: W.packed, W.absmax (U8 indices or
 * F32), W.nested_absmax, W.offset, and W.dequantized (the GPU's own dequantization, [out, in]).
 */
async function dumpNf4(gpu: Gpu, model: GpuModel, file: string): Promise<void> {
  const list: { name: string; dtype: SafeDType; shape: number[]; data: ArrayBufferView }[] = [];
  for (const m of model.linears) {
    const w = model.frozen(m).w as Nf4Tensor;
    const n = w.rows * w.cols;
    const packed = new Uint8Array((await gpu.readU32(w.q)).buffer).slice(0, Math.ceil(n / 2));
    const stats = await gpu.readU32(w.stats);
    const f = new Float32Array(stats.buffer);
    const key = m.weightKey;
    list.push({ name: `${key}.packed`, dtype: 'U8', shape: [packed.length], data: packed });
    const nb = nf4Blocks(n);
    if (w.doubleQuant) {
      const q = new Uint8Array(stats.buffer, 4 * w.layout.absOff, nb).slice();
      list.push({ name: `${key}.absmax`, dtype: 'U8', shape: [nb], data: q });
      const a2 = f.slice(w.layout.abs2Off, w.layout.abs2Off + nestedBlocks(n));
      list.push({ name: `${key}.nested_absmax`, dtype: 'F32', shape: [a2.length], data: a2 });
      list.push({ name: `${key}.offset`, dtype: 'F32', shape: [1], data: f.slice(272, 273) });
    } else {
      const a = f.slice(w.layout.absOff, w.layout.absOff + nb);
      list.push({ name: `${key}.absmax`, dtype: 'F32', shape: [nb], data: a });
    }
    const out = gpu.tensorF32('deq', [w.rows, w.cols], 'scratch');
    const rec = gpu.recorder();
    recordDequantizeNf4(gpu, rec, w, out);
    rec.submit();
    list.push({ name: `${key}.dequantized`, dtype: 'F32', shape: [w.rows, w.cols], data: await gpu.read(out) });
    gpu.free(out);
  }
  await writeFile(file, writeSafetensors(list));
}

beforeAll(async () => {
  dir = await corpusDir('tabtune-qlora-');
});

afterAll(async () => {
  closePython();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('QLoRA interop: bitsandbytes NF4 rule in Python, PEFT on the 16-bit base', () => {
  it("the dynamic map of double quantization is torch's float32 create_dynamic_map", async () => {
    const theirs = await python<number[]>(['dynamic-map']);
    expect(Array.from(dynamicMap())).toEqual(theirs);
  });

  for (const type of ['llama', 'gpt2'] as const) {
    it(`${type}: Tabtune's NF4 weights equal the Python rule; a Python bnb-4bit checkpoint loads; a QLoRA adapter loads in PEFT`, async () => {
      const model = join(dir, type);
      await writeTinyModel(model, { modelType: type, dtype: 'BF16', seed: 5, addBos: type === 'llama' });
      const data = join(dir, 'eval.jsonl');

      // 1. Tabtune's GPU weights against the Python implementation, with and without double quantization.
      const gpu = await getGpu();
      const src = new DirSource(model);
      const config = (await loadModelFiles(src)).config;
      for (const doubleQuant of [true, false]) {
        const m = await GpuModel.stream(gpu, src, config, { quantize: 'nf4', doubleQuant });
        const file = join(dir, `${type}-nf4-${doubleQuant}.safetensors`);
        try {
          await dumpNf4(gpu, m, file);
        } finally {
          m.dispose();
        }
        const cmp = await python([
          'compare-nf4',
          '--model',
          model,
          '--tabtune',
          file,
          ...(doubleQuant ? [] : ['--no-double-quant']),
        ]);
        console.log(`[tabtune] ${type} NF4${doubleQuant ? ' double-quant' : ''} vs Python: ${JSON.stringify(cmp)}`);
        expect(cmp.modules).toBe(m.linears.length);
        expect(cmp.bad_bytes, 'packed 4-bit indices').toBe(0);
        expect(cmp.bad_stats, 'absmax / nested absmax / offset').toBe(0);
        // The GPU may fuse absmax = map[q] * absmax2 + offset into one rounding: one float32 step at most.
        expect(cmp.worst_ulps, 'dequantized weights, in float32 steps').toBeLessThanOrEqual(1);
      }

      // 2. A bitsandbytes 4-bit checkpoint written by Python: the same loss three ways.
      const bnb = join(dir, `${type}-bnb-4bit`);
      await python(['quantize', '--model', model, '--out', bnb]);
      const stored = await tabtune(['eval', '--model', bnb, '--data', data, '--json']);
      const atLoad = await tabtune(['eval', '--model', model, '--quantize', 'nf4', '--data', data, '--json']);
      const py4 = await python(['eval', '--model', model, '--data', data, '--dequantize-nf4']);
      expectSameLoss(stored, py4, `${type} bnb-4bit checkpoint in Tabtune`);
      expectSameLoss(atLoad, py4, `${type} --quantize nf4`);

      // 3. An adapter trained on the 4-bit base, loaded by PEFT on the 16-bit base.
      const adapter = join(dir, `${type}-qlora`);
      await tabtune([
        'train',
        '--model',
        model,
        '--quantize',
        'nf4',
        '--data',
        join(dir, 'train.jsonl'),
        '--out',
        adapter,
        '--targets',
        'all-linear',
        '--r',
        '4',
        '--alpha',
        '8',
        '--dropout',
        '0',
        '--steps',
        '12',
        '--lr',
        '0.02',
        '--seed',
        '3',
        '--json',
      ]);
      const on4Here = await tabtune([
        'eval',
        '--model',
        model,
        '--quantize',
        'nf4',
        '--adapter',
        adapter,
        '--data',
        data,
        '--json',
      ]);
      const on4There = await python([
        'eval',
        '--model',
        model,
        '--adapter',
        adapter,
        '--data',
        data,
        '--dequantize-nf4',
      ]);
      expectSameLoss(on4Here, on4There, `${type} QLoRA adapter on the 4-bit base`);
      const on16Here = await tabtune(['eval', '--model', model, '--adapter', adapter, '--data', data, '--json']);
      const on16There = await python(['eval', '--model', model, '--adapter', adapter, '--data', data]);
      expectSameLoss(on16Here, on16There, `${type} QLoRA adapter on the 16-bit base (PeftModel)`);
      const moved = Math.abs(on16There.loss! - on4There.loss!) / on4There.loss!;
      console.log(
        `[tabtune] ${type}: QLoRA adapter loss on ${on4There.tokens} tokens: 4-bit base ${on4Here.loss!.toFixed(5)} ` +
          `(Python ${on4There.loss!.toFixed(5)}), 16-bit base ${on16Here.loss!.toFixed(5)} (PeftModel ` +
          `${on16There.loss!.toFixed(5)}): ${(100 * moved).toFixed(2)}% apart; base model alone: 4-bit ` +
          `${py4.loss!.toFixed(5)}`,
      );
      expect(moved).toBeGreaterThan(0);
      expect(moved).toBeLessThan(0.05);
    }, 600_000);
  }
});
