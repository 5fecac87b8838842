/**
 * EngineApi over postMessage: the page's handle on the GPU worker (worker.ts). Each call sends one
 * request with a fresh id and resolves on its `*Done` reply; streamed events with the same id
 * (load/train progress, checkpoints, generated text) go to the call's callbacks. Checkpoints are
 * acknowledged only after the page's onCheckpoint hook has finished (stored them), so the worker
 * never runs ahead of what is saved.
 */
import type { KernelBenchSize, KernelsBench } from '../bench/kernels-bench';
import type {
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
  TrainHooks,
  TrainSettings,
} from '../engine/types';
import { RemoteError, type WorkerReply, type WorkerRequest } from './protocol';

type ReplyOf<K extends WorkerReply['kind']> = Extract<WorkerReply, { kind: K }>;

function isReply<K extends WorkerReply['kind']>(m: WorkerReply, kind: K): m is ReplyOf<K> {
  return m.kind === kind;
}

interface Pending {
  onMessage(m: WorkerReply): void;
  fail(e: Error): void;
}

/** What the page needs of a Worker (a fake in tests). */
export interface WorkerLike {
  postMessage(msg: WorkerRequest, transfer?: Transferable[]): void;
  terminate(): void;
  onmessage: ((ev: MessageEvent<WorkerReply>) => void) | null;
  onerror: ((ev: ErrorEvent) => void) | null;
}

export function startGpuWorker(): WorkerLike {
  return new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'tabtune-gpu' });
}

export class WorkerEngine implements EngineApi {
  private readonly worker: WorkerLike;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private dead: Error | null = null;
  /** The model the worker has loaded (for `loadedModelId`). */
  private modelId: string | null = null;
  /** URLs of model files the last load read through the cache. */
  lastCachedUrls: string[] = [];
  /** Called once when the worker's GPU device is lost or the worker dies. */
  onFatal: ((e: Error) => void) | null = null;
  onCacheWarning: ((message: string) => void) | null = null;

  constructor(worker: WorkerLike = startGpuWorker()) {
    this.worker = worker;
    worker.onmessage = (ev) => this.receive(ev.data);
    worker.onerror = (ev) => {
      ev.preventDefault?.();
      this.die(
        Object.assign(
          new Error(
            `The GPU worker stopped: ${ev.message || 'it could not be started'}. Reload the page to start it again.`,
          ),
          {
            name: 'WorkerError',
          },
        ),
      );
    };
  }

  get loadedModelId(): string | null {
    return this.modelId;
  }

  get isDead(): boolean {
    return this.dead !== null;
  }

  private die(e: Error): void {
    if (this.dead) return;
    this.dead = e;
    for (const p of this.pending.values()) p.fail(e);
    this.pending.clear();
    this.onFatal?.(e);
  }

  private receive(m: WorkerReply): void {
    switch (m.kind) {
      case 'deviceLost':
        this.die(new RemoteError(m.error));
        return;
      case 'cacheWarning':
        this.onCacheWarning?.(m.message);
        return;
      default: {
        const p = this.pending.get(m.id);
        p?.onMessage(m);
      }
    }
  }

