/**
 * A small in-memory EngineApi for UI and controller tests (never shipped as the real engine).
 * It behaves like the engine from the outside: load progress, a dataset summary with issues and
 * previews, an estimate, training with progress, checkpoints, pause/resume/stop and a real PEFT
 * adapter (exportPeft of a two-layer fake model), evaluation and streamed generation. Adapters are
 * read onto the fake model's modules with the engine's own importPeft, so an adapter for another
 * base model fails as it does in the engine. Knobs let a test make a call fail or hang, or lose
 * the GPU device as the worker client reports it.
 */
import type { KernelBenchSize, KernelsBench } from '../../src/bench/kernels-bench';
import type {
  AdapterRef,
  AttentionMode,
  ChatRequest,
  GenerationResult,
  SamplingDefaults,
  DatasetLoadOptions,
  DatasetProgress,
  DatasetSummary,
  FrozenWeightsSettings,
  GpuSummary,
  KernelMode,
  LoadProgress,
  LoraSettings,
  MemoryEstimate,
  MergeSettings,
  ModelInfo,
  ModelSourceSpec,
  RecipeOptions,
  SamplingSettings,
  SavedKernelChoices,
  SelfTestCheck,
  SelfTestReport,
  TrainHooks,
  TrainResult,
  TrainSettings,
  PeftFiles,
} from '../../src/engine/types';
import { exportPeft } from '../../src/lora/peft';
import { importPeft } from '../../src/lora/peft-import';
import type { AppEngine } from '../../src/ui/context';

const MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
const HIDDEN = 16;

export class FakeEngine implements AppEngine {
  calls: string[] = [];
  /** Make gpuInfo fail as a browser without WebGPU does. */
  noWebGpu = false;
  /** Errors to throw from the next call of a method (by name). */
  failNext: Partial<
    Record<'loadModel' | 'loadDataset' | 'train' | 'generate' | 'chat' | 'evaluate' | 'exportRecipe', Error>
  > = {};
  /** The first step of a run waits for this (tests look at the app while a run starts). */
  firstStepGate: Promise<void> | null = null;
  /** The next run fails at this step (after reporting it), as when the GPU is lost mid-run. */
  deviceLostAtStep: number | null = null;
  /**
   * While set, loadDataset first reports an early summary (the first half of the records: their
   * preview, counts and issues) and waits for this before it returns the final one.
   */
  countingGate: Promise<void> | null = null;
  /** Milliseconds each training step takes. */
  stepMs = 0;
  /** Warnings the next finished run reports (as the engine's TrainResult.warnings). */
  trainWarnings: string[] = [];
  model: ModelInfo | null = null;
  datasetLoaded = false;
  lastTrain: { lora: LoraSettings; train: TrainSettings; resumedFromStep: number | null } | null = null;
  lastRecipe: { lora: LoraSettings; train: TrainSettings; opts: RecipeOptions } | null = null;
  forgotten: string[] = [];
  lastCachedUrls: string[] = [];
  onFatal: ((e: Error) => void) | null = null;
  onCacheWarning: ((m: string) => void) | null = null;
  /** Set by loseDevice: every call fails with it, like WorkerEngine after a deviceLost message. */
  dead: Error | null = null;
  private paused = false;
  private stopped = false;
  private generationStopped = false;
  /** Chat requests made, in order. */
  chats: ChatRequest[] = [];
  /** Milliseconds between a chat reply's words. */
  chatDelayMs = 0;
  /** What generation_config.json says (ModelInfo.generationDefaults of the next loaded model). */
  generationDefaults: SamplingDefaults = {
    temperature: 0,
    topK: 50,
    topP: 1,
    repetitionPenalty: 1,
    maxNewTokens: null,
  };
  private wake: (() => void) | null = null;
  /** Resolves when training reaches this step (for tests that act mid-run). */
  private stepWaiters: { step: number; resolve: () => void }[] = [];

