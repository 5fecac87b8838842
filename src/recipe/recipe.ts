/**
 * A Tabtune run as a Hugging Face project (transformers + PEFT + TRL's SFTTrainer + accelerate),
 * to take a run that outgrew the tab to one or many GPUs unchanged. `buildRecipe` is pure: settings
 * and tokenized examples in, a list of files out; the CLI (`tabtune export-recipe`) writes them to a
 * folder and the app zips them ("Run at scale").
 *
 * The folder:
 *   train.py              the trainer (src/recipe/train.py, the same for every run)
 *   tabtune_run.json      every setting, under the names TrainingArguments / LoraConfig use
 *   data/train.jsonl      the examples of each split as Tabtune made them: input_ids and
 *   data/validation.jsonl   completion_mask (what counts in the loss), plus the source line and text
 *   init_adapter/         the adapter given with --init-from
 *   bnb_4bit.json         with --quantize nf4: the BitsAndBytesConfig
 *   requirements.txt, accelerate/*.yaml, slurm.sbatch, README.md (src/recipe/docs.ts)
 */

import type { PeftFiles } from '../lora/peft';
import type { DatasetFormat } from '../train/data/types';
import type { TrainSettings } from '../train/types';
import { LOFTQ_DEFAULTS, type LoraSettings, isAllLinear, validateLoraConfig } from '../lora/config';
import { loraConfigFromSettings } from '../lora/targets';
import { ia3ConfigFromSettings } from '../lora/ia3';
import { methodSpec } from '../lora/methods';
import { DEFAULT_VIRTUAL_TOKENS, type VirtualModel, virtualShape } from '../lora/virtual';
import { type RecipeDocsInput, acceleratorConfigs, recipeReadme, requirementsTxt, slurmScript } from './docs';
import TRAIN_PY from './train.py?raw';

/** One example as a run uses it: token ids and whether predicting each token counts. */
export interface RecipeExample {
  ids: ArrayLike<number>;
  counted: ArrayLike<boolean | number>;
  /** 1-based line of the record in the data file. */
  line: number;
}

export interface RecipeInput {
  /** What train.py loads: a Hub id, or a model folder's path. */
  model: string;
  modelType: string;
  /** The model's config where known: a projected prefix's default encoder_hidden_size is its kv width. */
  config?: VirtualModel;
  /** GPT-2's Conv1D weights: PEFT's fan_in_fan_out. */
  fanInFanOut: boolean;
  lora: LoraSettings;
  train: TrainSettings;
  data: {
    fileName: string;
    format: DatasetFormat;
    train: Iterable<RecipeExample>;
    val: Iterable<RecipeExample>;
  };
  /** Token ids back to text, for the readable `text` field of each example. */
  decode?: (ids: number[]) => string;
  /** Start from this adapter (its r, alpha, dropout and targets replace `lora`'s, as in Tabtune). */
  initFrom?: PeftFiles;
  /**
   * Frozen weights in 4-bit NF4 (bitsandbytes' QLoRA), with or without double quantization.
   * `stored`: the base model is a bitsandbytes 4-bit checkpoint, which transformers loads in 4 bits
   * by its own quantization_config (no bnb_4bit.json is written).
   */
  quantize?: { doubleQuant: boolean; stored?: boolean } | null;
  /** The command that made the recipe, quoted in the README. */
  command?: string;
}

export interface RecipeFile {
  /** Relative path with forward slashes. */
  path: string;
  data: string | Uint8Array;
  /** Mark executable (train.py, slurm.sbatch) where the target keeps modes. */
  executable?: boolean;
}

export class RecipeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RecipeError';
  }
}

/** Version of tabtune_run.json's layout (train.py checks it). */
export const RECIPE_VERSION = 1;

