/**
 * Reading a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors, the format peft.ts
 * writes) for a model's linear modules: also keys with an adapter name such as
 * `lora_A.default.weight`, F16/BF16/F64 tensors, adapters saved from a bare base model or with
 * fused experts (peft-experts.ts). Each tensor is checked against the model's modules, with errors
 * that name the key, what was expected and what was found; what loads but may behave differently
 * from PEFT is a warning.
 */

import { type SafeTensor, SafetensorsError, parseSafetensors, tensorToF32 } from '../model/safetensors';
import { type LoraConfig, type ModuleLike, PEFT_LORA_DEFAULTS, isAllLinear, loraRank, loraScale } from './config';
import type { LoraModuleWeights } from './init';
import { ADAPTER_CONFIG_NAME, ADAPTER_MODEL_NAME, PEFT_KEY_PREFIX, PeftError, peftKey } from './peft';
import { EXPERT_PARAMETERS, ExpertAdapterError, unfuseExpertAdapter } from './peft-experts';
import { type MethodSpec, MethodError, methodOfAdapterConfig, parseLoraInit, requireImplemented } from './methods';
import { boolField, moduleSpecField, numberField, parseConfigJson, patternField } from './peft-config-fields';
import { matchesModuleSpec } from './targets';

export interface ImportedPeft {
  config: LoraConfig;
  /** base_model_name_or_path from adapter_config.json (null when absent). */
  baseModel: string | null;
  /** In the order of the model's modules. */
  modules: LoraModuleWeights[];
  warnings: string[];
}

/** init_lora_weights values whose adapters assume modified base weights (PiSSA, OLoRA, ...). */
const BASE_MUTATING_INITS = /^(pissa.*|olora|corda|lora_ga|loftq)$/i;

/** ` "name"` of an adapter config's base_model_name_or_path, or nothing. */
function baseName(cfg: Record<string, unknown>): string {
  return typeof cfg.base_model_name_or_path === 'string' ? ` ${JSON.stringify(cfg.base_model_name_or_path)}` : '';
}

/** Features of LoraConfig Tabtune does not apply; a non-default value is reported. */
const IGNORED_FEATURES: [field: string, isDefault: (v: unknown) => boolean, what: string][] = [
  [
    'modules_to_save',
    (v) => v == null || (Array.isArray(v) && v.length === 0),
    'fully trained extra modules (modules_to_save) are not applied',
  ],
  ['trainable_token_indices', (v) => v == null, 'trained token embeddings (trainable_token_indices) are not applied'],
  ['lora_bias', (v) => v == null || v === false, 'LoRA biases (lora_bias) are not applied'],
  [
    'alora_invocation_tokens',
    (v) => v == null,
    'aLoRA activation (alora_invocation_tokens) is not supported; the adapter applies to every token',
  ],
  ['use_qalora', (v) => v == null || v === false, 'QA-LoRA pooling (use_qalora) is not supported'],
  ['layer_replication', (v) => v == null, 'layer_replication is not supported'],
  [
    'target_parameters',
    // fused experts' parameters are read onto the per-expert modules (peft-experts.ts)
    (v) => v == null || (Array.isArray(v) && v.every((x) => EXPERT_PARAMETERS.includes(x as string))),
    'LoRA on raw parameters (target_parameters) is supported only on the experts and router of mixture-of-experts models',
  ],
];

function methodOrPeftError(cfg: Record<string, unknown>): MethodSpec {
  try {
    const m = methodOfAdapterConfig(cfg, ADAPTER_CONFIG_NAME);
    requireImplemented(m, `${ADAPTER_CONFIG_NAME} (peft_type${m.useDora ? ', use_dora' : ''})`);
    if (!m.lowRank) {
      throw new MethodError(
        `${ADAPTER_CONFIG_NAME}: a ${m.label} adapter (peft_type "${m.peftType}") has no LoRA weights; this step reads LoRA and DoRA adapters only.`,
      );
    }
    return m;
  } catch (e) {
    if (e instanceof MethodError) throw new PeftError(e.message);
    throw e;
  }
}

