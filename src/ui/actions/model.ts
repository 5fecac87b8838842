/**
 * Picking and loading a model: read config.json first (from the cache, the Hub, the shipped demo
 * or a dropped folder) to show the cost and refuse what cannot fit, then load the whole model in
 * the worker with download progress. Loading resets the hyperparameters to the model's defaults.
 */
import type { LoadProgress } from '../../engine/types';
import { HF_ENDPOINT, type ModelSource, FileListSource, SourceError, UrlSource } from '../../model/source';
import {
  CONFIG_FILE,
  TOKENIZER_FILE,
  WEIGHTS_FILE,
  WEIGHTS_INDEX_FILE,
  loadConfigOnly,
  weightFileNames,
} from '../../model/load';
import { SafetensorsError, checkSafetensorsFile } from '../../model/safetensors';
import type { ModelConfig } from '../../model/config';
import { linearModuleNames } from '../../model/registry';
import { defaultTargetModules } from '../../lora/targets';
import { type ModelChoice, demoBaseUrl, sourceSpec, storedSource } from '../catalog';
import { type AppContext, patch } from '../context';
import { estimateCost } from '../cost';
import { type ModelFacts, settingsForModel } from '../settings';
import { type UserMessage, describeError } from '../errors';
import { refreshLibrary } from './library';
import type { AppState, DownloadView } from '../state';
import { hubHeaders, loadHubToken } from '../token';

function configSource(ctx: AppContext, choice: ModelChoice): ModelSource {
  const fetchFn = ctx.platform.fetch;
  switch (choice.kind) {
    case 'demo':
      return new UrlSource(demoBaseUrl(ctx.platform.pageUrl), choice.id, { fetch: fetchFn });
    case 'hub':
      return UrlSource.hub(choice.id, choice.revision ?? 'main', {
        fetch: fetchFn,
        cache: ctx.byteCache ?? undefined,
        token: loadHubToken(ctx.platform.settingsStorage),
      });
    case 'files':
      return new FileListSource(choice.files, choice.id);
  }
}

/** The files at the top of a Hub repo with their sizes, from the Hub's API (null when it cannot be had). */
async function hubFiles(
  ctx: AppContext,
  id: string,
  revision = 'main',
): Promise<{ path: string; size: number }[] | null> {
  try {
    const res = await ctx.platform.fetch(`${HF_ENDPOINT}/api/models/${id}/tree/${encodeURIComponent(revision)}`, {
      headers: hubHeaders(ctx.platform.settingsStorage),
    });
    if (!res.ok) return null;
    const list = (await res.json()) as { type?: string; path?: string; size?: number; lfs?: { size?: number } }[];
    if (!Array.isArray(list)) return null;
    return list
      .filter((f) => typeof f.path === 'string' && f.type !== 'directory')
      .map((f) => ({ path: f.path!, size: f.lfs?.size ?? f.size ?? 0 }));
  } catch {
    return null;
  }
}

/** Size of the safetensors weights in a file list (null when there are none). */
function weightBytes(list: { path: string; size: number }[]): number | null {
  let n = 0;
  for (const f of list) if (f.path.endsWith('.safetensors')) n += f.size;
  return n > 0 ? n : null;
}

function localWeightBytes(files: File[]): number {
  return files.filter((f) => f.name.endsWith('.safetensors')).reduce((n, f) => n + f.size, 0);
}

/**
 * What a chosen or dropped folder lacks to be a model Tabtune can load (config.json, tokenizer.json,
 * safetensors weights), found by the same file lookup the loader uses, so a wrong folder is refused
 * at once with every missing file named, before anything is read. Null when nothing is missing.
 */
export async function folderProblem(files: File[], id: string): Promise<UserMessage | null> {
  const src = new FileListSource(files, id);
  return missingFilesProblem(
    files.map((f) => f.name),
    (f) => src.has(f),
    id,
    'folder',
  );
}

/** One weights file for the pre-load check: its size, and a reader of bytes [start, end). */
interface WeightsFile {
  size: number;
  read: (start: number, end: number) => Promise<Uint8Array>;
}

/** The largest safetensors header the check reads from the Hub (real ones are KBs to a few MB). */
const HUB_CHECK_HEADER_BYTES = 16 << 20;

