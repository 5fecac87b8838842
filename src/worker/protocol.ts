/**
 * Messages between the page (src/worker/client.ts) and the GPU worker (src/worker/worker.ts).
 *
 * One union of requests (page -> worker) and one of replies (worker -> page), each discriminated
 * by `kind`, so a `switch (msg.kind)` narrows every payload without casts. A request that expects
 * an answer carries an `id`; its reply (`*Done` or `error`) and its streamed events (progress,
 * checkpoints, text) carry the same id. Bytes travel as transferables where the sender no longer
 * needs them (checkpoint blobs, the trained adapter).
 */
import type { KernelBenchSize, KernelsBench } from '../bench/kernels-bench';
import type {
  AdapterRef,
  AttentionMode,
  ChatRequest,
  DatasetLoadOptions,
  DatasetProgress,
  DatasetSummary,
  FrozenWeightsSettings,
  GenerationResult,
  GpuSummary,
  KernelMode,
  LoadProgress,
  LoraSettings,
  MemoryEstimate,
  MergeSettings,
  ModelInfo,
  ModelSourceSpec,
  PeftFiles,
  RecipeOptions,
  SamplingSettings,
  SavedKernelChoices,
  SelfTestCheck,
  SelfTestReport,
  TrainDone,
  TrainProgress,
  TrainStage,
  TrainSettings,
} from '../engine/types';

export type WorkerRequest =
  | { kind: 'gpuInfo'; id: number }
  | { kind: 'selfTest'; id: number }
  | { kind: 'setKernelMode'; id: number; mode: KernelMode }
  | { kind: 'setAttentionMode'; id: number; mode: AttentionMode }
  | { kind: 'kernelChoices'; id: number }
  | { kind: 'forgetKernelChoices'; id: number; deviceKey: string }
  | { kind: 'benchKernels'; id: number; size: KernelBenchSize }
  | { kind: 'loadModel'; id: number; source: ModelSourceSpec; frozen?: FrozenWeightsSettings }
  | { kind: 'loadDataset'; id: number; fileName: string; content: string | Blob; opts: DatasetLoadOptions }
  | { kind: 'estimate'; id: number; lora: LoraSettings; train: TrainSettings }
  | {
      kind: 'train';
      id: number;
      lora: LoraSettings;
      train: TrainSettings;
      resumeFrom?: Uint8Array;
      initFrom?: PeftFiles;
      /** Send checkpoint blobs back (and wait for checkpointSaved before going on). */
      checkpoints: boolean;
    }
  /** The page stored checkpoint `seq` (or failed to: `error`); training goes on. */
  | { kind: 'checkpointSaved'; id: number; seq: number; error?: string }
  | { kind: 'pause' }
  | { kind: 'resume' }
  | { kind: 'stop' }
  | { kind: 'exportRecipe'; id: number; lora: LoraSettings; train: TrainSettings; opts: RecipeOptions }
  | { kind: 'evaluate'; id: number; adapter: AdapterRef | null; split: 'validation' | 'all' }
  | { kind: 'generate'; id: number; prompt: string; adapter: AdapterRef | null; sampling: SamplingSettings }
  | { kind: 'chat'; id: number; request: ChatRequest; adapter: AdapterRef | null }
  /** Ends the generation in progress (generate or chat) after its current token. */
  | { kind: 'stopGeneration' }
  | { kind: 'merge'; id: number; adapter: PeftFiles; settings: MergeSettings }
  | { kind: 'forgetAdapter'; key: string };

/** An error as it crosses the boundary: the class name survives (GpuDeviceLostError, SourceError...). */
export interface WireError {
  name: string;
  message: string;
  /** SourceError's code ('not-found', 'network', ...), when present. */
  code?: string;
  /**
   * A failed loadModel: the id of the model the engine still holds (the download or the files
   * failed before the old model was let go), so the page can keep using it. Absent when none.
   */
  keptModel?: string;
}

export type WorkerReply =
  | { kind: 'gpuInfoDone'; id: number; value: GpuSummary }
  /** A request that answers nothing else is done. */
  | { kind: 'done'; id: number }
  | { kind: 'kernelChoicesDone'; id: number; value: SavedKernelChoices[] }
  | { kind: 'benchLine'; id: number; line: string }
  | { kind: 'benchKernelsDone'; id: number; value: KernelsBench }
  | { kind: 'selfTestCheck'; id: number; check: SelfTestCheck }
  | { kind: 'selfTestDone'; id: number; value: SelfTestReport }
  | { kind: 'loadProgress'; id: number; progress: LoadProgress }
  | { kind: 'datasetProgress'; id: number; progress: DatasetProgress }
  | { kind: 'loadModelDone'; id: number; value: ModelInfo; cachedUrls: string[] }
  | { kind: 'loadDatasetDone'; id: number; value: DatasetSummary }
  | { kind: 'estimateDone'; id: number; value: MemoryEstimate }
  | { kind: 'trainProgress'; id: number; progress: TrainProgress }
  | { kind: 'trainStage'; id: number; stage: TrainStage }
  | { kind: 'checkpoint'; id: number; seq: number; step: number; blob: Uint8Array }
  | { kind: 'trainDone'; id: number; value: TrainDone }
  | { kind: 'exportRecipeDone'; id: number; value: Uint8Array }
  | { kind: 'mergeProgress'; id: number; done: number; total: number }
  | { kind: 'mergeDone'; id: number; value: { zip: Blob; files: string[] } }
  | { kind: 'evaluateDone'; id: number; value: { loss: number; tokens: number } }
  | { kind: 'text'; id: number; delta: string }
  | { kind: 'generateDone'; id: number; value: GenerationResult }
  | { kind: 'error'; id: number; error: WireError }
  /** Not tied to a request: the GPU device is gone; every later request fails until a new worker. */
  | { kind: 'deviceLost'; error: WireError }
  /** A downloaded model file could not be kept in the cache (full storage); the load goes on. */
  | { kind: 'cacheWarning'; message: string };

export function toWireError(e: unknown): WireError {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return { name: e.name, message: e.message, ...(typeof code === 'string' ? { code } : {}) };
  }
  return { name: 'Error', message: String(e) };
}

/** An error from the worker, keeping the original class name in `name`. */
export class RemoteError extends Error {
  readonly code: string | undefined;
  readonly keptModel: string | undefined;
  constructor(w: WireError) {
    super(w.message);
    this.name = w.name;
    this.code = w.code;
    this.keptModel = w.keptModel;
  }
}
