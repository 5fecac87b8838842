/**
 * The in-process engine: owns one Gpu, one loaded base model (weights on the GPU, tokenizer), the
 * loaded dataset, and adapters kept on the GPU for evaluation and generation. The CLI calls it
 * directly; in the browser the worker (src/worker/worker.ts) wraps it and the UI talks to it through
 * the worker client, which implements the same EngineApi.
 *
 * A little over 500 lines because it is the one implementation of EngineApi (about 30 methods): each
 * method checks the engine's state and delegates, the work itself lives in the files imported
 * below (loaded-model, methods, generation, device, memory, merge-zip, export-recipe, train/run).
 */

import type { Gpu } from '../gpu/context';
import { conversationIds } from '../generate/chat';
import { type LoraConfig, validateLoraConfig } from '../lora/config';
import { gpuAdapter } from '../lora/from-weights';
import type { GpuLora } from '../lora/gpu-lora';
import { exportOther, otherConfig } from '../lora/other';
import { exportPeft } from '../lora/peft';
import { importPeft } from '../lora/peft-import';
import { loraConfigFromSettings } from '../lora/targets';
import { positionLimitText } from '../model/config';
import { GpuModel } from '../model/gpu-model';
import { loadModelFiles } from '../model/load';
import { hasConv1dWeights, unusedModulePrefixes } from '../model/registry';
import { createTokenizer } from '../model/tokenizer';
import { decodeCheckpoint } from '../train/checkpoint';
import { type PoolWorker, TokenizerPool } from '../train/data/pool';
import { PreparedDataset } from '../train/data/prepared';
import { blobSource, textSource } from '../train/data/source';
import type { RecordIndex } from '../train/data/record-index';
import type { TokenStore } from '../train/data/tokens';
import { EvalRunnerKeeper } from '../train/evaluate';
import { RunControl, trainRun } from '../train/run';
import { frozenFlags, frozenSettings, frozenText, sameFrozen } from './frozen';
import { loftqToZip, mergeToZip } from './merge-zip';
import { BackboneSwitch } from './loftq-backbone';
import { encodeLoftqBackbone } from '../lora/loftq-backbone';
import { otherFilesOnGpu, otherTrainables, startingAdapter } from './methods';
import { KernelTuning, gpuSummary } from './device';
import { recipeZip } from './export-recipe';
import { type LoadedModelState, modelInfoOf, sha256Hex, sourceFor } from './loaded-model';
import { estimateOnModel } from './memory';
import { TextGeneration } from './generation';
import { AdapterCache, adapterIdentity } from './adapter-cache';
import type {
  KernelChoiceStore,
  KernelMode,
  AdapterRef,
  AttentionMode,
  ChatRequest,
  DatasetLoadOptions,
  DatasetProgress,
  DatasetSummary,
  EngineApi,
  FrozenWeightsSettings,
  GenerationResult,
  GpuSummary,
  LoadProgress,
  LoraSettings,
  MemoryEstimate,
  MergeSettings,
  ModelInfo,
  ModelSourceSpec,
  PeftFiles,
  SavedKernelChoices,
  RecipeOptions,
  SamplingSettings,
  SelfTestCheck,
  SelfTestReport,
  TrainDone,
  TrainHooks,
  TrainSettings,
} from './types';

export class EngineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EngineError';
  }
}

interface DatasetState {
  summary: DatasetSummary;
  data: PreparedDataset;
  maxLen: number;
}

export class Engine implements EngineApi {
  private model: LoadedModelState | null = null;
  private dataset: DatasetState | null = null;
  /** Freeing an adapter frees its LoftQ backbone and the evaluation runner's scratch for it. */
  private readonly adapters = new AdapterCache((identity) => {
    this.backbone.forget(identity);
    this.evalRunner.release();
  });
  private readonly backbone = new BackboneSwitch(() => this.generation.forgetContext());
  private readonly generation = new TextGeneration();
  private readonly evalRunner = new EvalRunnerKeeper();
  private readonly control = new RunControl();
  private training = false;
  private tokenStore: TokenStore | null = null;
  private readonly kernels = new KernelTuning();
  /** The last dataset file's index, reused when only the settings change (a large file is not read again). */
  private lastIndex: { key: string; index: RecordIndex } | null = null;
  private tokenizerWorkers: { spawn: () => PoolWorker; count: number } | null = null;

