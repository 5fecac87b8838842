/**
 * Loads a Hugging Face model folder/repo from any ModelSource:
 *   config.json                              -> ModelConfig (validated first, before big downloads)
 *   tokenizer.json, tokenizer_config.json    -> raw JSON for createTokenizer (chat template taken
 *                                               from chat_template.jinja / chat_template.json when
 *                                               tokenizer_config.json has none, as newer repos do)
 *   generation_config.json (optional)        -> its eos_token_id(s) are added to config.eosTokenIds
 *   model.safetensors, or model.safetensors.index.json + its shards
 * and resolves the architecture (registry.describeModel), checking every tensor name and shape.
 * The weights are streamed (streamWeights): each tensor goes to a sink as its bytes arrive, so the
 * GPU model (src/model/gpu-model.ts) never holds a whole weight file; `loadModel` collects them in
 * memory for tests and tools. bitsandbytes 4-bit checkpoints are read as stored (src/model/bnb.ts).
 */

import { roundThroughHalf } from '../gpu/half';
import { BnbCheckpointError, bnbQuantizedKeys, bnbStatSuffixes } from './bnb';
import { type ModelConfig, parseConfig } from './config';
import { type ArchWeights, describeModel, expectedTensors, linearModules, referencedKeys } from './registry';
import { type HeaderEntry, type SafeTensor, SafetensorsError } from './safetensors';
import { SafetensorsStream, type TensorReceiver, collectTensor } from './safetensors-stream';
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
  /** Every tensor the architecture uses (with the statistics of bitsandbytes 4-bit weights). */
  tensors: Map<string, SafeTensor>;
  /** Weight keys stored in bitsandbytes 4-bit form, each with whether its absmax is double-quantized. */
  bnb: Map<string, boolean>;
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

// ---------------------------------------------------------------------------------------- weights

/**
 * What a weight stream will deliver, known before any tensor data: the resolved architecture and
 * the checkpoint keys the sink is offered (every key the architecture references, plus the
 * statistics of weights stored in bitsandbytes 4-bit form).
 */
export interface WeightPlan {
  arch: ArchWeights;
  /** Weight keys stored in bitsandbytes 4-bit form, each with whether its absmax is double-quantized. */
  bnb: Map<string, boolean>;
  keys: Set<string>;
  /** Weight files, in the order they are read. */
  files: string[];
  /** The file that holds (or should hold) a key, for messages. */
  fileOf: (key: string) => string;
}

/** Where the tensors of a streamed checkpoint go (src/model/gpu-model.ts uploads them). */
export interface WeightSink {
  /** Called once, after the checkpoint's tensor names are checked and before any tensor data. */
  begin?(plan: WeightPlan): void | Promise<void>;
  /** A receiver for a tensor of the plan (bytes in pieces, in order), or null to skip it. */
  tensor(key: string, entry: HeaderEntry, file: string): TensorReceiver | null;
}

function rethrow(e: unknown): never {
  if (e instanceof SafetensorsError || e instanceof BnbCheckpointError) throw new ModelLoadError(e.message);
  throw e;
}

/** Resolves the architecture against the checkpoint's names (and the shapes known so far). */
function planFor(
  config: ModelConfig,
  names: ReadonlySet<string>,
  shapes: ReadonlyMap<string, readonly number[]>,
  files: string[],
  fileOf: (key: string) => string,
): WeightPlan {
  const bnb = bnbQuantizedKeys(names, fileOf);
  // A packed 4-bit weight's own shape is [bytes, 1]: its real shape is checked when it is assembled.
  const arch = describeModel(config, names, {
    fileName: fileOf,
    shapeOf: (k) => (bnb.has(k) ? undefined : shapes.get(k)),
  });
  const plan = weightPlan(arch, bnb, files, fileOf);
  for (const k of plan.keys) {
    if (!names.has(k)) {
      throw new ModelLoadError(
        `${fileOf(k)}: missing tensor "${k}", part of a bitsandbytes 4-bit weight (the file holds its quant_state).`,
      );
    }
  }
  return plan;
}

/** The plan of an architecture: every key it references, plus the statistics of 4-bit weights. */
export function weightPlan(
  arch: ArchWeights,
  bnb: Map<string, boolean>,
  files: string[],
  fileOf: (key: string) => string,
): WeightPlan {
  const keys = new Set(referencedKeys(arch));
  for (const m of linearModules(arch)) {
    const dq = bnb.get(m.weightKey);
    if (dq !== undefined) for (const s of bnbStatSuffixes(dq)) keys.add(`${m.weightKey}.${s}`);
  }
  return { arch, bnb, keys, files, fileOf };
}

