/**
 * Architecture registry: which tensors and linear modules each family has, as data.
 *
 * Every model_type's config names a family (config.family); each family has a weight Layout
 * (the type in layout.ts, the data in src/model/families/*.ts) naming, relative to the checkpoint's key prefix, the embedding,
 * positions, norms and per-layer tensors, and listing the linear modules with their role, shape
 * and bias flag as functions of the ModelConfig. Which norms exist comes from the config's flags
 * (block, embedNorm, finalNorm, attention.qkNorm), so one layout serves every variant of a family.
 * `describeModel` resolves the layout against a checkpoint's tensor names (finding the prefix the
 * checkpoint actually uses, e.g. GPT-2 with or without "transformer."), checks every expected key
 * and shape, and returns the resolved keys (ArchWeights) the GPU model uploads.
 *
 * LinearModule.path is the module path in the transformers *ForCausalLM model, exactly as PEFT
 * names it ("model.layers.0.self_attn.q_proj", "transformer.h.0.attn.c_attn"), whatever the keys.
 */

import type { ModelConfig } from './config';
import { FAMILY_LAYOUTS } from './families';
import type { Layout, LinearRole, LinearSpec } from './layout';

export type { LinearRole } from './layout';

export interface LinearModule {
  /** Module path in the HF *ForCausalLM model, as PEFT names it. */
  path: string;
  /** Last path component ('q_proj', 'c_attn'). */
  name: string;
  /** Layer index; -1 for modules outside the layers (OPT's project_in / project_out). */
  layer: number;
  role: LinearRole;
  /** Checkpoint keys as actually found. */
  weightKey: string;
  biasKey: string | null;
  inF: number;
  outF: number;
  /** Conv1D (gpt2): the weight is stored [in, out] instead of nn.Linear's [out, in]. */
  transposed: boolean;
  /**
   * Fused q/k/v (role 'qkv'): the output is `qkvGroups` blocks of [q | k | v], each with
   * numHeads/groups query heads and numKvHeads/groups key and value heads. 1 = [all q | all k | all v]
   * (GPT-2, Phi-3, multi-query Falcon and GPTBigCode); numKvHeads = per head or per KV group
   * (GPT-NeoX, BLOOM, Falcon's new_decoder_architecture and ALiBi forms).
   */
  qkvGroups: number;
  /** Mixture of experts: the expert this gate / up / down module belongs to; -1 for every other module. */
  expert: number;
}

export interface NormKeys {
  w: string;
  b: string | null;
}

export interface LayerNorms {
  /** Before attention (config.block.attnNorm). */
  attn?: NormKeys;
  /** Before the MLP (config.block.mlpNorm 'own'). */
  mlp?: NormKeys;
  /** On the attention / MLP output (config.block.attnOutNorm / mlpOutNorm). */
  attnOut?: NormKeys;
  mlpOut?: NormKeys;
  /** q / k norms (config.attention.qkNorm): [headDim], or [heads·headDim] when over the whole projection. */
  q?: NormKeys;
  k?: NormKeys;
}

export interface LayerWeights {
  norms: LayerNorms;
  linears: LinearModule[];
}

export interface ArchWeights {
  embed: string;
  /** Learned absolute position embeddings, null without them. */
  posEmbed: string | null;
  /** BLOOM's word_embeddings_layernorm. */
  embedNorm: NormKeys | null;
  /** LM head weight [vocab, embedDim]; the embedding's key when tied. */
  lmHead: string;
  lmHeadBias: string | null;
  finalNorm: NormKeys | null;
  /** Linear modules outside the layers (OPT's project_in / project_out). */
  top: LinearModule[];
  layers: LayerWeights[];
}

export class ModelWeightsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelWeightsError';
  }
}

function layoutOf(config: ModelConfig): Layout {
  const l = FAMILY_LAYOUTS[config.family];
  if (!l)
    throw new ModelWeightsError(`No weight layout for family "${config.family}" (model_type "${config.modelType}").`);
  return l(config);
}