/**
 * A weights file that is cut short (an interrupted download or upload) or is not safetensors at
 * all, found from its header and size alone (a few KB read, by range from the Hub) with the
 * loader's own header validator, so the check names it instead of a load failing after reading it
 * whole. `open` gives a file's size and reader, or null when the check cannot tell (a file the
 * loader will report missing, a server that does not say the size). Null when every file looks whole.
 */
async function weightsProblem(
  src: ModelSource,
  id: string,
  open: (name: string) => Promise<WeightsFile | null>,
  action: string,
  maxHeaderRead?: number,
): Promise<UserMessage | null> {
  try {
    for (const name of await weightFileNames(src)) {
      const f = await open(name);
      if (f) await checkSafetensorsFile(f.read, f.size, name, maxHeaderRead);
    }
  } catch (e) {
    const name = (e as Error).name;
    if (name !== 'SafetensorsError' && name !== 'ModelLoadError') throw e;
    return { title: 'Damaged weights file', detail: `${id}: ${(e as Error).message}`, action };
  }
  return null;
}

/** The weights files of a chosen folder, read by slices. */
function folderWeightsProblem(files: File[], id: string): Promise<UserMessage | null> {
  const src = new FileListSource(files, id);
  const open = async (name: string): Promise<WeightsFile | null> => {
    const f = src.file(name) as File | null;
    // a missing shard is the loader's to name
    return f && { size: f.size, read: async (a, b) => new Uint8Array(await f.slice(a, b).arrayBuffer()) };
  };
  return weightsProblem(
    src,
    id,
    open,
    'Copy or download that file again (it may be cut short), or choose another folder.',
  );
}

/**
 * The weights files of a Hub repo, by range requests: the size from the response's Content-Range,
 * else from the repo's file list. A file the Hub cannot serve now (missing, denied, offline) is left
 * to the load, which names it.
 */
async function hubWeightsProblem(
  src: UrlSource,
  id: string,
  listed: { path: string; size: number }[] | null,
): Promise<UserMessage | null> {
  const ranged = async (name: string, a: number, b: number) => {
    const { bytes, size } = await src.readRange(name, a, b);
    if (bytes.byteLength < b - a) {
      throw new SafetensorsError(
        `${name}: the Hub served ${bytes.byteLength} of bytes ${a}-${b - 1}; the file is truncated.`,
      );
    }
    return { bytes, size };
  };
  const open = async (name: string): Promise<WeightsFile | null> => {
    let first: { bytes: Uint8Array; size: number | null };
    try {
      first = await src.readRange(name, 0, 8);
    } catch (e) {
      if (e instanceof SourceError) return null;
      throw e;
    }
    const size = first.size ?? listed?.find((f) => f.path === name)?.size ?? null;
    if (size === null) return null;
    const read = async (a: number, b: number) =>
      a === 0 && b <= first.bytes.byteLength ? first.bytes.subarray(0, b) : (await ranged(name, a, b)).bytes;
    return { size, read };
  };
  try {
    return await weightsProblem(
      src,
      id,
      open,
      'The file on the Hub is cut short or is not safetensors: pick another revision or model, or tell the repo owner.',
      HUB_CHECK_HEADER_BYTES,
    );
  } catch (e) {
    if (e instanceof SourceError) return null;
    throw e;
  }
}

/**
 * What a file list lacks to be a model Tabtune can load, with what to do. `names` are the file names
 * found, `has` the loader's own lookup; `where` words the message for a dropped folder or a Hub repo.
 */
