/**
 * The engine's public interface: what the CLI calls in-process and what the browser's worker
 * client exposes to the UI. All values are plain, structured-clone-able data, so the same types
 * cross the worker boundary unchanged. Names follow PEFT / Hugging Face (r, lora_alpha,
 * lora_dropout, target_modules, use_rslora) so a parameter keeps its name from the form to
 * adapter_config.json.
 */

import type { FrozenWeightsOptions, ModelQuantization } from '../model/gpu-model';
import type {
  DatasetFormat,
  DatasetIssue,
  DatasetProvisional,
  DatasetSummary,
  ExamplePreview,
} from '../train/data/types';
import type { LoraSettings } from '../lora/config';
import type { ColumnMapping } from '../train/data/mapping';
import type { SelfTestCheck, SelfTestReport } from '../selftest';
import type { TrainProgress, TrainResult, TrainSettings, TrainStage } from '../train/types';
import type { PeftFiles } from '../lora/peft';
import type { ChatMessage, PromptMode } from '../generate/chat';
import type { SamplingDefaults } from '../generate/sampling';

// Types owned by the layers below, part of this interface too.
export type {
  ChatMessage,
  ColumnMapping,
  PromptMode,
  SamplingDefaults,
  DatasetFormat,
  DatasetIssue,
  DatasetProvisional,
  DatasetSummary,
  ExamplePreview,
  LoraSettings,
  PeftFiles,
  SelfTestCheck,
  SelfTestReport,
  TrainSettings,
  TrainProgress,
  TrainResult,
  TrainStage,
};

/**
 * How the frozen base weights are held on the GPU: as stored (16-bit), or `quantize: 'nf4'` (QLoRA:
 * every linear weight in 4-bit NF4, quantized at load exactly as bitsandbytes does; double
 * quantization of the absmax values on unless `doubleQuant: false`).
 */
export type FrozenWeightsSettings = FrozenWeightsOptions;
export type { ModelQuantization };

export interface ModelInfo {
  /** Hub id or folder name. */
  id: string;
  modelType: string;
  /** The weight layout family (src/model/families): 'llama', 'gpt2', 'gemma2', ... */
  family: string;
  parameters: number;
  weightBytes: number;
  dtype: string;
  hiddenSize: number;
  numLayers: number;
  vocabSize: number;
  maxPositions: number;
  /** Distinct linear module names, in model order (the LoRA target choices). */
  linearModules: string[];
  /** PEFT's default targets for this model_type. */
  defaultTargets: string[];
  hasChatTemplate: boolean;
  eosTokenIds: number[];
  /** The sampling generation_config.json asks for (transformers' defaults where it says nothing). */
  generationDefaults: SamplingDefaults;
  /** The 4-bit state of the frozen weights, null when they are as stored. */
  quantization: ModelQuantization | null;
}

/** How a dataset is read: its format, column mapping (Hub datasets, Parquet), and the split and length settings. */
export interface DatasetLoadOptions {
  format?: DatasetFormat | 'auto';
  /** Which columns hold the records (src/train/data/mapping.ts); null or absent: the field names decide. */
  mapping?: ColumnMapping | null;
  maxLen: number;
  valFraction: number;
  seed: number;
  previewCount?: number;
}

/** How far reading a dataset is: the index pass over its bytes, then tokenizing (bytes or records). */
export interface DatasetProgress {
  phase: 'scan' | 'tokenize';
  done: number;
  total: number;
  /** While the index pass runs over a large file: what it has found so far (sent every ~250 ms). */
  provisional?: DatasetProvisional;
}

export interface SamplingSettings {
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  /** transformers' repetition_penalty (1 = none); applies in greedy decoding too. */
  repetitionPenalty: number;
  /** Wrap the prompt in the model's chat template (instruct models). */
  chat: boolean;
}

/** One reply in a conversation (the Chat view, `tabtune chat`): src/generate/chat.ts renders it. */
export interface ChatRequest {
  /** The conversation so far, system prompt first (if any), ending with the user's message. */
  messages: ChatMessage[];
  /** 'chat': the model's chat template; 'completion': the messages' text run together and continued. */
  mode: PromptMode;
  /** `chat` is ignored (the mode says it). */
  sampling: SamplingSettings;
}

export interface GenerationResult {
  text: string;
  /** New tokens made (the EOS included when it ended the reply). */
  tokens: number;
  /** Tokens the model read first (the rendered conversation). */
  promptTokens: number;
  /** Of those, how many came from the previous reply's KV cache (the conversation so far), not read again. */
  reusedTokens?: number;
  /** eos: the model ended it; length: max new tokens; stopped: Stop; context: the model's context is full. */
  stopReason: 'eos' | 'length' | 'stopped' | 'context';
}

