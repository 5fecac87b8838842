/**
 * The LoRA configuration, with PEFT's field names and meanings (huggingface/peft `LoraConfig`), so
 * a value keeps its name from the form to adapter_config.json:
 *   scale = lora_alpha / r            (use_rslora false)
 *         = lora_alpha / sqrt(r)      (use_rslora true)
 *   y = base(x) + scale · B·A·dropout(x)
 * `rank_pattern` / `alpha_pattern` override r / lora_alpha for modules whose path matches a key the
 * way PEFT's `get_pattern_key` does (the key is a regex that must match a dotted suffix of the path).
 * Which modules a config targets, and PEFT's default targets per model_type: ./targets.ts.
 */

import { type LoraInit, type PeftMethod, parseLoraInit } from './methods';
import { fullMatch, patternProblem } from './pattern';

/** What this file needs to know about a linear module (a subset of the registry's LinearModule). */
export interface ModuleLike {
  /** Dotted path in the *ForCausalLM model, e.g. 'model.layers.0.self_attn.q_proj'. */
  path: string;
  /** Last path component, e.g. 'q_proj'. */
  name: string;
  inF: number;
  outF: number;
  /** GPT-2 Conv1D: the checkpoint stores the weight [in, out]. */
  transposed: boolean;
}

export interface LoraConfig {
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  /** Module names (list), a full-match regex on the module path (string), or 'all-linear'. */
  target_modules: string[] | string;
  /** PEFT's exclude_modules: same matching rules as target_modules; null/absent = none. */
  exclude_modules?: string[] | string | null;
  use_rslora: boolean;
  bias: 'none';
  fan_in_fan_out: boolean;
  init_lora_weights: LoraInit;
  /** DoRA (PEFT's use_dora): a learned magnitude per output row; absent = false. */
  use_dora?: boolean;
  /** PEFT's LoftQConfig, for init_lora_weights 'loftq' (src/lora/loftq.ts); absent = {}. */
  loftq_config?: LoftqConfig;
  rank_pattern?: Record<string, number>;
  alpha_pattern?: Record<string, number>;
}

/**
 * The adapter settings a user chooses (the form, the CLI flags): the method (src/lora/methods.ts;
 * absent = 'lora'), the LoRA fields (a subset of LoraConfig, used by lora and dora), and the
 * options of the other methods under PEFT's names.
 */
export interface LoraSettings {
  method?: PeftMethod;
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  /** Module names (e.g. ['q_proj', 'v_proj']) or 'all-linear'. */
  target_modules: string[] | 'all-linear';
  use_rslora: boolean;
  init_lora_weights?: LoraInit;
  /** LoftQ (init_lora_weights 'loftq'): PEFT's LoftQConfig; absent = its defaults (4 bits, 1 iteration). */
  loftq_config?: LoftqConfig;
  /** IA3: target modules whose input (not output) is scaled. */
  feedforward_modules?: string[];
  /** Prompt and prefix tuning: the number of virtual tokens. */
  num_virtual_tokens?: number;
  /** Prompt tuning: initialise the virtual tokens from this text's embeddings (PEFT's TEXT init); empty = random. */
  prompt_tuning_init_text?: string;
  /** Prefix tuning: reparameterise the prefixes through PEFT's two-layer MLP. */
  prefix_projection?: boolean;
  /** Prefix tuning with prefix_projection: the MLP's hidden size. */
  encoder_hidden_size?: number;
}

/** PEFT's LoftQConfig: the base's quantization bits (Tabtune: 4, NF4) and the alternating iterations. */
export interface LoftqConfig {
  loftq_bits: number;
  loftq_iter: number;
}

/** LoftQConfig's defaults in PEFT 0.21. */
export const LOFTQ_DEFAULTS: LoftqConfig = { loftq_bits: 4, loftq_iter: 1 };

export class LoraConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LoraConfigError';
  }
}

/** Largest finite 32-bit float: the GPU holds the scale as one. */
const F32_MAX = 3.4028234663852886e38;

/** Most rank_pattern / alpha_pattern entries accepted (each is matched against every module). */
const MAX_PATTERN_KEYS = 1024;

/** PEFT's LoraConfig defaults (r=8, lora_alpha=8, no dropout); target_modules must be chosen. */
export const PEFT_LORA_DEFAULTS: Omit<LoraConfig, 'target_modules'> = {
  r: 8,
  lora_alpha: 8,
  lora_dropout: 0,
  use_rslora: false,
  bias: 'none',
  fan_in_fan_out: false,
  init_lora_weights: true,
};