  /**
   * The GPU device is lost (what WorkerEngine does on the worker's deviceLost message): the call in
   * progress and every later call fail with a GpuDeviceLostError, and onFatal is told once.
   */
  loseDevice(
    message = 'The GPU device was lost (the driver reset). Saved adapters and checkpoints are safe; reload the page.',
  ): void {
    if (this.dead) return;
    this.dead = Object.assign(new Error(message), { name: 'GpuDeviceLostError' });
    this.onFatal?.(this.dead);
    this.wake?.();
  }

  private alive(): void {
    if (this.dead) throw this.dead;
  }

  /** The fake model's linear modules, as the engine's GPU model lists them. */
  private linears() {
    return [0, 1].flatMap((layer) =>
      MODULES.map((name) => ({
        path: `model.layers.${layer}.${['gate_proj', 'up_proj', 'down_proj'].includes(name) ? 'mlp' : 'self_attn'}.${name}`,
        name,
        inF: HIDDEN,
        outF: HIDDEN,
        transposed: false,
      })),
    );
  }

  /** Reads an adapter onto the loaded model as the engine does (a PeftError when it does not fit). */
  private applyAdapter(ref: AdapterRef | null): void {
    if (ref) importPeft(ref.files, this.linears(), { baseModel: this.model?.id });
  }

  private fail(name: keyof FakeEngine['failNext']): void {
    const e = this.failNext[name];
    if (e) {
      delete this.failNext[name];
      throw e;
    }
  }

  async gpuInfo(): Promise<GpuSummary> {
    this.calls.push('gpuInfo');
    this.alive();
    if (this.noWebGpu) {
      throw Object.assign(new Error('This browser has no WebGPU (navigator.gpu is missing).'), {
        name: 'WebGpuUnavailableError',
      });
    }
    return {
      vendor: 'fake',
      architecture: 'swiftshader',
      device: '',
      description: 'fake adapter',
      runtime: 'browser',
      f16: false,
      subgroups: false,
      subgroupLanes: 0,
      maxBufferSize: 2 ** 30,
      maxStorageBufferBindingSize: 2 ** 27,
      maxComputeWorkgroupStorageSize: 2 ** 14,
      maxComputeInvocationsPerWorkgroup: 256,
      bytesInUse: 0,
      attention: this.attentionSets,
    };
  }

  /** What each attention mode runs on the fake adapter (as on a CPU driver without subgroups). */
  attentionSets: GpuSummary['attention'] = {
    auto: { set: 'tiled', why: 'this device is a CPU driver but has no subgroups, which the direct kernels need' },
    tiled: { set: 'tiled', why: 'pinned' },
    direct: {
      set: 'tiled',
      why: 'pinned, but this device has no subgroups, which the direct kernels need, so the tiled kernels run instead',
    },
  };
  /** The attention mode set last (null: never set). */
  attentionMode: AttentionMode | null = null;

  async setAttentionMode(mode: AttentionMode): Promise<void> {
    this.calls.push('setAttentionMode');
    this.alive();
    this.attentionMode = mode;
  }

  /** The kernel mode set last, and the saved choices per device (this device's key: 'fake-gpu'). */
  kernelMode: KernelMode = 'auto';
  savedKernels: SavedKernelChoices[] = [];

  async setKernelMode(mode: KernelMode): Promise<void> {
    this.calls.push('setKernelMode');
    this.alive();
    this.kernelMode = mode;
  }

  async kernelChoices(): Promise<SavedKernelChoices[]> {
    this.alive();
    return this.savedKernels.map((c) => ({ ...c, current: c.deviceKey === 'fake-gpu' }));
  }

  async forgetKernelChoices(deviceKey: string): Promise<void> {
    this.calls.push('forgetKernelChoices');
    this.savedKernels = this.savedKernels.filter((c) => c.deviceKey !== deviceKey);
  }

  /** The size of the last kernel bench. */
  lastBench: KernelBenchSize | null = null;