async function missingFilesProblem(
  names: string[],
  has: (file: string) => boolean | Promise<boolean>,
  id: string,
  where: 'folder' | 'hub',
): Promise<UserMessage | null> {
  const missing: string[] = [];
  if (!(await has(CONFIG_FILE))) missing.push(CONFIG_FILE);
  if (!(await has(TOKENIZER_FILE))) missing.push(TOKENIZER_FILE);
  if (!(await has(WEIGHTS_FILE)) && !(await has(WEIGHTS_INDEX_FILE)))
    missing.push(`safetensors weights (${WEIGHTS_FILE}, or ${WEIGHTS_INDEX_FILE} with its shards)`);
  if (missing.length === 0) return null;
  const any = (re: RegExp) => names.some((n) => re.test(n));
  let action =
    where === 'folder'
      ? "Choose the folder that holds config.json (e.g. a clone of the model's Hugging Face repo)."
      : 'Pick another model: Tabtune needs config.json, tokenizer.json and safetensors weights (many repos have a version with them).';
  if (any(/^adapter_config\.json$/)) {
    action =
      where === 'folder'
        ? 'These look like the files of a LoRA adapter (adapter_config.json): import them in Adapters instead, and pick its base model here.'
        : "This repo holds a LoRA adapter (adapter_config.json): pick its base model here, and import the adapter's files in Adapters.";
  } else if (missing.length === 1 && missing[0]!.startsWith('safetensors weights') && any(/\.(bin|pt|pth)$/i)) {
    action =
      'Its weights are PyTorch files, which Tabtune cannot read: save them as safetensors (save_pretrained(..., safe_serialization=True)).';
  } else if (missing.length === 1 && missing[0]!.startsWith('safetensors weights') && any(/\.gguf$/i)) {
    action = 'GGUF files cannot be read: use the original (safetensors) version of the model.';
  } else if (
    missing.length === 1 &&
    missing[0] === TOKENIZER_FILE &&
    any(/^(tokenizer\.model|vocab\.json|merges\.txt)$/)
  ) {
    action = 'Tabtune needs the "fast" tokenizer file tokenizer.json (saved by recent transformers versions).';
  }
  const shown = names.slice(0, 6).join(', ') + (names.length > 6 ? `, … (${names.length} files)` : '');
  const list =
    missing.length === 1 ? missing[0]! : `${missing.slice(0, -1).join(', ')} and ${missing[missing.length - 1]!}`;
  return {
    title: where === 'folder' ? 'Not a model folder' : 'Not a model Tabtune can load',
    detail: `"${id}"${where === 'hub' ? ' on the Hub' : ''} has no ${list}. Found: ${shown || 'no files'}.`,
    action,
  };
}

/**
 * An error about a model, sure to name it: messages about a file ("model-00002-of-00002.safetensors:
 * tensor ... past the end of the file") say which model they are about, and a file that was cut
 * short says what to do about it.
 */
export function modelError(e: unknown, doing: string, choice: ModelChoice): UserMessage {
  const m = describeError(e, doing);
  const detail = m.detail.includes(choice.id) ? m.detail : `${choice.id}: ${m.detail}`;
  let action = m.action;
  if (!action && /truncated|past the end|incomplete|ended after/i.test(m.detail)) {
    action =
      choice.kind === 'hub'
        ? 'The file was cut short: try again to download it afresh (a damaged copy is not kept). If it keeps failing, the file on the Hub is broken: pick another model or revision.'
        : 'The file is cut short: copy the model folder again (e.g. from its Hugging Face repo) and choose it once more.';
  }
  return { ...m, detail, ...(action ? { action } : {}) };
}

/** The folder choice whose files are loaded now, per app store (a folder is known by its files, not its name). */
const loadedFolders = new WeakMap<object, ModelChoice>();

/**
 * Whether the chosen model is the one loaded. Two folders with the same name (a model saved again
 * into its folder, or another copy) are different choices: the new one can be loaded.
 */
export function isChoiceLoaded(store: object, s: Pick<AppState, 'model'>): boolean {
  const { choice, info, load } = s.model;
  if (!choice || !info || info.id !== choice.id || load.status !== 'ready') return false;
  return choice.kind !== 'files' || loadedFolders.get(store) === choice;
}

/**
 * Whether `choice` is still the model picked: an async step's answer about it is written only then.
 * Another pick meanwhile (even a folder of the same name, or the same Hub id at another revision) is
 * a new choice object with its own check.
 */
function stillPicked(ctx: AppContext, choice: ModelChoice): boolean {
  return ctx.store.get().model.choice === choice;
}

/** Recomputes the pre-download cost for the current settings (after a settings change). */
export function recomputeCost(ctx: AppContext): void {
  const s = ctx.store.get();
  const cfg = s.model.check.config;
  if (!cfg || !s.model.check.cost) return;
  const cost = estimateCost(cfg, s.lora, s.train, s.gpu.info, {
    downloadBytes: s.model.check.cost.downloadBytes,
    frozen: s.frozen,
  });
  patch(ctx, 'model', { check: { ...s.model.check, cost } });
}

