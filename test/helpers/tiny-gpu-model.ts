/**
 * Builds a tiny random Hugging Face model (test/fixtures/tiny-model.ts) in memory, loads it through
 * the real loader, uploads it to the GPU, and gives the float64 view of the same weights for the
 * reference model.
 */
import type { Gpu } from '../../src/gpu';
import { GpuModel } from '../../src/model/gpu-model';
import { type LoadedModel, loadModel } from '../../src/model/load';
import { tensorToF32 } from '../../src/model/safetensors';
import { MemorySource } from '../../src/model/source';
import type { RefWeights } from '../../src/reference/model';
import { type TinyModelOptions, makeTinyModelInMemory } from '../fixtures/tiny-model';

export interface TinyGpuModel {
  loaded: LoadedModel;
  model: GpuModel;
  ref: RefWeights;
  files: Map<string, Uint8Array>;
}

export async function tinyGpuModel(gpu: Gpu, o: TinyModelOptions): Promise<TinyGpuModel> {
  const files = makeTinyModelInMemory(o);
  const loaded = await loadModel(new MemorySource(files, `tiny-${o.modelType}`));
  const model = GpuModel.upload(gpu, loaded);
  const cache = new Map<string, Float64Array>();
  const ref: RefWeights = {
    config: loaded.config,
    arch: loaded.arch,
    get(key: string): Float64Array {
      let v = cache.get(key);
      if (!v) {
        const t = loaded.tensors.get(key);
        if (!t) throw new Error(`reference: no tensor "${key}"`);
        v = Float64Array.from(tensorToF32(t));
        cache.set(key, v);
      }
      return v;
    },
  };
  return { loaded, model, ref, files };
}
