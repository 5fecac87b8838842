/**
 * Inline validation of the hyperparameter form. Each problem names the field (the PEFT / engine
 * name, so it matches the form's `name` attributes) and says what is allowed.
 */
import type { LoraSettings, ModelInfo, SamplingSettings, TrainSettings } from '../engine/types';
import { ia3ConfigFromSettings } from '../lora/ia3';
import { implementedMethods, methodSpec, requireInitImplemented } from '../lora/methods';

export type FieldErrors = Partial<Record<string, string>>;

function intIn(errors: FieldErrors, field: string, v: number, min: number, max: number, what: string): void {
  if (!Number.isFinite(v) || !Number.isInteger(v)) errors[field] = `${what} must be a whole number.`;
  else if (v < min || v > max) errors[field] = `${what} must be between ${min} and ${max}.`;
}

function numIn(
  errors: FieldErrors,
  field: string,
  v: number,
  min: number,
  max: number,
  what: string,
  exclusiveMin = false,
): void {
  if (!Number.isFinite(v)) errors[field] = `${what} must be a number.`;
  else if ((exclusiveMin ? v <= min : v < min) || v > max) {
    errors[field] = `${what} must be ${exclusiveMin ? 'above' : 'at least'} ${min} and at most ${max}.`;
  }
}

export function validateLora(lora: LoraSettings, model: ModelInfo | null): FieldErrors {
  const e: FieldErrors = {};
  const method = methodSpec(lora.method ?? 'lora');
  if (!method.implemented)
    e.method = `${method.label} is not implemented in Tabtune yet; choose ${implementedMethods()}.`;
  try {
    if (lora.init_lora_weights !== undefined) requireInitImplemented(lora.init_lora_weights, 'Initialisation');
  } catch (err) {
    e.init_lora_weights = (err as Error).message;
  }
  if (lora.init_lora_weights === 'loftq') {
    const problem = loftqProblem(method.id, model);
    if (problem) e.init_lora_weights = problem;
  }
  if (method.id === 'ia3') ia3Errors(e, lora, model);
  if (method.id === 'prompt-tuning' || method.id === 'prefix-tuning') {
    intIn(e, 'num_virtual_tokens', lora.num_virtual_tokens ?? 20, 1, 4096, 'Virtual tokens');
  }
  if (!method.lowRank) return e;
  intIn(e, 'r', lora.r, 1, 1024, 'Rank r');
  if (!e.r && model && lora.r > model.hiddenSize)
    e.r = `Rank r should not exceed the hidden size (${model.hiddenSize}).`;
  numIn(e, 'lora_alpha', lora.lora_alpha, 0, 1e6, 'lora_alpha', true);
  numIn(e, 'lora_dropout', lora.lora_dropout, 0, 0.9, 'Dropout');
  if (Array.isArray(lora.target_modules)) {
    if (lora.target_modules.length === 0) e.target_modules = 'Choose at least one target module, or all-linear.';
    else if (model) {
      const unknown = lora.target_modules.filter((t) => !model.linearModules.includes(t));
      if (unknown.length) e.target_modules = `Not a linear module of this model: ${unknown.join(', ')}.`;
    }
  }
  return e;
}

/**
 * (IA)³'s modules: names of this model's linear modules (or paths ending in one, as PEFT's defaults'
 * `mlp.c_proj`), and the config PEFT would accept (feed-forward modules a subset of the targets; a
 * choice where PEFT has no defaults for the model type). Empty lists are PEFT's defaults.
 */
