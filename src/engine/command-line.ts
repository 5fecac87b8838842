/**
 * A run's settings as the command lines that repeat it: `tabtune train` (the same run, from the
 * CLI) and `tabtune export-recipe` (the run as a transformers + PEFT + TRL project). Every setting
 * is written out, so the line means the same whatever the CLI's defaults; the flags are the CLI's
 * own (src/cli/run-flags.ts), and test/cli/command-line.test.ts parses the line back with them.
 * No Node or DOM here: the app's "Show as command" uses it.
 */

import { methodSpec } from '../lora/methods';
import type { DatasetFormat, FrozenWeightsSettings, LoraSettings, TrainSettings } from './types';

export interface CommandContext {
  /** --model: a model folder (or, for export-recipe, a Hub id). */
  model: string;
  /** --model for export-recipe (a Hub id works there); default `model`. */
  recipeModel?: string;
  /** --data: the dataset file. */
  data: string;
  format?: DatasetFormat | 'auto';
  /** --out of the train line (default ./adapter) and of the recipe line (default ./recipe). */
  out?: string;
  recipeOut?: string;
  /** How the frozen weights are held (4-bit NF4: --quantize nf4, and --no-double-quant when off). */
  frozen?: FrozenWeightsSettings;
}

function frozenFlags(f: FrozenWeightsSettings | undefined): string[] {
  if (f?.quantize !== 'nf4') return [];
  return ['--quantize', 'nf4', ...(f.doubleQuant === false ? ['--no-double-quant'] : [])];
}

/** Shell quoting (POSIX sh): bare when safe, else in single quotes. */
export function shellQuote(s: string): string {
  if (/^[\w@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The flags that set the LoRA and training settings (the same for train and export-recipe). */
export function settingFlags(lora: LoraSettings, t: TrainSettings): string[] {
  const a: string[] = [];
  const flag = (name: string, v: string | number) => a.push(`--${name}`, String(v));
  const method = methodSpec(lora.method ?? 'lora');
  flag('method', method.id);
  // only the flags of this method (train refuses another method's): (IA)³'s empty lists are PEFT's defaults
  const targets = lora.target_modules;
  if (method.lowRank || (method.id === 'ia3' && targets.length > 0))
    flag('targets', targets === 'all-linear' ? 'all-linear' : targets.join(','));
  if (method.id === 'ia3' && lora.feedforward_modules?.length)
    flag('feedforward-modules', lora.feedforward_modules.join(','));
  if (method.flags.includes('num-virtual-tokens')) flag('num-virtual-tokens', lora.num_virtual_tokens ?? 20);
  if (method.id === 'prompt-tuning' && lora.prompt_tuning_init_text?.trim()) {
    flag('prompt-init', 'text'); // PEFT's prompt_tuning_init="TEXT" (the default is random)
    flag('prompt-init-text', lora.prompt_tuning_init_text);
  }
  if (method.id === 'prefix-tuning' && lora.prefix_projection) {
    a.push('--prefix-projection');
    if (lora.encoder_hidden_size !== undefined) flag('encoder-hidden-size', lora.encoder_hidden_size);
  }
  if (method.lowRank) {
    flag('r', lora.r);
    flag('alpha', lora.lora_alpha);
    flag('dropout', lora.lora_dropout);
    if (lora.use_rslora) a.push('--rslora');
    const init = lora.init_lora_weights;
    if (init !== undefined && init !== true) flag('init', init);
    if (init === 'loftq' && lora.loftq_config && lora.loftq_config.loftq_iter !== 1)
      flag('loftq-iter', lora.loftq_config.loftq_iter);
  }
  flag('optimizer', t.optimizer);
  flag('lr', t.lr);
  flag('weight-decay', t.weightDecay);
  if (t.steps > 0) flag('steps', t.steps);
  else flag('epochs', t.epochs);
  flag('batch', t.batch);
  flag('grad-accum', t.gradAccum);
  flag('max-len', t.maxLen);
  flag('scheduler', t.scheduler);
  flag('warmup', t.warmup);
  flag('max-grad-norm', t.maxGradNorm);
  if (!t.shuffle) a.push('--no-shuffle');
  flag('seed', t.seed);
  flag('val-fraction', t.valFraction);
  flag('loss-every', t.lossEvery);
  flag('eval-every', t.evalEvery);
  flag('checkpoint-every', t.checkpointEvery);
  if (t.activationCheckpointing) a.push('--activation-checkpointing');
  if (t.packing) a.push('--packing');
  return a;
}

/** The arguments of `tabtune train` for this run. */
export function trainArgs(lora: LoraSettings, t: TrainSettings, c: CommandContext): string[] {
  const a = ['train', '--model', c.model, '--data', c.data, '--out', c.out ?? './adapter'];
  if (c.format && c.format !== 'auto') a.push('--format', c.format);
  return [...a, ...settingFlags(lora, t), ...frozenFlags(c.frozen)];
}

/** The arguments of `tabtune export-recipe` for this run. */
export function recipeArgs(lora: LoraSettings, t: TrainSettings, c: CommandContext): string[] {
  const a = [
    'export-recipe',
    '--model',
    c.recipeModel ?? c.model,
    '--data',
    c.data,
    '--out',
    c.recipeOut ?? './recipe',
  ];
  if (c.format && c.format !== 'auto') a.push('--format', c.format);
  return [...a, ...settingFlags(lora, t), ...frozenFlags(c.frozen)];
}

/** `node bin/tabtune.mjs ARGS`, quoted for a POSIX shell. */
export function commandText(args: readonly string[]): string {
  return ['node', 'bin/tabtune.mjs', ...args].map(shellQuote).join(' ');
}
