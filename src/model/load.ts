/**
 * Loads a Hugging Face model folder/repo from any ModelSource into CPU memory:
 *   config.json                              -> ModelConfig (validated first, before big downloads)
 *   tokenizer.json, tokenizer_config.json    -> raw JSON for createTokenizer (chat template taken
 *                                               from chat_template.jinja / chat_template.json when
 *                                               tokenizer_config.json has none, as newer repos do)
 *   generation_config.json (optional)        -> its eos_token_id(s) are added to config.eosTokenIds
 *   model.safetensors, or model.safetensors.index.json + its shards
 * and resolves the architecture (registry.describeModel), checking every tensor name and shape.
 */

import { roundThroughHalf } from '../gpu/half';
import { type ModelConfig, parseConfig } from './config';
import { type ArchWeights, describeModel, expectedTensors, referencedKeys } from './registry';
import { type SafeTensor, SafetensorsError, parseSafetensors } from './safetensors';
import { type ModelSource, isNotFound } from './source';

export class ModelLoadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelLoadError';
  }
}

export type LoadProgressFn = (file: string, loaded: number, total: number | null) => void;

export interface LoadModelOptions {
  /** Byte progress of each file read, named by its path in the source. */
  onProgress?: LoadProgressFn;
}

export type JsonObject = Record<string, unknown>;

export interface LoadedModel {
  config: ModelConfig;
  arch: ArchWeights;
  /** Every tensor of the checkpoint (data are views into the file bytes). */
  tensors: Map<string, SafeTensor>;
  tokenizerJson: JsonObject;
  /** tokenizer_config.json ({} when the repo has none), with chat_template filled in from a separate file if needed. */
  tokenizerConfig: JsonObject;
  generationConfig: JsonObject | null;
  /** Weight files read, in order. */
  weightFiles: string[];
  /** The weight file that holds a key, for messages. */
  weightFileOf: (key: string) => string;
}

export const CONFIG_FILE = 'config.json';
export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';
export const GENERATION_CONFIG_FILE = 'generation_config.json';
export const WEIGHTS_FILE = 'model.safetensors';
export const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';

const SUPPORTED_WEIGHT_DTYPES = new Set(['F32', 'F16', 'BF16']);

function parseJsonObject(bytes: Uint8Array, file: string, source: ModelSource): JsonObject {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new ModelLoadError(`${file} of ${source.name} is not valid JSON (${(e as Error).message}).`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v))
    throw new ModelLoadError(`${file} of ${source.name} is not a JSON object.`);
  return v as JsonObject;
}

/** Reads a file, or returns null when the source says it does not exist. */
async function readOptional(source: ModelSource, file: string, opts: LoadModelOptions): Promise<Uint8Array | null> {
  try {
    return await source.read(file, opts.onProgress && ((l, t) => opts.onProgress!(file, l, t)));
  } catch (e) {
    if (isNotFound(e)) return null;
    throw e;
  }
}

async function readRequired(
  source: ModelSource,
  file: string,
  opts: LoadModelOptions,
  why: string,
): Promise<Uint8Array> {
  const bytes = await readOptional(source, file, opts);
  if (!bytes) throw new ModelLoadError(`${source.name} has no ${file}; ${why}`);
  return bytes;
}

/** Reads and parses only config.json (cheap: lets the UI show size and cost before the download). */
export async function loadConfigOnly(source: ModelSource, opts: LoadModelOptions = {}): Promise<ModelConfig> {
  const bytes = await readRequired(
    source,
    CONFIG_FILE,
    opts,
    'expected a Hugging Face model folder (config.json, tokenizer.json, model.safetensors).',
  );
  return parseConfig(parseJsonObject(bytes, CONFIG_FILE, source), CONFIG_FILE);
}

/** tokenizer.json + tokenizer_config.json (+ chat template files). */
export async function loadTokenizerFiles(
  source: ModelSource,
  opts: LoadModelOptions = {},
): Promise<{ tokenizerJson: JsonObject; tokenizerConfig: JsonObject }> {
  const tokBytes = await readRequired(
    source,
    TOKENIZER_FILE,
    opts,
    'Tabtune needs the "fast" tokenizer file tokenizer.json (repos with only tokenizer.model or vocab.json/merges.txt are not supported).',
  );
  const tokenizerJson = parseJsonObject(tokBytes, TOKENIZER_FILE, source);
  const cfgBytes = await readOptional(source, TOKENIZER_CONFIG_FILE, opts);
  const tokenizerConfig = cfgBytes ? parseJsonObject(cfgBytes, TOKENIZER_CONFIG_FILE, source) : {};
  if (tokenizerConfig.chat_template === undefined || tokenizerConfig.chat_template === null) {
    // transformers >= 4.43 saves the template on its own.
    const jinja = await readOptional(source, 'chat_template.jinja', opts);
    if (jinja) tokenizerConfig.chat_template = new TextDecoder().decode(jinja);
    else {
      const json = await readOptional(source, 'chat_template.json', opts);
      if (json) {
        const t = parseJsonObject(json, 'chat_template.json', source).chat_template;
        if (typeof t === 'string' || Array.isArray(t)) tokenizerConfig.chat_template = t;
      }
    }
  }
  return { tokenizerJson, tokenizerConfig };
}

