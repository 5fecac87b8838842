/**
 * The adapters that are not LoRA (src/lora/methods.ts names them): (IA)³ vectors, or prompt / prefix
 * tuning's table, with their PEFT config. One value carries such an adapter from its start (new,
 * imported, or a checkpoint's) through training (src/train/run.ts) to its PEFT files, and onto the
 * GPU for evaluation, generation and Compare. LoRA and DoRA keep their own path (LoraModuleArrays).
 */

import type { Gpu } from '../gpu/context';
import type { LinearModule } from '../model/registry';
import { GpuLora } from './gpu-lora';
import { type Ia3Config, type Ia3VectorArrays, exportIa3, importIa3 } from './ia3';
import { type PeftFiles, PeftError } from './peft';
import { parseConfigJson } from './peft-config-fields';
import { PREFIX_MLP_PARTS, type PrefixMlpArrays, type PrefixMlpDims, prefixMlpTable } from './prefix-mlp';
import {
  type PrefixTuningConfig,
  type PromptTuningConfig,
  type VirtualModel,
  exportVirtual,
  importVirtual,
} from './virtual';

export type OtherAdapter =
  | { method: 'ia3'; config: Ia3Config; vectors: Ia3VectorArrays[] }
  | { method: 'prompt-tuning'; config: PromptTuningConfig; table: Float32Array }
  | {
      method: 'prefix-tuning';
      config: PrefixTuningConfig;
      /** The table the runner attends over (with `mlp`: the MLP's output, what PEFT saves). */
      table: Float32Array;
      /** A prefix trained through PEFT's projection MLP (prefix_projection): its five parameters. */
      mlp?: PrefixMlpArrays;
    };

/** The method and config of an OtherAdapter (what checkpoints record of the run). */
export type OtherAdapterConfig =
  | { method: 'ia3'; config: Ia3Config }
  | { method: 'prompt-tuning'; config: PromptTuningConfig }
  | { method: 'prefix-tuning'; config: PrefixTuningConfig };

export function otherConfig(o: OtherAdapter): OtherAdapterConfig {
  return { method: o.method, config: o.config } as OtherAdapterConfig;
}

/** The projection MLP's dimensions for a prefix config. */
export function prefixMlpDims(c: PrefixTuningConfig): PrefixMlpDims {
  return { P: c.num_virtual_tokens, D: c.token_dim, E: c.encoder_hidden_size, O: c.num_layers * 2 * c.token_dim };
}

const kindOf = (method: 'prompt-tuning' | 'prefix-tuning') => (method === 'prompt-tuning' ? 'prompt' : 'prefix');

/** Uploads the adapter for training or use. */
export function otherOnGpu(gpu: Gpu, modules: LinearModule[], o: OtherAdapter): GpuLora {
  if (o.method === 'ia3') return GpuLora.fromIa3(gpu, modules, o.vectors);
  if (o.method === 'prefix-tuning' && o.mlp) return GpuLora.fromPrefixMlp(gpu, prefixMlpDims(o.config), o.mlp);
  return GpuLora.fromVirtual(gpu, kindOf(o.method), o.config.num_virtual_tokens, o.table);
}

/** The same adapter with the GPU's (trained) values. */
export async function otherFromGpu(lora: GpuLora, o: OtherAdapter): Promise<OtherAdapter> {
  if (o.method === 'ia3') return { ...o, vectors: await lora.ia3Arrays() };
  const mlp = await lora.prefixMlpArrays();
  if (o.method === 'prefix-tuning' && mlp) return { ...o, mlp, table: prefixMlpTable(prefixMlpDims(o.config), mlp) };
  const v = lora.virtualSlot;
  if (!v) throw new PeftError('The adapter on the GPU has no prompt or prefix table.');
  return { ...o, table: await lora.gpu.read(v.table) };
}

/** Every trainable array of the adapter, named as PEFT names them (for finiteness checks and warnings). */
export function otherArrays(o: OtherAdapter): { name: string; data: Float32Array }[] {
  if (o.method === 'ia3') return o.vectors.map((v) => ({ name: `${v.path}.ia3_l`, data: v.l }));
  const mlp = o.method === 'prefix-tuning' ? o.mlp : undefined;
  if (mlp) return PREFIX_MLP_PARTS.map(({ key, name }) => ({ name, data: mlp[key] }));
  return [{ name: 'prompt_embeddings', data: o.table }];
}

/** The adapter's PEFT files (adapter_config.json + adapter_model.safetensors). */
export function exportOther(o: OtherAdapter, baseModel: string, fanInFanOut: boolean): PeftFiles {
  if (o.method === 'ia3') return exportIa3({ config: o.config, baseModel, vectors: o.vectors, fanInFanOut });
  return exportVirtual({ config: o.config, kind: kindOf(o.method), baseModel, table: o.table });
}

/**
 * Reads PEFT files of a non-LoRA adapter by their peft_type (null for LoRA files, which
 * importPeft reads): IA3, PROMPT_TUNING or PREFIX_TUNING, checked against this model.
 */
export function importOther(
  files: { adapterConfig: string | Uint8Array; adapterModel: Uint8Array },
  modules: readonly LinearModule[],
  model: VirtualModel,
): { adapter: OtherAdapter; baseModel: string | null; warnings: string[] } | null {
  const type = parseConfigJson(files.adapterConfig).peft_type;
  if (type === 'IA3') {
    const r = importIa3(files, modules);
    return {
      adapter: { method: 'ia3', config: r.config, vectors: r.vectors },
      baseModel: r.baseModel,
      warnings: r.warnings,
    };
  }
  if (type === 'PROMPT_TUNING' || type === 'PREFIX_TUNING') {
    const r = importVirtual(files, model);
    const adapter: OtherAdapter =
      r.kind === 'prompt'
        ? { method: 'prompt-tuning', config: r.config as PromptTuningConfig, table: r.table }
        : { method: 'prefix-tuning', config: r.config as PrefixTuningConfig, table: r.table };
    return { adapter, baseModel: r.baseModel, warnings: [] };
  }
  return null;
}