  constructor(readonly gpu: Gpu) {}

  /** Where large datasets' tokens are kept between runs (the worker passes IndexedDB's). */
  setTokenStore(store: TokenStore | null): void {
    this.tokenStore = store;
  }

  /**
   * Workers that tokenize large datasets in parallel (the CLI's worker threads, the app's Web
   * Workers; src/train/data/pool.ts), started when a dataset is first read lazily; count 0: none.
   */
  setTokenizerWorkers(spawn: () => PoolWorker, count: number): void {
    this.tokenizerWorkers = count > 0 ? { spawn, count } : null;
  }

  private tokenizerPool(): TokenizerPool | null {
    const m = this.model;
    const w = this.tokenizerWorkers;
    if (!m || !w) return null;
    m.pool ??= new TokenizerPool(w.spawn, m.tokenizerFiles, w.count);
    return m.pool;
  }

  /**
   * Autotunes the matmul kernels for this GPU, keeping the choices in `store` (IndexedDB in the
   * app, a cache file for the CLI; engine/device.ts). null: no tuning, the baseline kernels.
   */
  setKernelTuning(store: KernelChoiceStore | null): void {
    this.kernels.setStore(store);
  }

  async setKernelMode(mode: KernelMode): Promise<void> {
    this.assertIdle('change the matmul kernels');
    this.kernels.setMode(this.gpu, mode);
  }

  async setAttentionMode(mode: AttentionMode): Promise<void> {
    this.assertIdle('change the attention kernels');
    this.gpu.kernels.attention = mode === 'auto' ? null : mode;
  }

  kernelChoices(): Promise<SavedKernelChoices[]> {
    return this.kernels.list(this.gpu);
  }

  forgetKernelChoices(deviceKey: string): Promise<void> {
    return this.kernels.forget(this.gpu, deviceKey);
  }

  // ------------------------------------------------------------------ device

  async gpuInfo(): Promise<GpuSummary> {
    return gpuSummary(this.gpu);
  }

  async selfTest(onCheck?: (check: SelfTestCheck) => void): Promise<SelfTestReport> {
    this.assertIdle('run the self-test');
    // Loaded on first use: the self-test brings every kernel's float64 reference with it.
    const { runSelfTest } = await import('../selftest');
    return runSelfTest(this.gpu, { onCheck });
  }

  // ------------------------------------------------------------------ model

  async loadModel(
    spec: ModelSourceSpec,
    onProgress?: (p: LoadProgress) => void,
    opts: FrozenWeightsSettings = {},
  ): Promise<ModelInfo> {
    this.assertIdle('load a model');
    const source = await sourceFor(spec);
    const download = (file: string, loadedBytes: number, total: number | null) =>
      onProgress?.({ file, loaded: loadedBytes, total, phase: 'download' });
    const files = await loadModelFiles(source, { onProgress: download });
    onProgress?.({ file: 'tokenizer.json', loaded: 0, total: null, phase: 'tokenizer' });
    const tokenizer = await createTokenizer(files.tokenizerJson, files.tokenizerConfig, files.config);
    const tokenizerKey = await sha256Hex(
      `${JSON.stringify(files.tokenizerJson)}\n${JSON.stringify(files.tokenizerConfig)}`,
    );
    // The weights stream straight onto the GPU. The model in use is kept until the new one is
    // complete, so a failed download or a bad file leaves it usable; reloading the same model
    // (e.g. with other frozen-weight settings) lets it go first, as the two would hold twice the memory.
    if (this.model?.id === spec.id) this.unloadModel();
    const gpuModel = await GpuModel.stream(
      this.gpu,
      source,
      files.config,
      { quantize: opts.quantize ?? null, doubleQuant: opts.doubleQuant ?? true, onProgress: download },
      (done, total) => onProgress?.({ file: 'weights', loaded: done, total, phase: 'upload' }),
    );
    const bad = await gpuModel.nonFiniteError();
    if (bad) {
      gpuModel.dispose();
      throw bad;
    }
    this.unloadModel();
    this.model = {
      id: spec.id,
      config: gpuModel.config,
      tokenizer,
      tokenizerKey,
      tokenizerFiles: {
        tokenizerJson: files.tokenizerJson,
        tokenizerConfig: files.tokenizerConfig,
        config: files.config,
      },
      generationConfig: files.generationConfig,
      pool: null,
      gpuModel,
      totalParams: gpuModel.params,
      dtype: gpuModel.dtypes.join('/'),
      source,
    };
    return this.modelInfo();
  }