/** Reads adapter_config.json into a LoraConfig (target_modules null when the file has none). */
function readConfig(
  raw: string | Uint8Array,
  warnings: string[],
): { config: LoraConfig; targets: string[] | string | null; baseModel: string | null } {
  const cfg = parseConfigJson(raw);
  if (cfg.peft_type === undefined || cfg.peft_type === null) {
    warnings.push(`${ADAPTER_CONFIG_NAME} has no peft_type; reading it as a LoRA adapter.`);
  }
  const method = methodOrPeftError(cfg);
  if (cfg.task_type != null && cfg.task_type !== 'CAUSAL_LM') {
    warnings.push(
      `${ADAPTER_CONFIG_NAME} has task_type ${JSON.stringify(cfg.task_type)}; Tabtune applies it to a causal LM.`,
    );
  }
  const r = numberField(
    cfg,
    'r',
    PEFT_LORA_DEFAULTS.r,
    warnings,
    `${ADAPTER_CONFIG_NAME} has no "r"; using PEFT's default r = 8 (the scale lora_alpha / r depends on it).`,
  );
  const alpha = numberField(
    cfg,
    'lora_alpha',
    PEFT_LORA_DEFAULTS.lora_alpha,
    warnings,
    `${ADAPTER_CONFIG_NAME} has no "lora_alpha"; using PEFT's default lora_alpha = 8 (the scale lora_alpha / r depends on it).`,
  );
  if (!Number.isInteger(r) || r <= 0)
    throw new PeftError(`${ADAPTER_CONFIG_NAME}: r should be a positive integer, got ${r}.`);
  const dropout = numberField(cfg, 'lora_dropout', 0, warnings);
  const bias = cfg.bias ?? 'none';
  if (bias !== 'none')
    warnings.push(
      `${ADAPTER_CONFIG_NAME} has bias ${JSON.stringify(bias)}; trained biases are not applied, so outputs may differ from PEFT's.`,
    );
  // The init shaped only the starting point: any value loads (the weights are what they are).
  const rawInit = cfg.init_lora_weights;
  const init = (typeof rawInit === 'string' || rawInit === true ? parseLoraInit(rawInit) : null) ?? true;
  if (typeof rawInit === 'string' && BASE_MUTATING_INITS.test(rawInit)) {
    warnings.push(
      `init_lora_weights ${JSON.stringify(rawInit)} changes the base weights during training; this adapter matches the ` +
        `original base model only if it was saved with path_initial_model_for_weight_conversion.`,
    );
  }
  const loftq = cfg.loftq_config;
  if (loftq && typeof loftq === 'object' && Object.keys(loftq).length > 0) {
    warnings.push(
      `${ADAPTER_CONFIG_NAME} has a loftq_config: a LoftQ adapter applies to the quantized backbone it was initialised ` +
        `with (base_model_name_or_path${baseName(cfg)}; Tabtune saves it as loftq-base/ beside the adapter), not to the original model.`,
    );
  }
  for (const [field, isDefault, what] of IGNORED_FEATURES) {
    if (!isDefault(cfg[field])) warnings.push(`${ADAPTER_CONFIG_NAME} sets ${field}: ${what}.`);
  }
  const targets = moduleSpecField(cfg, 'target_modules');
  const exclude = moduleSpecField(cfg, 'exclude_modules');
  const baseModel = typeof cfg.base_model_name_or_path === 'string' ? cfg.base_model_name_or_path : null;
  const config: LoraConfig = {
    r,
    lora_alpha: alpha,
    lora_dropout: dropout,
    target_modules: targets ?? [],
    exclude_modules: exclude,
    use_rslora: boolField(cfg, 'use_rslora', false),
    bias: 'none',
    fan_in_fan_out: boolField(cfg, 'fan_in_fan_out', false),
    init_lora_weights: init,
    use_dora: method.useDora,
    rank_pattern: patternField(cfg, 'rank_pattern'),
    alpha_pattern: patternField(cfg, 'alpha_pattern'),
  };
  return { config, targets, baseModel };
}

/** Largest finite 32-bit float: a LoRA scale above it is infinite on the GPU. */
const F32_MAX = 3.4028234663852886e38;

/** Element i of a tensor in its own dtype (F64 adapters may hold values f32 cannot). */
function tensorToF64At(t: SafeTensor, i: number): number {
  if (t.dtype !== 'F64') return NaN;
  return new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength).getFloat64(i * 8, true);
}

const KEY_RE = /^(.+)\.(lora_A|lora_B)(?:\.([A-Za-z0-9_-]+))?\.weight$/;
/** DoRA's magnitude: `<path>.lora_magnitude_vector` as PEFT saves it, or with an adapter name and/or `.weight`. */
const MAGNITUDE_KEY_RE = /^(.+)\.lora_magnitude_vector(?:\.(?!weight$)([A-Za-z0-9_-]+))?(?:\.weight)?$/;

