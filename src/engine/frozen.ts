/**
 * Frozen-weight settings (16-bit as stored, or 4-bit NF4 for QLoRA) as words and flags, and the
 * settings that reproduce a loaded model's state. Free of GPU code, so the app's page can use it.
 */
import type { FrozenWeightsSettings, ModelQuantization, RecipeOptions } from './types';

/** The frozen-weight settings that reproduce a loaded model's state. */
export function frozenSettings(q: ModelQuantization | null): FrozenWeightsSettings {
  return q ? { quantize: 'nf4', doubleQuant: q.doubleQuant } : { quantize: null };
}

/**
 * A recipe's frozen weights (src/recipe) for a loaded model's: 4-bit NF4 as bitsandbytes' config,
 * or a bitsandbytes 4-bit checkpoint as stored; null for 16-bit.
 */
export function recipeQuantize(q: ModelQuantization | null): RecipeOptions['quantize'] {
  return q ? { doubleQuant: q.doubleQuant, stored: q.source === 'checkpoint' } : null;
}

/** "16-bit" / "4-bit NF4 (double quantization)" / "4-bit NF4". */
export function frozenText(f: FrozenWeightsSettings): string {
  if (f.quantize !== 'nf4') return '16-bit (as stored)';
  return `4-bit NF4${(f.doubleQuant ?? true) ? ' (double quantization)' : ''}`;
}

export function frozenFlags(f: FrozenWeightsSettings): string {
  if (f.quantize !== 'nf4') return 'without --quantize';
  return `--quantize nf4${(f.doubleQuant ?? true) ? '' : ' --no-double-quant'}`;
}

/** Whether two settings hold the weights the same way (doubleQuant matters only for NF4). */
export function sameFrozen(a: FrozenWeightsSettings, b: FrozenWeightsSettings): boolean {
  return frozenText(a) === frozenText(b);
}