/** Rejects a referenced tensor whose dtype Tabtune cannot read. */
function checkDtypes(plan: WeightPlan, entries: ReadonlyMap<string, HeaderEntry>): void {
  for (const key of referencedKeys(plan.arch)) {
    const e = entries.get(key);
    if (!e || plan.bnb.has(key) || SUPPORTED_WEIGHT_DTYPES.has(e.dtype)) continue;
    throw new ModelLoadError(
      `${plan.fileOf(key)}: tensor "${key}" is ${e.dtype}; Tabtune reads F32, F16 and BF16 weights, and bitsandbytes ` +
        '4-bit NF4 ones stored with their quant_state (...-bnb-4bit checkpoints).',
    );
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

/**
 * Streams the checkpoint's weight files (model.safetensors, or the shards of
 * model.safetensors.index.json) through `sink`, never holding a whole file: names and shapes are
 * checked as each header arrives, then every tensor of the plan is handed to the sink as its bytes
 * come in. Returns the plan.
 */
export async function streamWeights(
  source: ModelSource,
  config: ModelConfig,
  sink: WeightSink,
  opts: LoadModelOptions = {},
): Promise<WeightPlan> {
  const progress = (file: string) => opts.onProgress && ((l: number, t: number | null) => opts.onProgress!(file, l, t));
  let plan: WeightPlan | null = null;
  const delivered = new Set<string>();
  const receiver = (file: string, key: string, entry: HeaderEntry): TensorReceiver | null => {
    const rx = sink.tensor(key, entry, file);
    if (!rx) return null;
    return { write: (piece, offset) => rx.write(piece, offset), end: () => (delivered.add(key), rx.end()) };
  };

  // One file: the header comes first, so names and shapes are checked before any data.
  const single = new SafetensorsStream(WEIGHTS_FILE, {
    header: async (entries) => {
      const shapes = new Map([...entries].map(([k, e]) => [k, e.shape]));
      plan = planFor(config, new Set(entries.keys()), shapes, [WEIGHTS_FILE], () => WEIGHTS_FILE);
      checkDtypes(plan, entries);
      await sink.begin?.(plan);
    },
    tensor: (key, entry) => (plan!.keys.has(key) ? receiver(WEIGHTS_FILE, key, entry) : null),
  });
  try {
    // Said before the request, so a slow server shows the weights being waited for (0 bytes), not
    // the step before them.
    opts.onProgress?.(WEIGHTS_FILE, 0, null);
    await source.stream(WEIGHTS_FILE, (chunk) => single.push(chunk), progress(WEIGHTS_FILE));
    await single.finish();
    return plan!;
  } catch (e) {
    if (!isNotFound(e)) rethrow(e);
  }

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
  const fileOf = (key: string) =>
    typeof weightMap[key] === 'string' ? (weightMap[key] as string) : WEIGHTS_INDEX_FILE;
  // Names come from the index; shapes are checked as each shard's header arrives.
  const names = new Set(Object.keys(weightMap));
  const shapes = new Map<string, readonly number[]>();
  try {
    const p = planFor(config, names, shapes, shards, fileOf);
    plan = p;
    await sink.begin?.(p);
    for (const shard of shards) {
      const inShard = new Set<string>();
      const stream = new SafetensorsStream(shard, {
        header: (entries) => {
          for (const k of entries.keys()) inShard.add(k);
          for (const [k, e] of entries) if (fileOf(k) === shard) shapes.set(k, e.shape);
          planFor(config, names, shapes, shards, fileOf);
          checkDtypes(p, new Map([...entries].filter(([k]) => fileOf(k) === shard)));
        },
        // A key the index places in another shard is taken from there.
        tensor: (key, entry) => (p.keys.has(key) && fileOf(key) === shard ? receiver(shard, key, entry) : null),
      });
      try {
        opts.onProgress?.(shard, 0, null);
        await source.stream(shard, (chunk) => stream.push(chunk), progress(shard));
      } catch (e) {
        if (isNotFound(e)) {
          throw new ModelLoadError(`${source.name} has no ${shard}, a shard listed in ${WEIGHTS_INDEX_FILE}.`);
        }
        throw e;
      }
      await stream.finish();
      for (const key of names) {
        if (fileOf(key) === shard && (!inShard.has(key) || (p.keys.has(key) && !delivered.has(key)))) {
          throw new ModelLoadError(
            `${shard}: missing tensor "${key}", which ${WEIGHTS_INDEX_FILE} says is in that shard.`,
          );
        }
      }
    }
    return p;
  } catch (e) {
    return rethrow(e);
  }
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

/** Everything but the weights: config (with generation_config's eos ids), tokenizer files. */
export interface ModelFiles {
  config: ModelConfig;
  tokenizerJson: JsonObject;
  tokenizerConfig: JsonObject;
  generationConfig: JsonObject | null;
}

export async function loadModelFiles(source: ModelSource, opts: LoadModelOptions = {}): Promise<ModelFiles> {
  const config = await loadConfigOnly(source, opts);
  const { tokenizerJson, tokenizerConfig } = await loadTokenizerFiles(source, opts);
  const genBytes = await readOptional(source, GENERATION_CONFIG_FILE, opts);
  const generationConfig = genBytes ? parseJsonObject(genBytes, GENERATION_CONFIG_FILE, source) : null;
  return { config: mergeEos(config, generationConfig), tokenizerJson, tokenizerConfig, generationConfig };
}

/**
 * Reads everything a fine-tuning run needs into CPU memory (tests, tools; the engine streams the
 * weights to the GPU instead, src/model/gpu-model.ts).
 */
export async function loadModel(source: ModelSource, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  const files = await loadModelFiles(source, opts);
  const tensors = new Map<string, SafeTensor>();
  const plan = await streamWeights(
    source,
    files.config,
    {
      tensor: (key, entry) =>
        collectTensor(entry.data_offsets[1] - entry.data_offsets[0], (data) => {
          tensors.set(key, { dtype: entry.dtype, shape: entry.shape, data });
        }),
    },
    opts,
  );
  return {
    ...files,
    config: withWeightDtype(files.config, tensors.get(plan.arch.embed)!.dtype),
    arch: plan.arch,
    bnb: plan.bnb,
    tensors,
    weightFiles: plan.files,
    weightFileOf: plan.fileOf,
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