// ------------------------------------------------------------------------------- expected tensors

export type TensorKind = 'embed' | 'posEmbed' | 'lmHead' | 'norm' | 'linear' | 'bias';

export interface ExpectedTensor {
  key: string;
  shape: number[];
  kind: TensorKind;
}

const lastName = (sub: string) => sub.slice(sub.lastIndexOf('.') + 1);

/**
 * Resolves the layout for a checkpoint key prefix: the ArchWeights and every tensor it expects
 * with its shape. The tied LM head is not listed separately (it is the embedding). `untiedHead`
 * is the head key the checkpoint holds (or null).
 */
function resolve(
  config: ModelConfig,
  prefix: string,
  untiedHead: string | null,
): { arch: ArchWeights; expected: ExpectedTensor[] } {
  const L = layoutOf(config);
  const c = config;
  const expected: ExpectedTensor[] = [];
  const want = (key: string, shape: number[], kind: TensorKind): string => {
    expected.push({ key, shape, kind });
    return key;
  };
  const norm = (scope: string, name: string | undefined, what: string, dim: number, bias: boolean): NormKeys => {
    if (!name) throw new ModelWeightsError(`model_type "${c.modelType}" needs ${what}, but its layout names none.`);
    return {
      w: want(`${scope}${name}.weight`, [dim], 'norm'),
      b: bias ? want(`${scope}${name}.bias`, [dim], 'norm') : null,
    };
  };
  const nb = c.norm.kind === 'layer' && c.norm.bias;
  const linear = (s: LinearSpec, keyScope: string, pathScope: string, layer: number): LinearModule => {
    const inF = s.inF(c);
    const outF = s.outF(c);
    const weightKey = want(`${keyScope}${s.sub}.weight`, L.transposed ? [inF, outF] : [outF, inF], 'linear');
    const biasKey = s.bias(c) ? want(`${keyScope}${s.sub}.bias`, [outF], 'bias') : null;
    return {
      path: `${L.modulePrefix}${pathScope}${s.sub}`,
      name: lastName(s.sub),
      layer,
      role: s.role,
      weightKey,
      biasKey,
      inF,
      outF,
      transposed: L.transposed ?? false,
      qkvGroups: s.role === 'qkv' ? (L.qkvGroups?.(c) ?? 1) : 1,
      expert: s.expert ?? -1,
    };
  };
  const embed = want(`${prefix}${L.embed}.weight`, [c.vocabSize, c.embedDim], 'embed');
  let posEmbed: string | null = null;
  if (c.learnedPositions) {
    if (!L.posEmbed) throw new ModelWeightsError(`model_type "${c.modelType}": no position table in its layout.`);
    posEmbed = want(
      `${prefix}${L.posEmbed}.weight`,
      [c.maxPositions + c.learnedPositions.offset, c.hiddenSize],
      'posEmbed',
    );
  }
  const embedNorm = c.embedNorm ? norm(prefix, L.embedNorm, 'an embedding norm', c.hiddenSize, nb) : null;
  const top = (L.top?.(c) ?? []).map((s) => linear(s, prefix, '', -1));
  const b = c.block;
  const qk = c.attention.qkNorm;
  const layers: LayerWeights[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const scope = `${L.layer.replace('{i}', String(i))}.`;
    const keyScope = `${prefix}${scope}`;
    const n = (name: string | undefined, what: string) => norm(keyScope, name, what, c.hiddenSize, nb);
    const norms: LayerNorms = {};
    if (b.attnNorm || b.normAfterResidual) norms.attn = n(L.norms.attn, 'an attention norm');
    if (b.mlpNorm === 'own') norms.mlp = n(L.norms.mlp, 'an MLP norm');
    if (b.attnOutNorm) norms.attnOut = n(L.norms.attnOut, 'an attention-output norm');
    if (b.mlpOutNorm) norms.mlpOut = n(L.norms.mlpOut, 'an MLP-output norm');
    if (qk) {
      const qDim = qk.over === 'all' ? c.numHeads * c.headDim : c.headDim;
      const kDim = qk.over === 'all' ? c.numKvHeads * c.headDim : c.headDim;
      const qkb = qk.kind === 'layer' && qk.bias;
      norms.q = norm(keyScope, L.norms.q, 'a q norm', qDim, qkb);
      norms.k = norm(keyScope, L.norms.k, 'a k norm', kDim, qkb);
    }
    layers.push({ norms, linears: L.linears.map((s) => linear(s, keyScope, scope, i)) });
  }
  const finalNorm = c.finalNorm ? norm(prefix, L.finalNorm, 'a final norm', c.hiddenSize, nb) : null;
  // A tied head is the embedding. An untied one is its own tensor (checkpoints of tied configs that
  // nevertheless carry lm_head.weight use it only when tie_word_embeddings is false).
  const lmHead = c.tieWordEmbeddings ? embed : want(untiedHead ?? L.lmHead[0]!, [c.vocabSize, c.embedDim], 'lmHead');
  const lmHeadBias = c.lmHeadBias
    ? want(`${(untiedHead ?? L.lmHead[0]!).replace(/\.weight$/, '')}.bias`, [c.vocabSize], 'bias')
    : null;
  return { arch: { embed, posEmbed, embedNorm, lmHead, lmHeadBias, finalNorm, top, layers }, expected };
}

