/**
 * Merging a LoRA adapter into its base model: a Hugging Face model folder with W + scale·B·A folded
 * into every adapted weight (GPT-2's Conv1D weights, stored [in, out], in their own layout), which
 * transformers loads with AutoModelForCausalLM and converters take from there.
 *
 * Output, as transformers' save_pretrained writes it:
 *   config.json                     the base's, with `dtype` (and `torch_dtype` when present) set
 *                                   when the dtype is changed
 *   model.safetensors               (metadata {"format": "pt"}), or, past `maxShardBytes`,
 *   model-00001-of-0000N.safetensors + model.safetensors.index.json
 *                                   ({"metadata": {"total_size", "total_parameters"}, "weight_map"},
 *                                   keys sorted, indent 2)
 *   tokenizer files, generation_config.json (the base's; made from config.json's token ids if absent)
 *
 * Streamed: the output's layout is planned from the input's headers, then one input weight file
 * is read at a time and each tensor is converted, merged and handed to the sink on its own, so
 * memory holds one input file and one tensor (plus the sink's buffering), never the whole model.
 */

import { f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../gpu/half';
import { CONFIG_FILE, GENERATION_CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE } from '../model/load';
import { parseConfig } from '../model/config';
import { type LinearModule, describeModel } from '../model/registry';
import { type HeaderEntry, type SafeDType, SafetensorsError, parseSafetensorsHeader } from '../model/safetensors';
import { type ModelSource, isNotFound } from '../model/source';
import { loraScaleInfo } from './config';
import { type LoftqBackbone, backboneWeight } from './loftq-backbone';
import { PeftError } from './peft';
import { importPeft } from './peft-import';

export type MergeDType = 'bf16' | 'f16' | 'f32';

/** Where merged files go: one file at a time, in pieces. */
export interface MergeSink {
  /** Starts file `name` of `size` bytes; its pieces follow through write(), then close(). */
  open(name: string, size: number): Promise<void>;
  write(bytes: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

export interface MergeOptions {
  /** The dtype of every floating-point tensor; absent = each tensor keeps its own. */
  dtype?: MergeDType;
  /** Shard the weights past this many bytes (transformers 5 default max_shard_size, 50 GB). */
  maxShardBytes?: number;
  onProgress?: (done: number, total: number, file: string) => void;
}

export interface MergeResult {
  files: string[];
  /** LoRA modules folded in. */
  merged: number;
  warnings: string[];
}

export class MergeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MergeError';
  }
}

const DEFAULT_SHARD_BYTES = 50_000_000_000;

/** Files copied as they are, when the base has them (tokenizer and chat template). */
const COPIED_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'tokenizer.model',
  'vocab.json',
  'merges.txt',
  'chat_template.jinja',
  'chat_template.json',
];

const SAFE_DTYPE: Record<MergeDType, SafeDType> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };
const TORCH_DTYPE: Record<MergeDType, string> = { f32: 'float32', f16: 'float16', bf16: 'bfloat16' };
const FLOAT = new Set<SafeDType>(['F32', 'F16', 'BF16', 'F64']);
const ITEM: Partial<Record<SafeDType, number>> = { F32: 4, F16: 2, BF16: 2, F64: 8 };

async function readOptional(source: ModelSource, file: string): Promise<Uint8Array | null> {
  try {
    return await source.read(file);
  } catch (e) {
    if (isNotFound(e)) return null;
    throw e;
  }
}

function jsonOf(bytes: Uint8Array, file: string, source: ModelSource): Record<string, unknown> {
  try {
    const v = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // (reported below)
  }
  throw new MergeError(`${source.name}/${file}: expected a JSON object.`);
}

