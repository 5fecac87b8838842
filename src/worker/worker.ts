/**
 * The GPU worker: owns the WebGPU device and the Engine, so training never blocks the page.
 * Started by src/worker/client.ts (`new Worker(new URL('./worker.ts', import.meta.url))`); it
 * answers the requests of protocol.ts one at a time, except pause/resume/stop/forgetAdapter and
 * checkpointSaved, which act at once (they steer the request in progress; an adapter forgotten
 * while a request uses it is freed by the engine when that request ends).
 *
 * Model files fetched from the Hub or a URL go through cachingFetch, so a model is downloaded once
 * and read from the Cache API afterwards; large datasets' tokens are kept in IndexedDB
 * (store/token-cache.ts), so a resume or a second run does not tokenize them again.
 */
/// <reference lib="webworker" />
import type { Engine } from '../engine/engine';
import type { Gpu } from '../gpu/context';
import { isQuotaError } from '../store/errors';
import { cachingFetch } from '../store/model-cache';
import { IndexedDbKernelStore } from '../store/kernel-choices';
import { IndexedDbTokenStore } from '../store/token-cache';
import type { PoolReply, PoolWorker } from '../train/data/pool';
import { type WorkerReply, type WorkerRequest, toWireError } from './protocol';

declare const self: DedicatedWorkerGlobalScope;

function post(msg: WorkerReply, transfer: Transferable[] = []): void {
  self.postMessage(msg, transfer);
}

/** The buffer to transfer for bytes the worker no longer needs (a copy when they are a view of more). */
function own(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer) {
    return bytes as Uint8Array<ArrayBuffer>;
  }
  return bytes.slice();
}

// ------------------------------------------------------------------ model-file cache

/** URLs served during the current model load (cached or downloaded), reported with its result. */
let servedUrls: string[] = [];
/** Base URLs of url-kind sources loaded from other origins (cached like Hub files). */
const cachedBases: string[] = [];
let warnedFull = false;

globalThis.fetch = cachingFetch(globalThis.fetch.bind(globalThis), {
  bases: () => cachedBases,
  onServed: (url) => servedUrls.push(url),
  onStoreFailed: (url, e) => {
    if (isQuotaError(e) && !warnedFull) {
      warnedFull = true;
      post({
        kind: 'cacheWarning',
        message:
          `The browser's storage is full, so downloaded model files (e.g. ${url.split('/').pop()}) are not kept: the model ` +
          'works now but will be downloaded again next time. Free space in the Adapters view (cached models).',
      });
    }
  },
});

// ------------------------------------------------------------------ engine

let enginePromise: Promise<Engine> | null = null;
let lost = false;

function engine(): Promise<Engine> {
  if (!enginePromise) {
    enginePromise = (async () => {
      const [{ createBrowserGpu }, { Engine }] = await Promise.all([
        import('../gpu/browser'),
        import('../engine/engine'),
      ]);
      const gpu: Gpu = await createBrowserGpu();
      void gpu.device.lost.then((info) => {
        if (info.reason === 'destroyed') return;
        lost = true;
        post({
          kind: 'deviceLost',
          error: {
            name: 'GpuDeviceLostError',
            message:
              `The GPU device was lost (${info.message || 'the driver reset or the GPU was taken away'}). ` +
              'Saved adapters and checkpoints are safe; reload the page to get a new device and resume the run.',
          },
        });
      });
      const eng = new Engine(gpu);
      // Large datasets are tokenized by Web Workers beside this one (one per core but two, at most 4).
      const cores = navigator.hardwareConcurrency || 2;
      eng.setTokenizerWorkers(tokenizerWorker, Math.max(1, Math.min(4, cores - 2)));
      // Large datasets' tokens are kept in IndexedDB between runs; without it they are made again.
      try {
        eng.setTokenStore(await IndexedDbTokenStore.open());
      } catch {
        /* no IndexedDB in this worker: tokenize every run */
      }
      // The matmul kernels tuned for this GPU are kept in IndexedDB; without it they are not tuned.
      try {
        eng.setKernelTuning(await IndexedDbKernelStore.open());
      } catch {
        /* no IndexedDB: the baseline kernels */
      }
      return eng;
    })();
    // A failed start (no WebGPU) is reported to each request; a later request tries again.
    enginePromise.catch(() => {
      enginePromise = null;
    });
  }
  return enginePromise;
}

