/**
 * PEFT adapter files, byte-compatible with what huggingface/peft 0.20 `save_pretrained` writes for
 * a LoRA adapter on a *ForCausalLM model:
 *
 * adapter_config.json: `json.dumps(asdict(LoraConfig), indent=2, sort_keys=True)` (Python's JSON:
 *   2-space indent, ", " / ": " separators, keys sorted at every level, non-ASCII escaped as \uXXXX,
 *   floats written with a decimal point, no trailing newline). Every LoraConfig field of PEFT 0.20
 *   is written with its default unless Tabtune sets it; `runtime_config` is not saved (PEFT drops it).
 * adapter_model.safetensors: metadata exactly {"format":"pt"}, F32 tensors, tensors ordered by name
 *   (the order safetensors' writer uses), keys
 *     base_model.model.<module path>.lora_A.weight  [r, in_features]
 *     base_model.model.<module path>.lora_B.weight  [out_features, r]
 *   (no adapter name in the key). GPT-2's Conv1D modules use the same A/B shapes; the config says
 *   fan_in_fan_out: true.
 *
 * importPeft (peft-import.ts) reads such files back; python-json.ts writes the JSON as Python does.
 */

import { writeSafetensors } from '../model/safetensors';
import { type LoraConfig, isAllLinear } from './config';
import { expertExportProblem } from './peft-experts';
import { PyFloat, compareCodePoints, pythonJsonDumps } from './python-json';

/** PEFT files of an adapter. */
export interface PeftFiles {
  adapterConfig: string; // adapter_config.json
  adapterModel: Uint8Array; // adapter_model.safetensors
  /** A LoftQ adapter trained by Tabtune: what rebuilds its quantized backbone (src/lora/loftq-backbone.ts). */
  loftqBackbone?: Uint8Array;
}

export const PEFT_VERSION = '0.20.0';
export const PEFT_KEY_PREFIX = 'base_model.model.';
export const ADAPTER_CONFIG_NAME = 'adapter_config.json';
export const ADAPTER_MODEL_NAME = 'adapter_model.safetensors';

export class PeftError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PeftError';
  }
}

/**
 * The safetensors key of a module's A, B or DoRA magnitude (M) in a PEFT adapter file. PEFT 0.21
 * saves the magnitude as `<path>.lora_magnitude_vector` (no `.weight`: the adapter name is removed
 * from `lora_magnitude_vector.default.weight` together with the parameter's name).
 */
export function peftKey(path: string, which: 'A' | 'B' | 'M'): string {
  return which === 'M'
    ? `${PEFT_KEY_PREFIX}${path}.lora_magnitude_vector`
    : `${PEFT_KEY_PREFIX}${path}.lora_${which}.weight`;
}

export interface PeftModuleArrays {
  path: string;
  a: Float32Array; // [r, inF]
  b: Float32Array; // [outF, r]
  m?: Float32Array; // [outF] DoRA's lora_magnitude_vector
  r: number;
  inF: number;
  outF: number;
}

export interface ExportPeftInput {
  config: LoraConfig;
  /** Hub id or local name of the base model (base_model_name_or_path). */
  baseModel: string;
  revision?: string | null;
  modules: PeftModuleArrays[];
  /** True for GPT-2 style Conv1D weights ([in, out]); written as fan_in_fan_out. */
  fanInFanOut: boolean;
}

/** The target_modules value PEFT 0.20 saves: a sorted list, the regex string, or for "all-linear"
 * the full paths of the adapted modules (PEFT expands the shorthand before saving). */
function savedTargetModules(config: LoraConfig, modules: readonly { path: string }[]): string[] | string {
  const t = config.target_modules;
  if (isAllLinear(t)) return [...new Set(modules.map((m) => m.path))].sort(compareCodePoints);
  if (typeof t === 'string') return t;
  return [...new Set(t)].sort(compareCodePoints);
}