/** Every tensor a checkpoint of this config holds (canonical key prefix), with shapes. */
export function expectedTensors(config: ModelConfig): ExpectedTensor[] {
  const L = layoutOf(config);
  return resolve(config, L.prefixes[0]!, null).expected;
}

/** Distinct linear module names, in model order: ['q_proj', 'k_proj', ...] or ['c_attn', 'c_proj', 'c_fc']. */
export function linearModuleNames(config: ModelConfig): string[] {
  const L = layoutOf(config);
  const names = [...(L.top?.(config) ?? []), ...L.linears].map((s) => lastName(s.sub));
  return [...new Set(names)];
}

/** The roles of a config's linear modules ('qkv' when q/k/v are one fused projection, ...). */
export function linearRoles(config: ModelConfig): Set<LinearRole> {
  const L = layoutOf(config);
  return new Set([...(L.top?.(config) ?? []), ...L.linears].map((s) => s.role));
}

/** Every linear module of an ArchWeights, in model order (outside the layers first). */
export function linearModules(arch: ArchWeights): LinearModule[] {
  return [...arch.top, ...arch.layers.flatMap((l) => l.linears)];
}

/** Module path prefixes of checkpoint parts the model has but Tabtune does not run (their adapters are skipped). */
export function unusedModulePrefixes(config: ModelConfig): string[] {
  return layoutOf(config).unusedModules ?? [];
}

/** Whether a model's linear weights are Conv1D ([in, out]): PEFT's fan_in_fan_out. */
export function hasConv1dWeights(config: ModelConfig): boolean {
  return layoutOf(config).transposed ?? false;
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
  const prefix = L.prefixes.find((p) => names.has(`${p}${L.embed}.weight`)) ?? L.prefixes[0]!;
  const head = L.lmHead.find((k) => names.has(k)) ?? null;
  const { arch, expected } = resolve(config, prefix, head);

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
  const addNorm = (n: NormKeys | null | undefined) => {
    add(n?.w);
    add(n?.b);
  };
  add(arch.embed);
  add(arch.posEmbed);
  addNorm(arch.embedNorm);
  add(arch.lmHead);
  add(arch.lmHeadBias);
  addNorm(arch.finalNorm);
  for (const m of linearModules(arch)) {
    add(m.weightKey);
    add(m.biasKey);
  }
  for (const l of arch.layers) for (const n of Object.values(l.norms)) addNorm(n);
  return [...keys];
}
