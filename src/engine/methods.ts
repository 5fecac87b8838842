/**
 * The engine's side of the methods that are not LoRA ((IA)³, prompt tuning, prefix tuning;
 * src/lora/other.ts): a new adapter from the settings (PEFT's defaults and initialisation on the
 * loaded model), and any adapter's files onto the GPU by their peft_type. Engine.train and the
 * evaluation / generation / Compare paths call these; LoRA and DoRA stay on their own path.
 */

import type { Gpu } from '../gpu/context';
import { recordEmbedding } from '../kernels/embedding';
import { type LoraConfig, type LoraSettings, PEFT_LORA_DEFAULTS } from '../lora/config';
import type { GpuLora, LoraModuleArrays } from '../lora/gpu-lora';
import { initLoraModules } from '../lora/init';
import { importPeft } from '../lora/peft-import';
import { resolveTargets } from '../lora/targets';
import type { Checkpoint } from '../train/checkpoint';
import { ia3ConfigFromSettings, initIa3 } from '../lora/ia3';
import { type OtherAdapter, importOther, otherOnGpu, prefixMlpDims } from '../lora/other';
import { initPrefixMlp, prefixMlpTable } from '../lora/prefix-mlp';
import { PeftError, type PeftFiles } from '../lora/peft';
import {
  DEFAULT_VIRTUAL_TOKENS,
  type PrefixTuningConfig,
  type PromptTuningConfig,
  standardNormal,
  textInit,
  virtualShape,
  virtualWidth,
} from '../lora/virtual';
import { hasConv1dWeights, unusedModulePrefixes } from '../model/registry';
import type { LoadedModelState } from './loaded-model';

/**
 * The starting adapter of a new (IA)³ / prompt / prefix run from the settings, or null for
 * LoRA and DoRA. Prompt tuning's TEXT init reads the word embeddings of the tokenized text.
 */
export async function newOtherAdapter(
  gpu: Gpu,
  m: LoadedModelState,
  s: LoraSettings,
  seed: number,
): Promise<OtherAdapter | null> {
  const method = s.method ?? 'lora';
  if (method === 'ia3') {
    const targets = s.target_modules;
    const config = ia3ConfigFromSettings(
      { target_modules: targets, feedforward_modules: s.feedforward_modules ?? [] },
      m.config.modelType,
      { fanInFanOut: hasConv1dWeights(m.config) },
    );
    return { method, config, vectors: initIa3(config, m.gpuModel.linears) };
  }
  if (method !== 'prompt-tuning' && method !== 'prefix-tuning') return null;
  const P = s.num_virtual_tokens ?? DEFAULT_VIRTUAL_TOKENS;
  if (!Number.isInteger(P) || P < 1) throw new PeftError(`num_virtual_tokens must be a positive integer, got ${P}.`);
  if (method === 'prefix-tuning') {
    const shape = virtualShape('prefix', m.config);
    const config: PrefixTuningConfig = {
      ...shape,
      num_virtual_tokens: P,
      prefix_projection: !!s.prefix_projection,
      encoder_hidden_size: s.encoder_hidden_size ?? shape.token_dim,
    };
    if (config.prefix_projection) {
      const E = config.encoder_hidden_size;
      if (!Number.isInteger(E) || E < 1)
        throw new PeftError(`encoder_hidden_size must be a positive integer, got ${E}.`);
      const dims = prefixMlpDims(config);
      const mlp = initPrefixMlp(dims, seed);
      return { method, config, table: prefixMlpTable(dims, mlp), mlp };
    }
    return { method, config, table: standardNormal(P * virtualWidth('prefix', shape), seed) };
  }
  const shape = virtualShape('prompt', m.config);
  const text = s.prompt_tuning_init_text?.trim() ? s.prompt_tuning_init_text : null;
  const config: PromptTuningConfig = {
    ...shape,
    num_virtual_tokens: P,
    prompt_tuning_init: text === null ? 'RANDOM' : 'TEXT',
    prompt_tuning_init_text: text,
    tokenizer_name_or_path: text === null ? null : m.id,
  };
  const table =
    text === null
      ? standardNormal(P * shape.token_dim, seed)
      : await textTable(gpu, m, m.tokenizer.encode(text, { addSpecialTokens: true }), P);
  return { method, config, table };
}