/** The LoRA section: PEFT's LoraConfig fields, from the settings or the continued adapter. */
function loraSection(input: RecipeInput): Record<string, unknown> {
  if (input.initFrom) {
    let c: Record<string, unknown>;
    try {
      c = JSON.parse(input.initFrom.adapterConfig) as Record<string, unknown>;
    } catch (e) {
      throw new RecipeError(`The --init-from adapter's adapter_config.json is not JSON: ${(e as Error).message}`);
    }
    return {
      r: c.r,
      lora_alpha: c.lora_alpha,
      lora_dropout: c.lora_dropout ?? 0,
      target_modules: c.target_modules,
      use_rslora: c.use_rslora === true,
      fan_in_fan_out: c.fan_in_fan_out === true,
      from: 'init_adapter/adapter_config.json',
    };
  }
  const cfg = loraConfigFromSettings(input.lora, input.modelType, { fanInFanOut: input.fanInFanOut });
  validateLoraConfig(cfg);
  const loftq = cfg.init_lora_weights === 'loftq';
  if (loftq && input.quantize) {
    throw new RecipeError(
      'init_lora_weights "loftq" quantizes the 16-bit weights itself (PEFT: "you should not pass a quantized model"): ' +
        'export the recipe without 4-bit frozen weights (--quantize nf4).',
    );
  }
  return {
    r: cfg.r,
    lora_alpha: cfg.lora_alpha,
    lora_dropout: cfg.lora_dropout,
    target_modules: isAllLinear(cfg.target_modules) ? 'all-linear' : cfg.target_modules,
    use_rslora: cfg.use_rslora,
    fan_in_fan_out: cfg.fan_in_fan_out,
    use_dora: cfg.use_dora === true,
    init_lora_weights: cfg.init_lora_weights,
    // LoftQ: PEFT's LoftQConfig; train.py saves the quantized backbone beside the adapter
    ...(loftq ? { loftq_config: cfg.loftq_config ?? { ...LOFTQ_DEFAULTS } } : {}),
  };
}

/**
 * The config of a method that is not LoRA ((IA)³, prompt or prefix tuning) under PEFT's names,
 * from the settings as Tabtune resolves them (PEFT's (IA)³ defaults for the model type); null for
 * LoRA and DoRA, and for a continued adapter (train.py loads its own config).
 */
function otherMethodSection(input: RecipeInput): Record<string, unknown> | null {
  const method = methodSpec(input.lora.method ?? 'lora');
  if (method.lowRank || input.initFrom) return null;
  const s = input.lora;
  if (method.id === 'ia3') {
    const c = ia3ConfigFromSettings(
      { target_modules: s.target_modules, feedforward_modules: s.feedforward_modules ?? [] },
      input.modelType,
      { fanInFanOut: input.fanInFanOut },
    );
    return { peft_type: method.peftType, ...c };
  }
  const n = s.num_virtual_tokens ?? DEFAULT_VIRTUAL_TOKENS;
  if (method.id === 'prefix-tuning') {
    // PEFT trains through the projection MLP itself (PrefixTuningConfig.prefix_projection)
    let hidden: number | null = null;
    if (s.prefix_projection) {
      hidden = s.encoder_hidden_size ?? (input.config ? virtualShape('prefix', input.config).token_dim : null);
      if (hidden === null || !Number.isInteger(hidden) || hidden < 1) {
        throw new RecipeError(
          `A prefix with prefix_projection needs a positive integer encoder_hidden_size, got ${hidden}: give --encoder-hidden-size.`,
        );
      }
    }
    return {
      peft_type: method.peftType,
      num_virtual_tokens: n,
      prefix_projection: !!s.prefix_projection,
      encoder_hidden_size: hidden,
    };
  }
  const text = s.prompt_tuning_init_text?.trim() ? s.prompt_tuning_init_text : null;
  return {
    peft_type: method.peftType,
    num_virtual_tokens: n,
    prompt_tuning_init: text === null ? 'RANDOM' : 'TEXT',
    prompt_tuning_init_text: text,
    tokenizer_name_or_path: text === null ? null : input.model,
  };
}

/** Tabtune's scheduler names as transformers' lr_scheduler_type (constant with warmup is its own). */
function schedulerType(t: TrainSettings): string {
  if (t.scheduler === 'constant') return t.warmup > 0 ? 'constant_with_warmup' : 'constant';
  return t.scheduler;
}

/** The training section: TrainingArguments names and values for Tabtune's settings. */
export function trainingSection(t: TrainSettings): Record<string, unknown> {
  return {
    optim: t.optimizer === 'adamw' ? 'adamw_torch' : 'sgd',
    learning_rate: t.lr,
    weight_decay: t.weightDecay,
    // Tabtune's AdamW constants (src/engine/engine.ts), which are also torch's defaults.
    adam_beta1: 0.9,
    adam_beta2: 0.999,
    adam_epsilon: 1e-8,
    lr_scheduler_type: schedulerType(t),
    warmup_steps: t.warmup,
    max_grad_norm: t.maxGradNorm,
    // steps > 0 wins; otherwise epochs (fractional epochs round the step count up, as in Tabtune).
    max_steps: t.steps > 0 ? t.steps : -1,
    num_train_epochs: t.steps > 0 ? 1 : t.epochs,
    per_device_train_batch_size: t.batch,
    gradient_accumulation_steps: t.gradAccum,
    max_length: t.maxLen,
    shuffle: t.shuffle,
    seed: t.seed,
    eval_every: t.evalEvery,
    logging_steps: t.lossEvery,
    save_steps: t.checkpointEvery,
    gradient_checkpointing: t.activationCheckpointing,
    // Tabtune's packing is TRL's padding-free batching: each micro-batch's examples in one row,
    // position ids restarting per example, no attention across them.
    padding_free: t.packing === true,
  };
}

