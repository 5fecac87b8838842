/**
 * Records kept in the browser (see db.ts for where each lives). Plain structured-clone-able data,
 * no classes, so they go to IndexedDB and across postMessage unchanged.
 */
import type { PeftMethod } from '../lora/methods';
import type {
  ColumnMapping,
  DatasetFormat,
  FrozenWeightsSettings,
  LoraSettings,
  TrainResult,
  TrainSettings,
} from '../engine/types';

/**
 * Where a model came from, in a form that can be stored and loaded again after a reload.
 * A dropped folder cannot be re-read after a reload: `files` records only its name, and resuming
 * a run on it asks the user to drop the folder again.
 */
export type StoredModelSource =
  | { kind: 'demo'; id: string; path: string }
  | { kind: 'hub'; id: string; revision?: string }
  | { kind: 'url'; id: string; baseUrl: string }
  | { kind: 'files'; id: string };

export type HistoryPoint = TrainResult['history'][number];

/** The LoRA settings an adapter was made with, as read from its adapter_config.json. */
export interface AdapterConfigSummary {
  /** The PEFT method (src/lora/methods.ts); absent in records made before methods = 'lora'. */
  method?: PeftMethod;
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  target_modules: string[] | string;
  use_rslora: boolean;
  /** Prompt and prefix tuning: the virtual tokens (r and lora_alpha are 0 for methods without them). */
  num_virtual_tokens?: number;
  /**
   * LoftQ (adapter_config.json's loftq_config): its alternating iterations, and whether the
   * adapter carries its quantized backbone (trained here; one imported from PEFT files does not).
   */
  loftq?: { loftq_iter: number; backbone: boolean };
}

export interface AdapterRecord {
  id: string;
  name: string;
  /** base_model_name_or_path of the adapter (the model id it was trained on). */
  baseModel: string;
  /** How to load that base model again, when known (trained here). */
  baseSource: StoredModelSource | null;
  config: AdapterConfigSummary;
  /** Training settings, for adapters trained here. */
  train: TrainSettings | null;
  datasetName: string | null;
  createdAt: string;
  finalLoss: number | null;
  finalValLoss: number | null;
  steps: number | null;
  /** adapter_model.safetensors + adapter_config.json bytes. */
  sizeBytes: number;
  origin: 'trained' | 'imported';
  /** The run that made it (trained adapters). */
  runId: string | null;
  stoppedEarly: boolean;
  history: HistoryPoint[];
  /** How long the run trained (seconds, pauses excluded); absent for imported and older adapters. */
  seconds?: number | null;
}

/** The PEFT files of an adapter, kept apart from AdapterRecord so listing the library stays cheap. */
export interface AdapterFilesRecord {
  id: string;
  adapterConfig: string;
  adapterModel: Uint8Array;
  /** A LoftQ adapter's backbone recipe (src/lora/loftq-backbone.ts); absent for every other adapter. */
  loftqBackbone?: Uint8Array;
}

export type RunStatus = 'running' | 'paused' | 'interrupted' | 'finished' | 'stopped' | 'failed';

/** Which tab holds a run, and until when (renewed by a heartbeat while it trains). */
export interface RunLease {
  owner: string;
  until: number;
}

export interface RunDataset {
  fileName: string;
  /**
   * The whole text (a paste), or the uploaded file itself (IndexedDB keeps a Blob on disk, not in
   * the tab's memory), so the run can be rebuilt after a reload.
   */
  content: string | Blob;
  format: DatasetFormat | 'auto';
  /** The column mapping it was read with (Hub datasets, Parquet); absent: the field names decided. */
  mapping?: ColumnMapping | null;
}

export interface RunRecord {
  id: string;
  name: string;
  createdAt: string;
  updatedAt: string;
  status: RunStatus;
  model: StoredModelSource;
  dataset: RunDataset;
  lora: LoraSettings;
  train: TrainSettings;
  /** The frozen weights the run trains on (absent in runs saved before 4-bit weights existed: 16-bit). */
  frozen?: FrozenWeightsSettings;
  totalSteps: number | null;
  /** Last step reported by the trainer. */
  step: number;
  history: HistoryPoint[];
  /** Step of the checkpoint in the checkpoints store, null when none was written yet. */
  checkpointStep: number | null;
  /** The adapter saved when the run finished (or was stopped). */
  adapterId: string | null;
  lease: RunLease | null;
  error: string | null;
}

/** The latest checkpoint of a run (one per run: a new one replaces the old). */
export interface CheckpointRecord {
  runId: string;
  step: number;
  savedAt: string;
  blob: Uint8Array;
}

/** A model whose files are in the Cache API (metadata only; the bytes are in the cache). */
export interface CachedModelRecord {
  /** Hub id or URL the files came from. */
  id: string;
  source: StoredModelSource;
  /** Absolute URLs of the cached files. */
  urls: string[];
  bytes: number;
  cachedAt: string;
  parameters: number | null;
}