/** Python's json.dumps(indent=2) layout for plain JSON (what transformers writes), plus a newline. */
function jsonText(v: unknown): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(v, null, 2)}\n`);
}

interface InputTensor {
  name: string;
  file: string;
  entry: HeaderEntry;
  /** Its dtype in the output. */
  out: SafeDType;
}

/** The input's weight files and every tensor's header entry, in file order. */
async function readLayout(
  source: ModelSource,
): Promise<{ files: string[]; tensors: InputTensor[]; first: Uint8Array | null }> {
  const single = await readOptional(source, WEIGHTS_FILE);
  const headerOf = (bytes: Uint8Array, file: string) => {
    try {
      return parseSafetensorsHeader(bytes, `${source.name}/${file}`);
    } catch (e) {
      if (e instanceof SafetensorsError) throw new MergeError(e.message);
      throw e;
    }
  };
  const tensorsOf = (bytes: Uint8Array, file: string, only?: (k: string) => boolean): InputTensor[] =>
    [...headerOf(bytes, file).entries]
      .filter(([k]) => !only || only(k))
      .sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0])
      .map(([name, entry]) => ({ name, file, entry, out: entry.dtype }));
  if (single) return { files: [WEIGHTS_FILE], tensors: tensorsOf(single, WEIGHTS_FILE), first: single };
  const indexBytes = await readOptional(source, WEIGHTS_INDEX_FILE);
  if (!indexBytes) throw new MergeError(`${source.name} has neither ${WEIGHTS_FILE} nor ${WEIGHTS_INDEX_FILE}.`);
  const map = jsonOf(indexBytes, WEIGHTS_INDEX_FILE, source).weight_map as Record<string, string> | undefined;
  if (!map || typeof map !== 'object')
    throw new MergeError(`${source.name}/${WEIGHTS_INDEX_FILE} has no "weight_map".`);
  const files = [...new Set(Object.values(map))];
  const tensors: InputTensor[] = [];
  for (const f of files) {
    const bytes = await readOptional(source, f);
    if (!bytes) throw new MergeError(`${source.name} has no ${f}, a shard listed in ${WEIGHTS_INDEX_FILE}.`);
    tensors.push(...tensorsOf(bytes, f, (k) => map[k] === f));
  }
  return { files, tensors, first: null };
}

/** Values of a floating-point tensor as f32. */
function toF32(bytes: Uint8Array, dtype: SafeDType, n: number): Float32Array {
  const copy = bytes.slice(); // aligned
  if (dtype === 'F32') return new Float32Array(copy.buffer, 0, n);
  if (dtype === 'F64') return Float32Array.from(new Float64Array(copy.buffer, 0, n));
  const bits = new Uint16Array(copy.buffer, 0, n);
  const out = new Float32Array(n);
  if (dtype === 'BF16') new Uint32Array(out.buffer).set(Array.from(bits, (b) => b << 16));
  else for (let i = 0; i < n; i++) out[i] = f16BitsToF32(bits[i]!);
  return out;
}

function fromF32(v: Float32Array, dtype: SafeDType): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (dtype === 'F64') return new Uint8Array(Float64Array.from(v).buffer);
  const out = new Uint16Array(v.length);
  const conv = dtype === 'BF16' ? f32ToBf16Bits : f32ToF16Bits;
  for (let i = 0; i < v.length; i++) out[i] = conv(v[i]!);
  return new Uint8Array(out.buffer);
}

const count = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const bytesOf = (t: InputTensor) =>
  FLOAT.has(t.out) ? count(t.entry.shape) * ITEM[t.out]! : t.entry.data_offsets[1] - t.entry.data_offsets[0];

/** A safetensors header for `tensors` in order (padded with spaces to a multiple of 8). */
function headerBytes(tensors: readonly InputTensor[]): Uint8Array {
  const h: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let at = 0;
  for (const t of tensors) {
    const n = bytesOf(t);
    h[t.name] = { dtype: t.out, shape: t.entry.shape, data_offsets: [at, at + n] };
    at += n;
  }
  let json = JSON.stringify(h);
  json += ' '.repeat((8 - (new TextEncoder().encode(json).byteLength % 8)) % 8);
  const hb = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + hb.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.byteLength), true);
  out.set(hb, 8);
  return out;
}

/** Cuts tensors into shards of at most maxBytes (a tensor larger than that gets a shard of its own), as transformers does. */
function planShards(tensors: readonly InputTensor[], maxBytes: number): InputTensor[][] {
  const shards: InputTensor[][] = [];
  let cur: InputTensor[] = [];
  let size = 0;
  for (const t of tensors) {
    const n = bytesOf(t);
    if (cur.length && size + n > maxBytes) {
      shards.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(t);
    size += n;
  }
  if (cur.length) shards.push(cur);
  return shards;
}

const shardName = (i: number, n: number) =>
  `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;