function ia3Errors(e: FieldErrors, lora: LoraSettings, model: ModelInfo | null): void {
  if (!model) return;
  const ff = lora.feedforward_modules ?? [];
  const known = (m: string) => model.linearModules.includes(m.split('.').at(-1)!);
  const unknown = (list: string[]) => list.filter((m) => !known(m));
  if (Array.isArray(lora.target_modules) && unknown(lora.target_modules).length)
    e.target_modules = `Not a linear module of this model: ${unknown(lora.target_modules).join(', ')}.`;
  if (unknown(ff).length) e.feedforward_modules = `Not a linear module of this model: ${unknown(ff).join(', ')}.`;
  if (Array.isArray(lora.target_modules) && lora.target_modules.length === 0 && ff.length > 0)
    e.target_modules = "Choose at least one module to scale, or PEFT's defaults.";
  if (e.target_modules || e.feedforward_modules) return;
  try {
    ia3ConfigFromSettings({ target_modules: lora.target_modules, feedforward_modules: ff }, model.modelType);
  } catch (err) {
    const message = (err as Error).message;
    e[/feedforward_modules \[/.test(message) ? 'feedforward_modules' : 'target_modules'] = message;
  }
}

export function validateTrain(t: TrainSettings, model: ModelInfo | null): FieldErrors {
  const e: FieldErrors = {};
  numIn(e, 'lr', t.lr, 0, 1, 'Learning rate', true);
  // steps <= 0 means "train by epochs"; NaN is a steps field that holds no valid number.
  if (t.steps > 0 || Number.isNaN(t.steps)) {
    if (!Number.isInteger(t.steps) || t.steps > 1_000_000)
      e.steps = 'Steps must be a whole number between 1 and 1000000.';
  } else if (!(t.epochs > 0) || !Number.isFinite(t.epochs) || t.epochs > 1000)
    e.epochs = 'Epochs must be above 0 and at most 1000.';
  intIn(e, 'batch', t.batch, 1, 256, 'Batch size');
  intIn(e, 'gradAccum', t.gradAccum, 1, 1024, 'Gradient accumulation');
  intIn(e, 'maxLen', t.maxLen, 8, 32768, 'Max sequence length');
  if (!e.maxLen && model && model.maxPositions > 0 && t.maxLen > model.maxPositions) {
    e.maxLen = `This model handles at most ${model.maxPositions} positions.`;
  }
  intIn(e, 'warmup', t.warmup, 0, 1_000_000, 'Warmup steps');
  numIn(e, 'weightDecay', t.weightDecay, 0, 1, 'Weight decay');
  numIn(e, 'maxGradNorm', t.maxGradNorm, 0, 1e6, 'Max grad norm');
  intIn(e, 'seed', t.seed, 0, 2 ** 31 - 1, 'Seed');
  intIn(e, 'evalEvery', t.evalEvery, 0, 1_000_000, 'Evaluate every');
  intIn(e, 'checkpointEvery', t.checkpointEvery, 0, 1_000_000, 'Checkpoint every');
  intIn(e, 'lossEvery', t.lossEvery, 1, 10_000, 'Read the loss every');
  numIn(e, 'valFraction', t.valFraction, 0, 0.5, 'Validation fraction');
  return e;
}

export function validateSampling(s: SamplingSettings): FieldErrors {
  const e: FieldErrors = {};
  intIn(e, 'maxNewTokens', s.maxNewTokens, 1, 4096, 'Max new tokens');
  numIn(e, 'temperature', s.temperature, 0, 5, 'Temperature');
  intIn(e, 'topK', s.topK, 0, 100000, 'Top-k');
  numIn(e, 'topP', s.topP, 0, 1, 'Top-p', true);
  intIn(e, 'seed', s.seed, 0, 2 ** 31 - 1, 'Seed');
  numIn(e, 'repetitionPenalty', s.repetitionPenalty, 0, 10, 'Repetition penalty', true);
  return e;
}

export function hasErrors(e: FieldErrors): boolean {
  return Object.values(e).some(Boolean);
}

/**
 * What LoftQ needs that these settings lack (null when it can run): it computes the 4-bit NF4
 * backbone itself from the 16-bit weights (PEFT: "you should not pass a quantized model"), and
 * decomposes nn.Linear weights only (no GPT-2 Conv1D) with plain LoRA.
 */
export function loftqProblem(method: string, model: ModelInfo | null): string | null {
  if (method !== 'lora')
    return 'LoftQ initialises plain LoRA only (PEFT has no LoftQ for DoRA): choose the LoRA method.';
  if (model?.quantization) {
    return (
      'LoftQ makes the 4-bit NF4 backbone itself from the 16-bit weights: set Frozen weights to 16-bit below. ' +
      'The run then trains on that NF4 backbone, which is kept with the adapter and exported beside it.'
    );
  }
  if (model?.family === 'gpt2') {
    return "LoftQ decomposes nn.Linear weights as stored; this model's Conv1D layers are not supported (PEFT's neither).";
  }
  return null;
}
