/**
 * The flags of a training run, shared by `tabtune train` and `tabtune export-recipe` (which takes
 * the same flags and writes the run as a TRL project instead of running it): the flag table, the
 * TrainSettings they set, and the LoRA settings they pick, checked against the model's linear
 * modules and against an adapter being continued (--init-from) or a checkpoint (--resume).
 */

import type { LoraSettings, PeftFiles, TrainSettings } from '../engine/types';
import { DEFAULT_TRAIN } from '../engine/defaults';
import { join } from 'node:path';
import { type FlagSpec, type ParsedFlags, UsageError, bool, num, str } from './args';
import { FORMAT } from './common';
import { DATA_FLAGS } from './data-flag';
import { FROZEN_FLAGS } from './frozen';
import { LOFTQ_DEFAULTS, loftqProblems } from '../lora/config';
import {
  INIT_CHOICES,
  METHOD_IDS,
  MethodError,
  type PeftMethod,
  PEFT_METHODS,
  methodOfAdapterConfig,
  methodSpec,
  parseLoraInit,
  requireImplemented,
  requireInitImplemented,
} from '../lora/methods';

export const TRAIN_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', required: true },
  data: { type: 'string', required: true },
  out: { type: 'string', required: true },
  format: FORMAT,
  method: { type: 'string', choices: METHOD_IDS },
  targets: { type: 'string' },
  r: { type: 'int', min: 1, max: 4096 },
  alpha: { type: 'number', min: 0, exclusiveMin: true },
  dropout: { type: 'number', min: 0, max: 0.99 },
  rslora: { type: 'bool' },
  init: { type: 'string' },
  'loftq-iter': { type: 'int', min: 1, max: 100 },
  'loftq-bits': { type: 'int' },
  'feedforward-modules': { type: 'string' },
  'num-virtual-tokens': { type: 'int', min: 1, max: 4096 },
  'prompt-init': { type: 'string', choices: ['text', 'random'] },
  'prompt-init-text': { type: 'string' },
  'prefix-projection': { type: 'bool' },
  'encoder-hidden-size': { type: 'int', min: 1 },
  'init-from': { type: 'string' },
  'any-base': { type: 'bool' },
  optimizer: { type: 'string', choices: ['adamw', 'sgd'] },
  lr: { type: 'number', min: 0, exclusiveMin: true },
  'weight-decay': { type: 'number', min: 0 },
  steps: { type: 'int', min: 1 },
  epochs: { type: 'number', min: 0, exclusiveMin: true },
  batch: { type: 'int', min: 1 },
  'grad-accum': { type: 'int', min: 1 },
  'max-len': { type: 'int', min: 2 },
  scheduler: { type: 'string', choices: ['constant', 'linear', 'cosine'] },
  warmup: { type: 'int', min: 0 },
  'max-grad-norm': { type: 'number', min: 0 },
  shuffle: { type: 'bool' },
  seed: { type: 'int', min: 0 },
  'val-fraction': { type: 'number', min: 0, max: 0.5 },
  'loss-every': { type: 'int', min: 1 },
  'eval-every': { type: 'int', min: 0 },
  'checkpoint-every': { type: 'int', min: 0 },
  resume: { type: 'bool' },
  'activation-checkpointing': { type: 'bool' },
  packing: { type: 'bool' },
  json: { type: 'bool' },
  ...FROZEN_FLAGS,
  ...DATA_FLAGS,
};

/** Flags that set TrainSettings fields (for --resume: taken from the checkpoint unless given). */
export const TRAIN_SETTING_FLAGS: readonly [string, keyof TrainSettings][] = [
  ['optimizer', 'optimizer'],
  ['lr', 'lr'],
  ['weight-decay', 'weightDecay'],
  ['batch', 'batch'],
  ['grad-accum', 'gradAccum'],
  ['max-len', 'maxLen'],
  ['scheduler', 'scheduler'],
  ['warmup', 'warmup'],
  ['max-grad-norm', 'maxGradNorm'],
  ['shuffle', 'shuffle'],
  ['seed', 'seed'],
  ['val-fraction', 'valFraction'],
  ['loss-every', 'lossEvery'],
  ['eval-every', 'evalEvery'],
  ['checkpoint-every', 'checkpointEvery'],
  ['activation-checkpointing', 'activationCheckpointing'],
  ['packing', 'packing'],
];