/** The object PEFT 0.20 turns into adapter_config.json (every LoraConfig field, runtime_config dropped). */
export function adapterConfigObject(
  input: Omit<ExportPeftInput, 'modules'> & { modules: readonly { path: string }[] },
): Record<string, unknown> {
  const c = input.config;
  const excl = c.exclude_modules;
  return {
    // PeftConfigMixin / PeftConfig
    task_type: 'CAUSAL_LM',
    peft_type: 'LORA',
    auto_mapping: null,
    peft_version: PEFT_VERSION,
    base_model_name_or_path: input.baseModel,
    revision: input.revision ?? null,
    inference_mode: true,
    // LoraConfig
    r: c.r,
    target_modules: savedTargetModules(c, input.modules),
    exclude_modules: excl == null ? null : typeof excl === 'string' ? excl : [...new Set(excl)].sort(compareCodePoints),
    lora_alpha: c.lora_alpha,
    lora_dropout: new PyFloat(c.lora_dropout),
    fan_in_fan_out: input.fanInFanOut,
    bias: 'none',
    use_rslora: c.use_rslora,
    modules_to_save: null,
    init_lora_weights: c.init_lora_weights,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: { ...(c.rank_pattern ?? {}) },
    alpha_pattern: { ...(c.alpha_pattern ?? {}) },
    megatron_config: null,
    megatron_core: 'megatron.core',
    trainable_token_indices: null,
    loftq_config: c.loftq_config
      ? { loftq_bits: c.loftq_config.loftq_bits, loftq_iter: c.loftq_config.loftq_iter }
      : {},
    eva_config: null,
    corda_config: null,
    lora_ga_config: null,
    use_dora: c.use_dora === true,
    velora_config: null,
    alora_invocation_tokens: null,
    use_qalora: false,
    qalora_group_size: 16,
    monteclora_config: null,
    layer_replication: null,
    lora_bias: false,
    target_parameters: null,
    use_bdlora: null,
    arrow_config: null,
    ensure_weight_tying: false,
  };
}

/** adapter_config.json + adapter_model.safetensors of an adapter, as PEFT 0.20 writes them. */
export function exportPeft(input: ExportPeftInput): { adapterConfig: string; adapterModel: Uint8Array } {
  if (input.modules.length === 0) throw new PeftError('Cannot export an adapter with no LoRA modules.');
  const experts = expertExportProblem(input.config, input.modules);
  if (experts) throw new PeftError(`Cannot export this adapter for PEFT: ${experts}`);
  const seen = new Set<string>();
  const tensors: { name: string; dtype: 'F32'; shape: number[]; data: Float32Array }[] = [];
  for (const m of input.modules) {
    if (seen.has(m.path)) throw new PeftError(`Module "${m.path}" appears twice in the adapter.`);
    seen.add(m.path);
    if (m.a.length !== m.r * m.inF) {
      throw new PeftError(
        `Module "${m.path}": lora_A should be [${m.r}, ${m.inF}] (${m.r * m.inF} values), got ${m.a.length} values.`,
      );
    }
    if (m.b.length !== m.outF * m.r) {
      throw new PeftError(
        `Module "${m.path}": lora_B should be [${m.outF}, ${m.r}] (${m.outF * m.r} values), got ${m.b.length} values.`,
      );
    }
    tensors.push({ name: peftKey(m.path, 'A'), dtype: 'F32', shape: [m.r, m.inF], data: m.a });
    tensors.push({ name: peftKey(m.path, 'B'), dtype: 'F32', shape: [m.outF, m.r], data: m.b });
    if (!!m.m !== (input.config.use_dora === true)) {
      throw new PeftError(
        `Module "${m.path}": ${m.m ? 'has a DoRA magnitude but the config says use_dora false' : 'has no DoRA magnitude but the config says use_dora true'}.`,
      );
    }
    if (m.m) {
      if (m.m.length !== m.outF)
        throw new PeftError(
          `Module "${m.path}": lora_magnitude_vector should have ${m.outF} values, got ${m.m.length}.`,
        );
      tensors.push({ name: peftKey(m.path, 'M'), dtype: 'F32', shape: [m.outF], data: m.m });
    }
  }
  tensors.sort((x, y) => compareCodePoints(x.name, y.name));
  return {
    adapterConfig: pythonJsonDumps(adapterConfigObject(input)),
    adapterModel: writeSafetensors(tensors, { format: 'pt' }),
  };
}

// ---------------------------------------------------------------------------------------------
// Import
