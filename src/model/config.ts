/**
 * config.json of a Hugging Face causal LM -> one normalised ModelConfig: the sizes, plus feature
 * flags that say how the layers compute (norm kind and placement, fused projections, rotary form,
 * positions, ALiBi, parallel blocks, soft-capping, multipliers, sliding windows, q/k norms). The
 * runner (src/model/runner*.ts) and the float64 reference (src/reference/model.ts) read only these
 * flags; nothing outside src/model/families/ branches on a model_type.
 *
 * What each model_type sets, with transformers' semantics and defaults, is in
 * src/model/families/*.ts (one file per group of related families); parseConfig dispatches there.
 * Checkpoints that need trust_remote_code (their modeling code is not in transformers) are refused
 * with the natively supported successor named.
 *
 * The ModelConfig type and its parts are in config-types.ts (re-exported here), the shared key
 * readers in config-reader.ts and config-rope.ts, so the families import no file that imports them.
 */

import { type CheckpointQuantization, type ModelConfig } from './config-types';
import { FAMILY_CONFIGS } from './families';
import { ConfigError, type Raw, Reader } from './config-reader';

export { ConfigError } from './config-reader';
export type { NormKind, NormConfig, QkNormConfig, ModelConfig } from './config-types';

/**
 * `quantization_config` as transformers' BitsAndBytesConfig writes it: bitsandbytes 4-bit NF4 is
 * read as stored; any other quantization is refused with what to use instead.
 */
function checkpointQuantization(r: Reader): CheckpointQuantization | null {
  const q = r.raw.quantization_config;
  if (q === undefined || q === null) return null;
  const unquantized =
    'use the unquantized (F32/F16/BF16) model instead, with --quantize nf4 (CLI) or "4-bit NF4" (app) to quantize it at load';
  if (typeof q !== 'object' || Array.isArray(q))
    r.reject(`"quantization_config" must be an object, got ${JSON.stringify(q)}.`);
  const c = q as Raw;
  const method = c.quant_method;
  if (method !== 'bitsandbytes') {
    r.reject(
      `this is a quantized checkpoint ("quantization_config"${typeof method === 'string' ? `, quant_method "${method}"` : ''}); ` +
        `Tabtune reads bitsandbytes 4-bit NF4 checkpoints and unquantized weights only: ${unquantized}.`,
    );
  }
  const flag = (k: string) => c[k] === true || c[`_${k}`] === true;
  if (!flag('load_in_4bit')) {
    r.reject(
      `quantization_config: a bitsandbytes ${flag('load_in_8bit') ? '8-bit (LLM.int8)' : 'checkpoint without load_in_4bit'} ` +
        `is not supported; Tabtune reads 4-bit NF4 ones: ${unquantized}.`,
    );
  }
  const type = c.bnb_4bit_quant_type ?? 'fp4';
  if (type !== 'nf4') {
    r.reject(
      `quantization_config: bnb_4bit_quant_type "${String(type)}" is not supported; Tabtune reads NF4 only: ${unquantized}.`,
    );
  }
  return { method: 'bnb-nf4', doubleQuant: c.bnb_4bit_use_double_quant === true };
}

/** Every model_type this module understands. */
export const SUPPORTED_MODEL_TYPES: readonly string[] = Object.keys(FAMILY_CONFIGS);

/**
 * model_types whose modeling code lives only in the checkpoint (trust_remote_code): refused, with
 * the natively supported model that succeeded them.
 */
const REMOTE_CODE_ONLY: Record<string, string> = {
  chatglm: 'GLM-4 (e.g. THUDM/glm-4-9b-chat-hf) is not supported either; try Qwen3 or Llama 3.2 instead',
  baichuan: 'Baichuan has no native successor in transformers; try Qwen3 (e.g. Qwen/Qwen3-0.6B) instead',
  internlm: 'InternLM 2.5 and 3 ship as remote code too; try Qwen3 (e.g. Qwen/Qwen3-0.6B) instead',
  internlm2: 'InternLM 2.5 and 3 ship as remote code too; try Qwen3 (e.g. Qwen/Qwen3-0.6B) instead',
  qwen: 'its native successors are Qwen2 / Qwen2.5 / Qwen3 (model_type "qwen2" or "qwen3", e.g. Qwen/Qwen2.5-0.5B)',
  xverse: 'XVERSE has no native successor in transformers; try Qwen3 or Llama 3.2 instead',
};

/**
 * The model's position limit as config.json states it, for messages: "n_positions = 1024 in
 * config.json" for GPT-2, "max_position_embeddings = 8192 in config.json" for most others.
 */
export function positionLimitText(c: Pick<ModelConfig, 'maxPositionsKey' | 'maxPositions'>): string {
  return `${c.maxPositionsKey} = ${c.maxPositions} in config.json`;
}

export function isSupportedModelType(t: string): boolean {
  return Object.prototype.hasOwnProperty.call(FAMILY_CONFIGS, t);
}

/**
 * Parses config.json (a JSON string, its bytes, or the parsed object) into a ModelConfig.
 * Throws ConfigError naming the file and key for anything missing, malformed or unsupported.
 */
export function parseConfig(json: unknown, fileName = 'config.json'): ModelConfig {
  let raw: unknown = json;
  if (json instanceof Uint8Array) raw = new TextDecoder().decode(json);
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch (e) {
      throw new ConfigError(`${fileName}: not valid JSON (${(e as Error).message}).`);
    }
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw))
    throw new ConfigError(`${fileName}: expected a JSON object.`);
  const obj = raw as Raw;
  const modelType = obj.model_type;
  if (typeof modelType !== 'string' || !modelType) {
    throw new ConfigError(
      `${fileName}: missing required key "model_type" (supported: ${SUPPORTED_MODEL_TYPES.join(', ')}).`,
    );
  }
  const remote = REMOTE_CODE_ONLY[modelType.toLowerCase()];
  if (remote) {
    throw new ConfigError(
      `${fileName}: model_type "${modelType}" needs trust_remote_code (its modeling code is not part of transformers), ` +
        `so Tabtune cannot reproduce it; ${remote}.`,
    );
  }
  if (!isSupportedModelType(modelType)) {
    throw new ConfigError(
      `${fileName}: model_type "${modelType}" is not supported; supported model types: ${SUPPORTED_MODEL_TYPES.join(', ')}.`,
    );
  }
  const r = new Reader(obj, fileName, modelType);
  const quantization = checkpointQuantization(r);
  return { ...FAMILY_CONFIGS[modelType]!(r), quantization };
}