function lastComponent(id: string): string {
  const parts = id.replace(/[\\/]+$/, '').split(/[\\/]/);
  return (parts[parts.length - 1] ?? id).toLowerCase();
}

function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * Reads a PEFT LoRA adapter for a model with the given linear modules. Errors name the key, the
 * expected and the found; things that load but may behave differently from PEFT are warnings.
 */
export function importPeft<M extends ModuleLike>(
  files: { adapterConfig: string | Uint8Array; adapterModel: Uint8Array },
  modules: readonly M[],
  opts: {
    baseModel?: string;
    /** Module path prefixes of parts Tabtune does not run (Gemma 3's vision tower): their LoRA weights are skipped with a warning. */
    unusedModules?: readonly string[];
  } = {},
): ImportedPeft {
  const warnings: string[] = [];
  const { config, targets, baseModel } = readConfig(files.adapterConfig, warnings);
  if (opts.baseModel && baseModel && lastComponent(opts.baseModel) !== lastComponent(baseModel)) {
    warnings.push(`The adapter was trained on "${baseModel}"; it is being loaded onto "${opts.baseModel}".`);
  }

  let file;
  try {
    file = parseSafetensors(files.adapterModel, ADAPTER_MODEL_NAME);
  } catch (e) {
    if (e instanceof SafetensorsError) throw new PeftError(e.message);
    throw e;
  }

  try {
    file.tensors = unfuseExpertAdapter(file.tensors, config, modules, ADAPTER_MODEL_NAME).tensors;
  } catch (e) {
    if (e instanceof ExpertAdapterError) throw new PeftError(e.message);
    throw e;
  }

  const byPath = new Map(modules.map((m) => [m.path, m]));
  const pairs = new Map<
    string,
    { module: M; key: { A?: string; B?: string; M?: string }; t: { A?: SafeTensor; B?: SafeTensor; M?: SafeTensor } }
  >();
  const adapterNames = new Set<string>();
  const ignored: string[] = [];
  let unprefixed = false;
  const remapped: string[] = [];

  const parsed: { key: string; path: string; which: 'A' | 'B' | 'M'; adapter: string | undefined; t: SafeTensor }[] =
    [];
  for (const [key, t] of file.tensors) {
    if (/\.lora_magnitude_vector\b/.test(key) && !config.use_dora) {
      throw new PeftError(
        `${ADAPTER_MODEL_NAME} has "${key}", a DoRA magnitude vector, but ${ADAPTER_CONFIG_NAME} does not say use_dora: true; ` +
          'the two files do not belong together (a DoRA adapter needs both).',
      );
    }
    const mag = MAGNITUDE_KEY_RE.exec(key);
    if (mag) {
      let path = mag[1]!;
      if (path.startsWith(PEFT_KEY_PREFIX)) path = path.slice(PEFT_KEY_PREFIX.length);
      else unprefixed = true;
      parsed.push({ key, path, which: 'M', adapter: mag[2], t });
      if (mag[2]) adapterNames.add(mag[2]);
      continue;
    }
    const m = KEY_RE.exec(key);
    if (!m) {
      ignored.push(key);
      continue;
    }
    let path = m[1]!;
    if (path.startsWith(PEFT_KEY_PREFIX)) path = path.slice(PEFT_KEY_PREFIX.length);
    else unprefixed = true;
    parsed.push({ key, path, which: m[2] === 'lora_A' ? 'A' : 'B', adapter: m[3], t });
    if (m[3]) adapterNames.add(m[3]);
  }
  let chosenAdapter: string | undefined;
  if (adapterNames.size > 1) {
    chosenAdapter = adapterNames.has('default') ? 'default' : [...adapterNames][0];
    warnings.push(
      `${ADAPTER_MODEL_NAME} holds several adapters (${[...adapterNames].join(', ')}); loading "${chosenAdapter}".`,
    );
  }

  const unused: string[] = [];
  for (const p of parsed) {
    if (chosenAdapter !== undefined && p.adapter !== chosenAdapter) continue;
    if (!byPath.has(p.path) && opts.unusedModules?.some((u) => p.path.startsWith(u))) {
      unused.push(p.path);
      continue;
    }
    let module = byPath.get(p.path);
    if (!module) {
      // Adapters saved from a bare base model (GPT2Model rather than GPT2LMHeadModel) lack the
      // top-level component; adapters for the bare model inside a wrapper have an extra one.
      const alt = [`transformer.${p.path}`, `model.${p.path}`, p.path.replace(/^[^.]+\./, '')].find((c) =>
        byPath.has(c),
      );
      if (alt) {
        module = byPath.get(alt)!;
        remapped.push(`${p.path} -> ${alt}`);
      }
    }
    if (!module) {
      const example = modules[0]?.path;
      throw new PeftError(
        `${ADAPTER_MODEL_NAME} has "${p.key}", but this model has no linear module "${p.path}"` +
          (example ? ` (its modules look like "${example}")` : '') +
          `. The adapter was probably trained for another base model` +
          (baseModel ? ` (adapter_config.json says "${baseModel}")` : '') +
          '.',
      );
    }
    const entry = pairs.get(module.path) ?? { module, key: {}, t: {} };
    if (entry.t[p.which]) {
      throw new PeftError(
        `${ADAPTER_MODEL_NAME} has two ${p.which === 'M' ? 'lora_magnitude_vector' : `lora_${p.which}`} tensors for module "${module.path}": "${entry.key[p.which]}" and "${p.key}".`,
      );
    }
    entry.key[p.which] = p.key;
    entry.t[p.which] = p.t;
    pairs.set(module.path, entry);
  }

  if (unprefixed)
    warnings.push(
      `Some keys in ${ADAPTER_MODEL_NAME} lack the "${PEFT_KEY_PREFIX}" prefix PEFT writes; they were read as module paths.`,
    );
  if (remapped.length)
    warnings.push(
      `Module paths were mapped onto this model's: ${remapped.slice(0, 3).join(', ')}${remapped.length > 3 ? `, … (${remapped.length})` : ''}.`,
    );
  if (unused.length) {
    const mods = [...new Set(unused)];
    warnings.push(
      `${mods.length} adapted module(s) belong to parts of the checkpoint Tabtune does not run (e.g. "${mods[0]}"); their weights were skipped.`,
    );
  }
  if (ignored.length) {
    warnings.push(
      `${ignored.length} tensor(s) in ${ADAPTER_MODEL_NAME} are not LoRA A/B weights and were ignored: ` +
        `${ignored.slice(0, 5).join(', ')}${ignored.length > 5 ? ', …' : ''}.`,
    );
  }
  if (pairs.size === 0)
    throw new PeftError(
      `${ADAPTER_MODEL_NAME} contains no LoRA weights (keys ending in lora_A.weight / lora_B.weight).`,
    );

  const out: LoraModuleWeights[] = [];
  for (const module of modules) {
    const entry = pairs.get(module.path);
    if (!entry) continue;
    const { A, B } = entry.t;
    if (!A)
      throw new PeftError(
        `${ADAPTER_MODEL_NAME} has "${entry.key.B}" but no lora_A for module "${module.path}" (expected "${peftKey(module.path, 'A')}").`,
      );
    if (!B)
      throw new PeftError(
        `${ADAPTER_MODEL_NAME} has "${entry.key.A}" but no lora_B for module "${module.path}" (expected "${peftKey(module.path, 'B')}").`,
      );
    const r = loraRank(config, module.path);
    const rNote = r === config.r ? 'r' : 'rank_pattern';
    const expectA = [r, module.inF];
    const expectB = [module.outF, r];
    for (const [which, t, expect] of [
      ['A', A, expectA],
      ['B', B, expectB],
    ] as const) {
      if (t.shape.length !== 2 || t.shape[0] !== expect[0] || t.shape[1] !== expect[1]) {
        throw new PeftError(
          `${ADAPTER_MODEL_NAME}: "${entry.key[which]}" should have shape ${shapeStr(expect)} ` +
            `(${rNote} = ${r} from ${ADAPTER_CONFIG_NAME}; ${module.path} has in_features ${module.inF}, out_features ${module.outF}), ` +
            `got ${shapeStr(t.shape)}. The adapter was probably trained for another base model or its config does not match its weights.`,
        );
      }
      if (!['F32', 'F16', 'BF16', 'F64'].includes(t.dtype)) {
        throw new PeftError(
          `${ADAPTER_MODEL_NAME}: "${entry.key[which]}" is ${t.dtype}; LoRA weights must be F32, F16, BF16 or F64.`,
        );
      }
    }
    if (module.transposed && !config.fan_in_fan_out) {
      warnings.push(
        `${ADAPTER_CONFIG_NAME} says fan_in_fan_out: false, but this model's ${module.name} modules are Conv1D ([in, out]); A/B are read as [r, in] / [out, r] regardless.`,
      );
    }
    const a = tensorToF32(A);
    const b = tensorToF32(B);
    const mag = magnitudeOf(config, module, entry);
    for (const [which, arr] of [['A', a], ['B', b], ...(mag ? ([['M', mag]] as const) : [])] as const) {
      const i = arr.findIndex((x) => !Number.isFinite(x));
      if (i >= 0) {
        throw new PeftError(
          `${ADAPTER_MODEL_NAME}: "${entry.key[which]}" holds ${arr[i]} at element ${i}${Number.isFinite(tensorToF64At(entry.t[which]!, i)) ? ' once read as 32-bit floats' : ''}; ` +
            'the adapter is damaged or diverged in training, and would make every output NaN.',
        );
      }
    }
    const scale = loraScale(config, module);
    if (!(Math.abs(scale) <= F32_MAX)) {
      throw new PeftError(
        `${ADAPTER_CONFIG_NAME}: the scale of "${module.path}" (lora_alpha / ${config.use_rslora ? 'sqrt(r)' : 'r'} = ${scale}) does not fit a 32-bit float; lora_alpha is far too large.`,
      );
    }
    out.push({ path: module.path, r, inF: module.inF, outF: module.outF, a, b, ...(mag ? { m: mag } : {}) });
  }
  if (targets !== null) {
    // PEFT leaves targeted modules without saved weights at B = 0 (no effect) and warns; so do we.
    const ex = excludeSpec(config);
    let targeted: M[] = [];
    try {
      targeted = modules.filter(
        (m) => (isAllLinear(targets) || matchesModuleSpec(targets, m.path)) && !(ex && matchesModuleSpec(ex, m.path)),
      );
    } catch {
      // A Python-only regex: nothing to compare against.
    }
    const missing = targeted.filter((m) => !pairs.has(m.path));
    if (missing.length) {
      warnings.push(
        `${missing.length} module(s) matched by target_modules have no weights in ${ADAPTER_MODEL_NAME} (e.g. "${missing[0]!.path}"); ` +
          `PEFT leaves them at zero, so they have no effect.`,
      );
    }
  } else {
    config.target_modules = [...new Set(out.map((m) => m.path.slice(m.path.lastIndexOf('.') + 1)))];
    warnings.push(`${ADAPTER_CONFIG_NAME} has no target_modules; using the modules found in ${ADAPTER_MODEL_NAME}.`);
  }
  return { config, baseModel, modules: out, warnings: dedupe(warnings) };
}

