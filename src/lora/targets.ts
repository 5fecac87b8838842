/**
 * Which linear modules a LoRA config targets, with PEFT's matching semantics
 * (`check_target_module_exists` in peft/tuners/tuners_utils.py):
 * - a list: a module is targeted when its path equals an entry or ends with "." + entry;
 * - a string: a regex that must match the whole module path (Python `re.fullmatch`);
 * - "all-linear" (any case): every linear module except the output head. Tabtune's module list
 *   (the registry's LinearModule[]) never contains the head, so that is every module in the list.
 * `exclude_modules` uses the same rules and wins over target_modules.
 *
 * Also PEFT's default targets per model_type, used when the form leaves target_modules empty.
 */

import type { LoraSettings } from './config';
import { ALL_LINEAR, LOFTQ_DEFAULTS, type LoraConfig, LoraConfigError, type ModuleLike, isAllLinear } from './config';
import { MethodError, methodSpec, requireImplemented } from './methods';
import { fullMatch } from './pattern';

/**
 * PEFT's default targets per `model_type` (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING in
 * peft/utils/constants.py, 0.21), its decoder-only entries. A model type not listed here needs
 * explicit target_modules (e.g. phi3's fused qkv_proj, gemma3, olmo2, granite, smollm3).
 */
export const DEFAULT_TARGET_MODULES: Readonly<Record<string, readonly string[]>> = {
  gpt2: ['c_attn'],
  gpt_bigcode: ['c_attn'],
  bloom: ['query_key_value'],
  gpt_neox: ['query_key_value'],
  falcon: ['query_key_value'],
  RefinedWeb: ['query_key_value'],
  RefinedWebModel: ['query_key_value'],
  chatglm: ['query_key_value'],
  opt: ['q_proj', 'v_proj'],
  gptj: ['q_proj', 'v_proj'],
  gpt_neo: ['q_proj', 'v_proj'],
  llama: ['q_proj', 'v_proj'],
  llama4: ['q_proj', 'v_proj'],
  mistral: ['q_proj', 'v_proj'],
  mixtral: ['q_proj', 'v_proj'],
  stablelm: ['q_proj', 'v_proj'],
  gemma: ['q_proj', 'v_proj'],
  gemma2: ['q_proj', 'v_proj'],
  gemma3_text: ['q_proj', 'v_proj'],
  qwen2: ['q_proj', 'v_proj'],
  qwen3: ['q_proj', 'v_proj'],
  phi: ['q_proj', 'v_proj', 'fc1', 'fc2'],
  mpt: ['Wqkv'],
  codegen: ['qkv_proj'],
  btlm: ['c_proj', 'c_attn'],
};

/** PEFT's default target_modules for a model_type; throws a LoraConfigError naming the fix when unmapped. */
export function defaultTargetModules(modelType: string): string[] {
  const t = Object.prototype.hasOwnProperty.call(DEFAULT_TARGET_MODULES, modelType)
    ? DEFAULT_TARGET_MODULES[modelType]
    : undefined;
  if (!t) {
    throw new LoraConfigError(
      `PEFT has no default LoRA target modules for model_type "${modelType}". Choose target_modules explicitly ` +
        `(module names such as ["q_proj", "v_proj"], a regex on module paths, or "all-linear").`,
    );
  }
  return [...t];
}

/**
 * A full LoraConfig from the engine's form settings. An empty target_modules list means PEFT's
 * default for this model_type. fan_in_fan_out is true for models with Conv1D weights (GPT-2; the
 * caller knows from the registry's hasConv1dWeights), as PEFT's config for them says.
 */