/** A tokenizer worker for the engine's pool; one that cannot start fails its jobs (then this worker tokenizes). */
function tokenizerWorker(): PoolWorker {
  const w = new Worker(new URL('./tokenize.worker.ts', import.meta.url), { type: 'module' });
  return {
    post: (m) => w.postMessage(m),
    listen(onReply, onFail) {
      w.onmessage = (e: MessageEvent<PoolReply>) => onReply(e.data);
      w.onerror = (e) => {
        e.preventDefault();
        onFail(new Error(e.message || 'the tokenizer worker could not start'));
      };
    },
    terminate: () => w.terminate(),
  };
}

// ------------------------------------------------------------------ checkpoints

/** Checkpoints sent to the page and not yet confirmed stored. */
const checkpointWaiters = new Map<number, (error?: string) => void>();
let checkpointSeq = 0;

// ------------------------------------------------------------------ requests

async function handle(req: WorkerRequest): Promise<void> {
  switch (req.kind) {
    case 'pause':
      (await engine()).pause();
      return;
    case 'resume':
      (await engine()).resume();
      return;
    case 'stop':
      (await engine()).stop();
      return;
    case 'stopGeneration':
      // The generation in progress, and any still waiting in the queue (Stop pressed before its turn).
      for (const id of queuedGenerations) stoppedGenerations.add(id);
      (await engine()).stopGeneration();
      return;
    case 'forgetAdapter':
      (await engine()).forgetAdapter(req.key);
      return;
    case 'checkpointSaved':
      checkpointWaiters.get(req.seq)?.(req.error);
      checkpointWaiters.delete(req.seq);
      return;
    default:
      break;
  }
  const id = req.id;
  let eng: Engine | null = null;
  queuedGenerations.delete(id);
  if ((req.kind === 'chat' || req.kind === 'generate') && stoppedGenerations.delete(id)) {
    post({ kind: 'generateDone', id, value: { text: '', tokens: 0, promptTokens: 0, stopReason: 'stopped' } });
    return;
  }
  try {
    if (lost)
      throw Object.assign(new Error('The GPU device was lost; reload the page to get a new one.'), {
        name: 'GpuDeviceLostError',
      });
    const e = await engine();
    eng = e;
    switch (req.kind) {
      case 'gpuInfo':
        post({ kind: 'gpuInfoDone', id, value: await e.gpuInfo() });
        break;
      case 'setKernelMode':
        await e.setKernelMode(req.mode);
        post({ kind: 'done', id });
        break;
      case 'setAttentionMode':
        await e.setAttentionMode(req.mode);
        post({ kind: 'done', id });
        break;
      case 'kernelChoices':
        post({ kind: 'kernelChoicesDone', id, value: await e.kernelChoices() });
        break;
      case 'forgetKernelChoices':
        await e.forgetKernelChoices(req.deviceKey);
        post({ kind: 'done', id });
        break;
      case 'benchKernels': {
        // Loaded on first use; runs between requests, so never beside a training run.
        const { benchInUse } = await import('../bench/kernels-bench');
        const value = await benchInUse(e.gpu, req.size, (line) => post({ kind: 'benchLine', id, line }));
        post({ kind: 'benchKernelsDone', id, value });
        break;
      }
      case 'selfTest':
        post({
          kind: 'selfTestDone',
          id,
          value: await e.selfTest((check) => post({ kind: 'selfTestCheck', id, check })),
        });
        break;
      case 'loadModel': {
        servedUrls = [];
        const src = req.source;
        if (src.kind === 'url' && new URL(src.baseUrl, self.location.href).origin !== self.location.origin) {
          cachedBases.push(new URL(src.baseUrl, self.location.href).href);
        }
        const value = await e.loadModel(src, (progress) => post({ kind: 'loadProgress', id, progress }), req.frozen);
        post({ kind: 'loadModelDone', id, value, cachedUrls: [...new Set(servedUrls)] });
        break;
      }
      case 'loadDataset':
        post({
          kind: 'loadDatasetDone',
          id,
          value: await e.loadDataset(req.fileName, req.content, req.opts, (progress) =>
            post({ kind: 'datasetProgress', id, progress }),
          ),
        });
        break;
      case 'estimate':
        post({ kind: 'estimateDone', id, value: await e.estimate(req.lora, req.train) });
        break;
      case 'train': {
        const value = await e.train(req.lora, req.train, {
          resumeFrom: req.resumeFrom,
          initFrom: req.initFrom,
          onProgress: (progress) => post({ kind: 'trainProgress', id, progress }),
          onStage: (stage) => post({ kind: 'trainStage', id, stage }),
          onCheckpoint: req.checkpoints
            ? (blob, step) =>
                new Promise<void>((resolve) => {
                  const seq = ++checkpointSeq;
                  // A failed save is reported on the page; training goes on either way.
                  checkpointWaiters.set(seq, () => resolve());
                  const b = own(blob);
                  post({ kind: 'checkpoint', id, seq, step, blob: b }, [b.buffer]);
                })
            : undefined,
        });
        // LoftQ's quantized base stays here: the adapter carries what rebuilds it (loftqBackbone).
        const { quantizedBase: _q, ...done } = value;
        const model = own(value.adapter.adapterModel);
        post({ kind: 'trainDone', id, value: { ...done, adapter: { ...value.adapter, adapterModel: model } } }, [
          model.buffer,
        ]);
        break;
      }
      case 'exportRecipe': {
        const zip = own(await e.exportRecipe(req.lora, req.train, req.opts));
        post({ kind: 'exportRecipeDone', id, value: zip }, [zip.buffer]);
        break;
      }
      case 'merge': {
        const value = await e.mergeAdapter(req.adapter, req.settings, (done, total) =>
          post({ kind: 'mergeProgress', id, done, total }),
        );
        post({ kind: 'mergeDone', id, value });
        break;
      }
      case 'evaluate':
        post({ kind: 'evaluateDone', id, value: await e.evaluate(req.adapter, req.split) });
        break;
      case 'generate': {
        const value = await e.generate(req.prompt, req.adapter, req.sampling, (delta) =>
          post({ kind: 'text', id, delta }),
        );
        post({ kind: 'generateDone', id, value });
        break;
      }
      case 'chat': {
        const value = await e.chat(req.request, req.adapter, (delta) => post({ kind: 'text', id, delta }));
        post({ kind: 'generateDone', id, value });
        break;
      }
    }
  } catch (err) {
    const error = toWireError(err);
    if (req.kind === 'loadModel' && eng && !lost) {
      // A failed download or a bad file fails before the engine lets the old model go: say which
      // model is still loaded, so the page keeps it instead of showing none.
      try {
        error.keptModel = eng.modelInfo().id;
      } catch {
        /* no model left */
      }
    }
    post({ kind: 'error', id, error });
  }
}

/** Requests that answer are run one after another; steering messages act at once. */
let queue: Promise<void> = Promise.resolve();
/** Generations (chat, generate) waiting in the queue, and those a Stop ended before they began. */
const queuedGenerations = new Set<number>();
const stoppedGenerations = new Set<number>();

self.onmessage = (ev: MessageEvent<WorkerRequest>) => {
  const req = ev.data;
  switch (req.kind) {
    case 'pause':
    case 'resume':
    case 'stop':
    case 'stopGeneration':
    case 'checkpointSaved':
    case 'forgetAdapter':
      void handle(req);
      return;
    default:
      if (req.kind === 'chat' || req.kind === 'generate') queuedGenerations.add(req.id);
      queue = queue.then(() => handle(req));
  }
};
