/**
 * The app's state: one plain object, replaced (never mutated) on every change, held by a tiny
 * external store that React reads with useSyncExternalStore. No React here, so the controller and
 * its tests run in Node.
 */
import { DEFAULT_FROZEN, DEFAULT_LORA, DEFAULT_SAMPLING, DEFAULT_TRAIN } from '../engine/defaults';
import type {
  ColumnMapping,
  DatasetFormat,
  DatasetProgress,
  DatasetSummary,
  FrozenWeightsSettings,
  GenerationResult,
  GpuSummary,
  LoraSettings,
  MemoryEstimate,
  ModelInfo,
  PromptMode,
  SamplingSettings,
  TrainProgress,
  TrainSettings,
} from '../engine/types';
import type { ModelConfig } from '../model/config';
import type { HubDataFile } from '../train/data/hub';
import type { AdapterRecord, CachedModelRecord, HistoryPoint, RunRecord, StoredModelSource } from '../store/types';
import type { ModelChoice } from './catalog';
import type { ModelCost } from './cost';
import type { UserMessage } from './errors';

export type View = 'model' | 'data' | 'settings' | 'train' | 'library' | 'compare' | 'chat' | 'diagnostics';

export interface Notice extends UserMessage {
  id: number;
  level: 'error' | 'warning' | 'info';
  /** The view an info notice is about ("Adapter imported": library); it goes when the user leaves it. */
  view?: View;
}

export interface GpuSlice {
  status: 'starting' | 'ready' | 'unavailable' | 'lost';
  info: GpuSummary | null;
  error: UserMessage | null;
}

export interface DownloadView {
  /** The file being read now. */
  file: string;
  phase: 'download' | 'upload' | 'tokenizer';
  fileLoaded: number;
  fileTotal: number | null;
  /**
   * Bytes downloaded so far: of the weight files when `expectedBytes` is known (it counts the
   * weights only), else of every file.
   */
  bytes: number;
  /** Expected bytes of the weights (from the cost check), null when unknown. */
  expectedBytes: number | null;
}

export interface ModelSlice {
  choice: ModelChoice | null;
  check: {
    status: 'idle' | 'checking' | 'ready' | 'error';
    config: ModelConfig | null;
    cost: ModelCost | null;
    cached: boolean;
    error: UserMessage | null;
  };
  load: { status: 'idle' | 'loading' | 'ready' | 'error'; progress: DownloadView | null; error: UserMessage | null };
  info: ModelInfo | null;
  /** How the loaded model can be loaded again (runs and adapters record it). */
  source: StoredModelSource | null;
}

export interface DatasetSlice {
  fileName: string;
  /** Pasted text, or an uploaded file (never read whole on the page: the worker reads it by range). */
  content: string | Blob;
  format: DatasetFormat | 'auto';
  /** Which columns hold the records (Hub datasets, Parquet, CSV/JSON with other names); null: the names decide. */
  mapping: ColumnMapping | null;
  /** The file's columns (Parquet schema, CSV header, JSON keys) for the column mapping; null: not known yet. */
  columns: string[] | null;
  /** A dataset from the Hub: its files, the chosen split and file, the download. */
  hub: HubDataSlice;
  status: 'idle' | 'loading' | 'ready' | 'error';
  /** While loading: how far the worker is (the index pass over the file, then tokenizing). */
  progress: DatasetProgress | null;
  summary: DatasetSummary | null;
  error: UserMessage | null;
  /** An upload that was refused (not UTF-8, empty, binary, too large, unreadable); the dataset loaded before stays in use. */
  refused: UserMessage | null;
  /** The settings the summary was made with ("maxLen|valFraction|seed|format"), to know when to redo it. */
  key: string | null;
  page: number;
}

export interface HubDataSlice {
  repo: string;
  status: 'idle' | 'listing' | 'listed' | 'downloading' | 'error';
  files: HubDataFile[];
  split: string;
  /** The file to read, or ALL_SPLIT_FILES: every file of the split, in order, as one dataset. */
  path: string;
  /** Bytes downloaded of the total (of every file read), and the file being downloaded now. */
  progress: { loaded: number; total: number | null; file?: string } | null;
  error: UserMessage | null;
}

/** HubDataSlice.path for a split read whole (all its files). */
export const ALL_SPLIT_FILES = '*';

export interface EstimateSlice {
  status: 'idle' | 'working' | 'ready' | 'error';
  value: MemoryEstimate | null;
  error: UserMessage | null;
}

export type TrainStatus = 'idle' | 'preparing' | 'running' | 'paused' | 'stopping' | 'saving' | 'done' | 'failed';

/** A run holds the GPU worker (from preparing to saving): other GPU work and model/data changes wait. */
export function runBusy(status: TrainStatus): boolean {
  return status !== 'idle' && status !== 'done' && status !== 'failed';
}

export interface TrainSlice {
  status: TrainStatus;
  runId: string | null;
  progress: TrainProgress | null;
  history: HistoryPoint[];
  totalSteps: number | null;
  checkpoint: { step: number; at: string } | null;
  error: UserMessage | null;
  /**
   * What a starting run is doing before its first step reports ("Resuming at step 40 of 100:
   * compiling the GPU kernels for the first step…"), shown instead of blank stats; null once it runs.
   */
  startup: string | null;
  /** While the matmul kernels are tuned between steps ("Tuning kernels for this GPU: shape class 2 of 6…"). */
  tuning: string | null;
  /** The adapter saved at the end. */
  adapterId: string | null;
  /** The finished run was stopped before its last step (known as soon as it ends, before the library reloads). */
  stoppedEarly: boolean;
  /** When the adapter could not be saved (storage full): kept here so it can be downloaded. */
  unsaved: { name: string; adapterConfig: string; adapterModel: Uint8Array } | null;
}

