/**
 * Architecture registry: which tensors and linear modules each model_type has, as data.
 *
 * Every supported model_type maps to a layout (config.arch). A layout names, relative to the
 * checkpoint's key prefix, the embedding, positions, final norm and per-layer tensors, and lists
 * the linear modules with their role, shape and bias flag as functions of the ModelConfig.
 * `describeModel` resolves the layout against a checkpoint's tensor names (finding the prefix the
 * checkpoint actually uses, e.g. GPT-2 with or without "transformer."), checks every expected key
 * and shape, and returns the resolved keys (ArchWeights) the GPU model uploads.
 *
 * LinearModule.path is the module path in the transformers *ForCausalLM model, exactly as PEFT
 * names it ("model.layers.0.self_attn.q_proj", "transformer.h.0.attn.c_attn"), whatever the keys.
 */

import type { Arch, ModelConfig } from './config';

export type LinearRole = 'q' | 'k' | 'v' | 'o' | 'qkv' | 'gate' | 'up' | 'down' | 'fc_in' | 'fc_out';

export interface LinearModule {
  /** Module path in the HF *ForCausalLM model, as PEFT names it. */
  path: string;
  /** Last path component ('q_proj', 'c_attn'). */
  name: string;
  layer: number;
  role: LinearRole;
  /** Checkpoint keys as actually found. */
  weightKey: string;
  biasKey: string | null;
  inF: number;
  outF: number;
  /** Conv1D (gpt2): the weight is stored [in, out] instead of nn.Linear's [out, in]. */
  transposed: boolean;
}

export interface NormKeys {
  w: string;
  b: string | null;
}

export interface LayerWeights {
  inputNorm: NormKeys;
  postAttnNorm: NormKeys;
  /** qwen3: per-head RMSNorm weights [headDim]. */
  qNorm?: string;
  kNorm?: string;
  linears: LinearModule[];
}

export interface ArchWeights {
  embed: string;
  /** Learned absolute position embeddings (gpt2), null with RoPE. */
  posEmbed: string | null;
  /** LM head weight [vocab, hidden]; the embedding's key when tied. */
  lmHead: string;
  finalNorm: NormKeys;
  layers: LayerWeights[];
}

export class ModelWeightsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelWeightsError';
  }
}

// ------------------------------------------------------------------------------------ layout data

type Dim = (c: ModelConfig) => number;

interface LinearSpec {
  /** Path below the layer, e.g. 'self_attn.q_proj'. */
  sub: string;
  role: LinearRole;
  inF: Dim;
  outF: Dim;
  bias: (c: ModelConfig) => boolean;
}

interface NormSpec {
  w: string;
  b: string | null;
}

interface Layout {
  /** Key prefixes a checkpoint may use, most usual first. */
  prefixes: string[];
  /** Prefix of module paths in the *ForCausalLM model (PEFT names). */
  modulePrefix: string;
  /** Relative to the prefix. */
  embed: string;
  posEmbed: string | null;
  finalNorm: NormSpec;
  /** Absolute key of an untied LM head. */
  lmHead: string;
  /** Layer scope below the prefix; '{i}' is the layer index. */
  layer: string;
  inputNorm: NormSpec;
  postAttnNorm: NormSpec;
  /** Relative to the layer; present when config.qkNorm. */
  qkNorm: { q: string; k: string } | null;
  /** Conv1D weights ([in, out]). */
  transposed: boolean;
  linears: LinearSpec[];
}

const H: Dim = (c) => c.hiddenSize;
const QW: Dim = (c) => c.numHeads * c.headDim;
const KVW: Dim = (c) => c.numKvHeads * c.headDim;
const I: Dim = (c) => c.intermediateSize;