/** PEFT's TEXT init on the GPU-held embeddings: the rows of the text's distinct ids, read back. */
async function textTable(gpu: Gpu, m: LoadedModelState, ids: number[], P: number): Promise<Float32Array> {
  const H = m.config.hiddenSize;
  const used = ids.slice(0, P);
  if (used.length === 0)
    throw new PeftError('prompt_tuning_init_text gives no tokens; give some text or use random init.');
  const idBuf = gpu.tensor('prompt-init.ids', [used.length], 'u32', 'scratch', Uint32Array.from(used));
  const out = gpu.tensor('prompt-init.rows', [used.length, H], 'f32', 'scratch');
  try {
    const rec = gpu.recorder('prompt-init');
    // PEFT reads the rows through the model's embedding module: scaled where that module scales
    // (Gemma in transformers 5, marked by embedScaleInWeightDtype), raw elsewhere
    recordEmbedding(gpu, rec, {
      table: m.gpuModel.weight(m.gpuModel.arch.embed),
      ids: idBuf,
      out,
      T: used.length,
      H,
      scale: m.config.embedScaleInWeightDtype ? m.config.embedScale : 1,
    });
    rec.submit();
    const rows = await gpu.read(out);
    return textInit(
      used.map((_, i) => i),
      P,
      rows,
      H,
    );
  } finally {
    gpu.free(idBuf);
    gpu.free(out);
  }
}

/**
 * The adapter a run starts from: a checkpoint's, PEFT files (`--init-from`; read by peft_type), or
 * a new one from the settings. `loraConfig` makes the LoRA config of new LoRA / DoRA runs; runs of
 * other methods record a LoRA config of PEFT's defaults beside theirs (checkpoints need one).
 */
export async function startingAdapter(
  gpu: Gpu,
  m: LoadedModelState,
  lora: LoraSettings,
  train: { seed: number },
  resume: Checkpoint | null,
  initFrom: PeftFiles | undefined,
  loraConfig: () => LoraConfig,
): Promise<{ config: LoraConfig; modules: LoraModuleArrays[]; other: OtherAdapter | null }> {
  const placeholder: LoraConfig = { ...PEFT_LORA_DEFAULTS, target_modules: [] };
  if (resume) {
    return { config: resume.meta.run.lora, modules: resume.modules, other: resume.other ?? null };
  }
  if (initFrom) {
    const o = importOther(initFrom, m.gpuModel.linears, m.config);
    if (o) {
      if (o.adapter.method === 'prefix-tuning' && o.adapter.config.prefix_projection) {
        throw new PeftError(
          "This prefix was trained through PEFT's projection MLP (prefix_projection), whose weights PEFT does not save; " +
            'like PEFT, Tabtune cannot continue training it. Start a new prefix instead.',
        );
      }
      return { config: placeholder, modules: [], other: o.adapter };
    }
    const { config, modules } = importPeft(initFrom, m.gpuModel.linears, {
      baseModel: m.id,
      unusedModules: unusedModulePrefixes(m.config),
    });
    // Its weights are what they are: a continued adapter never re-runs a weight-based init
    // (PiSSA, OLoRA, LoftQ) over them.
    return { config: { ...config, init_lora_weights: true }, modules, other: null };
  }
  const other = await newOtherAdapter(gpu, m, lora, train.seed);
  if (other) return { config: placeholder, modules: [], other };
  const config = loraConfig();
  return {
    config,
    modules: initLoraModules(config, resolveTargets(config, m.gpuModel.linears), train.seed),
    other: null,
  };
}

/**
 * What the memory estimate needs of a non-LoRA method's settings: its trainable values and the
 * virtual tokens each row carries (null for LoRA / DoRA). Prompt TEXT init changes nothing here.
 */
export function otherTrainables(
  m: LoadedModelState,
  s: LoraSettings,
): { trainable: number; virtualTokens: number } | null {
  const method = s.method ?? 'lora';
  if (method === 'ia3') {
    const config = ia3ConfigFromSettings(
      { target_modules: s.target_modules, feedforward_modules: s.feedforward_modules ?? [] },
      m.config.modelType,
    );
    return { trainable: initIa3(config, m.gpuModel.linears).reduce((n, v) => n + v.l.length, 0), virtualTokens: 0 };
  }
  if (method !== 'prompt-tuning' && method !== 'prefix-tuning') return null;
  const kind = method === 'prompt-tuning' ? 'prompt' : 'prefix';
  const P = s.num_virtual_tokens ?? DEFAULT_VIRTUAL_TOKENS;
  const shape = virtualShape(kind, m.config);
  if (kind === 'prefix' && s.prefix_projection) {
    // the MLP's five parameters (src/lora/prefix-mlp.ts)
    const D = shape.token_dim;
    const E = s.encoder_hidden_size ?? D;
    const O = virtualWidth(kind, shape);
    return { trainable: P * D + E * D + E + O * E + O, virtualTokens: P };
  }
  return { trainable: P * virtualWidth(kind, shape), virtualTokens: P };
}

/** Files of a non-LoRA adapter onto the GPU (null when the files are a LoRA adapter's). */
export function otherFilesOnGpu(
  gpu: Gpu,
  m: LoadedModelState,
  files: { adapterConfig: string | Uint8Array; adapterModel: Uint8Array },
): GpuLora | null {
  const r = importOther(files, m.gpuModel.linears, m.config);
  return r ? otherOnGpu(gpu, m.gpuModel.linears, r.adapter) : null;
}
