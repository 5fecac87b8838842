/**
 * Weights streamed onto the GPU: the safetensors stream parser on arbitrary chunk boundaries,
 * GpuModel.stream as stored and with 4-bit NF4 quantization at load (never reading a weight file
 * whole), and pre-quantized bitsandbytes 4-bit checkpoints read as stored.
 */
import { describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu';
import { type Nf4Tensor, nf4GpuBytes, recordDequantizeNf4 } from '../../src/kernels/nf4';
import { ConfigError } from '../../src/model/config';
import { GpuModel } from '../../src/model/gpu-model';
import { loadModel, loadModelFiles } from '../../src/model/load';
import { type FloatDType, dequantizeNf4, quantizeNf4 } from '../../src/model/nf4';
import {
  type SafeDType,
  parseSafetensors,
  parseSafetensorsHeader,
  writeSafetensors,
} from '../../src/model/safetensors';
import { SafetensorsStream, collectTensor } from '../../src/model/safetensors-stream';
import { type ChunkFn, MemorySource, type ReadProgress } from '../../src/model/source';
import { makeTinyModel } from '../fixtures/tiny-model';
import { toBnbCheckpoint } from '../helpers/bnb';
import { expectClose, rng } from '../helpers/close';
import { getGpu } from '../helpers/gpu';

/** A source that hands out weight files only in small uneven chunks (and refuses to read them whole). */
class ChunkedSource extends MemorySource {
  streamed: string[] = [];
  override async read(path: string, onProgress?: ReadProgress): Promise<Uint8Array> {
    if (path.endsWith('.safetensors')) throw new Error(`${path} was read whole`);
    return super.read(path, onProgress);
  }
  override async stream(path: string, onChunk: ChunkFn): Promise<void> {
    const bytes = await super.read(path);
    this.streamed.push(path);
    const r = rng(path.length);
    const buf = new Uint8Array(64);
    for (let p = 0; p < bytes.length;) {
      const n = Math.min(bytes.length - p, 1 + Math.floor(r() * 63));
      buf.set(bytes.subarray(p, p + n)); // one reused buffer: a chunk is valid only during the call
      await onChunk(buf.subarray(0, n));
      buf.fill(0xee);
      p += n;
    }
  }
}

async function nf4Values(gpu: Gpu, w: Nf4Tensor): Promise<Float32Array> {
  const out = gpu.tensorF32('deq', [w.rows, w.cols], 'scratch');
  const rec = gpu.recorder();
  recordDequantizeNf4(gpu, rec, w, out);
  rec.submit();
  const v = await gpu.read(out);
  gpu.free(out);
  return v;
}

describe('SafetensorsStream', () => {
  it('delivers every tensor whole across arbitrary chunk boundaries, skips unwanted ones, rejects a cut file', async () => {
    const list: { name: string; dtype: SafeDType; shape: number[]; data: ArrayBufferView }[] = [
      { name: 'a', dtype: 'U8', shape: [3], data: Uint8Array.from([1, 2, 3]) },
      { name: 'b', dtype: 'BF16', shape: [5], data: Uint16Array.from([1, 2, 3, 4, 5]) },
      { name: 'empty', dtype: 'F32', shape: [0], data: new Float32Array(0) },
      { name: 'c', dtype: 'F32', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
      { name: 'skip', dtype: 'F32', shape: [7], data: new Float32Array(7) },
    ];
    const file = writeSafetensors(list);
    const want = parseSafetensors(file).tensors;
    for (const chunk of [1, 3, 8, 1000]) {
      const got = new Map<string, Uint8Array>();
      const s = new SafetensorsStream('f.safetensors', {
        tensor: (name, e) =>
          name === 'skip'
            ? null
            : collectTensor(e.data_offsets[1] - e.data_offsets[0], (b) => {
                got.set(name, b);
              }),
      });
      for (let p = 0; p < file.length; p += chunk) await s.push(file.slice(p, p + chunk));
      await s.finish();
      expect([...got.keys()].sort()).toEqual(['a', 'b', 'c', 'empty']);
      for (const [k, v] of got) expect(v).toEqual(want.get(k)!.data);
    }
    const cut = new SafetensorsStream('f.safetensors', { tensor: () => null });
    await cut.push(file.subarray(0, file.length - 5));
    await expect(cut.finish()).rejects.toThrow(
      /f\.safetensors: its header declares \d+ bytes, but the file has \d+; the file is truncated/,
    );
  });
});

describe('GpuModel.stream', () => {
  it('uploads every tensor as stored, from chunks, without reading a weight file whole (sharded too)', async () => {
    const gpu = await getGpu();
    for (const sharded of [false, true]) {
      const m = makeTinyModel({ modelType: 'qwen2', dtype: 'BF16', sharded, seed: 2 });
      const source = new ChunkedSource(m.files);
      const files = await loadModelFiles(source);
      const model = await GpuModel.stream(gpu, source, files.config);
      expect(source.streamed.every((f) => f.endsWith('.safetensors'))).toBe(true);
      expect(model.quantization).toBeNull();
      const loaded = await loadModel(new MemorySource(m.files));
      for (const [key, t] of loaded.tensors) {
        const bytes = new Uint8Array(
          await gpu.readBytes(model.weight(key).buffer, 0, Math.ceil(t.data.length / 4) * 4),
        );
        expect(bytes.subarray(0, t.data.length), key).toEqual(t.data);
      }
      model.dispose();
    }
  });

  for (const modelType of ['llama', 'gpt2'] as const) {
    it(`${modelType}: --quantize nf4 holds every linear weight in 4 bits, the rest as stored`, async () => {
      const gpu = await getGpu();
      const m = makeTinyModel({ modelType, dtype: 'BF16', seed: 5 });
      const source = new ChunkedSource(m.files);
      const files = await loadModelFiles(source);
      const model = await GpuModel.stream(gpu, source, files.config, { quantize: 'nf4' });
      const loaded = await loadModel(new MemorySource(m.files));
      expect(model.quantization).toEqual({
        format: 'nf4',
        doubleQuant: true,
        source: 'load',
        modules: model.linears.length,
      });
      for (const mod of model.linears) {
        const w = model.frozen(mod).w as Nf4Tensor;
        expect(w.format).toBe('nf4');
        expect([w.rows, w.cols]).toEqual([mod.outF, mod.inF]);
        const t = loaded.tensors.get(mod.weightKey)!;
        const host = quantizeNf4({ dtype: t.dtype as FloatDType, data: t.data }, mod.outF, mod.inF, {
          transposed: mod.transposed,
          doubleQuant: true,
        });
        const q = await gpu.readU32(w.q);
        expect(new Uint8Array(q.buffer).subarray(0, host.packed.length)).toEqual(host.packed);
        expectClose(dequantizeNf4(host), await nf4Values(gpu, w), { name: mod.path, atol: 1e-9, rtol: 3e-7 });
        expect(() => model.weight(mod.weightKey)).toThrow(/not on the GPU/);
        if (mod.biasKey) expect(model.weight(mod.biasKey).dtype).toBe('bf16');
      }
      expect(model.weight(model.arch.embed).dtype).toBe('bf16');
      // Each linear weight: 2 bytes an element at 16 bits, 4 bits an element plus statistics in NF4.
      const sixteen = await GpuModel.upload(gpu, loaded);
      let expected = sixteen.weightBytes;
      for (const l of model.linears) {
        const w = sixteen.weight(l.weightKey);
        expected += nf4GpuBytes(l.inF * l.outF, true) - w.buffer.size;
      }
      expect(model.weightBytes).toBe(expected);
      sixteen.dispose();
      model.dispose();
    });
  }
});

/** A U8 JSON entry replaced by other JSON. */
function json<T extends { shape: number[] }>(text: string, e: T): T & { data: Uint8Array } {
  const data = new TextEncoder().encode(text);
  return { ...e, shape: [data.length], data };
}

describe('non-finite weights with --quantize nf4', () => {
  it('a NaN in a linear weight is refused before quantizing would hide it, naming file, tensor and element', async () => {
    const gpu = await getGpu();
    const m = makeTinyModel({ modelType: 'llama', dtype: 'BF16', seed: 7 });
    const file = new Uint8Array(m.files.get('model.safetensors')!);
    const { entries, dataStart } = parseSafetensorsHeader(file);
    const key = 'model.layers.1.mlp.up_proj.weight';
    const [b0] = entries.get(key)!.data_offsets;
    new DataView(file.buffer).setUint16(dataStart + b0 + 2 * 41, 0x7fc0, true); // a bf16 NaN
    const src = new MemorySource(new Map(m.files).set('model.safetensors', file));
    await expect(GpuModel.stream(gpu, src, (await loadModelFiles(src)).config, { quantize: 'nf4' })).rejects.toThrow(
      `model.safetensors: tensor "${key}" (BF16) holds NaN at element 41.`,
    );
    expect(gpu.memory().byCategory.weights).toBe(0);
  });
});

describe('bitsandbytes 4-bit checkpoints', () => {
  for (const [modelType, doubleQuant] of [
    ['llama', true],
    ['gpt2', true],
    ['qwen3', false],
  ] as const) {
    it(`${modelType}${doubleQuant ? ' (double quant)' : ''}: read as stored, the same GPU bytes as quantizing the 16-bit model at load`, async () => {
      const gpu = await getGpu();
      const m = makeTinyModel({ modelType, dtype: 'BF16', seed: 6 });
      const bnbFiles = toBnbCheckpoint(m.files, { doubleQuant });
      const source = new ChunkedSource(bnbFiles);
      const files = await loadModelFiles(source);
      expect(files.config.quantization).toEqual({ method: 'bnb-nf4', doubleQuant });
      const pre = await GpuModel.stream(gpu, source, files.config);
      expect(pre.quantization).toEqual({
        format: 'nf4',
        doubleQuant,
        source: 'checkpoint',
        modules: pre.linears.length,
      });
      expect(pre.dtypes).toContain('NF4');
      const plain = new MemorySource(m.files);
      const atLoad = await GpuModel.stream(gpu, plain, (await loadModelFiles(plain)).config, {
        quantize: 'nf4',
        doubleQuant,
      });
      expect(pre.weightBytes).toBe(atLoad.weightBytes);
      expect(pre.params).toBe(atLoad.params);
      for (const mod of pre.linears) {
        const a = pre.frozen(mod).w as Nf4Tensor;
        const b = atLoad.frozen(mod).w as Nf4Tensor;
        expect(await gpu.readU32(a.q), mod.path).toEqual(await gpu.readU32(b.q));
        expect(await gpu.readU32(a.stats), mod.path).toEqual(await gpu.readU32(b.stats));
      }
      pre.dispose();
      atLoad.dispose();
    });
  }

  it('a bad checkpoint is an error naming the file and tensor', async () => {
    const gpu = await getGpu();
    const m = makeTinyModel({ modelType: 'llama', dtype: 'BF16', seed: 6 });
    const load = async (files: Map<string, Uint8Array>) => {
      const src = new MemorySource(files);
      return GpuModel.stream(gpu, src, (await loadModelFiles(src)).config);
    };
    const key = 'model.layers.1.mlp.up_proj.weight';
    const drop = toBnbCheckpoint(m.files, {
      doubleQuant: true,
      edit: (l) => l.filter((e) => e.name !== `${key}.nested_absmax`),
    });
    await expect(load(drop)).rejects.toThrow(`missing tensor "${key}.nested_absmax"`);
    const badShape = toBnbCheckpoint(m.files, {
      doubleQuant: false,
      edit: (l) =>
        l.map((e) =>
          e.name === `${key}.quant_state.bitsandbytes__nf4`
            ? json('{"quant_type":"nf4","blocksize":64,"shape":[3,4]}', e)
            : e,
        ),
    });
    await expect(load(badShape)).rejects.toThrow(
      `model.safetensors: "${key}.quant_state.bitsandbytes__nf4" has shape [3,4]; expected [`,
    );
    const fp4 = toBnbCheckpoint(m.files, {
      doubleQuant: false,
      edit: (l) => l.map((e) => (e.name.endsWith('__nf4') ? { ...e, name: e.name.replace('__nf4', '__fp4') } : e)),
    });
    await expect(load(fp4)).rejects.toThrow(/is a bitsandbytes FP4 weight; Tabtune reads NF4 only/);
    const configWith = (q: Record<string, unknown>) => {
      const c = JSON.parse(new TextDecoder().decode(m.files.get('config.json')!)) as Record<string, unknown>;
      return new Map(m.files).set(
        'config.json',
        new TextEncoder().encode(JSON.stringify({ ...c, quantization_config: q })),
      );
    };
    await expect(load(configWith({ quant_method: 'bitsandbytes', load_in_8bit: true }))).rejects.toThrow(ConfigError);
    await expect(load(configWith({ quant_method: 'bitsandbytes', load_in_8bit: true }))).rejects.toThrow(
      /8-bit \(LLM\.int8\) is not supported; Tabtune reads 4-bit NF4 ones/,
    );
    await expect(
      load(configWith({ quant_method: 'bitsandbytes', load_in_4bit: true, bnb_4bit_quant_type: 'fp4' })),
    ).rejects.toThrow(/bnb_4bit_quant_type "fp4" is not supported/);
    await expect(load(configWith({ quant_method: 'gptq' }))).rejects.toThrow(/quant_method "gptq"/);
    expect(gpu.memory().byCategory.weights).toBe(0);
  });
});