  async benchKernels(size: KernelBenchSize, onLine?: (line: string) => void): Promise<KernelsBench> {
    this.calls.push('benchKernels');
    this.alive();
    this.lastBench = size;
    const shape = `${size.M}x${size.K}x${size.N} X·Wᵀ`;
    const attention = this.attentionSets[this.attentionMode ?? 'auto'];
    const lines = [
      'device ceilings: FMA 75.0 GFLOP/s, copy 4.50 GB/s',
      `attention kernels: ${attention.set} (${attention.why})`,
      `matmul ${shape} tile64: 2.00 GFLOP/s (1.00x tile64)`,
      `matmul ${shape} direct8x4: 6.00 GFLOP/s (3.00x tile64)`,
    ];
    for (const l of lines) {
      await new Promise((r) => setTimeout(r, 1));
      onLine?.(l);
    }
    return {
      fma_gflops: 75,
      copy_gbps: 4.5,
      matmul: [
        { shape, member: 'tile64', gflops: 2, speedup: 1 },
        { shape, member: 'direct8x4', gflops: 6, speedup: 3 },
      ],
      lora: [],
      tuning: [],
      attention,
    };
  }

  /** Two checks, the second failing when `failSelfTest` is set. */
  failSelfTest = false;

  async selfTest(onCheck?: (check: SelfTestCheck) => void): Promise<SelfTestReport> {
    this.calls.push('selfTest');
    this.alive();
    const checks: SelfTestCheck[] = [
      { name: 'matmul 7x5x3 (f32)', maxAbsErr: 1e-7, ok: true, ms: 1 },
      this.failSelfTest
        ? { name: 'rmsnorm 3x9', maxAbsErr: 0.5, ok: false, ms: 1, error: 'worst element 4: got 1.5, expected 1' }
        : { name: 'rmsnorm 3x9', maxAbsErr: 2e-7, ok: true, ms: 1 },
    ];
    for (const c of checks) onCheck?.(c);
    const info = await this.gpuInfo();
    return {
      adapter: {
        vendor: info.vendor,
        architecture: info.architecture,
        device: info.device,
        description: info.description,
        runtime: 'browser',
      },
      f16: info.f16,
      subgroups: info.subgroups,
      subgroupLanes: info.subgroupLanes,
      checks,
      ok: checks.every((c) => c.ok),
      ms: 2,
    };
  }

  /** The frozen-weight settings of the last loadModel call. */
  lastFrozen: FrozenWeightsSettings | undefined;
  /** The last model source asked for (what the page sent, token included). */
  lastSource: ModelSourceSpec | null = null;

  async loadModel(
    source: ModelSourceSpec,
    onProgress?: (p: LoadProgress) => void,
    frozen?: FrozenWeightsSettings,
  ): Promise<ModelInfo> {
    this.calls.push(`loadModel:${source.id}`);
    this.lastFrozen = frozen;
    this.lastSource = source;
    this.alive();
    this.fail('loadModel');
    for (const file of ['config.json', 'tokenizer.json', 'model.safetensors']) {
      onProgress?.({ file, loaded: 50, total: 100, phase: 'download' });
      onProgress?.({ file, loaded: 100, total: 100, phase: 'download' });
    }
    onProgress?.({ file: 'weights', loaded: 3, total: 3, phase: 'upload' });
    this.datasetLoaded = false;
    this.model = {
      id: source.id,
      modelType: 'llama',
      family: 'llama',
      parameters: 110_000,
      weightBytes: frozen?.quantize === 'nf4' ? 130_000 : 440_000,
      dtype: 'F32',
      hiddenSize: HIDDEN,
      numLayers: 2,
      vocabSize: 384,
      maxPositions: 128,
      linearModules: [...MODULES],
      defaultTargets: ['q_proj', 'v_proj'],
      hasChatTemplate: true,
      eosTokenIds: [2],
      generationDefaults: { ...this.generationDefaults },
      quantization:
        frozen?.quantize === 'nf4'
          ? { format: 'nf4', doubleQuant: frozen.doubleQuant ?? true, source: 'load', modules: 14 }
          : null,
    };
    return this.model;
  }