  modelInfo(): ModelInfo {
    return modelInfoOf(this.requireModel());
  }

  private unloadModel(): void {
    this.adapters.clear();
    this.backbone.forget(null);
    this.generation.dispose();
    this.evalRunner.release();
    this.model?.gpuModel.dispose();
    this.model?.pool?.close();
    this.model = null;
    this.dataset = null;
  }

  private requireModel(): LoadedModelState {
    if (!this.model) throw new EngineError('No model is loaded: load a model first.');
    return this.model;
  }

  private assertIdle(what: string): void {
    if (this.training) throw new EngineError(`Cannot ${what} while training runs; stop the run first.`);
  }

  // ------------------------------------------------------------------ data

  async loadDataset(
    fileName: string,
    content: string | Blob,
    opts: DatasetLoadOptions,
    onProgress?: (p: DatasetProgress) => void,
  ): Promise<DatasetSummary> {
    const m = this.requireModel();
    const maxPos = m.config.maxPositions;
    if (maxPos > 0 && opts.maxLen > maxPos) {
      // Past the position table (GPT-2's learned positions) there is nothing to read; past
      // max_position_embeddings no model was trained.
      throw new EngineError(
        `Max sequence length ${opts.maxLen} is longer than ${m.id} allows (${positionLimitText(m.config)}).`,
      );
    }
    const source = typeof content === 'string' ? textSource(content) : blobSource(content);
    // The same file (by content, or a File by name, size and modification time), name and format.
    const identity =
      typeof content === 'string'
        ? `text:${content}`
        : typeof File !== 'undefined' && content instanceof File
          ? `file:${content.name}:${content.size}:${content.lastModified}`
          : null;
    const indexKey =
      identity && JSON.stringify([fileName, opts.format ?? 'auto', opts.mapping ?? null, !!this.tokenStore, identity]);
    let data: PreparedDataset;
    try {
      data = await PreparedDataset.open(source, fileName, m.tokenizer, {
        index: indexKey && this.lastIndex?.key === indexKey ? this.lastIndex.index : undefined,
        format: opts.format,
        mapping: opts.mapping,
        maxLen: opts.maxLen,
        valFraction: opts.valFraction,
        seed: opts.seed,
        previewCount: opts.previewCount,
        store: this.tokenStore ? { tokens: this.tokenStore, tokenizerKey: m.tokenizerKey } : undefined,
        workers: () => this.tokenizerPool(),
        onProgress: onProgress && ((phase, done, total) => onProgress({ phase, done, total })),
        onProvisional:
          onProgress &&
          ((provisional) =>
            onProgress({ phase: 'scan', done: provisional.bytesRead, total: provisional.bytesTotal, provisional })),
      });
    } catch (e) {
      if ((e as Error).name === 'DatasetError') throw new EngineError((e as Error).message);
      throw e;
    }
    this.lastIndex = indexKey ? { key: indexKey, index: data.index } : null;
    this.dataset = { summary: data.summary, data, maxLen: opts.maxLen };
    return data.summary;
  }

  private requireDataset(): DatasetState {
    if (!this.dataset) throw new EngineError('No dataset is loaded: load a dataset first.');
    return this.dataset;
  }

  // ------------------------------------------------------------------ LoRA config

  private loraConfigFor(lora: LoraSettings): LoraConfig {
    const m = this.requireModel();
    const cfg = loraConfigFromSettings(lora, m.config.modelType, { fanInFanOut: hasConv1dWeights(m.config) });
    validateLoraConfig(cfg);
    return cfg;
  }

  async estimate(lora: LoraSettings, train: TrainSettings): Promise<MemoryEstimate> {
    const m = this.requireModel();
    const maxBinding = this.gpu.limits.maxStorageBufferBindingSize;
    const other = otherTrainables(m, lora);
    return estimateOnModel(m.gpuModel, m.totalParams, other ?? this.loraConfigFor(lora), train, maxBinding);
  }