/** Where model files come from. `dir` is Node only; `files` is a dropped folder in the browser. */
export type ModelSourceSpec =
  /** token: the user's Hugging Face access token (gated / private repos), sent to the Hub only. */
  | { kind: 'hub'; id: string; revision?: string; token?: string }
  | { kind: 'url'; id: string; baseUrl: string }
  | { kind: 'files'; id: string; files: File[] }
  | { kind: 'dir'; id: string; path: string };

export interface LoadProgress {
  file: string;
  loaded: number;
  total: number | null;
  phase: 'download' | 'upload' | 'tokenizer';
}

export interface GpuSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  runtime: 'node' | 'browser';
  f16: boolean;
  subgroups: boolean;
  /** Subgroup lanes the kernels use (0: none; see src/gpu/subgroups.ts). */
  subgroupLanes: number;
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  bytesInUse: number;
  /**
   * The attention kernel set each AttentionMode runs on this device, and why in a sentence (auto:
   * the device class; 'direct' where the device lacks what it needs: the tiled set, saying so).
   */
  attention: Record<AttentionMode, { set: 'tiled' | 'direct'; why: string }>;
}

export interface MemoryEstimate {
  trainableParams: number;
  totalParams: number;
  /** 100 * trainable / total, like PEFT's print_trainable_parameters. */
  trainablePercent: number;
  weightsBytes: number;
  loraBytes: number;
  activationBytes: number;
  totalBytes: number;
  /**
   * The weights and total with each frozen-weight choice this model allows (16-bit as stored,
   * quantize: null, unless it is a 4-bit checkpoint; and 4-bit NF4), for the Settings choice.
   */
  frozenChoices: { quantize: 'nf4' | null; weightsBytes: number; totalBytes: number }[];
  /** Why training cannot run on this adapter, if it cannot (a tensor over the binding limit...). */
  blocker: string | null;
}

/**
 * An adapter handed to evaluate/generate: `key` lets the engine keep it on the GPU between calls
 * (src/engine/adapter-cache.ts). The same key with other files loads them afresh when `version`,
 * adapter_config.json or a file's size differ; the weights are not compared, so a caller whose files
 * can change under a key at the same size gives a `version` that changes with them (the CLI: the
 * files' modification times). The app's library needs none: a stored adapter's files never change
 * under its id.
 */
export interface AdapterRef {
  key: string;
  files: PeftFiles;
  version?: string;
}

/** How an adapter is merged into the loaded model (src/lora/merge.ts). */
export interface MergeSettings {
  /** The merged weights' dtype; absent = each tensor keeps the model's own. */
  dtype?: 'bf16' | 'f16' | 'f32';
}

/** What a recipe (src/recipe) adds to the run's settings: the adapter to start from, 4-bit weights. */
export interface RecipeOptions {
  initFrom?: PeftFiles;
  /**
   * 4-bit NF4 frozen weights (bitsandbytes' QLoRA; `stored`: a ...-bnb-4bit checkpoint, 4-bit as
   * stored), or null for 16-bit. Default: as the loaded model holds them.
   */
  quantize?: { doubleQuant: boolean; stored?: boolean } | null;
}

/**
 * Where the matmul kernels tuned for a device are kept between runs (src/kernels/matmul/tune.ts):
 * { shape class: member } per device key. A store that cannot read or write returns null / drops
 * the write: the next run tunes again.
 */
export interface KernelChoiceStore {
  load(deviceKey: string): Promise<Record<string, string> | null>;
  save(deviceKey: string, choices: Record<string, string>): Promise<void>;
  /** Every device's saved choices (Diagnostics); absent: the store cannot list. */
  list?(): Promise<SavedKernelChoices[]>;
  /** Drops one device's choices (its next run tunes again). */
  forget?(deviceKey: string): Promise<void>;
}

/** One device's saved kernel choices, as Diagnostics lists them. */
export interface SavedKernelChoices {
  deviceKey: string;
  /** { shape class: member } (src/kernels/matmul/variants.ts shapeClass). */
  choices: Record<string, string>;
  /** When they were saved (ms since the epoch; 0 when the store does not know). */
  savedAt: number;
  /** The key of the device the engine runs on now. */
  current?: boolean;
}

/**
 * Which matmul kernels the engine runs: 'auto' (tuned per device and shape class, the choices kept
 * in the engine's KernelChoiceStore), 'off' (the baseline kernels, no tuning), or one member of the
 * family pinned wherever it can serve (as TABTUNE_KERNELS=<member> in the CLI).
 */
export type KernelMode = 'auto' | 'off' | { pin: string };

/**
 * Which attention kernels the engine runs: 'auto' (by device class: the direct subgroup kernels on
 * CPU drivers with subgroups, the workgroup-memory tiles elsewhere), or one set pinned (as
 * TABTUNE_ATTENTION=tiled|direct in the CLI; src/kernels/attention-variants.ts).
 */