  async loadDataset(
    fileName: string,
    content: string | Blob,
    opts: DatasetLoadOptions,
    onProgress?: (p: DatasetProgress) => void,
  ): Promise<DatasetSummary> {
    this.calls.push(`loadDataset:${fileName}`);
    this.alive();
    if (!this.model) throw Object.assign(new Error('No model is loaded: load a model first.'), { name: 'EngineError' });
    this.fail('loadDataset');
    const issues: { line: number; message: string }[] = [];
    const records: { line: number; text: string; answer: string }[] = [];
    const text = typeof content === 'string' ? content : await content.text();
    text.split('\n').forEach((raw, i) => {
      if (!raw.trim()) return;
      try {
        const o = JSON.parse(raw) as Record<string, unknown>;
        if (typeof o.text === 'string') records.push({ line: i + 1, text: o.text, answer: o.text });
        else if (typeof o.instruction === 'string' && typeof o.output === 'string')
          records.push({ line: i + 1, text: o.instruction, answer: o.output });
        else issues.push({ line: i + 1, message: 'expected "text" or "instruction"/"output"' });
      } catch {
        issues.push({ line: i + 1, message: 'not valid JSON' });
      }
    });
    if (records.length === 0)
      throw Object.assign(new Error(`${fileName}: no usable records.`), { name: 'EngineError' });
    const val = Math.floor(records.length * opts.valFraction);
    this.datasetLoaded = true;
    // A record whose text is longer than max length (in characters, here) is cut.
    const cut = records.filter((r) => r.text.length + r.answer.length > opts.maxLen);
    const summary: DatasetSummary = {
      truncated: { examples: cut.length, lines: cut.slice(0, 10).map((r) => r.line) },
      fileName,
      format: opts.format && opts.format !== 'auto' ? opts.format : 'alpaca',
      records: records.length,
      trainRecords: records.length - val,
      valRecords: val,
      trainTokens: records.length * 20,
      countedTokens: records.length * 8,
      tokensEstimated: false,
      issues,
      issueCount: issues.length,
      preview: records.slice(0, opts.previewCount ?? 20).map((r) => ({
        line: r.line,
        pieces: [
          { text: `<|user|>${r.text}\n<|assistant|>`, counted: false },
          { text: r.answer, counted: true },
        ],
        tokens: 20,
        countedTokens: 8,
        truncated: r.text.length + r.answer.length > opts.maxLen,
      })),
    };
    if (this.countingGate) {
      const half = Math.ceil(text.length / 2);
      const lines = text.slice(0, half).split('\n').length;
      const early = summary.issues.filter((i) => i.line < lines);
      onProgress?.({
        phase: 'scan',
        done: half,
        total: text.length,
        provisional: {
          format: summary.format,
          records: records.filter((r) => r.line < lines).length,
          issues: early,
          issueCount: early.length,
          preview: summary.preview.filter((p) => p.line < lines),
          bytesRead: half,
          bytesTotal: text.length,
        },
      });
      await this.countingGate;
    }
    return summary;
  }

  async estimate(lora: LoraSettings): Promise<MemoryEstimate> {
    this.calls.push('estimate');
    this.alive();
    const n = lora.target_modules === 'all-linear' ? MODULES.length : lora.target_modules.length;
    const trainable = 2 * n * lora.r * 2 * HIDDEN;
    return {
      trainableParams: trainable,
      totalParams: 110_000,
      trainablePercent: (100 * trainable) / (110_000 + trainable),
      weightsBytes: 440_000,
      loraBytes: trainable * 16,
      activationBytes: 1_000_000,
      totalBytes: 1_440_000 + trainable * 16,
      frozenChoices: [
        { quantize: null, weightsBytes: 440_000, totalBytes: 1_440_000 + trainable * 16 },
        { quantize: 'nf4', weightsBytes: 130_000, totalBytes: 1_130_000 + trainable * 16 },
      ],
      blocker: null,
    };
  }

  /** Resolves once training has reported `step`. */
  reached(step: number): Promise<void> {
    return new Promise((resolve) => this.stepWaiters.push({ step, resolve }));
  }

