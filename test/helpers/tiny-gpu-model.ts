/**
 * Builds a tiny random Hugging Face model (test/fixtures/tiny-model.ts) in memory, loads it through
 * the real loader, uploads it to the GPU, and gives the float64 view of the same weights for the
 * reference model.
 */
import type { Gpu } from '../../src/gpu';
import { type FrozenWeightsOptions, GpuModel } from '../../src/model/gpu-model';
import { type LoadedModel, loadModel } from '../../src/model/load';
import { type FloatDType, quantizeNf4 } from '../../src/model/nf4';
import type { LinearModule } from '../../src/model/registry';
import { tensorToF32 } from '../../src/model/safetensors';
import { MemorySource } from '../../src/model/source';
import type { RefWeights } from '../../src/reference/model';
import { dequantizeNf4Ref } from '../../src/reference/nf4';
import { type TinyModelOptions, makeTinyModelInMemory } from '../fixtures/tiny-model';

export interface TinyGpuModel {
  loaded: LoadedModel;
  model: GpuModel;
  ref: RefWeights;
  files: Map<string, Uint8Array>;
}

/**
 * The float64 view of a loaded model's weights, for the reference model. With `frozen.quantize:
 * 'nf4'` the linear weights (`linears`, by weight key) read as their float64 dequantization, in the
 * checkpoint's stored layout (so GPT-2's stays [in, out]).
 */
export function refWeights(
  loaded: LoadedModel,
  frozen: FrozenWeightsOptions = {},
  linears: ReadonlyMap<string, LinearModule> = new Map(),
): RefWeights {
  const cache = new Map<string, Float64Array>();
  return {
    config: loaded.config,
    arch: loaded.arch,
    get(key: string): Float64Array {
      let v = cache.get(key);
      if (!v) {
        const t = loaded.tensors.get(key);
        if (!t) throw new Error(`reference: no tensor "${key}"`);
        const m = linears.get(key);
        if (m && frozen.quantize === 'nf4') {
          const q = quantizeNf4({ dtype: t.dtype as FloatDType, data: t.data }, m.outF, m.inF, {
            transposed: m.transposed,
            doubleQuant: frozen.doubleQuant ?? true,
          });
          const w = dequantizeNf4Ref(q); // [out, in]
          v = m.transposed ? Float64Array.from(w, (_, i) => w[(i % m.outF) * m.inF + Math.floor(i / m.outF)]!) : w;
        } else v = Float64Array.from(tensorToF32(t));
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

export async function tinyGpuModel(
  gpu: Gpu,
  o: TinyModelOptions,
  frozen: FrozenWeightsOptions = {},
): Promise<TinyGpuModel> {
  const files = makeTinyModelInMemory(o);
  const loaded = await loadModel(new MemorySource(files, `tiny-${o.modelType}`));
  const model = await GpuModel.upload(gpu, loaded, frozen);
  const linears = new Map(model.linears.map((m) => [m.weightKey, m]));
  return { loaded, model, ref: refWeights(loaded, frozen, linears), files };
}