export interface CompareCell {
  text: string;
  status: 'waiting' | 'running' | 'done' | 'error';
  error?: string;
}

export interface CompareColumn {
  /** 'base' or an adapter id. */
  key: string;
  label: string;
}

export interface CompareSlice {
  prompts: string;
  adapterIds: string[];
  sampling: SamplingSettings;
  status: 'idle' | 'running' | 'done' | 'error';
  columns: CompareColumn[];
  /** [prompt index][column key] */
  outputs: Record<string, CompareCell>[];
  promptList: string[];
  evals: Record<string, { status: 'running' | 'done' | 'error'; loss?: number; tokens?: number; error?: string }>;
  evalStatus: 'idle' | 'running' | 'done';
  evalSplit: 'validation' | 'all' | null;
  /** The models the last evaluation measured (its own, not the outputs' columns) and on what data. */
  evalColumns: CompareColumn[];
  evalDataset: string | null;
  error: UserMessage | null;
}

/** One message of the Chat view's conversation. */
export interface ChatTurn {
  id: number;
  role: 'user' | 'assistant';
  content: string;
  /** A reply: who made it ('base' or the adapter's id) and its name then. */
  by?: { key: string; label: string };
  /** A reply: streaming, done, or failed (its error shown in place; it is left out of the next prompt). */
  status?: 'streaming' | 'done' | 'error';
  stopReason?: GenerationResult['stopReason'];
  tokens?: number;
  error?: string;
}

export interface ChatSlice {
  turns: ChatTurn[];
  system: string;
  draft: string;
  /** 'chat': the model's chat template; 'completion': the conversation as one text, continued. */
  mode: PromptMode;
  /** Who answers next: 'base' or an adapter's id. */
  adapterKey: string;
  sampling: SamplingSettings;
  /** Added to the seed of each reply (then counted up), so a regenerated reply is a new sample and the conversation can be replayed. */
  seedOffset: number;
  status: 'idle' | 'generating' | 'stopping';
  error: UserMessage | null;
}

export interface LibrarySlice {
  adapters: AdapterRecord[];
  models: CachedModelRecord[];
  storage: { usage: number; quota: number; persisted: boolean } | null;
  importing: boolean;
  importError: UserMessage | null;
}

export interface AppState {
  view: View;
  storageOk: boolean;
  gpu: GpuSlice;
  model: ModelSlice;
  dataset: DatasetSlice;
  /** How the next model load holds the frozen weights (Settings: 16-bit / 4-bit NF4). */
  frozen: FrozenWeightsSettings;
  lora: LoraSettings;
  train: TrainSettings;
  /** True once the user changed a setting (then a new model keeps them; see ./settings.ts). */
  settingsEdited: boolean;
  estimate: EstimateSlice;
  run: TrainSlice;
  resumable: RunRecord[];
  /** Runs another tab of this browser is training now (on the same GPU): the Train view says so. */
  elsewhere: RunRecord[];
  library: LibrarySlice;
  compare: CompareSlice;
  chat: ChatSlice;
  notices: Notice[];
}

export function initialState(): AppState {
  return {
    view: 'model',
    storageOk: true,
    gpu: { status: 'starting', info: null, error: null },
    model: {
      choice: null,
      check: { status: 'idle', config: null, cost: null, cached: false, error: null },
      load: { status: 'idle', progress: null, error: null },
      info: null,
      source: null,
    },
    dataset: {
      fileName: '',
      content: '',
      format: 'auto',
      mapping: null,
      columns: null,
      hub: { repo: '', status: 'idle', files: [], split: '', path: '', progress: null, error: null },
      status: 'idle',
      progress: null,
      summary: null,
      error: null,
      refused: null,
      key: null,
      page: 0,
    },
    frozen: { ...DEFAULT_FROZEN },
    lora: { ...DEFAULT_LORA },
    train: { ...DEFAULT_TRAIN },
    settingsEdited: false,
    estimate: { status: 'idle', value: null, error: null },
    run: {
      status: 'idle',
      runId: null,
      progress: null,
      history: [],
      totalSteps: null,
      checkpoint: null,
      error: null,
      startup: null,
      tuning: null,
      adapterId: null,
      stoppedEarly: false,
      unsaved: null,
    },
    resumable: [],
    elsewhere: [],
    library: { adapters: [], models: [], storage: null, importing: false, importError: null },
    compare: {
      prompts: '',
      adapterIds: [],
      sampling: { ...DEFAULT_SAMPLING, maxNewTokens: 48 },
      status: 'idle',
      columns: [],
      outputs: [],
      promptList: [],
      evals: {},
      evalStatus: 'idle',
      evalSplit: null,
      evalColumns: [],
      evalDataset: null,
      error: null,
    },
    chat: {
      turns: [],
      system: '',
      draft: '',
      mode: 'completion',
      adapterKey: 'base',
      sampling: { ...DEFAULT_SAMPLING, maxNewTokens: 128 },
      seedOffset: 0,
      status: 'idle',
      error: null,
    },
    notices: [],
  };
}

type Listener = () => void;

/** A minimal external store: get, replace with an updater, subscribe. */
export class Store<S> {
  private listeners = new Set<Listener>();
  constructor(private state: S) {}

  get = (): S => this.state;

  update(fn: (s: S) => S): void {
    const next = fn(this.state);
    if (next === this.state) return;
    this.state = next;
    for (const l of this.listeners) l();
  }

  subscribe = (l: Listener): (() => void) => {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  };
}