  /** A PEFT adapter for the fake model (or, with `hidden`/`baseModel`, for another one). */
  adapterFor(lora: LoraSettings, scale = 1, other: { hidden?: number; baseModel?: string } = {}): PeftFiles {
    const hidden = other.hidden ?? HIDDEN;
    const names =
      lora.target_modules === 'all-linear'
        ? MODULES
        : lora.target_modules.length
          ? lora.target_modules
          : ['q_proj', 'v_proj'];
    const modules = [0, 1].flatMap((layer) =>
      names.map((name) => {
        const group = ['gate_proj', 'up_proj', 'down_proj'].includes(name) ? 'mlp' : 'self_attn';
        return {
          path: `model.layers.${layer}.${group}.${name}`,
          r: lora.r,
          inF: hidden,
          outF: hidden,
          a: new Float32Array(lora.r * hidden).fill(0.01),
          b: new Float32Array(lora.r * hidden).fill(0.001 * scale),
        };
      }),
    );
    return exportPeft({
      config: {
        r: lora.r,
        lora_alpha: lora.lora_alpha,
        lora_dropout: lora.lora_dropout,
        target_modules: names,
        use_rslora: lora.use_rslora,
        bias: 'none',
        fan_in_fan_out: false,
        init_lora_weights: true,
      },
      baseModel: other.baseModel ?? this.model?.id ?? 'fake',
      modules,
      fanInFanOut: false,
    });
  }

  async train(
    lora: LoraSettings,
    train: TrainSettings,
    hooks: TrainHooks = {},
  ): Promise<TrainResult & { adapter: PeftFiles }> {
    this.calls.push('train');
    this.alive();
    if (!this.model || !this.datasetLoaded)
      throw Object.assign(new Error('No dataset is loaded.'), { name: 'EngineError' });
    this.fail('train');
    const total = train.steps > 0 ? train.steps : 10 * train.epochs;
    let start = 0;
    const history: TrainResult['history'] = [];
    if (hooks.resumeFrom) {
      const meta = JSON.parse(new TextDecoder().decode(hooks.resumeFrom)) as {
        step: number;
        history: TrainResult['history'];
      };
      start = meta.step;
      history.push(...meta.history);
    }
    this.lastTrain = { lora, train, resumedFromStep: hooks.resumeFrom ? start : null };
    this.paused = false;
    this.stopped = false;
    const t0 = Date.now();
    let step = start;
    let last: number | null = null;
    let lastVal: number | null = null;
    const checkpoint = async () => {
      const blob = new TextEncoder().encode(JSON.stringify({ step, history }));
      await hooks.onCheckpoint?.(blob, step);
    };
    hooks.onStage?.({ stage: 'first-step', step: start, totalSteps: total });
    await this.firstStepGate;
    while (step < total) {
      while (this.paused && !this.stopped && !this.dead) await new Promise<void>((r) => (this.wake = r));
      this.alive();
      if (this.stopped) break;
      if (this.stepMs) await new Promise((r) => setTimeout(r, this.stepMs));
      this.alive();
      step++;
      last = 5 / (1 + 0.3 * step);
      const evalDue = step === total || (train.evalEvery > 0 && step % train.evalEvery === 0);
      const valLoss = evalDue ? last * 1.1 : null;
      if (valLoss !== null) lastVal = valLoss;
      history.push({ step, loss: last, valLoss, lr: train.lr });
      hooks.onProgress?.({
        step,
        totalSteps: total,
        epoch: 0,
        lr: train.lr,
        loss: last,
        valLoss,
        tokensPerSecond: 1000,
        etaSeconds: total - step,
        gpuBytes: 2_000_000,
        elapsedSeconds: (Date.now() - t0) / 1000,
      });
      if (step === this.deviceLostAtStep) {
        this.deviceLostAtStep = null;
        throw Object.assign(new Error('The GPU device was lost (unknown).'), { name: 'GpuDeviceLostError' });
      }
      for (const w of this.stepWaiters.filter((x) => x.step <= step)) w.resolve();
      this.stepWaiters = this.stepWaiters.filter((x) => x.step > step);
      if (train.checkpointEvery > 0 && step % train.checkpointEvery === 0 && step < total) await checkpoint();
    }
    await checkpoint();
    return {
      baseValLoss: null,
      warnings: this.trainWarnings,
      steps: step,
      finalLoss: last,
      finalValLoss: lastVal,
      tokens: step * 100,
      seconds: (Date.now() - t0) / 1000,
      stoppedEarly: this.stopped,
      history,
      adapter: this.adapterFor(lora, step),
    };
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.wake?.();
  }