/** --steps or --epochs, not both. */
export function checkStepsOrEpochs(f: ParsedFlags, command: string): void {
  if (num(f, 'steps') !== undefined && num(f, 'epochs') !== undefined) {
    throw new UsageError(`${command}: give either --steps or --epochs, not both.`);
  }
}

/** The CLI's TrainSettings before any flag: the engine's defaults with the CLI's own choices. */
export function baseTrainSettings(f: ParsedFlags, maxLen: number): TrainSettings {
  return {
    ...DEFAULT_TRAIN,
    steps: num(f, 'steps') ?? 0,
    epochs: num(f, 'epochs') ?? (num(f, 'steps') ? 0 : DEFAULT_TRAIN.epochs),
    maxLen,
    shuffle: true,
    lossEvery: 1,
    evalEvery: 0,
    checkpointEvery: 0,
    valFraction: 0,
    activationCheckpointing: false,
    packing: false,
  };
}

/** Writes every given setting flag into `settings`. */
export function applySettingFlags(f: ParsedFlags, settings: TrainSettings): void {
  for (const [flag, key] of TRAIN_SETTING_FLAGS) {
    if (f[flag] !== undefined) (settings as unknown as Record<string, unknown>)[key] = f[flag];
  }
}

/** The LoRA shape an existing adapter or checkpoint fixes (r, alpha, targets, rsLoRA). */
export interface LoraShape {
  /** Absent in checkpoints made before methods: 'lora'. */
  method?: PeftMethod;
  r: number;
  lora_alpha: number;
  target_modules: string[] | string;
  use_rslora: boolean;
}

export function adapterShape(files: PeftFiles, dir: string): LoraShape {
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(files.adapterConfig) as Record<string, unknown>;
  } catch (e) {
    throw new UsageError(`${join(dir, 'adapter_config.json')}: not valid JSON (${(e as Error).message}).`);
  }
  const other = c && typeof c === 'object' && ['IA3', 'PROMPT_TUNING', 'PREFIX_TUNING'].includes(c.peft_type as string);
  if (other) {
    // (IA)³ / prompt / prefix: the method is what a continued adapter fixes (its files say the rest)
    const t = c.target_modules;
    return {
      method: methodOfAdapterConfig(c, join(dir, 'adapter_config.json')).id,
      r: 8,
      lora_alpha: 8,
      target_modules: typeof t === 'string' || Array.isArray(t) ? (t as string[] | string) : [],
      use_rslora: false,
    };
  }
  if (!c || typeof c !== 'object' || typeof c.r !== 'number' || typeof c.lora_alpha !== 'number') {
    throw new UsageError(
      `${join(dir, 'adapter_config.json')}: expected a PEFT LoRA config with numeric "r" and "lora_alpha".`,
    );
  }
  const t = c.target_modules;
  let method: PeftMethod;
  try {
    method = methodOfAdapterConfig(c, join(dir, 'adapter_config.json')).id;
  } catch (e) {
    if (e instanceof MethodError) throw new UsageError(e.message);
    throw e;
  }
  return {
    method,
    r: c.r,
    lora_alpha: c.lora_alpha,
    target_modules: typeof t === 'string' || Array.isArray(t) ? (t as string[] | string) : [],
    use_rslora: c.use_rslora === true,
  };
}

function describeTargets(t: string[] | string): string {
  if (typeof t === 'string') return JSON.stringify(t);
  const names = [...new Set(t.map((p) => p.slice(p.lastIndexOf('.') + 1)))];
  return names.length === t.length ? names.join(',') : `${names.join(',')} (${t.length} modules)`;
}

/** --r, --alpha, --rslora and --targets cannot change the shape of an adapter being continued. */
export function checkLoraFlags(f: ParsedFlags, shape: LoraShape, source: string, command: string): void {
  const method = str(f, 'method');
  if (method !== undefined && method !== (shape.method ?? 'lora')) {
    throw new UsageError(
      `${command}: --method ${method} conflicts with ${source}, which is a ${methodSpec(shape.method ?? 'lora').label} adapter; ` +
        'a continued adapter keeps its method (leave --method out).',
    );
  }
  const given: [string, unknown, unknown][] = [
    ['r', num(f, 'r'), shape.r],
    ['alpha', num(f, 'alpha'), shape.lora_alpha],
    ['rslora', bool(f, 'rslora'), shape.use_rslora],
  ];
  for (const [flag, mine, theirs] of given) {
    if (mine !== undefined && mine !== theirs) {
      throw new UsageError(
        `${command}: --${flag} ${String(mine)} conflicts with ${source}, which has ${flag === 'alpha' ? 'lora_alpha' : flag === 'rslora' ? 'use_rslora' : 'r'} ` +
          `${String(theirs)}; a continued adapter keeps its r, alpha and targets (leave --${flag} out).`,
      );
    }
  }
  if (str(f, 'targets') !== undefined) {
    throw new UsageError(
      `${command}: --targets conflicts with ${source}, whose targets are ${describeTargets(shape.target_modules)}; ` +
        'a continued adapter keeps its r, alpha and targets (leave --targets out).',
    );
  }
}