  // ------------------------------------------------------------------ training

  pause(): void {
    this.control.pause();
  }

  resume(): void {
    this.control.resume();
  }

  stop(): void {
    this.control.stop();
  }

  async train(lora: LoraSettings, train: TrainSettings, hooks: TrainHooks = {}): Promise<TrainDone> {
    this.assertIdle('start another run');
    const m = this.requireModel();
    const d = this.requireDataset();
    // PiSSA/OLoRA/LoftQ rewrite frozen weights while a run lasts: generation's KV cache starts over after.
    this.backbone.original();
    this.generation.forgetContext();
    this.evalRunner.release(); // its activations make room for the run's
    const frozen = frozenSettings(m.gpuModel.quantization);
    const resume = hooks.resumeFrom ? decodeCheckpoint(hooks.resumeFrom) : null;
    if (resume) {
      const run = resume.meta.run;
      if (run.model !== m.id) {
        throw new EngineError(`The checkpoint was made with model "${run.model}", but "${m.id}" is loaded.`);
      }
      if (run.frozen && !sameFrozen(run.frozen, frozen)) {
        throw new EngineError(
          `The checkpoint was trained on ${frozenText(run.frozen)} frozen weights, but the model is loaded with ` +
            `${frozenText(frozen)} ones; load it the same way to resume (CLI: ${frozenFlags(run.frozen)}).`,
        );
      }
    }
    const { config, modules, other } = await startingAdapter(this.gpu, m, lora, train, resume, hooks.initFrom, () =>
      this.loraConfigFor(lora),
    );
    if (other && other.method !== 'ia3' && train.packing) {
      throw new EngineError(`${other.method} needs one example per row: turn packing off.`);
    }
    this.training = true;
    try {
      const {
        modules: _trained,
        other: trainedOther,
        saved,
        ...result
      } = await trainRun({
        gpu: this.gpu,
        model: m.gpuModel,
        run: { model: m.id, lora: config, train, frozen, ...(other ? { adapter: otherConfig(other) } : {}) },
        padId: m.tokenizer.padTokenId ?? m.tokenizer.eosTokenIds[0] ?? 0,
        data: d.data,
        maxLen: d.maxLen,
        modules,
        other,
        resume,
        control: this.control,
        prepare: () => this.kernels.load(this.gpu),
        afterStep: async (stage, last) => void (await this.kernels.tune(this.gpu, stage, last)),
        onProgress: hooks.onProgress,
        onStage: hooks.onStage,
        onCheckpoint: hooks.onCheckpoint,
      });
      const fanInFanOut = hasConv1dWeights(m.config);
      const baseModel = saved.quantizedBase ? (hooks.loftqBaseDir ?? m.id) : m.id;
      const adapter: PeftFiles = trainedOther
        ? exportOther(trainedOther, m.id, fanInFanOut)
        : exportPeft({ config: saved.config, baseModel, modules: saved.modules, fanInFanOut });
      const loftqIter = saved.config.loftq_config?.loftq_iter ?? 1;
      if (saved.backbone)
        adapter.loftqBackbone = encodeLoftqBackbone({ baseModel: m.id, loftqIter, modules: saved.backbone });
      return { ...result, adapter, quantizedBase: saved.quantizedBase };
    } finally {
      this.training = false;
    }
  }

  // ------------------------------------------------------------------ merge

  async mergeAdapter(
    adapter: PeftFiles,
    settings: MergeSettings = {},
    onProgress?: (done: number, total: number) => void,
  ): Promise<{ zip: Blob; files: string[] }> {
    const m = this.requireModel();
    const name = (m.id.split('/').pop() ?? 'model').replace(/[^\w.-]+/g, '_');
    const { loftqBackbone } = adapter;
    if (loftqBackbone) return loftqToZip(m.source, { ...adapter, loftqBackbone }, `${name}-loftq`, onProgress);
    const folder = `${name}-merged`;
    return mergeToZip(m.source, adapter, folder, { dtype: settings.dtype, onProgress });
  }

  // ------------------------------------------------------------------ recipe