  stop(): void {
    this.stopped = true;
    this.resume();
  }

  forgetAdapter(key: string): void {
    this.forgotten.push(key);
  }

  async exportRecipe(lora: LoraSettings, train: TrainSettings, opts: RecipeOptions = {}): Promise<Uint8Array> {
    this.calls.push('exportRecipe');
    this.alive();
    this.fail('exportRecipe');
    if (!this.model || !this.datasetLoaded) throw new Error('No model or dataset is loaded.');
    this.lastRecipe = { lora, train, opts };
    return new TextEncoder().encode(`recipe for ${this.model.id}`);
  }

  async mergeAdapter(
    adapter: PeftFiles,
    settings: MergeSettings = {},
    onProgress?: (done: number, total: number) => void,
  ): Promise<{ zip: Blob; files: string[] }> {
    this.calls.push(`merge:${settings.dtype ?? 'same'}`);
    this.alive();
    if (!this.model) throw new Error('No model is loaded.');
    onProgress?.(1, 1);
    return { zip: new Blob([`${this.model.id} + ${adapter.adapterConfig.length}`]), files: ['config.json'] };
  }

  async evaluate(adapter: AdapterRef | null): Promise<{ loss: number; tokens: number }> {
    this.calls.push(`evaluate:${adapter?.key ?? 'base'}`);
    this.alive();
    this.fail('evaluate');
    this.applyAdapter(adapter);
    return { loss: adapter ? 1.5 : 3, tokens: 42 };
  }

  async generate(prompt: string, adapter: AdapterRef | null, s: SamplingSettings, onText?: (d: string) => void) {
    this.calls.push(`generate:${adapter?.key ?? 'base'}`);
    this.alive();
    this.fail('generate');
    this.applyAdapter(adapter);
    const words = adapter ? ['The', ' cat', ' watched', ' the', ' rain.'] : ['\n', '\n'];
    const out = words.slice(0, s.maxNewTokens);
    for (const w of out) onText?.(w);
    return { text: out.join(''), tokens: out.length, promptTokens: prompt.length, stopReason: 'eos' as const };
  }

  /**
   * A reply naming who made it ("[base] ..." or "[adapter key] ..."), one word per `chatDelayMs`,
   * so tests see it stream and can stop it; the requests are kept in `chats`.
   */
  async chat(req: ChatRequest, adapter: AdapterRef | null, onText?: (d: string) => void): Promise<GenerationResult> {
    this.calls.push(`chat:${adapter?.key ?? 'base'}`);
    this.chats.push(req);
    this.alive();
    this.fail('chat');
    this.applyAdapter(adapter);
    this.generationStopped = false;
    const words = [`[${adapter?.key ?? 'base'}]`, ' reply', ` ${this.chats.length}`, ' about', ' the', ' rain', '.'];
    const out: string[] = [];
    let stopReason: GenerationResult['stopReason'] = 'eos';
    for (const w of words) {
      if (out.length >= req.sampling.maxNewTokens) {
        stopReason = 'length';
        break;
      }
      if (this.chatDelayMs > 0) await new Promise((r) => setTimeout(r, this.chatDelayMs));
      out.push(w);
      onText?.(w);
      if (this.generationStopped) {
        stopReason = 'stopped';
        break;
      }
    }
    return { text: out.join(''), tokens: out.length, promptTokens: 10, stopReason };
  }

  stopGeneration(): void {
    this.generationStopped = true;
  }
}