  private call<K extends WorkerReply['kind']>(
    make: (id: number) => WorkerRequest,
    done: K,
    onEvent?: (m: WorkerReply) => void,
    transfer: Transferable[] = [],
  ): Promise<ReplyOf<K>> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    return new Promise<ReplyOf<K>>((resolve, reject) => {
      this.pending.set(id, {
        onMessage: (m) => {
          if (isReply(m, done)) {
            this.pending.delete(id);
            resolve(m);
          } else if (isReply(m, 'error')) {
            this.pending.delete(id);
            reject(new RemoteError(m.error));
          } else onEvent?.(m);
        },
        fail: reject,
      });
      this.worker.postMessage(make(id), transfer);
    });
  }

  private send(req: WorkerRequest): void {
    if (!this.dead) this.worker.postMessage(req);
  }

  async setKernelMode(mode: KernelMode): Promise<void> {
    await this.call((id) => ({ kind: 'setKernelMode', id, mode }), 'done');
  }

  async setAttentionMode(mode: AttentionMode): Promise<void> {
    await this.call((id) => ({ kind: 'setAttentionMode', id, mode }), 'done');
  }

  async kernelChoices(): Promise<SavedKernelChoices[]> {
    return (await this.call((id) => ({ kind: 'kernelChoices', id }), 'kernelChoicesDone')).value;
  }

  async forgetKernelChoices(deviceKey: string): Promise<void> {
    await this.call((id) => ({ kind: 'forgetKernelChoices', id, deviceKey }), 'done');
  }

  async benchKernels(size: KernelBenchSize, onLine?: (line: string) => void): Promise<KernelsBench> {
    const done = await this.call(
      (id) => ({ kind: 'benchKernels', id, size }),
      'benchKernelsDone',
      (m) => {
        if (m.kind === 'benchLine') onLine?.(m.line);
      },
    );
    return done.value;
  }

  async gpuInfo(): Promise<GpuSummary> {
    return (await this.call((id) => ({ kind: 'gpuInfo', id }), 'gpuInfoDone')).value;
  }

  async selfTest(onCheck?: (check: SelfTestCheck) => void): Promise<SelfTestReport> {
    const r = await this.call(
      (id) => ({ kind: 'selfTest', id }),
      'selfTestDone',
      (m) => {
        if (m.kind === 'selfTestCheck') onCheck?.(m.check);
      },
    );
    return r.value;
  }

  async loadModel(
    source: ModelSourceSpec,
    onProgress?: (p: LoadProgress) => void,
    frozen?: FrozenWeightsSettings,
  ): Promise<ModelInfo> {
    const before = this.modelId;
    this.modelId = null;
    let r;
    try {
      r = await this.call(
        (id) => ({ kind: 'loadModel', id, source, frozen }),
        'loadModelDone',
        (m) => {
          if (m.kind === 'loadProgress') onProgress?.(m.progress);
        },
      );
    } catch (e) {
      // The worker still holds the model it had (the new one failed before replacing it).
      if (e instanceof RemoteError && e.keptModel && e.keptModel === before) this.modelId = before;
      throw e;
    }
    this.lastCachedUrls = r.cachedUrls;
    this.modelId = r.value.id;
    return r.value;
  }

  async loadDataset(
    fileName: string,
    content: string | Blob,
    opts: DatasetLoadOptions,
    onProgress?: (p: DatasetProgress) => void,
  ): Promise<DatasetSummary> {
    return (
      await this.call(
        (id) => ({ kind: 'loadDataset', id, fileName, content, opts }),
        'loadDatasetDone',
        (m) => {
          if (m.kind === 'datasetProgress') onProgress?.(m.progress);
        },
      )
    ).value;
  }

  async estimate(lora: LoraSettings, train: TrainSettings): Promise<MemoryEstimate> {
    return (await this.call((id) => ({ kind: 'estimate', id, lora, train }), 'estimateDone')).value;
  }

  async train(lora: LoraSettings, train: TrainSettings, hooks: TrainHooks = {}): Promise<TrainDone> {
    const r = await this.call(
      (id) => ({
        kind: 'train',
        id,
        lora,
        train,
        resumeFrom: hooks.resumeFrom,
        initFrom: hooks.initFrom,
        checkpoints: !!hooks.onCheckpoint,
      }),
      'trainDone',
      (m) => {
        switch (m.kind) {
          case 'trainProgress':
            hooks.onProgress?.(m.progress);
            break;
          case 'trainStage':
            hooks.onStage?.(m.stage);
            break;
          case 'checkpoint': {
            const ack = (error?: string) => this.send({ kind: 'checkpointSaved', id: m.id, seq: m.seq, error });
            Promise.resolve()
              .then(() => hooks.onCheckpoint?.(m.blob, m.step))
              .then(
                () => ack(),
                (e: unknown) => ack(e instanceof Error ? e.message : String(e)),
              );
            break;
          }
          default:
            break;
        }
      },
    );
    return r.value;
  }

  pause(): void {
    this.send({ kind: 'pause' });
  }

  resume(): void {
    this.send({ kind: 'resume' });
  }

  stop(): void {
    this.send({ kind: 'stop' });
  }

  stopGeneration(): void {
    this.send({ kind: 'stopGeneration' });
  }

  forgetAdapter(key: string): void {
    this.send({ kind: 'forgetAdapter', key });
  }

  async exportRecipe(lora: LoraSettings, train: TrainSettings, opts: RecipeOptions = {}): Promise<Uint8Array> {
    return (await this.call((id) => ({ kind: 'exportRecipe', id, lora, train, opts }), 'exportRecipeDone')).value;
  }

  async mergeAdapter(
    adapter: PeftFiles,
    settings: MergeSettings = {},
    onProgress?: (done: number, total: number) => void,
  ): Promise<{ zip: Blob; files: string[] }> {
    const r = await this.call(
      (id) => ({ kind: 'merge', id, adapter, settings }),
      'mergeDone',
      (m) => {
        if (m.kind === 'mergeProgress') onProgress?.(m.done, m.total);
      },
    );
    return r.value;
  }

  async evaluate(
    adapter: AdapterRef | null,
    split: 'validation' | 'all' = 'validation',
  ): Promise<{ loss: number; tokens: number }> {
    return (await this.call((id) => ({ kind: 'evaluate', id, adapter, split }), 'evaluateDone')).value;
  }

  async generate(
    prompt: string,
    adapter: AdapterRef | null,
    sampling: SamplingSettings,
    onText?: (delta: string) => void,
  ): Promise<GenerationResult> {
    const r = await this.call(
      (id) => ({ kind: 'generate', id, prompt, adapter, sampling }),
      'generateDone',
      (m) => {
        if (m.kind === 'text') onText?.(m.delta);
      },
    );
    return r.value;
  }

  async chat(
    request: ChatRequest,
    adapter: AdapterRef | null,
    onText?: (delta: string) => void,
  ): Promise<GenerationResult> {
    const r = await this.call(
      (id) => ({ kind: 'chat', id, request, adapter }),
      'generateDone',
      (m) => {
        if (m.kind === 'text') onText?.(m.delta);
      },
    );
    return r.value;
  }

  terminate(): void {
    this.worker.terminate();
    this.die(Object.assign(new Error('The GPU worker was shut down.'), { name: 'WorkerError' }));
  }
}