interface WeightsRead {
  tensors: Map<string, SafeTensor>;
  files: string[];
  /** The file that holds (or, in a sharded checkpoint, should hold) a key, for messages. */
  fileOf: (key: string) => string;
}

function parseWeights(bytes: Uint8Array, file: string): Map<string, SafeTensor> {
  try {
    return parseSafetensors(bytes, file).tensors;
  } catch (e) {
    if (e instanceof SafetensorsError) throw new ModelLoadError(e.message);
    throw e;
  }
}

/** The weight map of model.safetensors.index.json and the shards it names, in order. */
function readIndex(
  indexBytes: Uint8Array,
  source: ModelSource,
): { weightMap: Record<string, unknown>; shards: string[] } {
  const index = parseJsonObject(indexBytes, WEIGHTS_INDEX_FILE, source);
  const map = index.weight_map;
  if (!map || typeof map !== 'object' || Array.isArray(map)) {
    throw new ModelLoadError(`${WEIGHTS_INDEX_FILE} of ${source.name} has no "weight_map" object.`);
  }
  const weightMap = map as Record<string, unknown>;
  const shards: string[] = [];
  for (const [key, f] of Object.entries(weightMap)) {
    if (typeof f !== 'string' || !f)
      throw new ModelLoadError(`${WEIGHTS_INDEX_FILE}: weight_map entry "${key}" is not a file name.`);
    if (!shards.includes(f)) shards.push(f);
  }
  return { weightMap, shards };
}

/** The weight files a load reads: model.safetensors, or else the shards its index names (read here). */
export async function weightFileNames(source: ModelSource): Promise<string[]> {
  if (await source.has(WEIGHTS_FILE)) return [WEIGHTS_FILE];
  const indexBytes = await readOptional(source, WEIGHTS_INDEX_FILE, {});
  return indexBytes ? readIndex(indexBytes, source).shards : [];
}

async function loadWeights(source: ModelSource, opts: LoadModelOptions): Promise<WeightsRead> {
  const single = await readOptional(source, WEIGHTS_FILE, opts);
  if (single) return { tensors: parseWeights(single, WEIGHTS_FILE), files: [WEIGHTS_FILE], fileOf: () => WEIGHTS_FILE };

  const indexBytes = await readOptional(source, WEIGHTS_INDEX_FILE, opts);
  if (!indexBytes) {
    let hint = '';
    for (const f of ['pytorch_model.bin', 'pytorch_model.bin.index.json', 'consolidated.safetensors', 'model.bin']) {
      if (await source.has(f).catch(() => false)) {
        hint = ` It has ${f}, which Tabtune cannot read; convert the weights to safetensors (e.g. save_pretrained(..., safe_serialization=True)).`;
        break;
      }
    }
    throw new ModelLoadError(`${source.name} has neither ${WEIGHTS_FILE} nor ${WEIGHTS_INDEX_FILE}.${hint}`);
  }
  const { weightMap, shards } = readIndex(indexBytes, source);
  const tensors = new Map<string, SafeTensor>();
  for (const shard of shards) {
    const bytes = await readOptional(source, shard, opts);
    if (!bytes) throw new ModelLoadError(`${source.name} has no ${shard}, a shard listed in ${WEIGHTS_INDEX_FILE}.`);
    for (const [k, t] of parseWeights(bytes, shard)) {
      if (weightMap[k] !== undefined && weightMap[k] !== shard) continue; // the index names another shard
      tensors.set(k, t);
    }
  }
  for (const [key, f] of Object.entries(weightMap)) {
    if (!tensors.has(key)) {
      throw new ModelLoadError(`${f}: missing tensor "${key}", which ${WEIGHTS_INDEX_FILE} says is in that shard.`);
    }
  }
  return {
    tensors,
    files: shards,
    fileOf: (key) => (typeof weightMap[key] === 'string' ? (weightMap[key] as string) : WEIGHTS_INDEX_FILE),
  };
}