export function loraConfigFromSettings(
  s: LoraSettings,
  modelType: string,
  opts: { fanInFanOut?: boolean } = {},
): LoraConfig {
  const method = methodSpec(s.method ?? 'lora');
  try {
    requireImplemented(method, 'method');
    if (!method.lowRank) throw new MethodError(`method: ${method.label} has no LoRA configuration.`);
  } catch (e) {
    if (e instanceof MethodError) throw new LoraConfigError(e.message);
    throw e;
  }
  const t = s.target_modules;
  const targets =
    typeof t === 'string' ? (isAllLinear(t) ? ALL_LINEAR : t) : t.length ? [...t] : defaultTargetModules(modelType);
  return {
    r: s.r,
    lora_alpha: s.lora_alpha,
    lora_dropout: s.lora_dropout,
    target_modules: targets,
    use_rslora: s.use_rslora,
    bias: 'none',
    fan_in_fan_out: opts.fanInFanOut ?? false,
    init_lora_weights: s.init_lora_weights ?? true,
    use_dora: method.useDora,
    ...(s.init_lora_weights === 'loftq' ? { loftq_config: s.loftq_config ?? { ...LOFTQ_DEFAULTS } } : {}),
  };
}

/** PEFT's list/regex matching of one module path (without layers_to_transform filters). */
export function matchesModuleSpec(spec: readonly string[] | string, path: string): boolean {
  if (typeof spec === 'string') return fullMatch(spec, path);
  return spec.some((name) => path === name || path.endsWith(`.${name}`));
}

/** Distinct module names in model order. */
export function distinctNames(modules: readonly ModuleLike[]): string[] {
  return [...new Set(modules.map((m) => m.name))];
}

/**
 * The modules a config targets, in model order (the same objects that were passed in). Throws a
 * LoraConfigError naming the targets and the model's module names when nothing matches.
 */
export function resolveTargets<M extends ModuleLike>(
  cfg: Pick<LoraConfig, 'target_modules' | 'exclude_modules'>,
  modules: readonly M[],
): M[] {
  const t = cfg.target_modules;
  const ex = cfg.exclude_modules;
  const excluded = (m: M): boolean => ex != null && ex.length > 0 && matchesModuleSpec(ex, m.path);
  const picked = modules.filter((m) => (isAllLinear(t) || matchesModuleSpec(t, m.path)) && !excluded(m));
  if (picked.length === 0) {
    const names = distinctNames(modules);
    const example = modules[0]?.path;
    throw new LoraConfigError(
      `target_modules ${JSON.stringify(t)} matched none of this model's ${modules.length} linear modules` +
        (ex != null && ex.length > 0 ? ` (after exclude_modules ${JSON.stringify(ex)})` : '') +
        `. Available module names: ${names.join(', ') || '(none)'}` +
        (example ? ` (a full path looks like "${example}"; a regex must match the whole path).` : '.'),
    );
  }
  // Mixtral's experts: PEFT fuses each expert's w1 (gate) and w3 (up) into one gate_up_proj on
  // transformers 5 and refuses to load an adapter that has only one of them.
  const paths = new Set(picked.map((m) => m.path));
  const half = picked.find(
    (m) =>
      /\.experts\.\d+\.w[13]$/.test(m.path) &&
      !paths.has(m.path.replace(/w([13])$/, (_, d) => `w${d === '1' ? 3 : 1}`)),
  );
  if (half) {
    throw new LoraConfigError(
      `target_modules adapt "${half.path}" but not its expert's ${half.name === 'w1' ? 'w3' : 'w1'}: PEFT loads each expert's w1 (gate) ` +
        `and w3 (up) as one fused gate_up_proj on transformers 5 and refuses adapters with only one of them; target both (w1, w3) or neither.`,
    );
  }
  return picked;
}

/** Entries of a target_modules list that match no module (PEFT is silent about these; the UI can warn). */
export function unmatchedTargets(cfg: Pick<LoraConfig, 'target_modules'>, modules: readonly ModuleLike[]): string[] {
  const t = cfg.target_modules;
  if (typeof t === 'string') return [];
  return t.filter((name) => !modules.some((m) => matchesModuleSpec([name], m.path)));
}