export type AttentionMode = 'auto' | 'tiled' | 'direct';

export interface TrainHooks {
  onProgress?: (p: TrainProgress) => void;
  /** Called before the base model's validation loss is measured, and before the first step. */
  onStage?: (s: TrainStage) => void;
  /** Called with a checkpoint blob (src/train/checkpoint.ts) every checkpointEvery steps and at the end. */
  onCheckpoint?: (blob: Uint8Array, step: number) => void | Promise<void>;
  /** Resume from this checkpoint blob. */
  resumeFrom?: Uint8Array;
  /** Start from this adapter's weights (its r, alpha and targets replace the LoRA settings). */
  initFrom?: PeftFiles;
  /**
   * LoftQ: where the caller saves the quantized backbone the adapter needs (written as the adapter's
   * base_model_name_or_path, as PEFT's LoftQ example does); absent = the model's id.
   */
  loftqBaseDir?: string;
}

/**
 * LoftQ's quantized backbone (init_lora_weights 'loftq'): checkpoint key -> the weight's values
 * (float32, as stored), to be written over the base model's (src/lora/merge.ts writeReplacedWeights).
 */
export type QuantizedBase = Map<string, Float32Array>;

/** What a finished training run returns: its summary, the PEFT files, and LoftQ's quantized base. */
export type TrainDone = TrainResult & { adapter: PeftFiles; quantizedBase?: QuantizedBase };

/**
 * What the UI and the CLI drive. `Engine` (src/engine/engine.ts) implements it in-process;
 * the worker client (src/worker/client.ts) implements it by messages to the worker.
 */
export interface EngineApi {
  gpuInfo(): Promise<GpuSummary>;
  /** Every kernel against its float64 reference on this device (the Diagnostics view); `onCheck` after each. */
  selfTest(onCheck?: (check: SelfTestCheck) => void): Promise<SelfTestReport>;
  loadModel(
    source: ModelSourceSpec,
    onProgress?: (p: LoadProgress) => void,
    frozen?: FrozenWeightsSettings,
  ): Promise<ModelInfo>;
  /** `content`: the file's text, or the file itself (a Blob/File, read by range, never whole). */
  loadDataset(
    fileName: string,
    content: string | Blob,
    opts: DatasetLoadOptions,
    onProgress?: (p: DatasetProgress) => void,
  ): Promise<DatasetSummary>;
  estimate(lora: LoraSettings, train: TrainSettings): Promise<MemoryEstimate>;
  train(lora: LoraSettings, train: TrainSettings, hooks?: TrainHooks): Promise<TrainDone>;
  /**
   * The run these settings describe, on the loaded model and dataset, as a zip of a transformers +
   * PEFT + TRL project (src/recipe/recipe.ts) for one or many GPUs.
   */
  exportRecipe(lora: LoraSettings, train: TrainSettings, opts?: RecipeOptions): Promise<Uint8Array>;
  /**
   * The loaded model with `adapter` folded in (W + scale·B·A), as a zip of a Hugging Face model
   * folder (config.json, model.safetensors, tokenizer files, generation_config.json), streamed.
   */
  mergeAdapter(
    adapter: PeftFiles,
    settings?: MergeSettings,
    onProgress?: (done: number, total: number) => void,
  ): Promise<{ zip: Blob; files: string[] }>;
  pause(): void;
  resume(): void;
  stop(): void;
  /** Which matmul kernels run from the next call on (see KernelMode); a pin of an unknown member throws. */
  setKernelMode(mode: KernelMode): Promise<void>;
  /** Which attention kernels run from the next call on (see AttentionMode). */
  setAttentionMode(mode: AttentionMode): Promise<void>;
  /** The kernel choices saved for every device, this device's marked `current`. */
  kernelChoices(): Promise<SavedKernelChoices[]>;
  /** Forgets one device's saved choices (this device's: its next run tunes again). */
  forgetKernelChoices(deviceKey: string): Promise<void>;
  /**
   * Mean loss per counted token of the base model (adapter null) or an adapter, over the loaded
   * dataset's validation split (default) or all of its records.
   */
  evaluate(adapter: AdapterRef | null, split?: 'validation' | 'all'): Promise<{ loss: number; tokens: number }>;
  generate(
    prompt: string,
    adapter: AdapterRef | null,
    sampling: SamplingSettings,
    onText?: (delta: string) => void,
  ): Promise<GenerationResult>;
  /** The next reply of a conversation from the base model (adapter null) or an adapter, streamed to `onText`. */
  chat(request: ChatRequest, adapter: AdapterRef | null, onText?: (delta: string) => void): Promise<GenerationResult>;
  /** Ends the generation in progress (generate or chat) after the current token; it returns what it made. */
  stopGeneration(): void;
}
