/**
 * Training runs from the page's side: start, pause, resume, stop; checkpoints into IndexedDB as
 * the worker makes them; the adapter saved with the run's end in one transaction; resuming an
 * interrupted run (reload, crash, lost GPU) from its last checkpoint. The run's Web Lock and
 * lease keep a second tab from writing to the same run.
 */
import { DEFAULT_FROZEN } from '../../engine/defaults';
import { frozenSettings, sameFrozen } from '../../engine/frozen';
import type { LoraSettings, TrainSettings } from '../../engine/types';
import type { NewAdapter } from '../../store/adapters';
import { type HeldLock, runLockName } from '../../store/runs';
import type { HistoryPoint, RunRecord } from '../../store/types';
import { choiceFromStored } from '../catalog';
import { type AppContext, patch } from '../context';
import { describeError } from '../errors';
import { type GpuSlice, runBusy } from '../state';
import { hasErrors, validateLora, validateTrain } from '../validate';
import { analyseDataset, hasDatasetContent } from './dataset';
import { checkModel, loadChosenModel } from './model';
import { refreshLibrary, uniqueName } from './library';
import { RunLease } from './run-lease';

/** Why the GPU cannot be used now, for the lists of blockers (null when it is ready). */
export function gpuBlocker(status: GpuSlice['status']): string | null {
  if (status === 'ready') return null;
  if (status === 'lost')
    return 'The GPU was lost: reload the page to get it back (saved adapters and checkpoints are kept).';
  if (status === 'starting') return 'The GPU is starting.';
  return 'WebGPU is not available in this browser.';
}

function shortModel(id: string): string {
  const last = id.split('/').pop() ?? id;
  return last.length > 28 ? `${last.slice(0, 27)}…` : last;
}

function shortData(name: string): string {
  return name.replace(/\.(jsonl|ndjson|json|csv|tsv|txt|md)$/i, '') || 'data';
}

/** "SmolLM2-135M · alpaca · r8", made unique among existing names. */
export function adapterName(modelId: string, datasetName: string, r: number, existing: string[]): string {
  return uniqueName(`${shortModel(modelId)} · ${shortData(datasetName)} · r${r}`, existing);
}