/** --targets as LoRA target_modules, checked against the model's linear module names. */
function parseTargets(
  flag: string,
  linearModules: string[],
  modelType: string,
  command: string,
): string[] | 'all-linear' {
  const list = flag.split(',').map((t) => t.trim());
  if (list.length === 1 && list[0]!.toLowerCase() === 'all-linear') return 'all-linear';
  const available = `this model (${modelType}) has ${linearModules.join(', ')}, or use all-linear`;
  if (list.every((t) => t === ''))
    throw new UsageError(`${command}: --targets is empty; expected module names (${available}).`);
  if (list.some((t) => t === ''))
    throw new UsageError(`${command}: --targets "${flag}" has an empty name; expected comma-separated module names.`);
  for (const t of list) {
    if (t.toLowerCase() === 'all-linear')
      throw new UsageError(`${command}: --targets all-linear cannot be combined with module names.`);
    // PEFT also takes a dotted suffix of the module path (self_attn.q_proj): its last part must be a module name.
    const last = t.slice(t.lastIndexOf('.') + 1);
    if (!linearModules.includes(last))
      throw new UsageError(`${command}: --targets "${t}" is not a linear module name; ${available}.`);
  }
  return list;
}

/** What the LoRA flags are checked against: the model's module names and family defaults. */
export interface ModelModules {
  modelType: string;
  linearModules: string[];
  defaultTargets: string[];
}

/** Every method-specific flag (the methods table's `flags`), with the methods it belongs to. */
function methodFlagOwners(): Map<string, PeftMethod[]> {
  const owners = new Map<string, PeftMethod[]>();
  for (const m of PEFT_METHODS) for (const flag of m.flags) owners.set(flag, [...(owners.get(flag) ?? []), m.id]);
  return owners;
}

/**
 * --method, checked: implemented, and no flag of another method given (a flag that does not apply
 * is an error, never silently ignored). `fixed` is the method of a continued adapter or checkpoint.
 */
function methodFromFlags(f: ParsedFlags, fixed: PeftMethod | undefined, command: string): PeftMethod {
  const spec = methodSpec(fixed ?? (str(f, 'method') as PeftMethod | undefined) ?? 'lora');
  try {
    requireImplemented(spec, `${command} --method ${spec.id}`);
  } catch (e) {
    if (e instanceof MethodError) throw new UsageError(e.message);
    throw e;
  }
  for (const [flag, owners] of methodFlagOwners()) {
    if (f[flag] !== undefined && !owners.includes(spec.id)) {
      throw new UsageError(
        `${command}: --${flag} applies to --method ${owners.join(' or ')}, not ${spec.id}; leave it out or choose one of those methods.`,
      );
    }
  }
  return spec.id;
}

/** --init as PEFT's init_lora_weights (checked: known and implemented). */
function initFromFlags(f: ParsedFlags, command: string): LoraSettings['init_lora_weights'] {
  const flag = str(f, 'init');
  if (flag === undefined) return undefined;
  const init = parseLoraInit(flag);
  if (init === null) {
    throw new UsageError(
      `${command}: --init must be one of ${INIT_CHOICES.join(', ')} or pissa_niter_N; got "${flag}".`,
    );
  }
  try {
    requireInitImplemented(init, `${command} --init ${flag}`);
  } catch (e) {
    if (e instanceof MethodError) throw new UsageError(e.message);
    throw e;
  }
  return init;
}

