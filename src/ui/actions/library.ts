/**
 * The adapter library and the model cache: list, rename, delete, import PEFT files, export them
 * (zip or the two files), and the storage the browser gives this site.
 */
import type { PeftFiles } from '../../engine/types';
import {
  ADAPTER_CONFIG_NAME,
  ADAPTER_MODEL_NAME,
  type NamedBytes,
  adapterReadme,
  collectPeftFiles,
  safeFileName,
  zipPeft,
} from '../../store/peft-files';
import type { AdapterRecord } from '../../store/types';
import { type AppContext, latestRequest, patch } from '../context';
import { loadHubToken } from '../token';
import { describeError } from '../errors';

/** Whether two model ids name the same model ("org/Name" and a local folder "Name" do), as the engine's PEFT import judges it. */
export function sameBaseModel(a: string, b: string): boolean {
  const last = (id: string) =>
    (
      id
        .replace(/[\\/]+$/, '')
        .split(/[\\/]/)
        .pop() ?? id
    ).toLowerCase();
  return last(a) === last(b);
}

/** `base`, or `base (2)`, `base (3)`, ... : the first that no existing adapter has. */
export function uniqueName(base: string, existing: string[]): string {
  if (!existing.includes(base)) return base;
  for (let i = 2; ; i++) if (!existing.includes(`${base} (${i})`)) return `${base} (${i})`;
}

export async function refreshLibrary(ctx: AppContext): Promise<void> {
  if (!ctx.stores) return;
  // A read that ends after a later one (its storage estimate slow) would show the library as it was
  // before that: an adapter deleted meanwhile back in the list.
  const current = latestRequest(ctx, 'library');
  try {
    const [adapters, models, est, persisted] = await Promise.all([
      ctx.stores.adapters.list(),
      ctx.stores.models.list(),
      ctx.platform.storageEstimate(),
      ctx.platform.isPersisted(),
    ]);
    if (!current()) return;
    const known = new Set(adapters.map((a) => a.id));
    ctx.store.update((s) => ({
      ...s,
      library: { ...s.library, adapters, models, storage: est ? { ...est, persisted } : null },
      // A deleted adapter leaves Compare too: its pick, its output column and its row of losses.
      compare: {
        ...s.compare,
        adapterIds: s.compare.adapterIds.filter((id) => known.has(id)),
        columns: s.compare.columns.filter((col) => col.key === 'base' || known.has(col.key)),
        evalColumns: s.compare.evalColumns.filter((col) => col.key === 'base' || known.has(col.key)),
      },
    }));
  } catch (e) {
    ctx.notify({ level: 'error', ...describeError(e, 'Reading the adapter library') });
  }
}

export async function renameAdapter(ctx: AppContext, id: string, name: string): Promise<boolean> {
  if (!ctx.stores) return false;
  try {
    await ctx.stores.adapters.rename(id, name);
    await refreshLibrary(ctx);
    return true;
  } catch (e) {
    ctx.notify({ level: 'error', ...describeError(e, 'Renaming the adapter') });
    return false;
  }
}

export async function deleteAdapter(ctx: AppContext, id: string): Promise<void> {
  if (!ctx.stores) return;
  try {
    await ctx.stores.adapters.remove(id);
    ctx.engine.forgetAdapter?.(id);
    await refreshLibrary(ctx);
  } catch (e) {
    ctx.notify({ level: 'error', ...describeError(e, 'Deleting the adapter') });
  }
}

export async function deleteCachedModel(ctx: AppContext, id: string): Promise<void> {
  if (!ctx.stores) return;
  try {
    await ctx.stores.models.remove(id);
    await refreshLibrary(ctx);
    const s = ctx.store.get();
    if (s.model.choice?.id === id) patch(ctx, 'model', { check: { ...s.model.check, cached: false } });
  } catch (e) {
    ctx.notify({ level: 'error', ...describeError(e, 'Deleting the cached model') });
  }
}

/** Imports a PEFT adapter from the chosen files (the two files, or a zip). */
export async function importAdapter(
  ctx: AppContext,
  files: { name: string; bytes: () => Promise<Uint8Array> }[],
): Promise<AdapterRecord | null> {
  if (!ctx.stores) return null;
  patch(ctx, 'library', { importing: true, importError: null });
  try {
    const named: NamedBytes[] = [];
    for (const f of files) named.push({ name: f.name, bytes: await f.bytes() });
    const peft = collectPeftFiles(named);
    const zip = files.find((f) => /\.zip$/i.test(f.name));
    const base = zip ? zip.name.replace(/\.zip$/i, '') : 'imported adapter';
    // Names tell adapters apart in Compare: a second import of "adapter.zip" is "adapter (2)".
    const existing = (await ctx.stores.adapters.list()).map((a) => a.name);
    const rec = await ctx.stores.adapters.import(peft, uniqueName(base, existing));
    await refreshLibrary(ctx);
    patch(ctx, 'library', { importing: false });
    const loaded = ctx.store.get().model.info?.id ?? null;
    if (loaded && rec.baseModel !== 'unknown' && !sameBaseModel(rec.baseModel, loaded)) {
      ctx.notify({
        level: 'warning',
        title: 'Adapter imported, for another base model',
        detail: `"${rec.name}" was trained on ${rec.baseModel}, but the loaded model is ${loaded}. It is kept in the library.`,
        action: `Load ${rec.baseModel} in Model to use it in Compare; on ${loaded} it only works if the two models have the same layers and sizes.`,
      });
    } else {
      ctx.notify({
        level: 'info',
        view: 'library',
        title: 'Adapter imported',
        detail: `"${rec.name}" (base model ${rec.baseModel}) is in the library.`,
      });
    }
    return rec;
  } catch (e) {
    patch(ctx, 'library', { importing: false, importError: describeError(e, 'Importing the adapter') });
    return null;
  }
}

