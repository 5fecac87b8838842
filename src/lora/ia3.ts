/**
 * (IA)³ adapters as PEFT 0.21 makes them (`IA3Config`, peft/tuners/ia3): each targeted linear
 * module gets one learned vector `ia3_l`, initialised to ones. A module matching
 * `feedforward_modules` scales its input (`ia3_l` [1, in_features]); any other scales its output,
 * bias included (`ia3_l` [out_features, 1]). For GPT-2's Conv1D the features are the logical ones
 * (in, out) and the config says fan_in_fan_out: true. The kernels are src/kernels/linear.ts
 * (`ia3`), the GPU adapter src/lora/gpu-lora.ts (`fromIa3`).
 *
 * adapter_config.json: every IA3Config field (sorted keys, Python's JSON; target_modules and
 * feedforward_modules as sorted lists, where PEFT writes its sets in hash order).
 * adapter_model.safetensors: `base_model.model.<module path>.ia3_l`, F32, metadata {"format":"pt"}.
 */

import {
  type SafeTensor,
  SafetensorsError,
  parseSafetensors,
  tensorToF32,
  writeSafetensors,
} from '../model/safetensors';
import { type ModuleLike, isAllLinear } from './config';
import { ADAPTER_CONFIG_NAME, ADAPTER_MODEL_NAME, PEFT_KEY_PREFIX, PeftError, type PeftFiles } from './peft';
import { boolField, moduleSpecField, parseConfigJson } from './peft-config-fields';
import { compareCodePoints, pythonJsonDumps } from './python-json';
import { matchesModuleSpec, resolveTargets } from './targets';

export interface Ia3Config {
  /** Module names (list), a full-match regex on the module path (string), or 'all-linear'. */
  target_modules: string[] | string;
  /** The targets that scale their input: names matched as path suffixes (list) or a full-match regex. */
  feedforward_modules: string[] | string;
  exclude_modules?: string[] | string | null;
  fan_in_fan_out: boolean;
  init_ia3_weights: boolean;
}

/** One module's (IA)³ vector: [inF] scaling the input when `input`, else [outF] scaling the output. */
export interface Ia3VectorArrays {
  path: string;
  input: boolean;
  l: Float32Array;
}

/**
 * PEFT's default (IA)³ targets and feed-forward modules per model_type
 * (TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING / ..._FEEDFORWARD_MODULES_MAPPING, 0.21), the
 * decoder-only entries whose modules exist in Tabtune's families. Other types need explicit targets.
 */
export const DEFAULT_IA3_MODULES: Readonly<
  Record<string, { target: readonly string[]; feedforward: readonly string[] }>
> = {
  gpt2: { target: ['c_attn', 'mlp.c_proj'], feedforward: ['mlp.c_proj'] },
  gpt_bigcode: { target: ['c_attn', 'mlp.c_proj'], feedforward: ['mlp.c_proj'] },
  bloom: { target: ['query_key_value', 'mlp.dense_4h_to_h'], feedforward: ['mlp.dense_4h_to_h'] },
  opt: { target: ['q_proj', 'k_proj', 'fc2'], feedforward: ['fc2'] },
  gptj: { target: ['q_proj', 'v_proj', 'fc_out'], feedforward: ['fc_out'] },
  gpt_neox: { target: ['query_key_value', 'dense_4h_to_h'], feedforward: ['dense_4h_to_h'] },
  gpt_neo: { target: ['q_proj', 'v_proj', 'c_proj'], feedforward: ['c_proj'] },
  llama: { target: ['k_proj', 'v_proj', 'down_proj'], feedforward: ['down_proj'] },
  mistral: { target: ['k_proj', 'v_proj', 'down_proj'], feedforward: ['down_proj'] },
  mixtral: { target: ['k_proj', 'v_proj', 'w2'], feedforward: ['w2'] },
  falcon: { target: ['query_key_value', 'dense_4h_to_h'], feedforward: ['dense_4h_to_h'] },
  RefinedWeb: { target: ['query_key_value', 'dense_4h_to_h'], feedforward: ['dense_4h_to_h'] },
  RefinedWebModel: { target: ['query_key_value', 'dense_4h_to_h'], feedforward: ['dense_4h_to_h'] },
  phi: { target: ['q_proj', 'v_proj', 'fc2'], feedforward: ['fc2'] },
  gemma: { target: ['q_proj', 'v_proj', 'down_proj'], feedforward: ['down_proj'] },
  gemma2: { target: ['q_proj', 'v_proj', 'down_proj'], feedforward: ['down_proj'] },
  gemma3_text: { target: ['q_proj', 'v_proj', 'down_proj'], feedforward: ['down_proj'] },
  qwen2: { target: ['q_proj', 'v_proj', 'down_proj'], feedforward: ['down_proj'] },
  qwen3: { target: ['q_proj', 'v_proj', 'down_proj'], feedforward: ['down_proj'] },
};