  async exportRecipe(lora: LoraSettings, train: TrainSettings, opts: RecipeOptions = {}): Promise<Uint8Array> {
    this.assertIdle('export a recipe');
    const m = this.requireModel();
    const d = this.requireDataset();
    if (d.maxLen !== train.maxLen) {
      throw new EngineError(
        `The dataset was tokenized for max length ${d.maxLen}, the settings say ${train.maxLen}: load it again first.`,
      );
    }
    return recipeZip(m, d.summary, d.data, lora, train, opts);
  }

  // ------------------------------------------------------------------ adapters

  /** `ref`'s adapter on the GPU (kept between calls), and its LoftQ backbone in place; inside adapters.using. */
  private async adapterOnGpu(ref: AdapterRef | null): Promise<GpuLora | null> {
    const m = this.requireModel();
    const lora = ref
      ? await this.adapters.get(ref, async () => {
          const other = otherFilesOnGpu(this.gpu, m, ref.files);
          if (other) return other;
          const imported = importPeft(ref.files, m.gpuModel.linears, {
            baseModel: m.id,
            unusedModules: unusedModulePrefixes(m.config),
          });
          return gpuAdapter(this.gpu, m.gpuModel, imported.config, imported.modules);
        })
      : null;
    await this.backbone.use(this.gpu, m.gpuModel, ref && { key: adapterIdentity(ref), files: ref.files });
    return lora;
  }

  /**
   * Frees an adapter kept on the GPU for evaluation/generation: at once, or, while an evaluation
   * or a generation runs (the worker forgets out of turn), when it ends. A later call loads it afresh.
   */
  forgetAdapter(key: string): void {
    this.adapters.forget(key);
  }

  // ------------------------------------------------------------------ eval / generate

  async evaluate(
    adapter: AdapterRef | null,
    split: 'validation' | 'all' = 'validation',
  ): Promise<{ loss: number; tokens: number }> {
    this.assertIdle('evaluate');
    const m = this.requireModel();
    const d = this.requireDataset();
    if (split === 'validation' && d.data.val.length === 0) {
      throw new EngineError('The dataset has no validation records: set a validation fraction above 0.');
    }
    const shape = { batchSize: 4, maxLen: d.maxLen };
    // Batches are made (and records tokenized) as they are consumed.
    const { sum, count } = await this.adapters.using(async () => {
      const lora = await this.adapterOnGpu(adapter);
      const batches = d.data.evalBatches(split, shape);
      return this.evalRunner.loss(this.gpu, m.gpuModel, batches, d.data.maxTokens(shape, split), lora, shape.batchSize);
    });
    const loss = count > 0 ? sum / count : NaN;
    if (count > 0 && !Number.isFinite(loss)) {
      throw new EngineError(
        `The evaluation's loss is ${loss}: ${adapter ? 'the model with this adapter' : 'the model'} gives non-finite logits ` +
          `for these data${adapter ? ' (check the adapter: its weights or lora_alpha may be far too large)' : ''}.`,
      );
    }
    return { loss, tokens: count };
  }

  async generate(
    prompt: string,
    adapter: AdapterRef | null,
    s: SamplingSettings,
    onText?: (delta: string) => void,
  ): Promise<GenerationResult> {
    return this.chat(
      { messages: [{ role: 'user', content: prompt }], mode: s.chat ? 'chat' : 'completion', sampling: s },
      adapter,
      onText,
    );
  }

  async chat(
    req: ChatRequest,
    adapter: AdapterRef | null,
    onText?: (delta: string) => void,
  ): Promise<GenerationResult> {
    this.assertIdle('generate');
    const m = this.requireModel();
    // The prompt and the adapter are made ready under this call's Stop (TextGeneration.reply).
    // A LoftQ adapter runs on its quantized backbone (src/engine/loftq-backbone.ts).
    return this.adapters.using(() =>
      this.generation.reply(this.gpu, m, req.sampling, this.modelInfo().eosTokenIds, onText, async () => {
        const lora = await this.adapterOnGpu(adapter);
        return { ids: conversationIds(m.tokenizer, req.messages, req.mode, m.id), lora };
      }),
    );
  }

  stopGeneration(): void {
    this.generation.stop();
  }

  /** Frees the model, adapters and dataset but keeps the device (tests share one). */
  unload(): void {
    this.unloadModel();
  }

  dispose(): void {
    this.unloadModel();
    this.gpu.destroy();
  }
}
