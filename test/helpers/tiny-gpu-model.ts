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

/** The float64 view of a loaded model's weights, for the reference model. */
export function refWeights(loaded: LoadedModel): RefWeights {
  const cache = new Map<string, Float64Array>();
  return {
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
}

/** A tiny model loaded through the real loader, on the CPU only (reference tests). */
export async function tinyRefModel(o: TinyModelOptions): Promise<{ loaded: LoadedModel; ref: RefWeights }> {
  const loaded = await loadModel(new MemorySource(makeTinyModelInMemory(o), `tiny-${o.modelType}`));
  return { loaded, ref: refWeights(loaded) };
}

export async function tinyGpuModel(gpu: Gpu, o: TinyModelOptions): Promise<TinyGpuModel> {
  const files = makeTinyModelInMemory(o);
  const loaded = await loadModel(new MemorySource(files, `tiny-${o.modelType}`));
  const model = GpuModel.upload(gpu, loaded);
  return { loaded, model, ref: refWeights(loaded), files };
}