function mergeEos(config: ModelConfig, generationConfig: JsonObject | null): ModelConfig {
  const g = generationConfig?.eos_token_id;
  const extra = (Array.isArray(g) ? g : [g]).filter(
    (x): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0,
  );
  const eos = [...new Set([...config.eosTokenIds, ...extra])];
  return eos.length === config.eosTokenIds.length ? config : { ...config, eosTokenIds: eos };
}

/**
 * Gemma multiplies its embeddings by sqrt(hidden) as a tensor in the weights' dtype
 * (embed_scale.to(weight.dtype)): with 16-bit weights the factor is rounded to 16 bits.
 */
export function withWeightDtype(config: ModelConfig, embedDtype: string): ModelConfig {
  if (!config.embedScaleInWeightDtype || embedDtype === 'F32') return config;
  const s = roundThroughHalf([config.embedScale], embedDtype === 'F16' ? 'f16' : 'bf16')[0]!;
  return { ...config, embedScale: s };
}

/** Reads everything a fine-tuning run needs from the source. */
export async function loadModel(source: ModelSource, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  let config = await loadConfigOnly(source, opts);
  const { tokenizerJson, tokenizerConfig } = await loadTokenizerFiles(source, opts);
  const genBytes = await readOptional(source, GENERATION_CONFIG_FILE, opts);
  const generationConfig = genBytes ? parseJsonObject(genBytes, GENERATION_CONFIG_FILE, source) : null;
  config = mergeEos(config, generationConfig);

  const { tensors, files, fileOf } = await loadWeights(source, opts);
  const arch = describeModel(config, tensors, { fileName: fileOf });
  config = withWeightDtype(config, tensors.get(arch.embed)!.dtype);
  for (const key of referencedKeys(arch)) {
    const t = tensors.get(key)!;
    if (!SUPPORTED_WEIGHT_DTYPES.has(t.dtype)) {
      throw new ModelLoadError(
        `${fileOf(key)}: tensor "${key}" is ${t.dtype}; Tabtune reads F32, F16 and BF16 weights only (quantized checkpoints are not supported).`,
      );
    }
  }
  return {
    config,
    arch,
    tensors,
    tokenizerJson,
    tokenizerConfig,
    generationConfig,
    weightFiles: files,
    weightFileOf: fileOf,
  };
}

// --------------------------------------------------------------------------------------- estimate

export interface ModelEstimate {
  /** Distinct parameters (a tied LM head counted once). */
  params: number;
  /** Token embedding (+ position embedding for gpt2). */
  embeddingParams: number;
  /** Untied LM head; 0 when tied. */
  lmHeadParams: number;
  /** Weights + biases of the linear modules LoRA can target. */
  linearParams: number;
  /** Norm weights and biases. */
  normParams: number;
  tensors: number;
  /** Weight bytes if stored in each dtype. */
  bytes: { F32: number; F16: number; BF16: number };
  /** Dtype the config declares (torch_dtype), when it is one of the three. */
  checkpointDtype: 'F32' | 'F16' | 'BF16' | null;
  /** Approximate download size of the weights (bytes in checkpointDtype), null when unknown. */
  checkpointBytes: number | null;
}

const TORCH_DTYPES: Record<string, 'F32' | 'F16' | 'BF16'> = {
  float32: 'F32',
  float: 'F32',
  float16: 'F16',
  half: 'F16',
  bfloat16: 'BF16',
};

/** Parameter count and weight size of a config, before anything but config.json is downloaded. */
export function estimateModel(config: ModelConfig): ModelEstimate {
  let params = 0;
  let embeddingParams = 0;
  let lmHeadParams = 0;
  let linearParams = 0;
  let normParams = 0;
  const list = expectedTensors(config);
  for (const t of list) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    params += n;
    if (t.kind === 'embed' || t.kind === 'posEmbed') embeddingParams += n;
    else if (t.kind === 'lmHead') lmHeadParams += n;
    else if (t.kind === 'linear' || t.kind === 'bias') linearParams += n;
    else normParams += n;
  }
  const dt = config.torchDtype ? (TORCH_DTYPES[config.torchDtype.replace(/^torch\./, '')] ?? null) : null;
  const bytes = { F32: params * 4, F16: params * 2, BF16: params * 2 };
  return {
    params,
    embeddingParams,
    lmHeadParams,
    linearParams,
    normParams,
    tensors: list.length,
    bytes,
    checkpointDtype: dt,
    checkpointBytes: dt ? bytes[dt] : null,
  };
}
