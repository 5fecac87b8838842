/**
 * The engine's loaded base model: what it holds of it (LoadedModelState), where its files come from
 * (sourceFor), the key its tokenized datasets are stored under, and the ModelInfo the app and the
 * CLI show. Engine.loadModel reads, tokenizes and uploads it.
 */

import { samplingDefaults } from '../generate/sampling';
import { defaultTargetModules, distinctNames } from '../lora/targets';
import type { ModelConfig } from '../model/config';
import type { GpuModel } from '../model/gpu-model';
import type { ModelSource } from '../model/source';
import type { TextTokenizer } from '../model/tokenizer';
import type { TokenizerFiles, TokenizerPool } from '../train/data/pool';
import type { ModelInfo, ModelSourceSpec } from './types';

export interface LoadedModelState {
  id: string;
  config: ModelConfig;
  tokenizer: TextTokenizer;
  /** SHA-256 of the tokenizer's files (what names its tokenized datasets in a TokenStore). */
  tokenizerKey: string;
  /** What a tokenizing worker loads its copy of the tokenizer from. */
  tokenizerFiles: TokenizerFiles;
  /** generation_config.json, null when the model has none. */
  generationConfig: Record<string, unknown> | null;
  /** Workers tokenizing large datasets with this tokenizer, once one is read lazily. */
  pool: TokenizerPool | null;
  gpuModel: GpuModel;
  totalParams: number;
  dtype: string;
  /** Where it was read from (merging reads its files again). */
  source: ModelSource;
}

/** SHA-256 of `text` as hex (names a tokenizer's stored datasets). */
export async function sha256Hex(text: string): Promise<string> {
  const h = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
  return Array.from(h, (b) => b.toString(16).padStart(2, '0')).join('');
}

export async function sourceFor(spec: ModelSourceSpec): Promise<ModelSource> {
  const m = await import('../model/source');
  switch (spec.kind) {
    case 'dir':
      return new m.DirSource(spec.path);
    case 'hub':
      return m.UrlSource.hub(spec.id, spec.revision ?? 'main', { token: spec.token });
    case 'url':
      return new m.UrlSource(spec.baseUrl, spec.id);
    case 'files':
      return new m.FileListSource(spec.files, spec.id);
  }
}

/** What the app and the CLI show of a loaded model. */
export function modelInfoOf(m: LoadedModelState): ModelInfo {
  const c = m.config;
  let defaults: string[];
  try {
    defaults = defaultTargetModules(c.modelType);
  } catch {
    defaults = distinctNames(m.gpuModel.linears);
  }
  return {
    id: m.id,
    modelType: c.modelType,
    family: c.family,
    parameters: m.totalParams,
    weightBytes: m.gpuModel.weightBytes,
    dtype: m.dtype,
    hiddenSize: c.hiddenSize,
    numLayers: c.numLayers,
    vocabSize: c.vocabSize,
    maxPositions: c.maxPositions,
    linearModules: distinctNames(m.gpuModel.linears),
    defaultTargets: defaults,
    hasChatTemplate: m.tokenizer.hasChatTemplate,
    eosTokenIds: m.tokenizer.eosTokenIds.length ? m.tokenizer.eosTokenIds : c.eosTokenIds,
    generationDefaults: samplingDefaults(m.generationConfig),
    quantization: m.gpuModel.quantization,
  };
}
