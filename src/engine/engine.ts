/**
 * The in-process engine: owns one Gpu, one loaded base model (weights on the GPU, tokenizer), the
 * loaded dataset, and adapters kept on the GPU for evaluation and generation. The CLI calls it
 * directly; in the browser the worker (src/worker/worker.ts) wraps it and the UI talks to it through
 * the worker client, which implements the same EngineApi.
 */

import type { Gpu } from '../gpu/context';
import { Generator } from '../generate/generator';
import { type LoraConfig, loraRank, loraScaleInfo, validateLoraConfig } from '../lora/config';
import { GpuLora, type LoraModuleArrays } from '../lora/gpu-lora';
import { initLoraModules } from '../lora/init';
import { exportPeft, importPeft } from '../lora/peft';
import { defaultTargetModules, distinctNames, loraConfigFromSettings, resolveTargets } from '../lora/targets';
import { type ModelConfig, positionLimitText } from '../model/config';
import { applyChoices, currentChoices, deviceKey, tuneMatmul, untunedClasses } from '../kernels/matmul/tune';
import { GpuModel } from '../model/gpu-model';
import { loadModelFiles } from '../model/load';
import { hasConv1dWeights, unusedModulePrefixes } from '../model/registry';
import { ModelRunner } from '../model/runner';
import type { ModelSource } from '../model/source';
import { type TextTokenizer, createTokenizer } from '../model/tokenizer';
import { type Batch, BatchSchedule, type DataPosition } from '../train/batch';
import { CHECKPOINT_VERSION, decodeCheckpoint, encodeCheckpoint } from '../train/checkpoint';
import { type PoolWorker, type TokenizerFiles, TokenizerPool } from '../train/data/pool';
import { PreparedDataset } from '../train/data/prepared';
import { blobSource, textSource } from '../train/data/source';
import type { RecordIndex } from '../train/data/record-index';
import type { TokenStore } from '../train/data/tokens';
import { Trainer } from '../train/trainer';
import { frozenFlags, frozenSettings, frozenText, recipeQuantize, sameFrozen } from './frozen';
import { mergeToZip } from './merge-zip';
import { type FrozenFormat, frozenWeightBytes, trainingMemory } from './memory';
import type {
  KernelChoiceStore,
  AdapterRef,
  DatasetFormat,
  DatasetProgress,
  DatasetSummary,
  EngineApi,
  FrozenWeightsSettings,
  GpuSummary,
  LoadProgress,
  LoraSettings,
  MemoryEstimate,
  MergeSettings,
  ModelInfo,
  ModelSourceSpec,
  PeftFiles,
  RecipeOptions,
  SamplingSettings,
  SelfTestCheck,
  SelfTestReport,
  TrainHooks,
  TrainProgress,
  TrainStage,
  TrainResult,
  TrainSettings,
} from './types';

/** Steps whose records are tokenized ahead of the one running. */
const PREFETCH_STEPS = 4;

async function sha256Hex(text: string): Promise<string> {
  const h = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
  return Array.from(h, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

export class EngineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EngineError';
  }
}

/** A run whose loss or weights stopped being finite: what happened, when, and what to change. */
function diverged(what: string, step: number, lr: number): EngineError {
  return new EngineError(
    `Training diverged at step ${step}: ${what}. Nothing from this step on was saved (the last checkpoint, if any, ` +
      `is from before it). Start again with a lower learning rate (now ${lr}) and max grad norm on (e.g. 1).`,
  );
}

/** The adapter's arrays, or a divergence error when any value is NaN or infinite. */
function finiteModules<T extends { path: string; a: Float32Array; b: Float32Array }>(
  modules: T[],
  step: number,
  lr: number,
): T[] {
  for (const m of modules) {
    for (const [name, arr] of [
      ['lora_A', m.a],
      ['lora_B', m.b],
    ] as const) {
      for (let i = 0; i < arr.length; i++) {
        if (!Number.isFinite(arr[i]!)) throw diverged(`${m.path}.${name} holds ${arr[i]}`, step, lr);
      }
    }
  }
  return modules;
}

/** LoRA weights above this size mean the run went wrong (A starts near 1/sqrt(in), B at 0). */
export const RUNAWAY_WEIGHT = 100;