/** Selects a model and reads its config.json to show what it costs. */
export async function checkModel(ctx: AppContext, choice: ModelChoice): Promise<void> {
  // A failed load's message is about the model it tried: picking a model clears it.
  const m0 = ctx.store.get().model;
  const load =
    m0.load.status === 'error'
      ? { status: m0.info ? ('ready' as const) : ('idle' as const), progress: null, error: null }
      : m0.load;
  patch(ctx, 'model', {
    choice,
    check: { status: 'checking', config: null, cost: null, cached: false, error: null },
    load,
  });
  let config: ModelConfig;
  let downloadBytes: number | null = null;
  let cached = false;
  // This check's answer shows only while its choice is still the one picked.
  const refuse = (error: UserMessage) => {
    if (stillPicked(ctx, choice))
      patch(ctx, 'model', { check: { status: 'error', config: null, cost: null, cached: false, error } });
  };
  if (choice.kind === 'files') {
    const problem =
      (await folderProblem(choice.files, choice.id)) ?? (await folderWeightsProblem(choice.files, choice.id));
    if (problem) return refuse(problem);
  }
  try {
    config = await loadConfigOnly(configSource(ctx, choice));
    if (choice.kind === 'files') downloadBytes = localWeightBytes(choice.files);
    else if (choice.kind === 'hub') {
      cached = (await ctx.stores?.models.isCached(choice.id).catch(() => false)) ?? false;
      const rec = cached ? await ctx.stores?.models.get(choice.id) : undefined;
      if (rec?.bytes) downloadBytes = rec.bytes;
      else {
        // The repo's file list: its weights' size, and a repo that lacks a file Tabtune needs
        // (PyTorch-only weights, no tokenizer.json) is refused now rather than after downloading.
        const list = await hubFiles(ctx, choice.id, choice.revision);
        if (list && list.length > 0) {
          const names = new Set(list.map((f) => f.path));
          const problem = await missingFilesProblem([...names], (f) => names.has(f), choice.id, 'hub');
          if (problem) return refuse(problem);
          downloadBytes = weightBytes(list);
        }
        // A truncated or random weights file on the Hub: its header, read by range, says so now.
        const damaged = await hubWeightsProblem(configSource(ctx, choice) as UrlSource, choice.id, list);
        if (damaged) return refuse(damaged);
      }
    } else cached = true;
  } catch (e) {
    return refuse(modelError(e, 'Checking the model', choice));
  }
  if (!stillPicked(ctx, choice)) return;
  const s = ctx.store.get();
  // Cost at the settings this model would get when loaded (the user's own, once edited).
  const { lora, train } = settingsForModel(s, s.settingsEdited, factsOf(choice.id, config));
  const est = await ctx.platform.storageEstimate();
  const cost = estimateCost(config, lora, train, s.gpu.info, {
    downloadBytes: downloadBytes ?? undefined,
    storageFree: cached || choice.kind !== 'hub' || !est ? null : est.quota - est.usage,
    frozen: s.frozen,
  });
  if (stillPicked(ctx, choice)) patch(ctx, 'model', { check: { status: 'ready', config, cost, cached, error: null } });
}

/** What the settings depend on, from config.json alone (before the model is loaded). */
function factsOf(id: string, config: ModelConfig): ModelFacts {
  let defaultTargets: string[] | null;
  try {
    defaultTargets = defaultTargetModules(config.modelType);
  } catch {
    defaultTargets = null;
  }
  return { id, defaultTargets, linearModules: linearModuleNames(config), maxPositions: config.maxPositions };
}