export const LAYOUTS: Record<Arch, Layout> = {
  llama: {
    prefixes: ['model.', ''],
    modulePrefix: 'model.',
    embed: 'embed_tokens.weight',
    posEmbed: null,
    finalNorm: { w: 'norm.weight', b: null },
    lmHead: 'lm_head.weight',
    layer: 'layers.{i}',
    inputNorm: { w: 'input_layernorm.weight', b: null },
    postAttnNorm: { w: 'post_attention_layernorm.weight', b: null },
    qkNorm: { q: 'self_attn.q_norm.weight', k: 'self_attn.k_norm.weight' },
    transposed: false,
    linears: [
      { sub: 'self_attn.q_proj', role: 'q', inF: H, outF: QW, bias: (c) => c.qkvBias },
      { sub: 'self_attn.k_proj', role: 'k', inF: H, outF: KVW, bias: (c) => c.qkvBias },
      { sub: 'self_attn.v_proj', role: 'v', inF: H, outF: KVW, bias: (c) => c.qkvBias },
      { sub: 'self_attn.o_proj', role: 'o', inF: QW, outF: H, bias: (c) => c.oBias },
      { sub: 'mlp.gate_proj', role: 'gate', inF: H, outF: I, bias: (c) => c.mlpBias },
      { sub: 'mlp.up_proj', role: 'up', inF: H, outF: I, bias: (c) => c.mlpBias },
      { sub: 'mlp.down_proj', role: 'down', inF: I, outF: H, bias: (c) => c.mlpBias },
    ],
  },
  gpt2: {
    prefixes: ['transformer.', ''],
    modulePrefix: 'transformer.',
    embed: 'wte.weight',
    posEmbed: 'wpe.weight',
    finalNorm: { w: 'ln_f.weight', b: 'ln_f.bias' },
    lmHead: 'lm_head.weight',
    layer: 'h.{i}',
    inputNorm: { w: 'ln_1.weight', b: 'ln_1.bias' },
    postAttnNorm: { w: 'ln_2.weight', b: 'ln_2.bias' },
    qkNorm: null,
    transposed: true,
    linears: [
      { sub: 'attn.c_attn', role: 'qkv', inF: H, outF: (c) => QW(c) + 2 * KVW(c), bias: (c) => c.qkvBias },
      { sub: 'attn.c_proj', role: 'o', inF: QW, outF: H, bias: (c) => c.oBias },
      { sub: 'mlp.c_fc', role: 'fc_in', inF: H, outF: I, bias: (c) => c.mlpBias },
      { sub: 'mlp.c_proj', role: 'fc_out', inF: I, outF: H, bias: (c) => c.mlpBias },
    ],
  },
};

function layoutOf(config: ModelConfig): Layout {
  const l = LAYOUTS[config.arch];
  if (!l) throw new ModelWeightsError(`No weight layout for arch "${config.arch}" (model_type "${config.modelType}").`);
  return l;
}

// ------------------------------------------------------------------------------- expected tensors

export type TensorKind = 'embed' | 'posEmbed' | 'lmHead' | 'norm' | 'linear' | 'bias';

export interface ExpectedTensor {
  key: string;
  shape: number[];
  kind: TensorKind;
}

/**
 * Resolves the layout for a checkpoint key prefix: the ArchWeights and every tensor it expects
 * with its shape. The tied LM head is not listed separately (it is the embedding).
 */
function resolve(
  config: ModelConfig,
  prefix: string,
  hasUntiedHead: boolean,
): { arch: ArchWeights; expected: ExpectedTensor[] } {
  const L = layoutOf(config);
  const c = config;
  const expected: ExpectedTensor[] = [];
  const want = (key: string, shape: number[], kind: TensorKind): string => {
    expected.push({ key, shape, kind });
    return key;
  };
  const norm = (scope: string, spec: NormSpec): NormKeys => ({
    w: want(`${scope}${spec.w}`, [c.hiddenSize], 'norm'),
    b: spec.b ? want(`${scope}${spec.b}`, [c.hiddenSize], 'norm') : null,
  });
  const embed = want(`${prefix}${L.embed}`, [c.vocabSize, c.hiddenSize], 'embed');
  const posEmbed = L.posEmbed ? want(`${prefix}${L.posEmbed}`, [c.maxPositions, c.hiddenSize], 'posEmbed') : null;
  const layers: LayerWeights[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const scope = `${L.layer.replace('{i}', String(i))}.`;
    const keyScope = `${prefix}${scope}`;
    const inputNorm = norm(keyScope, L.inputNorm);
    const linears: LinearModule[] = [];
    for (const s of L.linears) {
      const inF = s.inF(c);
      const outF = s.outF(c);
      const weightKey = want(`${keyScope}${s.sub}.weight`, L.transposed ? [inF, outF] : [outF, inF], 'linear');
      const biasKey = s.bias(c) ? want(`${keyScope}${s.sub}.bias`, [outF], 'bias') : null;
      linears.push({
        path: `${L.modulePrefix}${scope}${s.sub}`,
        name: s.sub.slice(s.sub.lastIndexOf('.') + 1),
        layer: i,
        role: s.role,
        weightKey,
        biasKey,
        inF,
        outF,
        transposed: L.transposed,
      });
    }
    const layer: LayerWeights = { inputNorm, postAttnNorm: norm(keyScope, L.postAttnNorm), linears };
    if (c.qkNorm) {
      if (!L.qkNorm)
        throw new ModelWeightsError(`model_type "${c.modelType}" sets qkNorm but its layout has no q/k norms.`);
      layer.qNorm = want(`${keyScope}${L.qkNorm.q}`, [c.headDim], 'norm');
      layer.kNorm = want(`${keyScope}${L.qkNorm.k}`, [c.headDim], 'norm');
    }
    layers.push(layer);
  }
  const finalNorm = norm(prefix, L.finalNorm);
  // A tied head is the embedding. An untied one is its own tensor (gpt2 checkpoints that say
  // tie_word_embeddings: false carry lm_head.weight).
  const lmHead =
    c.tieWordEmbeddings || (!hasUntiedHead && c.arch === 'gpt2')
      ? embed
      : want(L.lmHead, [c.vocabSize, c.hiddenSize], 'lmHead');
  return { arch: { embed, posEmbed, lmHead, finalNorm, layers }, expected };
}