/** What looks wrong with a finished run: weights that ran away, validation worse than the base model. */
function runWarnings(
  modules: { path: string; a: Float32Array; b: Float32Array }[],
  train: TrainSettings,
  finalVal: number | null,
  baseVal: number | null,
): string[] {
  const out: string[] = [];
  let max = 0;
  let where = '';
  for (const m of modules) {
    for (const [name, arr] of [
      ['lora_A', m.a],
      ['lora_B', m.b],
    ] as const) {
      for (let i = 0; i < arr.length; i++) {
        const v = Math.abs(arr[i]!);
        if (v > max) {
          max = v;
          where = `${m.path}.${name}`;
        }
      }
    }
  }
  if (max > RUNAWAY_WEIGHT) {
    out.push(
      `The adapter's weights ran away: ${where} holds ${max.toPrecision(3)} (trained LoRA weights are usually below 1). ` +
        `The learning rate (${train.lr}) is probably far too high${train.maxGradNorm > 0 ? '' : ' and gradient clipping is off'}; ` +
        `its outputs are likely garbage. Train again with a lower learning rate${train.maxGradNorm > 0 ? '' : ' and max grad norm 1'}.`,
    );
  }
  if (finalVal !== null && baseVal !== null && finalVal > baseVal) {
    out.push(
      `The final validation loss (${finalVal.toFixed(4)}) is above the base model's (${baseVal.toFixed(4)}): on held-out ` +
        'data the adapter makes the model worse (overfitting, or a learning rate too high). Try fewer steps or a lower learning rate.',
    );
  }
  return out;
}

interface LoadedModelState {
  id: string;
  config: ModelConfig;
  tokenizer: TextTokenizer;
  /** SHA-256 of the tokenizer's files (what names its tokenized datasets in a TokenStore). */
  tokenizerKey: string;
  /** What a tokenizing worker loads its copy of the tokenizer from. */
  tokenizerFiles: TokenizerFiles;
  /** Workers tokenizing large datasets with this tokenizer, once one is read lazily. */
  pool: TokenizerPool | null;
  gpuModel: GpuModel;
  totalParams: number;
  dtype: string;
  /** Where it was read from (merging reads its files again). */
  source: ModelSource;
}

interface DatasetState {
  summary: DatasetSummary;
  data: PreparedDataset;
  maxLen: number;
}

/** Builds a ModelSource for a spec. `dir` loads Node's fs lazily so browser bundles stay clean. */
async function sourceFor(spec: ModelSourceSpec): Promise<ModelSource> {
  const m = await import('../model/source');
  switch (spec.kind) {
    case 'dir':
      return new m.DirSource(spec.path);
    case 'hub':
      return m.UrlSource.hub(spec.id, spec.revision ?? 'main', { token: spec.token });
    case 'url':
      return new m.UrlSource(spec.baseUrl, spec.id);
    case 'files':
      return new m.FileListSource(spec.files, spec.id);
  }
}