/** "Resuming at step 40 of 100" (a run without a checkpoint starts again from step 0). */
function resumingText(step: number | null, total: number | null): string {
  if (step === null || step <= 0) return 'Restarting from step 0 (no checkpoint yet)';
  return `Resuming at step ${step}${total ? ` of ${total}` : ''}`;
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** Why training cannot start now (empty when it can). */
export function startBlockers(ctx: AppContext): string[] {
  const s = ctx.store.get();
  const out: string[] = [];
  const gpu = gpuBlocker(s.gpu.status);
  if (gpu) out.push(gpu);
  if (!s.model.info) out.push('Load a model first (Model).');
  if (!hasDatasetContent(s.dataset.content)) out.push('Choose a dataset first (Data).');
  else if (s.dataset.status === 'error') out.push('The dataset has a problem (Data).');
  if (hasErrors(validateLora(s.lora, s.model.info)) || hasErrors(validateTrain(s.train, s.model.info))) {
    out.push('Fix the highlighted settings (Settings).');
  }
  if (s.estimate.value?.blocker) out.push(s.estimate.value.blocker);
  if (runBusy(s.run.status)) out.push('A run is in progress.');
  return out;
}

export async function refreshResumable(ctx: AppContext): Promise<void> {
  if (!ctx.stores) return;
  try {
    const held = await ctx.platform.heldRunLocks();
    const runs = await ctx.stores.runs.list();
    const cur = ctx.store.get().run;
    const mine = runBusy(cur.status) ? cur.runId : null;
    const open = runs.filter(
      (r) => r.adapterId === null && r.status !== 'finished' && r.status !== 'stopped' && r.id !== mine,
    );
    // With Web Locks the lock says whether a live tab has the run; without, the lease does.
    const free = (r: RunRecord) => (held ? !held.has(runLockName(r.id)) : ctx.stores!.runs.isFree(r));
    const resumable = open.filter(free);
    // Held by another tab: (this tab's own run is `mine`, and a tab holds only the run it trains).
    const elsewhere = open.filter((r) => !free(r) && r.id !== cur.runId);
    ctx.store.update((s) => ({ ...s, resumable, elsewhere }));
  } catch {
    /* the list is a convenience; storage errors show elsewhere */
  }
}

export async function startTraining(ctx: AppContext): Promise<void> {
  const blockers = startBlockers(ctx);
  if (blockers.length) {
    patch(ctx, 'run', { status: 'failed', error: { title: 'Cannot start training', detail: blockers.join(' ') } });
    return;
  }
  patch(ctx, 'run', {
    status: 'preparing',
    error: null,
    adapterId: null,
    stoppedEarly: false,
    unsaved: null,
    history: [],
    progress: null,
    checkpoint: null,
    totalSteps: null,
    startup: 'Reading the dataset…',
  });
  if (!(await analyseDataset(ctx))) {
    const err = ctx.store.get().dataset.error;
    patch(ctx, 'run', {
      status: 'failed',
      error: err ?? { title: 'Cannot start training', detail: 'The dataset could not be read.' },
    });
    return;
  }
  const s = ctx.store.get();
  let run: RunRecord | null = null;
  let lock: HeldLock | null = null;
  if (ctx.stores && s.model.source) {
    try {
      run = await ctx.stores.runs.create({
        name: `${shortModel(s.model.info!.id)} · ${shortData(s.dataset.fileName)}`,
        model: s.model.source,
        dataset: {
          fileName: s.dataset.fileName,
          content: s.dataset.content,
          format: s.dataset.format,
          mapping: s.dataset.mapping,
        },
        lora: s.lora,
        train: s.train,
        frozen: frozenSettings(s.model.info!.quantization),
      });
      lock = await ctx.platform.lockRun(run.id);
    } catch (e) {
      ctx.notify({
        level: 'warning',
        ...describeError(e, 'Saving the run'),
        action: 'Training goes on, but cannot be resumed after a reload.',
      });
      run = null;
    }
  }
  await runTraining(ctx, run, lock, s.lora, s.train, undefined, []);
}

/** The run each app store is resuming: set from the click on, before the run shows as preparing. */
const resuming = new WeakMap<object, string>();

const RUN_IN_PROGRESS = {
  level: 'warning',
  title: 'A run is in progress',
  detail: 'Stop it before resuming another.',
} as const;

/** Resumes an interrupted run from its last checkpoint (loading its model and data first). */
export async function resumeRun(ctx: AppContext, runId: string): Promise<void> {
  // A click while a resume waits for its run's lock and lease (the buttons are enabled until the run
  // is preparing): the same run's (a double click) is dropped; it found the lock taken and said
  // another tab had the run. Another run's is refused, as while a run trains.
  const pending = resuming.get(ctx.store);
  if (pending === runId) return;
  if (pending) return ctx.notify(RUN_IN_PROGRESS);
  resuming.set(ctx.store, runId);
  try {
    await resumeRunNow(ctx, runId);
  } finally {
    resuming.delete(ctx.store);
  }
}

async function resumeRunNow(ctx: AppContext, runId: string): Promise<void> {
  if (!ctx.stores) return;
  const s0 = ctx.store.get();
  if (runBusy(s0.run.status)) {
    ctx.notify(RUN_IN_PROGRESS);
    return;
  }
  const gpu = gpuBlocker(s0.gpu.status);
  if (gpu) {
    // Leave the run as it is: it stays resumable once the GPU is back.
    ctx.notify({ level: 'warning', title: 'Cannot resume now', detail: gpu });
    return;
  }
  // With Web Locks, holding the run's lock proves no other live tab has it, so an unexpired lease
  // (left by a tab that crashed) can be taken over. Without them only an expired lease can.
  const webLocks = (await ctx.platform.heldRunLocks().catch(() => null)) !== null;
  const lock = await ctx.platform.lockRun(runId);
  if (!lock) {
    ctx.notify({
      level: 'warning',
      title: 'Run is open in another tab',
      detail: 'Continue it there, or close that tab first.',
    });
    return;
  }
  let ok = false;
  try {
    const run = await ctx.stores.runs.acquire(runId, { force: webLocks });
    if (!run) {
      ctx.notify({
        level: 'warning',
        title: 'Run is open in another tab',
        detail: 'Continue it there, or close that tab first.',
      });
      return;
    }
    patch(ctx, 'run', {
      status: 'preparing',
      runId: run.id,
      error: null,
      adapterId: null,
      stoppedEarly: false,
      unsaved: null,
      history: run.history,
      progress: null,
      totalSteps: run.totalSteps,
      startup: `${resumingText(run.checkpointStep, run.totalSteps)}: loading the model…`,
    });
    ctx.store.update((st) => ({ ...st, view: 'train' }));
    // The model, holding its frozen weights as the run had them.
    const frozen = run.frozen ?? DEFAULT_FROZEN;
    const loaded = ctx.store.get().model.info;
    ctx.store.update((st) => ({ ...st, frozen: { ...st.frozen, ...frozen } }));
    if (loaded?.id !== run.model.id || !sameFrozen(frozenSettings(loaded.quantization), frozen)) {
      const choice = choiceFromStored(run.model);
      if (!choice) {
        throw Object.assign(
          new Error(`This run used the local folder "${run.model.id}". Load that folder again in Model, then resume.`),
          { name: 'ResumeError' },
        );
      }
      await checkModel(ctx, choice);
      if (!(await loadChosenModel(ctx, { keepSettings: true }))) {
        throw ctx.store.get().model.load.error
          ? new Error(ctx.store.get().model.load.error!.detail)
          : new Error('The model did not load.');
      }
    }
    // The data and settings, exactly as the run had them.
    ctx.store.update((st) => ({
      ...st,
      lora: run.lora,
      train: run.train,
      dataset: {
        ...st.dataset,
        fileName: run.dataset.fileName,
        content: run.dataset.content,
        format: run.dataset.format,
        mapping: run.dataset.mapping ?? null,
        key: null,
        summary: null,
      },
    }));
    patch(ctx, 'run', { startup: `${resumingText(run.checkpointStep, run.totalSteps)}: reading the dataset…` });
    if (!(await analyseDataset(ctx)))
      throw new Error(ctx.store.get().dataset.error?.detail ?? 'The dataset could not be read.');
    const ckpt = await ctx.stores.runs.checkpoint(run.id);
    const prior = ckpt ? run.history.filter((h) => h.step <= ckpt.step) : [];
    if (ckpt) patch(ctx, 'run', { checkpoint: { step: ckpt.step, at: ckpt.savedAt } });
    ok = true;
    await runTraining(ctx, run, lock, run.lora, run.train, ckpt?.blob, prior);
  } catch (e) {
    if (!ok) {
      lock.release();
      await ctx.stores.runs.release(runId, 'interrupted', (e as Error).message).catch(() => undefined);
      patch(ctx, 'run', { status: 'failed', startup: null, error: describeError(e, 'Resuming the run') });
      await refreshResumable(ctx);
    }
  }
}

async function runTraining(
  ctx: AppContext,
  run: RunRecord | null,
  lock: HeldLock | null,
  lora: LoraSettings,
  train: TrainSettings,
  resumeFrom: Uint8Array | undefined,
  prior: HistoryPoint[],
): Promise<void> {
  const stores = ctx.stores;
  const history: HistoryPoint[] = [...prior];
  patch(ctx, 'run', {
    status: 'running',
    runId: run?.id ?? null,
    history: [...history],
    progress: null,
    error: null,
    tuning: null,
    startup: resumeFrom
      ? `${resumingText(prior.at(-1)?.step ?? null, ctx.store.get().run.totalSteps)}: starting…`
      : 'Starting…',
  });
  await refreshResumable(ctx);
  const lease = run && stores ? new RunLease(ctx, stores.runs, run) : null;
  let paintTimer: ReturnType<typeof setTimeout> | null = null;
  const paint = () => {
    paintTimer = null;
    const cur = ctx.store.get().run;
    patch(ctx, 'run', { history: [...history], status: cur.status === 'preparing' ? 'running' : cur.status });
  };
  try {
    const result = await ctx.engine.train(lora, train, {
      resumeFrom,
      onStage: (st) => {
        if (st.stage === 'tuning-kernels') {
          // Between steps (training goes on): a line of its own until every class is tuned.
          const t = st.tune ?? { done: 0, total: 1 };
          const text = `Tuning kernels for this GPU (first run only): shape class ${t.done + 1} of ${t.total}…`;
          patch(ctx, 'run', { tuning: t.done < t.total ? text : null });
          return;
        }
        const doing =
          st.stage === 'baseline'
            ? "measuring the base model's validation loss…"
            : 'compiling the GPU kernels for the first step…';
        patch(ctx, 'run', {
          totalSteps: st.totalSteps,
          startup: st.step > 0 ? `${resumingText(st.step, st.totalSteps)}: ${doing}` : capitalize(doing),
        });
      },
      onProgress: (p) => {
        history.push({ step: p.step, loss: p.loss, valLoss: p.valLoss, lr: p.lr });
        patch(ctx, 'run', { progress: p, totalSteps: p.totalSteps, startup: null });
        if (!paintTimer) paintTimer = setTimeout(paint, 100);
      },
      onCheckpoint: lease
        ? (blob, step) => lease.saveCheckpoint(blob, step, history, ctx.store.get().run.totalSteps)
        : undefined,
    });
    if (paintTimer) clearTimeout(paintTimer);
    paint();
    for (const detail of result.warnings) {
      ctx.notify({
        level: 'warning',
        title: /validation loss/.test(detail) ? 'Worse than the base model' : 'The adapter looks broken',
        detail,
      });
    }
    patch(ctx, 'run', { status: 'saving', startup: null, tuning: null });
    const s = ctx.store.get();
    const existing = s.library.adapters.map((a) => a.name);
    const meta: NewAdapter = {
      name: adapterName(s.model.info?.id ?? 'model', run?.dataset.fileName ?? s.dataset.fileName, lora.r, existing),
      baseModel: s.model.info?.id ?? 'unknown',
      baseSource: s.model.source,
      train,
      datasetName: run?.dataset.fileName ?? s.dataset.fileName,
      finalLoss: result.finalLoss,
      finalValLoss: result.finalValLoss,
      steps: result.steps,
      origin: 'trained',
      runId: run?.id ?? null,
      stoppedEarly: result.stoppedEarly,
      history: result.history,
      seconds: result.seconds,
    };
    let adapterId: string | null = null;
    try {
      if (!stores)
        throw Object.assign(new Error('Browser storage is unavailable.'), { name: 'StorageUnavailableError' });
      const rec = run
        ? await stores.runs.finish(run.id, meta, result.adapter, {
            status: result.stoppedEarly ? 'stopped' : 'finished',
            step: result.steps,
            history: result.history,
          })
        : await stores.adapters.save(meta, result.adapter);
      adapterId = rec.id;
    } catch (e) {
      patch(ctx, 'run', { unsaved: { name: meta.name, ...result.adapter } });
      ctx.notify({
        level: 'error',
        ...describeError(e, 'Saving the adapter'),
        action: 'Download it now from the Train view so it is not lost.',
      });
      // The run keeps its last checkpoint: let go of it so it can be resumed (here or in another tab).
      if (run && stores) {
        await stores.runs
          .release(
            run.id,
            'interrupted',
            `The finished adapter could not be saved (${describeError(e).title}); resume from the last checkpoint.`,
          )
          .catch(() => undefined);
      }
    }
    patch(ctx, 'run', {
      status: 'done',
      adapterId,
      stoppedEarly: result.stoppedEarly,
      history: result.history.length ? result.history : [...history],
    });
    await refreshLibrary(ctx);
    if (adapterId) {
      const id = adapterId;
      ctx.store.update((st) => ({
        ...st,
        compare: { ...st.compare, adapterIds: [id, ...st.compare.adapterIds.filter((x) => x !== id)].slice(0, 3) },
      }));
    }
  } catch (e) {
    if (paintTimer) clearTimeout(paintTimer);
    const msg = describeError(e, 'Training');
    patch(ctx, 'run', { status: 'failed', error: msg, history: [...history], startup: null, tuning: null });
    if (run && stores) {
      const lost = (e as Error).name === 'GpuDeviceLostError' || (e as Error).name === 'WorkerError';
      await stores.runs.release(run.id, lost ? 'interrupted' : 'failed', msg.detail).catch(() => undefined);
    }
  } finally {
    lease?.end();
    lock?.release();
    await refreshResumable(ctx);
  }
}

export function pauseTraining(ctx: AppContext): void {
  if (ctx.store.get().run.status !== 'running') return;
  ctx.engine.pause();
  patch(ctx, 'run', { status: 'paused' });
}

export function resumeTraining(ctx: AppContext): void {
  if (ctx.store.get().run.status !== 'paused') return;
  ctx.engine.resume();
  patch(ctx, 'run', { status: 'running' });
}

/** Stops after the current step; the adapter so far is saved. */
export function stopTraining(ctx: AppContext): void {
  const st = ctx.store.get().run.status;
  if (st !== 'running' && st !== 'paused') return;
  ctx.engine.stop();
  patch(ctx, 'run', { status: 'stopping' });
}

export async function discardRun(ctx: AppContext, runId: string): Promise<void> {
  if (!ctx.stores) return;
  const lock = await ctx.platform.lockRun(runId);
  if (!lock) {
    ctx.notify({ level: 'warning', title: 'Run is open in another tab', detail: 'It cannot be discarded from here.' });
    return;
  }
  try {
    await ctx.stores.runs.discard(runId);
  } finally {
    lock.release();
  }
  await refreshResumable(ctx);
}