/** DoRA's magnitude of a module, checked (present with use_dora, [outF], a float dtype); null for plain LoRA. */
function magnitudeOf(
  config: LoraConfig,
  module: ModuleLike,
  entry: { key: { M?: string }; t: { M?: SafeTensor } },
): Float32Array | null {
  const t = entry.t.M;
  if (!config.use_dora) return null;
  if (!t) {
    throw new PeftError(
      `${ADAPTER_MODEL_NAME} has no DoRA magnitude for module "${module.path}" (expected "${peftKey(module.path, 'M')}"), ` +
        `but ${ADAPTER_CONFIG_NAME} says use_dora: true.`,
    );
  }
  if (t.shape.length !== 1 || t.shape[0] !== module.outF) {
    throw new PeftError(
      `${ADAPTER_MODEL_NAME}: "${entry.key.M}" should have shape [${module.outF}] (${module.path} has out_features ${module.outF}), got ${shapeStr(t.shape)}.`,
    );
  }
  if (!['F32', 'F16', 'BF16', 'F64'].includes(t.dtype))
    throw new PeftError(`${ADAPTER_MODEL_NAME}: "${entry.key.M}" is ${t.dtype}; it must be F32, F16, BF16 or F64.`);
  return tensorToF32(t);
}

function excludeSpec(c: LoraConfig): string[] | string | null {
  const e = c.exclude_modules;
  return e == null || e.length === 0 ? null : e;
}

function dedupe(xs: string[]): string[] {
  return [...new Set(xs)];
}

// ---------------------------------------------------------------------------------------------
// Merge