/** The base model's config and weight layout, read once. */
interface BaseModel {
  configJson: Record<string, unknown>;
  config: ReturnType<typeof parseConfig>;
  layout: Awaited<ReturnType<typeof readLayout>>;
  byName: Map<string, InputTensor>;
  linears: LinearModule[];
}

async function readBase(source: ModelSource): Promise<BaseModel> {
  const configBytes = await readOptional(source, CONFIG_FILE);
  if (!configBytes) throw new MergeError(`${source.name} has no ${CONFIG_FILE}; expected a Hugging Face model folder.`);
  const configJson = jsonOf(configBytes, CONFIG_FILE, source);
  const config = parseConfig(configJson, CONFIG_FILE);
  const layout = await readLayout(source);
  const byName = new Map(layout.tensors.map((t) => [t.name, t]));
  const arch = describeModel(config, new Set(byName.keys()), {
    shapeOf: (k) => byName.get(k)?.entry.shape,
    fileName: (k) => byName.get(k)?.file ?? WEIGHTS_FILE,
  });
  return { configJson, config, layout, byName, linears: arch.layers.flatMap((l) => l.linears) };
}

/** Edits of weights by checkpoint key: each gets the weight's f32 values (as stored) to change in place. */
type WeightEdits = Map<string, (w: Float32Array) => void>;

/**
 * Writes the merged model to `sink`. `adapter` holds the PEFT files (adapter_config.json and
 * adapter_model.safetensors bytes).
 */
export async function mergeAdapter(
  source: ModelSource,
  adapter: { adapterConfig: string | Uint8Array; adapterModel: Uint8Array },
  sink: MergeSink,
  opts: MergeOptions = {},
): Promise<MergeResult> {
  const base = await readBase(source);
  const { linears } = base;
  let imported;
  try {
    imported = importPeft(adapter, linears, { baseModel: source.name });
  } catch (e) {
    if (e instanceof PeftError) throw new MergeError(`The adapter does not fit ${source.name}: ${e.message}`);
    throw e;
  }
  const edits: WeightEdits = new Map(
    imported.modules.map((m) => {
      const lin = linears.find((l) => l.path === m.path)!;
      const scale = loraScaleInfo(imported.config, m).scale;
      return [lin.weightKey, (w) => void mergeLora(w, lin.transposed, m.a, m.b, m.r, scale, m.inF, m.outF, m.m)];
    }),
  );
  const files = await writeEdited(source, base, edits, sink, opts);
  return { files, merged: edits.size, warnings: imported.warnings };
}

/**
 * Writes the base model with the weights of `replaced` (checkpoint key -> f32 values in the stored
 * layout) instead of its own, each in its stored dtype: LoftQ's quantized backbone
 * (src/lora/from-weights.ts), as PEFT's LoftQ workflow saves it beside the adapter.
 */
export async function writeReplacedWeights(
  source: ModelSource,
  replaced: ReadonlyMap<string, Float32Array>,
  sink: MergeSink,
  opts: MergeOptions = {},
): Promise<string[]> {
  const base = await readBase(source);
  const edits: WeightEdits = new Map();
  for (const [key, values] of replaced) {
    const t = base.byName.get(key);
    if (!t || count(t.entry.shape) !== values.length)
      throw new MergeError(`${source.name}: no weight "${key}" of ${values.length} values to replace.`);
    edits.set(key, (w) => w.set(values));
  }
  return writeEdited(source, base, edits, sink, opts);
}

