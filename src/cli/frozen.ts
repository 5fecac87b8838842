/**
 * The frozen-weight flags shared by train, eval and generate (QLoRA):
 *   --quantize nf4|none     nf4: every linear weight in 4-bit NF4, quantized at load as bitsandbytes
 *                           does (none, the default: as stored, 16-bit stays 16-bit)
 *   --no-double-quant       with --quantize nf4: keep each block's absmax in float32 instead of
 *                           bitsandbytes' 8-bit double quantization (bnb_4bit_use_double_quant)
 * A bitsandbytes 4-bit checkpoint ("...-bnb-4bit") is 4-bit as stored, whatever the flags say.
 */
import type { FrozenWeightsSettings, ModelInfo } from '../engine/types';
import type { ModelConfig } from '../model/config';
import { type FlagSpec, type ParsedFlags, UsageError, bool, str } from './args';

export const FROZEN_FLAGS: Record<string, FlagSpec> = {
  quantize: { type: 'string', choices: ['nf4', 'none'] },
  'double-quant': { type: 'bool' },
};

/**
 * The settings the flags ask for. `saved` (train --resume) fills in what the flags leave out; a
 * flag that contradicts it is an error, since the adapter was trained on those weights.
 */
export function frozenFromFlags(
  f: ParsedFlags,
  command: string,
  model: { path: string; config: ModelConfig },
  saved?: FrozenWeightsSettings,
  warn: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): FrozenWeightsSettings {
  const q = str(f, 'quantize');
  const dq = bool(f, 'double-quant');
  const dqFlag = dq === false ? '--no-double-quant' : '--double-quant';
  const stored = model.config.quantization;
  if (stored) {
    if (q === 'none') {
      throw new UsageError(
        `${command}: ${model.path} is a bitsandbytes 4-bit checkpoint: its weights are stored in 4 bits and cannot be ` +
          'widened (--quantize none); use the unquantized model for 16-bit frozen weights.',
      );
    }
    if (dq !== undefined && dq !== stored.doubleQuant) {
      warn(
        `tabtune: warning: ${dqFlag} ignored: ${model.path} is a bitsandbytes 4-bit checkpoint, read as stored ` +
          `(${stored.doubleQuant ? 'with' : 'without'} double quantization).`,
      );
    }
    return { quantize: null };
  }
  if (dq !== undefined && q !== 'nf4' && !(q === undefined && saved?.quantize === 'nf4')) {
    throw new UsageError(`${command}: ${dqFlag} applies to 4-bit frozen weights; add --quantize nf4.`);
  }
  const mine: FrozenWeightsSettings =
    q === undefined && saved
      ? { quantize: saved.quantize ?? null, doubleQuant: dq ?? saved.doubleQuant ?? true }
      : q === 'nf4'
        ? { quantize: 'nf4', doubleQuant: dq ?? true }
        : { quantize: null };
  if (saved && (saved.quantize ?? null) !== mine.quantize) {
    throw new UsageError(
      `${command} --resume: the checkpoint was trained on ${saved.quantize === 'nf4' ? '4-bit NF4' : '16-bit'} frozen ` +
        `weights; leave --quantize out to resume it that way.`,
    );
  }
  if (saved?.quantize === 'nf4' && (saved.doubleQuant ?? true) !== mine.doubleQuant) {
    throw new UsageError(
      `${command} --resume: the checkpoint was trained ${saved.doubleQuant === false ? 'without' : 'with'} double ` +
        `quantization; leave ${dqFlag} out to resume it that way.`,
    );
  }
  return mine;
}

/** "4-bit NF4 (quantized at load, double quantization), 0.61 GiB on the GPU" or "BF16 as stored, ...". */
export function frozenSummary(m: Pick<ModelInfo, 'quantization' | 'dtype' | 'weightBytes'>): string {
  const q = m.quantization;
  const how = q
    ? `4-bit NF4 (${q.source === 'checkpoint' ? 'bitsandbytes checkpoint' : 'quantized at load'}${q.doubleQuant ? ', double quantization' : ''})`
    : `${m.dtype} as stored`;
  return `${how}, ${(m.weightBytes / 2 ** 30).toFixed(2)} GiB on the GPU`;
}