/** The run's adapter settings: from a continued adapter or checkpoint (`fixed`), else from the flags. */
export function loraFromFlags(
  f: ParsedFlags,
  model: ModelModules,
  fixed: LoraShape | undefined,
  command: string,
): LoraSettings {
  const method = methodFromFlags(f, fixed ? (fixed.method ?? 'lora') : undefined, command);
  const targetsFlag = str(f, 'targets');
  const init = initFromFlags(f, command);
  return {
    method,
    r: fixed?.r ?? num(f, 'r') ?? 8,
    lora_alpha: fixed?.lora_alpha ?? num(f, 'alpha') ?? 16,
    lora_dropout: num(f, 'dropout') ?? 0.05,
    target_modules:
      // (a regex string from an adapter's config works too: the engine reads any string as PEFT does)
      (fixed?.target_modules as LoraSettings['target_modules'] | undefined) ??
      (targetsFlag === undefined
        ? method === 'ia3'
          ? [] // PEFT's (IA)³ defaults for the model type, with their feed-forward modules
          : model.defaultTargets
        : parseTargets(targetsFlag, model.linearModules, model.modelType, command)),
    use_rslora: fixed?.use_rslora ?? bool(f, 'rslora') ?? false,
    ...(init !== undefined ? { init_lora_weights: init } : {}),
    ...loftqFlags(f, init, command),
    ...methodOptionFlags(f, model, command),
  };
}

/** --loftq-iter / --loftq-bits as PEFT's LoftQConfig (only with --init loftq). */
function loftqFlags(f: ParsedFlags, init: LoraSettings['init_lora_weights'], command: string): Partial<LoraSettings> {
  const iter = num(f, 'loftq-iter');
  const bits = num(f, 'loftq-bits');
  if (init !== 'loftq') {
    if (iter !== undefined || bits !== undefined)
      throw new UsageError(
        `${command}: --loftq-iter and --loftq-bits apply to --init loftq only; leave them out or add --init loftq.`,
      );
    return {};
  }
  const cfg = { loftq_bits: bits ?? LOFTQ_DEFAULTS.loftq_bits, loftq_iter: iter ?? LOFTQ_DEFAULTS.loftq_iter };
  const problems = loftqProblems(cfg);
  if (problems.length) throw new UsageError(`${command}: ${problems.join(' ')}`);
  return { loftq_config: cfg };
}

/** The options of (IA)³, prompt and prefix tuning under PEFT's names (methodFromFlags has checked they fit the method). */
function methodOptionFlags(f: ParsedFlags, model: ModelModules, command: string): Partial<LoraSettings> {
  const out: Partial<LoraSettings> = {};
  const ff = str(f, 'feedforward-modules');
  if (ff !== undefined) {
    const list = parseTargets(ff, model.linearModules, model.modelType, command);
    if (list === 'all-linear')
      throw new UsageError(`${command}: --feedforward-modules takes module names, not all-linear.`);
    out.feedforward_modules = list;
  }
  const n = num(f, 'num-virtual-tokens');
  if (n !== undefined) out.num_virtual_tokens = n;
  const text = promptInitText(f, command);
  if (text !== undefined) out.prompt_tuning_init_text = text;
  const proj = bool(f, 'prefix-projection');
  if (proj !== undefined) out.prefix_projection = proj;
  const hidden = num(f, 'encoder-hidden-size');
  if (hidden !== undefined) out.encoder_hidden_size = hidden;
  return out;
}

/**
 * Prompt tuning's init text: PEFT's form `--prompt-init text --prompt-init-text "..."` or
 * `--prompt-init random`, or the short form (`--prompt-init-text` alone: TEXT unless empty).
 * As PEFT's PromptTuningConfig, TEXT needs the text; RANDOM with a text is refused here, since the
 * text would be silently unused.
 */
function promptInitText(f: ParsedFlags, command: string): string | undefined {
  const init = str(f, 'prompt-init');
  const text = str(f, 'prompt-init-text');
  const given = text !== undefined && text.trim() !== '';
  if (init === 'text' && !given) {
    throw new UsageError(
      `${command}: --prompt-init text starts the prompt from a text's token embeddings, but no text is given; ` +
        'add --prompt-init-text "..." (PEFT\'s prompt_tuning_init_text) or use --prompt-init random.',
    );
  }
  if (init === 'random' && given) {
    throw new UsageError(
      `${command}: --prompt-init random starts the prompt from N(0, 1) values and reads no text, but --prompt-init-text ` +
        `${JSON.stringify(text)} is given; leave it out, or use --prompt-init text to start from it.`,
    );
  }
  return init === 'random' ? '' : text;
}