export const ALL_LINEAR = 'all-linear';

export function isAllLinear(t: LoraConfig['target_modules']): t is string {
  return typeof t === 'string' && t.toLowerCase() === ALL_LINEAR;
}

/** PEFT's `get_pattern_key`: the first pattern key that matches a dotted suffix of `path`. */
function patternKey(patterns: Record<string, number> | undefined, path: string): string | null {
  if (!patterns) return null;
  for (const key of Object.keys(patterns)) {
    if (fullMatch(`(?:.*\\.)?(?:${key})`, path)) return key;
  }
  return null;
}

/** The rank of the module at `path` (rank_pattern, else r). */
export function loraRank(cfg: Pick<LoraConfig, 'r' | 'rank_pattern'>, path: string): number {
  const key = patternKey(cfg.rank_pattern, path);
  return key === null ? cfg.r : cfg.rank_pattern![key]!;
}

/** The alpha of the module at `path` (alpha_pattern, else lora_alpha). */
export function loraAlpha(cfg: Pick<LoraConfig, 'lora_alpha' | 'alpha_pattern'>, path: string): number {
  const key = patternKey(cfg.alpha_pattern, path);
  return key === null ? cfg.lora_alpha : cfg.alpha_pattern![key]!;
}

/** The factor B·A is multiplied by: alpha / r, or alpha / sqrt(r) with use_rslora. */
export function loraScale(
  cfg: Pick<LoraConfig, 'r' | 'lora_alpha' | 'use_rslora' | 'rank_pattern' | 'alpha_pattern'>,
  module: { path: string },
): number {
  const r = loraRank(cfg, module.path);
  const alpha = loraAlpha(cfg, module.path);
  return cfg.use_rslora ? alpha / Math.sqrt(r) : alpha / r;
}

/**
 * Trainable parameters of a LoRA config on the modules it adapts, as PEFT's
 * print_trainable_parameters counts them: r·(in + out) per module, + out for DoRA's magnitude.
 */
export function loraParameterCount(
  cfg: Pick<LoraConfig, 'r' | 'rank_pattern' | 'use_dora'>,
  modules: readonly Pick<ModuleLike, 'path' | 'inF' | 'outF'>[],
): number {
  let n = 0;
  for (const m of modules) n += loraRank(cfg, m.path) * (m.inF + m.outF) + (cfg.use_dora ? m.outF : 0);
  return n;
}

/** r, scale and dropout of one module, in the shape GpuLora.fromArrays asks for. */
export function loraScaleInfo(
  cfg: LoraConfig,
  module: { path: string },
): { r: number; scale: number; dropout: number } {
  return { r: loraRank(cfg, module.path), scale: loraScale(cfg, module), dropout: cfg.lora_dropout };
}

function regexProblem(pattern: string, patternKey = false): string | null {
  // A pattern key is used inside a larger expression (a dotted suffix match): check it there too.
  return patternProblem(pattern) ?? (patternKey ? patternProblem(`(?:.*\\.)?(?:${pattern})`) : null);
}

