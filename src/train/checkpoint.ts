/**
 * Training checkpoints as one self-describing binary blob (a safetensors file): the adapter's A/B
 * tensors, the optimizer moments, and a JSON metadata entry with the step, the data position and
 * the full run configuration. The same blob goes to IndexedDB in the browser and to a file in the
 * CLI, so a run resumes exactly wherever it was saved.
 */

import type { LoraConfig } from '../lora/config';
import type { LoraModuleArrays } from '../lora/gpu-lora';
import type { OtherAdapter, OtherAdapterConfig } from '../lora/other';
import type { PrefixMlpArrays } from '../lora/prefix-mlp';
import type { FrozenWeightsOptions } from '../model/gpu-model';
import { parseSafetensors, tensorToF32, writeSafetensors } from '../model/safetensors';
import type { DataPosition } from './batch';
import type { TrainResult, TrainSettings } from './types';

export const CHECKPOINT_VERSION = 1;

/** A projected prefix's MLP parameters (src/lora/prefix-mlp.ts), stored as virtual/mlp/KEY. */
const MLP_KEYS = ['x', 'w1', 'b1', 'w2', 'b2'] as const;

/** What a checkpoint's run was: the base model's id, the adapter's LoRA config, the settings. */
export interface CheckpointRun {
  model: string;
  lora: LoraConfig;
  train: TrainSettings;
  /** The frozen weights it trained on (absent in checkpoints from before QLoRA: as stored). */
  frozen?: FrozenWeightsOptions;
  /** An (IA)³, prompt- or prefix-tuning run: its method and PEFT config (absent: LoRA, `lora`). */
  adapter?: OtherAdapterConfig;
}

export interface CheckpointMeta {
  version: number;
  /** Optimizer steps completed. */
  step: number;
  /** Where the run is in its data (plain JSON; BatchSchedule.restore checks it). */
  dataPosition: DataPosition;
  /** Everything needed to rebuild the run. */
  run: CheckpointRun;
  /** Loss history so far, for the UI's curve. */
  history?: TrainResult['history'];
  /** Seconds of training before this checkpoint, over every resumed part of the run. */
  elapsedSeconds?: number;
  savedAt: string;
}

export interface Checkpoint {
  meta: CheckpointMeta;
  modules: LoraModuleArrays[];
  /** The adapter of a run with `meta.run.adapter`: (IA)³ vectors or the prompt / prefix table. */
  other?: OtherAdapter | null;
  /** Optimizer moments in GpuLora.trainables() order. */
  optimizerState: Float32Array[];
}

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

export function encodeCheckpoint(c: Checkpoint): Uint8Array {
  const tensors: { name: string; dtype: 'F32'; shape: number[]; data: Float32Array }[] = [];
  for (const m of c.modules) {
    tensors.push({ name: `lora/${m.path}/A`, dtype: 'F32', shape: [m.r, m.inF], data: m.a });
    tensors.push({ name: `lora/${m.path}/B`, dtype: 'F32', shape: [m.outF, m.r], data: m.b });
    if (m.m) tensors.push({ name: `lora/${m.path}/M`, dtype: 'F32', shape: [m.outF], data: m.m });
  }
  const o = c.other;
  if (o?.method === 'ia3') {
    for (const v of o.vectors) {
      tensors.push({ name: `ia3/${v.path}/${v.input ? 'in' : 'out'}`, dtype: 'F32', shape: [v.l.length], data: v.l });
    }
  } else if (o) {
    tensors.push({ name: 'virtual/table', dtype: 'F32', shape: [o.table.length], data: o.table });
    const mlp = o.method === 'prefix-tuning' ? o.mlp : undefined;
    for (const key of mlp ? MLP_KEYS : []) {
      tensors.push({ name: `virtual/mlp/${key}`, dtype: 'F32', shape: [mlp![key].length], data: mlp![key] });
    }
  }
  c.optimizerState.forEach((t, i) => tensors.push({ name: `opt/${i}`, dtype: 'F32', shape: [t.length], data: t }));
  return writeSafetensors(tensors, { format: 'tabtune-checkpoint', meta: JSON.stringify(c.meta) });
}

export function decodeCheckpoint(bytes: Uint8Array, fileName = 'checkpoint'): Checkpoint {
  const file = parseSafetensors(bytes, fileName);
  if (file.metadata?.format !== 'tabtune-checkpoint' || !file.metadata.meta) {
    throw new CheckpointError(`${fileName} is not a Tabtune checkpoint (no tabtune-checkpoint metadata).`);
  }
  const meta = JSON.parse(file.metadata.meta) as CheckpointMeta;
  if (meta.version !== CHECKPOINT_VERSION) {
    throw new CheckpointError(
      `${fileName} has checkpoint version ${meta.version}; this build reads version ${CHECKPOINT_VERSION}.`,
    );
  }
  const modules = new Map<string, LoraModuleArrays>();
  const opt: Float32Array[] = [];
  const vectors: { path: string; input: boolean; l: Float32Array }[] = [];
  let table: Float32Array | null = null;
  const mlp: Partial<PrefixMlpArrays> = {};
  for (const [name, t] of file.tensors) {
    const ia3 = /^ia3\/(.+)\/(in|out)$/.exec(name);
    if (ia3) {
      vectors.push({ path: ia3[1]!, input: ia3[2] === 'in', l: tensorToF32(t) });
      continue;
    }
    const part = /^virtual\/mlp\/(x|w1|b1|w2|b2)$/.exec(name);
    if (part) {
      mlp[part[1] as (typeof MLP_KEYS)[number]] = tensorToF32(t);
      continue;
    }
    if (name === 'virtual/table') {
      table = tensorToF32(t);
      continue;
    }
    const parts = /^lora\/(.+)\/(A|B|M)$/.exec(name);
    if (parts) {
      const path = parts[1]!;
      const entry = modules.get(path) ?? { path, r: 0, inF: 0, outF: 0, a: new Float32Array(), b: new Float32Array() };
      if (parts[2] === 'M') entry.m = tensorToF32(t);
      else if (parts[2] === 'A') {
        entry.r = t.shape[0]!;
        entry.inF = t.shape[1]!;
        entry.a = tensorToF32(t);
      } else {
        entry.outF = t.shape[0]!;
        entry.b = tensorToF32(t);
      }
      modules.set(path, entry);
      continue;
    }
    const o = /^opt\/(\d+)$/.exec(name);
    if (o) opt[Number(o[1])] = tensorToF32(t);
  }
  for (let i = 0; i < opt.length; i++) {
    if (!opt[i]) throw new CheckpointError(`${fileName}: optimizer tensor ${i} is missing.`);
  }
  const a = meta.run.adapter;
  let other: OtherAdapter | null = null;
  if (a?.method === 'ia3') other = { ...a, vectors };
  else if (a) {
    if (!table) throw new CheckpointError(`${fileName}: the ${a.method} run's table is missing.`);
    other = { ...a, table } as OtherAdapter;
    if (a.method === 'prefix-tuning' && a.config.prefix_projection) {
      const missing = MLP_KEYS.filter((k) => !mlp[k]);
      if (missing.length > 0) {
        throw new CheckpointError(`${fileName}: the projected prefix's MLP tensors ${missing.join(', ')} are missing.`);
      }
      other = { ...a, table, mlp: mlp as PrefixMlpArrays };
    }
  }
  return { meta, modules: [...modules.values()], other, optimizerState: opt };
}