/** Loads the chosen model in the worker. Returns true when it loaded. */
export async function loadChosenModel(ctx: AppContext, opts: { keepSettings?: boolean } = {}): Promise<boolean> {
  const s0 = ctx.store.get();
  const choice = s0.model.choice;
  if (!choice) return false;
  if (s0.model.check.cost?.blockers.length) return false;
  if (choice.kind === 'hub') void ctx.platform.persistStorage();
  const expectedBytes = s0.model.check.cost?.downloadBytes ?? null;
  const done = new Map<string, number>();
  let view: DownloadView = { file: '', phase: 'download', fileLoaded: 0, fileTotal: null, bytes: 0, expectedBytes };
  let lastPaint = 0;
  const onProgress = (p: LoadProgress) => {
    // The expected size is that of the weights, so the running total counts the weight files only
    // (with the tokenizer's megabytes in it, it would pass 100%).
    if (p.phase === 'download' && (expectedBytes === null || p.file.endsWith('.safetensors')))
      done.set(p.file, p.loaded);
    let bytes = 0;
    for (const v of done.values()) bytes += v;
    // A new file or phase is always painted: a stalled request must not leave the step before it on screen.
    const changed = p.file !== view.file || p.phase !== view.phase;
    view = { file: p.file, phase: p.phase, fileLoaded: p.loaded, fileTotal: p.total, bytes, expectedBytes };
    const now = Date.now();
    if (changed || now - lastPaint > 80 || p.loaded === p.total || p.phase !== 'download') {
      lastPaint = now;
      patch(ctx, 'model', { load: { status: 'loading', progress: view, error: null } });
    }
  };
  patch(ctx, 'model', { load: { status: 'loading', progress: view, error: null }, info: null, source: null });
  patch(ctx, 'dataset', {
    status: ctx.store.get().dataset.content ? 'idle' : ctx.store.get().dataset.status,
    summary: null,
    key: null,
  });
  patch(ctx, 'estimate', { status: 'idle', value: null, error: null });
  try {
    const token = choice.kind === 'hub' ? loadHubToken(ctx.platform.settingsStorage) : null;
    const spec = { ...sourceSpec(choice), ...(token ? { token } : {}) };
    const info = await ctx.engine.loadModel(spec, onProgress, s0.frozen);
    const source = storedSource(choice);
    if (choice.kind === 'files') loadedFolders.set(ctx.store, choice);
    else loadedFolders.delete(ctx.store);
    patch(ctx, 'model', { load: { status: 'ready', progress: null, error: null }, info, source });
    if (!opts.keepSettings) {
      const cur = ctx.store.get();
      const { lora, train, changes } = settingsForModel(cur, cur.settingsEdited, info);
      ctx.store.update((s) => ({ ...s, lora, train }));
      if (changes.length) {
        ctx.notify({
          level: 'info',
          title: `Your settings are kept for ${info.id}`,
          detail: `Except what does not apply to it: ${changes.join(' ')}`,
        });
      }
    }
    if (choice.kind === 'hub' && ctx.stores) {
      const urls = ctx.engine.lastCachedUrls ?? [];
      const bytes = s0.model.check.cost?.downloadBytes ?? info.weightBytes;
      await ctx.stores.models.record(info.id, source, urls, bytes, info.parameters).catch(() => undefined);
      // Not onto the check of a folder dropped during the load (the pickers wait; the drop zone does not).
      if (stillPicked(ctx, choice)) patch(ctx, 'model', { check: { ...ctx.store.get().model.check, cached: true } });
      await refreshLibrary(ctx);
    }
    return true;
  } catch (e) {
    const error = modelError(e, 'Loading the model', choice);
    const kept = (e as { keptModel?: unknown } | null)?.keptModel;
    const prev = s0.model.info;
    if (prev && typeof kept === 'string' && kept === prev.id) {
      // The download or the files failed before the engine let the loaded model go: it stays in
      // use, with its dataset and estimate, and the message says so.
      patch(ctx, 'model', {
        load: {
          status: 'error',
          progress: null,
          error: { ...error, action: `${error.action ? `${error.action} ` : ''}${prev.id} is still loaded.` },
        },
        info: prev,
        source: s0.model.source,
      });
      const d = ctx.store.get().dataset;
      if (d.content === s0.dataset.content)
        patch(ctx, 'dataset', { status: s0.dataset.status, summary: s0.dataset.summary, key: s0.dataset.key });
      if (ctx.store.get().estimate.status === 'idle') patch(ctx, 'estimate', s0.estimate);
      return false;
    }
    patch(ctx, 'model', { load: { status: 'error', progress: null, error } });
    return false;
  }
}