/** Every problem with a config, as sentences (empty when valid). For forms that show all at once. */
export function loraConfigProblems(cfg: LoraConfig): string[] {
  const p: string[] = [];
  if (!Number.isInteger(cfg.r) || cfg.r <= 0) p.push(`r (the LoRA rank) must be a positive integer, got ${cfg.r}.`);
  if (typeof cfg.lora_alpha !== 'number' || !Number.isFinite(cfg.lora_alpha) || cfg.lora_alpha <= 0) {
    p.push(`lora_alpha must be a number > 0, got ${cfg.lora_alpha}.`);
  } else if (
    Number.isInteger(cfg.r) &&
    cfg.r > 0 &&
    cfg.lora_alpha / (cfg.use_rslora ? Math.sqrt(cfg.r) : cfg.r) > F32_MAX
  ) {
    p.push(
      `lora_alpha ${cfg.lora_alpha} makes a scale no 32-bit float holds (every output would be infinite); use a value like 2·r.`,
    );
  }
  if (typeof cfg.lora_dropout !== 'number' || !(cfg.lora_dropout >= 0 && cfg.lora_dropout < 1)) {
    p.push(`lora_dropout must be in [0, 1), got ${cfg.lora_dropout}.`);
  }
  p.push(...moduleSpecProblems('target_modules', cfg.target_modules, true));
  if (cfg.exclude_modules != null) p.push(...moduleSpecProblems('exclude_modules', cfg.exclude_modules, false));
  if (typeof cfg.use_rslora !== 'boolean')
    p.push(`use_rslora must be true or false, got ${JSON.stringify(cfg.use_rslora)}.`);
  if (typeof cfg.fan_in_fan_out !== 'boolean')
    p.push(`fan_in_fan_out must be true or false, got ${JSON.stringify(cfg.fan_in_fan_out)}.`);
  if (cfg.bias !== 'none')
    p.push(`bias must be "none" (training biases is not supported), got ${JSON.stringify(cfg.bias)}.`);
  if (typeof cfg.init_lora_weights !== 'string' && cfg.init_lora_weights !== true) {
    p.push(`init_lora_weights must be true or a PEFT init name, got ${JSON.stringify(cfg.init_lora_weights)}.`);
  } else if (parseLoraInit(cfg.init_lora_weights) === null) {
    p.push(
      `init_lora_weights must be true, "gaussian", "pissa", "pissa_niter_N", "olora" or "loftq", got ${JSON.stringify(cfg.init_lora_weights)}.`,
    );
  }
  if (cfg.loftq_config !== undefined) p.push(...loftqProblems(cfg.loftq_config));
  if (cfg.use_dora !== undefined && typeof cfg.use_dora !== 'boolean')
    p.push(`use_dora must be true or false, got ${JSON.stringify(cfg.use_dora)}.`);
  for (const [field, pat, int] of [
    ['rank_pattern', cfg.rank_pattern, true],
    ['alpha_pattern', cfg.alpha_pattern, false],
  ] as const) {
    if (pat == null) continue;
    if (typeof pat !== 'object' || Array.isArray(pat)) {
      p.push(`${field} must be an object mapping module-path regexes to numbers, got ${JSON.stringify(pat)}.`);
      continue;
    }
    const keys = Object.keys(pat);
    if (keys.length > MAX_PATTERN_KEYS) {
      p.push(`${field} has ${keys.length} entries; at most ${MAX_PATTERN_KEYS} are accepted.`);
      continue;
    }
    for (const [k, v] of Object.entries(pat)) {
      const bad = regexProblem(k, true);
      if (bad) p.push(`${field} key ${JSON.stringify(k)} is not a valid regex: ${bad}`);
      const ok = typeof v === 'number' && Number.isFinite(v) && v > 0 && (!int || Number.isInteger(v));
      if (!ok)
        p.push(
          `${field}[${JSON.stringify(k)}] must be ${int ? 'a positive integer' : 'a number > 0'}, got ${JSON.stringify(v)}.`,
        );
    }
  }
  return p;
}

function moduleSpecProblems(field: string, spec: unknown, required: boolean): string[] {
  if (typeof spec === 'string') {
    if (spec.length === 0) return required ? [`${field} is empty; give module names, a regex, or "all-linear".`] : [];
    if (isAllLinear(spec)) return [];
    const bad = regexProblem(spec);
    return bad ? [`${field} ${JSON.stringify(spec)} is not a valid regex: ${bad}`] : [];
  }
  if (!Array.isArray(spec))
    return [`${field} must be a list of module names, a regex string, or "all-linear", got ${JSON.stringify(spec)}.`];
  if (spec.length === 0)
    return required
      ? [`${field} is empty; give module names (e.g. ["q_proj", "v_proj"]), a regex, or "all-linear".`]
      : [];
  const bad = spec.filter((s) => typeof s !== 'string' || s.length === 0);
  return bad.length ? [`${field} entries must be non-empty strings, got ${JSON.stringify(bad)}.`] : [];
}

/** Throws a LoraConfigError listing every problem of the config. */
export function validateLoraConfig(cfg: LoraConfig): void {
  const p = loraConfigProblems(cfg);
  if (p.length) throw new LoraConfigError(`Invalid LoRA config: ${p.join(' ')}`);
}

/** What is wrong with a LoftQConfig (empty when fine): 4 bits (NF4) only, 1 to 100 iterations. */
export function loftqProblems(c: LoftqConfig): string[] {
  const p: string[] = [];
  if (c.loftq_bits !== 4) {
    p.push(
      `loftq_config.loftq_bits must be 4 (the base is quantized to NF4 as bitsandbytes does); got ${JSON.stringify(c.loftq_bits)}. PEFT's 8-bit (int8) LoftQ is not implemented in Tabtune.`,
    );
  }
  if (!Number.isInteger(c.loftq_iter) || c.loftq_iter < 1 || c.loftq_iter > 100) {
    p.push(
      `loftq_config.loftq_iter must be an integer from 1 to 100 (alternating iterations), got ${JSON.stringify(c.loftq_iter)}.`,
    );
  }
  return p;
}