/** The (IA)³ settings a user chooses: empty lists mean PEFT's defaults for the model_type. */
export interface Ia3Settings {
  target_modules: string[] | 'all-linear';
  feedforward_modules: string[];
}

/** A full Ia3Config from the settings; throws a PeftError naming the fix when PEFT has no default. */
export function ia3ConfigFromSettings(
  s: Ia3Settings,
  modelType: string,
  opts: { fanInFanOut?: boolean } = {},
): Ia3Config {
  const d = Object.prototype.hasOwnProperty.call(DEFAULT_IA3_MODULES, modelType)
    ? DEFAULT_IA3_MODULES[modelType]
    : undefined;
  const explicit = s.target_modules === 'all-linear' || s.target_modules.length > 0;
  if (!d && (!explicit || s.feedforward_modules.length === 0)) {
    throw new PeftError(
      `PEFT has no default (IA)³ modules for model_type "${modelType}": choose target_modules and feedforward_modules ` +
        '(the targets that scale their input, e.g. the MLP output projection).',
    );
  }
  const target = explicit ? (s.target_modules === 'all-linear' ? 'all-linear' : [...s.target_modules]) : [...d!.target];
  const feedforward = s.feedforward_modules.length
    ? [...s.feedforward_modules]
    : explicit && !d
      ? []
      : [...d!.feedforward];
  const cfg: Ia3Config = {
    target_modules: target,
    feedforward_modules: feedforward,
    fan_in_fan_out: opts.fanInFanOut ?? false,
    init_ia3_weights: true,
  };
  const p = ia3ConfigProblems(cfg);
  if (p.length) throw new PeftError(`Invalid (IA)³ config: ${p.join(' ')}`);
  return cfg;
}

/** Problems with a config as sentences (PEFT's own check: feed-forward lists are a subset of the targets). */
export function ia3ConfigProblems(cfg: Ia3Config): string[] {
  const p: string[] = [];
  const t = cfg.target_modules;
  const f = cfg.feedforward_modules;
  if ((Array.isArray(t) && t.length === 0) || t === '') p.push('target_modules is empty; name the modules to scale.');
  if (Array.isArray(t) && Array.isArray(f)) {
    const extra = f.filter((x) => !t.includes(x));
    if (extra.length) {
      p.push(
        `feedforward_modules ${JSON.stringify(extra)} are not in target_modules ${JSON.stringify(t)}; PEFT requires them to be a subset.`,
      );
    }
  }
  return p;
}

/** PEFT's `_check_target_module_feedforward`: a regex full match, or a list entry the path ends with. */
export function isFeedforward(cfg: Pick<Ia3Config, 'feedforward_modules'>, path: string): boolean {
  const f = cfg.feedforward_modules;
  return typeof f === 'string' ? matchesModuleSpec(f, path) : f.some((k) => path.endsWith(k));
}

/** PEFT's initial vectors: ones on every targeted module (`init_ia3_weights`). */
export function initIa3(cfg: Ia3Config, modules: readonly ModuleLike[]): Ia3VectorArrays[] {
  return resolveTargets(cfg, modules).map((m) => {
    const input = isFeedforward(cfg, m.path);
    return { path: m.path, input, l: new Float32Array(input ? m.inF : m.outF).fill(1) };
  });
}

export function ia3Key(path: string): string {
  return `${PEFT_KEY_PREFIX}${path}.ia3_l`;
}

function savedSpec(spec: string[] | string, vectors: readonly { path: string }[]): string[] | string {
  if (isAllLinear(spec)) return [...new Set(vectors.map((v) => v.path))].sort(compareCodePoints);
  return typeof spec === 'string' ? spec : [...new Set(spec)].sort(compareCodePoints);
}

/** adapter_config.json and adapter_model.safetensors of an (IA)³ adapter, as PEFT 0.21 writes them. */
export function exportIa3(input: {
  config: Ia3Config;
  baseModel: string;
  vectors: Ia3VectorArrays[];
  fanInFanOut: boolean;
}): PeftFiles {
  if (input.vectors.length === 0) throw new PeftError('Cannot export an (IA)³ adapter with no modules.');
  const c = input.config;
  const excl = c.exclude_modules;
  const config = {
    task_type: 'CAUSAL_LM',
    peft_type: 'IA3',
    auto_mapping: null,
    peft_version: '0.21.0',
    base_model_name_or_path: input.baseModel,
    revision: null,
    inference_mode: true,
    target_modules: savedSpec(c.target_modules, input.vectors),
    exclude_modules: excl == null ? null : savedSpec(excl, input.vectors),
    feedforward_modules: savedSpec(c.feedforward_modules, []),
    fan_in_fan_out: input.fanInFanOut,
    modules_to_save: null,
    init_ia3_weights: c.init_ia3_weights,
  };
  const tensors = input.vectors
    .map((v) => ({
      name: ia3Key(v.path),
      dtype: 'F32' as const,
      shape: v.input ? [1, v.l.length] : [v.l.length, 1],
      data: v.l,
    }))
    .sort((x, y) => compareCodePoints(x.name, y.name));
  return { adapterConfig: pythonJsonDumps(config), adapterModel: writeSafetensors(tensors, { format: 'pt' }) };
}