/** One example as a JSON line: where it came from, its text, its ids and mask. */
function exampleLine(ex: RecipeExample, decode: RecipeInput['decode']): { line: string; counted: number } {
  const ids = Array.from(ex.ids);
  const mask = Array.from(ex.counted, (c) => (c ? 1 : 0));
  mask[0] = 0; // nothing predicts the first token
  let counted = 0;
  for (const m of mask) counted += m;
  const row: Record<string, unknown> = { line: ex.line };
  if (decode) row.text = decode(ids);
  row.input_ids = ids;
  row.completion_mask = mask;
  return { line: JSON.stringify(row), counted };
}

function jsonl(examples: Iterable<RecipeExample>, decode: RecipeInput['decode']) {
  const lines: string[] = [];
  let counted = 0;
  let tokens = 0;
  for (const ex of examples) {
    const e = exampleLine(ex, decode);
    lines.push(e.line);
    counted += e.counted;
    tokens += ex.ids.length;
  }
  return { text: lines.length ? `${lines.join('\n')}\n` : '', count: lines.length, counted, tokens };
}

/** Every file of the recipe folder. Throws RecipeError for settings it cannot express. */
export function buildRecipe(input: RecipeInput): RecipeFile[] {
  const t = input.train;
  const train = jsonl(input.data.train, input.decode);
  if (train.count === 0) throw new RecipeError('There are no training examples to export.');
  const val = jsonl(input.data.val, input.decode);
  const peft = otherMethodSection(input);
  const lora = peft ? null : loraSection(input);
  const quant = input.quantize ?? null;
  const run = {
    tabtune_recipe_version: RECIPE_VERSION,
    model: input.model,
    model_type: input.modelType,
    lora,
    // (IA)³, prompt or prefix tuning: PEFT's config of the method (LoRA and DoRA: `lora`)
    ...(peft ? { peft } : {}),
    init_adapter: input.initFrom ? 'init_adapter' : null,
    training: trainingSection(t),
    data: {
      source: input.data.fileName,
      format: input.data.format,
      train: 'data/train.jsonl',
      validation: val.count ? 'data/validation.jsonl' : null,
      train_examples: train.count,
      train_tokens: train.tokens,
      train_counted_tokens: train.counted,
      validation_examples: val.count,
      validation_counted_tokens: val.counted,
    },
    quantization: !quant
      ? null
      : quant.stored
        ? { method: 'nf4', config: null, stored: true, double_quant: quant.doubleQuant }
        : { method: 'nf4', config: 'bnb_4bit.json' },
  };
  const files: RecipeFile[] = [
    { path: 'train.py', data: TRAIN_PY, executable: true },
    { path: 'tabtune_run.json', data: `${JSON.stringify(run, null, 2)}\n` },
    { path: 'data/train.jsonl', data: train.text },
  ];
  if (val.count) files.push({ path: 'data/validation.jsonl', data: val.text });
  if (input.initFrom) {
    files.push({ path: 'init_adapter/adapter_config.json', data: input.initFrom.adapterConfig });
    files.push({ path: 'init_adapter/adapter_model.safetensors', data: input.initFrom.adapterModel });
  }
  if (quant && !quant.stored) {
    const bnb = {
      load_in_4bit: true,
      bnb_4bit_quant_type: 'nf4',
      bnb_4bit_use_double_quant: quant.doubleQuant,
    };
    files.push({ path: 'bnb_4bit.json', data: `${JSON.stringify(bnb, null, 2)}\n` });
  }
  const docs: RecipeDocsInput = {
    model: input.model,
    command: input.command,
    quantize: quant !== null,
    quantizeStored: !!quant?.stored,
    trainExamples: train.count,
    valExamples: val.count,
    countedTokens: train.counted,
    format: input.data.format,
    source: input.data.fileName,
    steps: t.steps,
    epochs: t.epochs,
    batch: t.batch,
    gradAccum: t.gradAccum,
    initFrom: input.initFrom !== undefined,
    loftq: lora?.loftq_config !== undefined,
  };
  files.push({ path: 'requirements.txt', data: requirementsTxt(docs) });
  for (const [name, yaml] of Object.entries(acceleratorConfigs()))
    files.push({ path: `accelerate/${name}`, data: yaml });
  files.push({ path: 'slurm.sbatch', data: slurmScript(docs), executable: true });
  files.push({ path: 'README.md', data: recipeReadme(docs) });
  return files;
}