/** Every tensor a checkpoint of this config holds (canonical key prefix), with shapes. */
export function expectedTensors(config: ModelConfig): ExpectedTensor[] {
  const L = layoutOf(config);
  return resolve(config, L.prefixes[0]!, !config.tieWordEmbeddings).expected;
}

/** Distinct linear module names, in layer order: ['q_proj', 'k_proj', ...] or ['c_attn', 'c_proj', 'c_fc']. */
export function linearModuleNames(config: ModelConfig): string[] {
  const names = layoutOf(config).linears.map((s) => s.sub.slice(s.sub.lastIndexOf('.') + 1));
  return [...new Set(names)];
}

// ---------------------------------------------------------------------------------- describeModel

export type TensorIndex = ReadonlySet<string> | ReadonlyMap<string, { readonly shape: readonly number[] }>;

export interface DescribeOptions {
  /** File named in errors, or a function giving the file that holds (or should hold) a key. */
  fileName?: string | ((key: string) => string);
  /** Shapes, when `tensors` is a bare set of names. Without shapes only presence is checked. */
  shapeOf?: (key: string) => readonly number[] | undefined;
}

const shapeStr = (s: readonly number[]) => `[${s.join(', ')}]`;

/**
 * Resolves and validates the architecture's tensors in a checkpoint. Throws ModelWeightsError naming
 * the file, the key and the model_type for a missing tensor, and key, expected and actual shape for
 * a mismatch. Extra tensors (e.g. gpt2's attn.bias mask buffers) are ignored.
 */
export function describeModel(config: ModelConfig, tensors: TensorIndex, opts: DescribeOptions = {}): ArchWeights {
  const L = layoutOf(config);
  const names: ReadonlySet<string> =
    tensors instanceof Map ? new Set(tensors.keys()) : (tensors as ReadonlySet<string>);
  const fileOf = (key: string): string =>
    typeof opts.fileName === 'function' ? opts.fileName(key) : (opts.fileName ?? 'model.safetensors');
  const shapeOf = (key: string): readonly number[] | undefined =>
    tensors instanceof Map
      ? (tensors.get(key) as { shape: readonly number[] } | undefined)?.shape
      : opts.shapeOf?.(key);

  // The prefix whose embedding is present; otherwise the usual one (and the error names its key).
  const prefix = L.prefixes.find((p) => names.has(`${p}${L.embed}`)) ?? L.prefixes[0]!;
  const { arch, expected } = resolve(config, prefix, names.has(L.lmHead));

  const missing = expected.filter((e) => !names.has(e.key));
  if (missing.length) {
    const first = missing[0]!;
    let msg = `${fileOf(first.key)}: missing tensor "${first.key}" expected by model_type "${config.modelType}"`;
    if (missing.length > 1)
      msg += ` (and ${missing.length - 1} more, e.g. ${missing
        .slice(1, 4)
        .map((m) => `"${m.key}"`)
        .join(', ')})`;
    if (first.kind === 'lmHead')
      msg += `; config.json says tie_word_embeddings is false, so the checkpoint must hold its own LM head`;
    if (missing.length === expected.length || first.kind === 'embed') {
      const sample = [...names]
        .slice(0, 3)
        .map((n) => `"${n}"`)
        .join(', ');
      msg += names.size
        ? `; the checkpoint's tensors look different (e.g. ${sample}): is this really a ${config.modelType} model?`
        : '; the checkpoint holds no tensors';
    }
    throw new ModelWeightsError(`${msg}.`);
  }
  for (const e of expected) {
    const got = shapeOf(e.key);
    if (!got) continue;
    if (got.length !== e.shape.length || got.some((d, i) => d !== e.shape[i])) {
      throw new ModelWeightsError(
        `${fileOf(e.key)}: tensor "${e.key}" has shape ${shapeStr(got)}, but model_type "${config.modelType}" with this config.json expects ${shapeStr(e.shape)}.`,
      );
    }
  }
  return arch;
}

/** Every checkpoint key an ArchWeights references (each once). */
export function referencedKeys(arch: ArchWeights): string[] {
  const keys = new Set<string>();
  const add = (k: string | null | undefined) => {
    if (k) keys.add(k);
  };
  add(arch.embed);
  add(arch.posEmbed);
  add(arch.lmHead);
  add(arch.finalNorm.w);
  add(arch.finalNorm.b);
  for (const l of arch.layers) {
    add(l.inputNorm.w);
    add(l.inputNorm.b);
    add(l.postAttnNorm.w);
    add(l.postAttnNorm.b);
    add(l.qNorm);
    add(l.kNorm);
    for (const m of l.linears) {
      add(m.weightKey);
      add(m.biasKey);
    }
  }
  return [...keys];
}