/** Reads an (IA)³ config from a parsed adapter_config.json (peft_type "IA3"). */
export function readIa3Config(cfg: Record<string, unknown>): Ia3Config {
  const target = moduleSpecField(cfg, 'target_modules');
  const feedforward = moduleSpecField(cfg, 'feedforward_modules');
  if (target === null || feedforward === null) {
    throw new PeftError(
      `${ADAPTER_CONFIG_NAME}: an IA3 adapter needs target_modules and feedforward_modules (PEFT fills them in before saving).`,
    );
  }
  return {
    target_modules: target,
    feedforward_modules: feedforward,
    exclude_modules: moduleSpecField(cfg, 'exclude_modules'),
    fan_in_fan_out: boolField(cfg, 'fan_in_fan_out', false),
    init_ia3_weights: boolField(cfg, 'init_ia3_weights', true),
  };
}

const IA3_KEY_RE = /^(.+)\.ia3_l(?:\.([A-Za-z0-9_-]+))?$/;

/**
 * Reads PEFT (IA)³ files for a model with these linear modules. Which modules scale their input
 * comes from feedforward_modules (as PEFT decides it when it builds the layers); each vector's shape
 * is checked against it. Errors name the key, the expected and the found.
 */
export function importIa3<M extends ModuleLike>(
  files: { adapterConfig: string | Uint8Array; adapterModel: Uint8Array },
  modules: readonly M[],
): { config: Ia3Config; baseModel: string | null; vectors: Ia3VectorArrays[]; warnings: string[] } {
  const raw = parseConfigJson(files.adapterConfig);
  if (raw.peft_type !== 'IA3') {
    throw new PeftError(`${ADAPTER_CONFIG_NAME} has peft_type ${JSON.stringify(raw.peft_type)}; expected "IA3".`);
  }
  const config = readIa3Config(raw);
  const warnings: string[] = [];
  if (raw.modules_to_save != null && !(Array.isArray(raw.modules_to_save) && raw.modules_to_save.length === 0)) {
    warnings.push(`${ADAPTER_CONFIG_NAME} sets modules_to_save: fully trained extra modules are not applied.`);
  }
  let tensors: Map<string, SafeTensor>;
  try {
    tensors = parseSafetensors(files.adapterModel, ADAPTER_MODEL_NAME).tensors;
  } catch (e) {
    if (e instanceof SafetensorsError) throw new PeftError(e.message);
    throw e;
  }
  const byPath = new Map(modules.map((m) => [m.path, m]));
  const found = new Map<string, Ia3VectorArrays>();
  const ignored: string[] = [];
  for (const [key, t] of tensors) {
    const m = IA3_KEY_RE.exec(key);
    if (!m) {
      ignored.push(key);
      continue;
    }
    if (m[2] && m[2] !== 'default') continue;
    const path = m[1]!.startsWith(PEFT_KEY_PREFIX) ? m[1]!.slice(PEFT_KEY_PREFIX.length) : m[1]!;
    const module = byPath.get(path);
    if (!module) {
      throw new PeftError(
        `${ADAPTER_MODEL_NAME} has "${key}", but this model has no linear module "${path}"` +
          (modules[0] ? ` (its modules look like "${modules[0].path}")` : '') +
          '. The adapter was probably trained for another base model.',
      );
    }
    const input = isFeedforward(config, path);
    const n = input ? module.inF : module.outF;
    const want = input ? [1, n] : [n, 1];
    if (t.shape.length !== 2 || t.shape[0] !== want[0] || t.shape[1] !== want[1]) {
      throw new PeftError(
        `${ADAPTER_MODEL_NAME}: "${key}" should be [${want.join(', ')}] (${input ? 'a feed-forward module scales its input' : 'the module scales its output'}), ` +
          `got [${t.shape.join(', ')}].`,
      );
    }
    const l = tensorToF32(t);
    if (!l.every(Number.isFinite)) throw new PeftError(`${ADAPTER_MODEL_NAME}: "${key}" holds a non-finite value.`);
    found.set(path, { path, input, l });
  }
  if (found.size === 0) throw new PeftError(`${ADAPTER_MODEL_NAME} contains no (IA)³ vectors (keys ending in ia3_l).`);
  if (ignored.length) {
    warnings.push(
      `${ignored.length} tensor(s) in ${ADAPTER_MODEL_NAME} are not (IA)³ vectors and were ignored: ${ignored.slice(0, 5).join(', ')}.`,
    );
  }
  const vectors = modules.flatMap((m) => found.get(m.path) ?? []);
  const baseModel = typeof raw.base_model_name_or_path === 'string' ? raw.base_model_name_or_path : null;
  return { config, baseModel, vectors, warnings };
}