export interface DownloadFile {
  name: string;
  bytes: Uint8Array;
  type: string;
}

/** The files to download for an adapter: 'zip', 'config' or 'model'. */
export function exportFiles(
  rec: Pick<AdapterRecord, 'name' | 'baseModel' | 'config' | 'finalLoss' | 'steps' | 'datasetName'>,
  files: PeftFiles,
  what: 'zip' | 'config' | 'model',
): DownloadFile {
  switch (what) {
    case 'config':
      return {
        name: ADAPTER_CONFIG_NAME,
        bytes: new TextEncoder().encode(files.adapterConfig),
        type: 'application/json',
      };
    case 'model':
      return { name: ADAPTER_MODEL_NAME, bytes: files.adapterModel, type: 'application/octet-stream' };
    case 'zip': {
      const extra: string[] = [];
      if (rec.datasetName) extra.push(`dataset: ${rec.datasetName}`);
      if (rec.steps !== null) extra.push(`steps: ${rec.steps}`);
      if (rec.finalLoss !== null) extra.push(`final training loss: ${rec.finalLoss.toFixed(4)}`);
      const readme = adapterReadme(rec.name, rec.baseModel, rec.config, extra);
      return { name: `${safeFileName(rec.name)}.zip`, bytes: zipPeft(files, readme), type: 'application/zip' };
    }
  }
}

export async function adapterDownload(
  ctx: AppContext,
  id: string,
  what: 'zip' | 'config' | 'model',
): Promise<DownloadFile | null> {
  if (!ctx.stores) return null;
  try {
    const rec = await ctx.stores.adapters.get(id);
    if (!rec) throw new Error('This adapter no longer exists (deleted in another tab?).');
    return exportFiles(rec, await ctx.stores.adapters.files(id), what);
  } catch (e) {
    ctx.notify({ level: 'error', ...describeError(e, 'Exporting the adapter') });
    return null;
  }
}

/**
 * The loaded model with adapter `id` folded in (W + scale·B·A), as a zip of a Hugging Face model
 * folder made by the worker (streamed into a Blob). Null when it cannot be made (said in a notice).
 */
export async function mergedDownload(
  ctx: AppContext,
  id: string,
  onProgress?: (done: number, total: number) => void,
): Promise<{ name: string; blob: Blob; files: string[] } | null> {
  if (!ctx.stores) return null;
  const model = ctx.store.get().model.info;
  try {
    const rec = await ctx.stores.adapters.get(id);
    if (!rec) throw new Error('This adapter no longer exists (deleted in another tab?).');
    if (!model || !sameBaseModel(rec.baseModel, model.id)) {
      ctx.notify({
        level: 'error',
        title: 'Cannot merge this adapter',
        detail: `It was trained on ${rec.baseModel}, and ${model ? `${model.id} is loaded` : 'no model is loaded'}: load ${rec.baseModel} first (Model), then merge.`,
      });
      return null;
    }
    const files = await ctx.stores.adapters.files(id);
    const merged = await ctx.engine.mergeAdapter(files, {}, onProgress);
    // A LoftQ adapter comes out as PEFT's LoftQ workflow keeps it: the adapter + its backbone folder.
    const suffix = files.loftqBackbone ? 'loftq' : 'merged';
    return { name: `${safeFileName(`${rec.name}-${suffix}`)}.zip`, blob: merged.zip, files: merged.files };
  } catch (e) {
    ctx.notify({ level: 'error', ...describeError(e, 'Merging the adapter') });
    return null;
  }
}

/**
 * Pushes adapter `id` to a Hugging Face model repo with the access token kept in this browser:
 * the PEFT files, a model card from its run (dataset, settings, losses) and the loss plot
 * (engine/hub-push.ts). Null when it failed (said in a notice).
 */
export async function pushToHub(
  ctx: AppContext,
  id: string,
  repo: string,
  isPrivate: boolean,
  onPhase?: (phase: string) => void,
): Promise<{ url: string; created: boolean } | null> {
  if (!ctx.stores) return null;
  try {
    const rec = await ctx.stores.adapters.get(id);
    if (!rec) throw new Error('This adapter no longer exists (deleted in another tab?).');
    const { pushAdapter } = await import('../../engine/hub-push');
    const run =
      rec.origin === 'trained'
        ? {
            datasetName: rec.datasetName,
            train: rec.train,
            finalLoss: rec.finalLoss,
            finalValLoss: rec.finalValLoss,
            steps: rec.steps,
            seconds: rec.seconds ?? null,
            history: rec.history,
          }
        : null;
    const r = await pushAdapter({
      repo: repo.trim(),
      token: loadHubToken(ctx.platform.settingsStorage),
      private: isPrivate,
      files: await ctx.stores.adapters.files(id),
      run,
      fetch: ctx.platform.fetch,
      onPhase,
    });
    ctx.notify({
      level: 'info',
      title: r.created ? 'Pushed to a new repo on the Hub' : 'Updated the repo on the Hub',
      detail: `${rec.name}: ${r.url}`,
    });
    return r;
  } catch (e) {
    ctx.notify({ level: 'error', ...describeError(e, 'Pushing the adapter to the Hub') });
    return null;
  }
}