/**
 * Writes the base model with each LoftQ module's weight replaced by its quantized backbone Q,
 * rebuilt from the file's own W (checked against the adapter's fingerprints) and the saved
 * factors (src/lora/loftq-backbone.ts): the folder PEFT's LoftQ workflow loads as the base.
 */
export async function writeLoftqBackbone(
  source: ModelSource,
  spec: LoftqBackbone,
  sink: MergeSink,
  opts: MergeOptions = {},
): Promise<string[]> {
  const base = await readBase(source);
  const edits: WeightEdits = new Map();
  for (const m of spec.modules) {
    const t = base.byName.get(m.key);
    if (!t || count(t.entry.shape) !== m.outF * m.inF)
      throw new MergeError(
        `${source.name}: no weight "${m.key}" of ${m.outF} x ${m.inF} values for the LoftQ backbone.`,
      );
    edits.set(m.key, (w) => w.set(backboneWeight(m, w, `${source.name} (${t.file})`)));
  }
  return writeEdited(source, base, edits, sink, opts);
}

async function writeEdited(
  source: ModelSource,
  base: BaseModel,
  edits: WeightEdits,
  sink: MergeSink,
  opts: MergeOptions,
): Promise<string[]> {
  const { configJson, config, layout, byName } = base;
  for (const key of edits.keys()) {
    const t = byName.get(key)!;
    if (!FLOAT.has(t.entry.dtype))
      throw new MergeError(`${t.file}: "${key}" is ${t.entry.dtype}; only float weights can take a merged adapter.`);
  }
  const outDType = opts.dtype ? SAFE_DTYPE[opts.dtype] : null;
  for (const t of layout.tensors) if (outDType && FLOAT.has(t.entry.dtype)) t.out = outDType;

  const files: string[] = [];
  const put = async (name: string, bytes: Uint8Array) => {
    await sink.open(name, bytes.byteLength);
    await sink.write(bytes);
    await sink.close();
    files.push(name);
  };

  // config.json: the base's, with the new dtype when it changes.
  if (opts.dtype) {
    configJson.dtype = TORCH_DTYPE[opts.dtype];
    if ('torch_dtype' in configJson) configJson.torch_dtype = TORCH_DTYPE[opts.dtype];
  }
  await put(CONFIG_FILE, jsonText(configJson));

  // Weights, shard by shard, in the input's order.
  const shards = planShards(layout.tensors, opts.maxShardBytes ?? DEFAULT_SHARD_BYTES);
  const total = layout.tensors.length;
  let done = 0;
  let input: { file: string; bytes: Uint8Array; dataStart: number } | null = null;
  if (layout.first) input = { file: WEIGHTS_FILE, bytes: layout.first, dataStart: 0 };
  const dataOf = async (t: InputTensor): Promise<Uint8Array> => {
    if (!input || input.file !== t.file) {
      input = null; // the previous file goes before the next is read
      const bytes = await readOptional(source, t.file);
      if (!bytes) throw new MergeError(`${source.name} has no ${t.file}.`);
      input = { file: t.file, bytes, dataStart: 0 };
    }
    if (!input.dataStart) input.dataStart = parseSafetensorsHeader(input.bytes, t.file).dataStart;
    const [b0, b1] = t.entry.data_offsets;
    return input.bytes.subarray(input.dataStart + b0, input.dataStart + b1);
  };
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  let totalParams = 0;
  for (let s = 0; s < shards.length; s++) {
    const shard = shards[s]!;
    const name = shards.length === 1 ? WEIGHTS_FILE : shardName(s, shards.length);
    const header = headerBytes(shard);
    const dataBytes = shard.reduce((n, t) => n + bytesOf(t), 0);
    await sink.open(name, header.byteLength + dataBytes);
    await sink.write(header);
    for (const t of shard) {
      const raw = await dataOf(t);
      const edit = edits.get(t.name);
      let out: Uint8Array;
      if (edit || t.out !== t.entry.dtype) {
        const n = count(t.entry.shape);
        const w = toF32(raw, t.entry.dtype, n);
        edit?.(w);
        out = fromF32(w, t.out);
      } else out = raw;
      await sink.write(out);
      weightMap[t.name] = name;
      totalSize += out.byteLength;
      totalParams += count(t.entry.shape);
      opts.onProgress?.(++done, total, name);
    }
    await sink.close();
    files.push(name);
  }
  input = null;
  if (shards.length > 1) {
    const sorted = Object.fromEntries(
      Object.keys(weightMap)
        .sort()
        .map((k) => [k, weightMap[k]]),
    );
    await put(
      WEIGHTS_INDEX_FILE,
      jsonText({ metadata: { total_parameters: totalParams, total_size: totalSize }, weight_map: sorted }),
    );
  }

  for (const f of COPIED_FILES) {
    const bytes = await readOptional(source, f);
    if (bytes) await put(f, bytes);
  }
  const gen = await readOptional(source, GENERATION_CONFIG_FILE);
  if (gen) await put(GENERATION_CONFIG_FILE, gen);
  else {
    // What transformers makes from the model config when a repo has none.
    const g: Record<string, unknown> = { _from_model_config: true };
    if (config.bosTokenId !== null) g.bos_token_id = config.bosTokenId;
    if (config.eosTokenIds.length)
      g.eos_token_id = config.eosTokenIds.length === 1 ? config.eosTokenIds[0] : config.eosTokenIds;
    if (config.padTokenId !== null) g.pad_token_id = config.padTokenId;
    await put(GENERATION_CONFIG_FILE, jsonText(g));
  }
  return files;
}