export class Engine implements EngineApi {
  private model: LoadedModelState | null = null;
  private dataset: DatasetState | null = null;
  private readonly adapters = new Map<string, GpuLora>();
  private generator: Generator | null = null;
  private paused = false;
  private resumeWaiters: (() => void)[] = [];
  private stopRequested = false;
  private training = false;
  private tokenStore: TokenStore | null = null;
  private kernelStore: KernelChoiceStore | null = null;
  private kernelsLoaded = false;
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
   * app, a cache file for the CLI): a run loads the saved choices, and after its first step times
   * the kernels of every shape it met without one (src/kernels/matmul/tune.ts). null: no tuning,
   * the baseline kernels (or a pinned one).
   */
  setKernelTuning(store: KernelChoiceStore | null): void {
    this.kernelStore = store;
    this.kernelsLoaded = false;
  }

  private async loadKernelChoices(): Promise<void> {
    if (!this.kernelStore || this.kernelsLoaded) return;
    this.kernelsLoaded = true;
    const saved = await this.kernelStore.load(deviceKey(this.gpu)).catch(() => null);
    if (saved) applyChoices(this.gpu, saved);
  }

  private async tuneKernels(onStage: () => void): Promise<void> {
    if (!this.kernelStore || untunedClasses(this.gpu).length === 0) return;
    onStage();
    await tuneMatmul(this.gpu);
    await this.kernelStore.save(deviceKey(this.gpu), currentChoices(this.gpu)).catch(() => undefined);
  }

  // ------------------------------------------------------------------ device

  async gpuInfo(): Promise<GpuSummary> {
    const g = this.gpu;
    return {
      vendor: g.info.vendor,
      architecture: g.info.architecture,
      device: g.info.device,
      description: g.info.description,
      runtime: g.info.runtime,
      f16: g.features.f16,
      subgroups: g.features.subgroups,
      subgroupLanes: g.features.subgroupLanes,
      maxBufferSize: g.limits.maxBufferSize,
      maxStorageBufferBindingSize: g.limits.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: g.limits.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: g.limits.maxComputeInvocationsPerWorkgroup,
      bytesInUse: g.memory().total,
    };
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
      pool: null,
      gpuModel,
      totalParams: gpuModel.params,
      dtype: gpuModel.dtypes.join('/'),
      source,
    };
    return this.modelInfo();
  }

  modelInfo(): ModelInfo {
    const m = this.requireModel();
    const c = m.config;
    let defaults: string[];
    try {
      defaults = defaultTargetModules(c.modelType);
    } catch {
      defaults = distinctNames(m.gpuModel.linears);
    }
    return {
      id: m.id,
      modelType: c.modelType,
      family: c.family,
      parameters: m.totalParams,
      weightBytes: m.gpuModel.weightBytes,
      dtype: m.dtype,
      hiddenSize: c.hiddenSize,
      numLayers: c.numLayers,
      vocabSize: c.vocabSize,
      maxPositions: c.maxPositions,
      linearModules: distinctNames(m.gpuModel.linears),
      defaultTargets: defaults,
      hasChatTemplate: m.tokenizer.hasChatTemplate,
      eosTokenIds: m.tokenizer.eosTokenIds.length ? m.tokenizer.eosTokenIds : c.eosTokenIds,
      quantization: m.gpuModel.quantization,
    };
  }

  private unloadModel(): void {
    for (const l of this.adapters.values()) l.dispose();
    this.adapters.clear();
    this.generator?.dispose();
    this.generator = null;
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
    opts: { format?: DatasetFormat | 'auto'; maxLen: number; valFraction: number; seed: number; previewCount?: number },
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
    const indexKey = identity && JSON.stringify([fileName, opts.format ?? 'auto', !!this.tokenStore, identity]);
    let data: PreparedDataset;
    try {
      data = await PreparedDataset.open(source, fileName, m.tokenizer, {
        index: indexKey && this.lastIndex?.key === indexKey ? this.lastIndex.index : undefined,
        format: opts.format,
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
    const cfg = this.loraConfigFor(lora);
    const targets = resolveTargets(cfg, m.gpuModel.linears);
    const c = m.config;
    let trainable = 0;
    for (const t of targets) trainable += loraRank(cfg, t.path) * (t.inF + t.outF);
    const T = train.batch * train.maxLen;
    const mem = trainingMemory(c, {
      tokens: T,
      trainable,
      rankSum: targets.reduce((n, t) => n + loraRank(cfg, t.path), 0),
      optimizer: train.optimizer,
      checkpoint: train.activationCheckpointing,
    });
    const { loraBytes, activationBytes } = mem;
    // The weights as loaded, and what the other frozen-weight choice would hold (from the shapes).
    const q = m.gpuModel.quantization;
    const storedBytes = m.gpuModel.dtypes.includes('F32') ? 4 : 2;
    const nf4: FrozenFormat = { quantize: 'nf4', doubleQuant: q?.doubleQuant ?? true, storedBytes };
    const choices: MemoryEstimate['frozenChoices'] = [];
    if (q?.source !== 'checkpoint') {
      const w = frozenWeightBytes(c, { quantize: null, storedBytes }).bytes;
      choices.push({ quantize: null, weightsBytes: w, totalBytes: w + mem.totalBytes });
    }
    const w4 = frozenWeightBytes(c, nf4).bytes;
    choices.push({ quantize: 'nf4', weightsBytes: w4, totalBytes: w4 + mem.totalBytes });
    const weightsBytes = m.gpuModel.weightBytes;
    const totalBytes = weightsBytes + mem.totalBytes;
    let blocker: string | null = null;
    const maxBinding = this.gpu.limits.maxStorageBufferBindingSize;
    if (mem.widestActivationBytes > maxBinding) {
      blocker =
        `One activation tensor of ${T} tokens x ${mem.widestActivationFloats} floats needs ` +
        `${mem.widestActivationBytes} bytes, over this GPU's binding limit of ${maxBinding}; lower batch or max length.`;
    }
    return {
      trainableParams: trainable,
      totalParams: m.totalParams,
      trainablePercent: (100 * trainable) / Math.max(1, m.totalParams + trainable),
      weightsBytes,
      loraBytes,
      activationBytes,
      totalBytes,
      frozenChoices: choices,
      blocker,
    };
  }

  // ------------------------------------------------------------------ training

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    const w = this.resumeWaiters;
    this.resumeWaiters = [];
    for (const f of w) f();
  }

  stop(): void {
    this.stopRequested = true;
    this.resume();
  }

  private async pauseGate(): Promise<void> {
    while (this.paused && !this.stopRequested) await new Promise<void>((r) => this.resumeWaiters.push(r));
  }

  async train(
    lora: LoraSettings,
    train: TrainSettings,
    hooks: TrainHooks = {},
  ): Promise<TrainResult & { adapter: PeftFiles }> {
    this.assertIdle('start another run');
    const m = this.requireModel();
    const d = this.requireDataset();
    const fanInFanOut = hasConv1dWeights(m.config);
    let cfg: LoraConfig;
    let arrays: LoraModuleArrays[];
    const resume = hooks.resumeFrom ? decodeCheckpoint(hooks.resumeFrom) : null;
    if (resume) {
      const run = resume.meta.run as { lora: LoraConfig; model: string; frozen?: FrozenWeightsSettings };
      if (run.model !== m.id) {
        throw new EngineError(`The checkpoint was made with model "${run.model}", but "${m.id}" is loaded.`);
      }
      const mine = frozenSettings(m.gpuModel.quantization);
      if (run.frozen && !sameFrozen(run.frozen, mine)) {
        throw new EngineError(
          `The checkpoint was trained on ${frozenText(run.frozen)} frozen weights, but the model is loaded with ` +
            `${frozenText(mine)} ones; load it the same way to resume (CLI: ${frozenFlags(run.frozen)}).`,
        );
      }
      cfg = run.lora;
      arrays = resume.modules;
    } else if (hooks.initFrom) {
      const imported = importPeft(hooks.initFrom, m.gpuModel.linears, {
        baseModel: m.id,
        unusedModules: unusedModulePrefixes(m.config),
      });
      cfg = imported.config;
      arrays = imported.modules;
    } else {
      cfg = this.loraConfigFor(lora);
      const targets = resolveTargets(cfg, m.gpuModel.linears);
      arrays = initLoraModules(cfg, targets, train.seed);
    }
    const data = d.data;
    const plan = new BatchSchedule(data.train.length, {
      batchSize: train.batch,
      gradAccum: train.gradAccum,
      shuffle: train.shuffle,
      seed: train.seed,
      steps: train.steps > 0 ? train.steps : undefined,
      epochs: train.steps > 0 ? undefined : train.epochs,
    });
    const shape = {
      batchSize: train.batch,
      maxLen: d.maxLen,
      padId: m.tokenizer.padTokenId ?? m.tokenizer.eosTokenIds[0] ?? 0,
      packing: train.packing === true,
    };
    // Validation batches (padded with 0, as they always were) are made for the base model's loss.
    let valBatches: Batch[] | null = null;
    const valShape = { batchSize: train.batch, maxLen: d.maxLen };
    const maxTokens = Math.max(data.maxTokens(shape), data.val.length ? data.maxTokens(valShape, 'validation') : 0);
    const gpuLora = GpuLora.fromArrays(this.gpu, m.gpuModel.linears, arrays, (mod) => loraScaleInfo(cfg, mod));
    const trainer = new Trainer(
      this.gpu,
      m.gpuModel,
      gpuLora,
      {
        optimizer: train.optimizer,
        lr: train.lr,
        weightDecay: train.weightDecay,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        maxGradNorm: train.maxGradNorm,
        scheduler: train.scheduler,
        warmup: train.warmup,
        totalSteps: plan.totalSteps,
      },
      { maxTokens, lossEvery: train.lossEvery, seed: train.seed, checkpointActivations: train.activationCheckpointing },
    );
    const history: TrainResult['history'] = [];
    if (resume) {
      plan.restore(resume.meta.dataPosition as DataPosition);
      trainer.setStep(resume.meta.step);
      gpuLora.loadState(resume.optimizerState);
      if (Array.isArray(resume.meta.history)) history.push(...(resume.meta.history as TrainResult['history']));
    }
    let baseValLoss: number | null = null;
    const prior = resume?.meta.elapsedSeconds;
    const priorSeconds = typeof prior === 'number' && Number.isFinite(prior) && prior > 0 ? prior : 0;
    this.training = true;
    this.paused = false;
    this.stopRequested = false;
    const started = performance.now();
    let tokens = 0;
    let pausedMs = 0;
    let lastLoss: number | null = null;
    let lastVal: number | null = null;
    const runInfo = { model: m.id, lora: cfg, train, frozen: frozenSettings(m.gpuModel.quantization) };
    const checkpoint = async () => {
      if (!hooks.onCheckpoint) return;
      const blob = encodeCheckpoint({
        meta: {
          version: CHECKPOINT_VERSION,
          step: trainer.step,
          dataPosition: plan.position,
          run: runInfo,
          history,
          elapsedSeconds: priorSeconds + (performance.now() - started - pausedMs) / 1000,
          savedAt: new Date().toISOString(),
        },
        modules: finiteModules(await gpuLora.toArrays(), trainer.step, train.lr),
        optimizerState: await gpuLora.stateArrays(),
      });
      await hooks.onCheckpoint(blob, trainer.step);
    };
    try {
      const stage = (s: TrainStage['stage']) =>
        hooks.onStage?.({ stage: s, step: trainer.step, totalSteps: plan.totalSteps });
      await this.loadKernelChoices();
      let tuned = false;
      if (data.val.length) {
        stage('baseline');
        // The base model's validation loss, to compare the adapter's with at the end.
        valBatches = await collect(data.evalBatches('validation', valShape));
        const base = await this.lossOver(m, valBatches, Math.max(...valBatches.map((b) => b.B * b.S)), null);
        baseValLoss = base.count > 0 ? base.sum / base.count : null;
      }
      stage('first-step');
      for (;;) {
        if (this.paused) {
          const t0 = performance.now();
          await this.pauseGate();
          pausedMs += performance.now() - t0;
        }
        if (this.stopRequested) break;
        const planned = plan.next();
        if (!planned) break;
        const micro = await data.stepBatches(planned, shape);
        // The records of the next steps are tokenized while this one runs (lazily tokenized data).
        data.prefetch(plan.peek(PREFETCH_STEPS).map((p) => data.train[p]!));
        const last = planned.step >= plan.totalSteps;
        const evalDue = data.val.length > 0 && (last || (train.evalEvery > 0 && planned.step % train.evalEvery === 0));
        const ckptDue = train.checkpointEvery > 0 && planned.step % train.checkpointEvery === 0;
        // A step whose records all turned out unusable (lazily tokenized data) has nothing to run.
        if (micro.length === 0) continue;
        // The loss is also read before a checkpoint, so a diverged run never writes one.
        const res = await trainer.trainStep(micro, last || evalDue || ckptDue);
        // The first step met every shape of the run: tune those this device has no choice for.
        if (!tuned) {
          tuned = true;
          const t0 = performance.now();
          await this.tuneKernels(() => stage('tuning-kernels'));
          pausedMs += performance.now() - t0; // not training time
        }
        tokens += res.tokens;
        if (res.loss !== null && !Number.isFinite(res.loss))
          throw diverged(`the training loss is ${res.loss}`, res.step, train.lr);
        if (res.loss !== null) lastLoss = res.loss;
        let valLoss: number | null = null;
        if (evalDue) {
          valBatches ??= await collect(data.evalBatches('validation', valShape));
          valLoss = (await trainer.evaluate(valBatches)).loss;
          lastVal = valLoss;
        }
        history.push({ step: res.step, loss: res.loss, valLoss, lr: res.lr });
        const elapsed = (performance.now() - started - pausedMs) / 1000;
        const tps = tokens / Math.max(elapsed, 1e-6);
        const done = res.step;
        const remaining = plan.totalSteps - done;
        const progress: TrainProgress = {
          step: done,
          totalSteps: plan.totalSteps,
          epoch: planned.epoch,
          lr: res.lr,
          loss: res.loss,
          valLoss,
          tokensPerSecond: tps,
          etaSeconds: (elapsed / Math.max(1, tokens)) * (res.tokens || 1) * remaining,
          gpuBytes: this.gpu.memory().total,
          // The whole run's time: a resumed run goes on from where its checkpoint was.
          elapsedSeconds: priorSeconds + elapsed,
        };
        hooks.onProgress?.(progress);
        if (ckptDue && !last) await checkpoint();
      }
      if (this.stopRequested && trainer.step > 0 && lastLoss === null) lastLoss = await trainer.readWindowLoss();
      await checkpoint();
      const modules = finiteModules(await gpuLora.toArrays(), trainer.step, train.lr);
      const adapter = exportPeft({ config: cfg, baseModel: m.id, modules, fanInFanOut });
      const warnings = runWarnings(modules, train, lastVal, baseValLoss);
      return {
        baseValLoss,
        warnings,
        steps: trainer.step,
        finalLoss: lastLoss,
        finalValLoss: lastVal,
        tokens,
        seconds: priorSeconds + (performance.now() - started - pausedMs) / 1000,
        stoppedEarly: this.stopRequested,
        history,
        adapter,
      };
    } finally {
      await data.stopPrefetch();
      trainer.dispose();
      gpuLora.dispose();
      this.training = false;
      this.stopRequested = false;
      this.paused = false;
    }
  }

  // ------------------------------------------------------------------ merge

  async mergeAdapter(
    adapter: PeftFiles,
    settings: MergeSettings = {},
    onProgress?: (done: number, total: number) => void,
  ): Promise<{ zip: Blob; files: string[] }> {
    const m = this.requireModel();
    const folder = `${(m.id.split('/').pop() ?? 'model').replace(/[^\w.-]+/g, '_')}-merged`;
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
    const [{ buildRecipe }, { zipRecipe }] = await Promise.all([import('../recipe/recipe'), import('../recipe/zip')]);
    const files = buildRecipe({
      model: m.id,
      modelType: m.config.modelType,
      fanInFanOut: hasConv1dWeights(m.config),
      lora,
      train,
      data: {
        fileName: d.summary.fileName,
        format: d.summary.format,
        // The examples of each split (a lazily read dataset is tokenized whole here).
        train: await d.data.examples(d.data.train),
        val: await d.data.examples(d.data.val),
      },
      decode: (ids) => m.tokenizer.decode(ids, { skipSpecialTokens: false }),
      initFrom: opts.initFrom,
      // By default the frozen weights the run has here: the model as loaded (QLoRA when in 4 bits).
      quantize: opts.quantize !== undefined ? opts.quantize : recipeQuantize(m.gpuModel.quantization),
    });
    return zipRecipe(files, 'tabtune-recipe');
  }

  // ------------------------------------------------------------------ adapters

  private adapterOnGpu(ref: AdapterRef): GpuLora {
    const m = this.requireModel();
    let lora = this.adapters.get(ref.key);
    if (!lora) {
      const imported = importPeft(ref.files, m.gpuModel.linears, {
        baseModel: m.id,
        unusedModules: unusedModulePrefixes(m.config),
      });
      const cfg = imported.config;
      lora = GpuLora.fromArrays(this.gpu, m.gpuModel.linears, imported.modules, (mod) => loraScaleInfo(cfg, mod));
      this.adapters.set(ref.key, lora);
    }
    return lora;
  }

  /** Frees an adapter kept on the GPU for evaluation/generation. */
  forgetAdapter(key: string): void {
    this.adapters.get(key)?.dispose();
    this.adapters.delete(key);
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
    const lora = adapter ? this.adapterOnGpu(adapter) : null;
    const shape = { batchSize: 4, maxLen: d.maxLen };
    // Batches are made (and records tokenized) as they are consumed.
    const { sum, count } = await this.lossOver(
      m,
      d.data.evalBatches(split, shape),
      d.data.maxTokens(shape, split),
      lora,
    );
    const loss = count > 0 ? sum / count : NaN;
    if (count > 0 && !Number.isFinite(loss)) {
      throw new EngineError(
        `The evaluation's loss is ${loss}: ${adapter ? 'the model with this adapter' : 'the model'} gives non-finite logits ` +
          `for these data${adapter ? ' (check the adapter: its weights or lora_alpha may be far too large)' : ''}.`,
      );
    }
    return { loss, tokens: count };
  }

  /** Summed next-token loss and counted tokens of `batches` through the model (and `lora`). */
  private async lossOver(
    m: LoadedModelState,
    batches: Iterable<Batch> | AsyncIterable<Batch>,
    maxTokens: number,
    lora: GpuLora | null,
  ): Promise<{ sum: number; count: number }> {
    const runner = new ModelRunner(this.gpu, m.gpuModel, { mode: 'eval', maxTokens });
    try {
      let rec = this.gpu.recorder('eval-reset');
      runner.recordResetLoss(rec);
      rec.submit();
      for await (const b of batches) {
        runner.setBatch(b.ids, b.positions, b.targets);
        rec = this.gpu.recorder('eval');
        runner.recordForward(rec, { B: b.B, S: b.S, lora, dropout: false });
        runner.recordLoss(rec, b.B * b.S, null);
        rec.submit();
      }
      return await runner.readLoss();
    } finally {
      runner.dispose();
    }
  }

  async generate(
    prompt: string,
    adapter: AdapterRef | null,
    s: SamplingSettings,
    onText?: (delta: string) => void,
  ): Promise<{ text: string; tokens: number; stopReason: string }> {
    this.assertIdle('generate');
    const m = this.requireModel();
    const tok = m.tokenizer;
    let ids: number[];
    if (s.chat) {
      if (!tok.hasChatTemplate)
        throw new EngineError(`Model "${m.id}" has no chat template; turn off chat formatting.`);
      ids = tok.encode(tok.applyChatTemplate([{ role: 'user', content: prompt }], { addGenerationPrompt: true }), {
        addSpecialTokens: false,
      });
    } else {
      ids = tok.encode(prompt, { addSpecialTokens: true });
    }
    if (ids.length === 0) throw new EngineError('The prompt is empty after tokenization.');
    const need = ids.length + s.maxNewTokens + 1;
    const maxPos = m.config.maxPositions > 0 ? m.config.maxPositions : need;
    if (ids.length >= maxPos) throw new EngineError(`The prompt has ${ids.length} tokens; the model allows ${maxPos}.`);
    const ctx = Math.min(maxPos, Math.max(256, 2 ** Math.ceil(Math.log2(need))));
    if (!this.generator || this.generator.runner.maxContext < Math.min(need, maxPos)) {
      this.generator?.dispose();
      this.generator = new Generator(this.gpu, m.gpuModel, { maxContext: ctx });
    }
    const lora = adapter ? this.adapterOnGpu(adapter) : null;
    const out: number[] = [];
    let emitted = '';
    const eos = this.modelInfo().eosTokenIds;
    const res = await this.generator.generate(ids, lora, {
      maxNewTokens: s.maxNewTokens,
      temperature: s.temperature,
      topK: s.topK,
      topP: s.topP,
      seed: s.seed,
      stopIds: eos,
      vocabLimit: tok.vocabSize > 0 ? tok.vocabSize : undefined,
      onToken: (id) => {
        if (eos.includes(id)) return;
        out.push(id);
        const text = tok.decode(out, { skipSpecialTokens: true });
        if (text.length > emitted.length && !text.endsWith('\uFFFD') && text.startsWith(emitted)) {
          onText?.(text.slice(emitted.length));
          emitted = text;
        }
      },
    });
    const text = tok.decode(out, { skipSpecialTokens: true });
    if (text.length > emitted.length && text.startsWith(emitted)) onText?.(text.slice(emitted.length));
    return { text, tokens: res.ids.length, stopReason: res.stopReason };
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