/**
 * Merges a LoRA module into its base weight in place: W += scale · B·A, with W [outF, inF]
 * (nn.Linear) or, when `transposed` (GPT-2 Conv1D, fan_in_fan_out), W [inF, outF]. Returns `weight`.
 */
export function mergeLora(
  weight: Float32Array,
  transposed: boolean,
  a: Float32Array, // [r, inF]
  b: Float32Array, // [outF, r]
  r: number,
  scale: number,
  inF: number,
  outF: number,
  /** DoRA's lora_magnitude_vector [outF]: each merged row o is then scaled by m_o / ||W_o + s·(B·A)_o|| (PEFT's DoRA merge). */
  magnitude?: Float32Array,
): Float32Array {
  if (weight.length !== inF * outF)
    throw new PeftError(`mergeLora: weight has ${weight.length} values, expected ${outF} x ${inF} = ${inF * outF}.`);
  if (a.length !== r * inF) throw new PeftError(`mergeLora: A has ${a.length} values, expected [${r}, ${inF}].`);
  if (b.length !== outF * r) throw new PeftError(`mergeLora: B has ${b.length} values, expected [${outF}, ${r}].`);
  const sb = new Float64Array(r);
  for (let o = 0; o < outF; o++) {
    for (let k = 0; k < r; k++) sb[k] = scale * b[o * r + k]!;
    for (let i = 0; i < inF; i++) {
      let d = 0;
      for (let k = 0; k < r; k++) d += sb[k]! * a[k * inF + i]!;
      const idx = transposed ? i * outF + o : o * inF + i;
      weight[idx] = weight[idx]! + d;
    }
    if (!magnitude) continue;
    // DoRA: W'_o = m_o / ||W_o + ΔW_o|| · (W_o + ΔW_o), the norm of the merged row (float64).
    let n2 = 0;
    for (let i = 0; i < inF; i++) n2 += weight[transposed ? i * outF + o : o * inF + i]! ** 2;
    const f = magnitude[o]! / Math.sqrt(n2);
    for (let i = 0; i < inF; i++) {
      const idx = transposed ? i * outF + o : o * inF + i;
      weight[idx] = weight[idx]! * f;
    }
  }
  return weight;
}
