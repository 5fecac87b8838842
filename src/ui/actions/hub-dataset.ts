/**
 * A dataset from the Hugging Face Hub (Data step): list a dataset repo's data files (with the
 * access token, for gated and private sets), choose a split (all its files, read in order as one
 * dataset, or one of them), download with progress (through the Cache API like model files, so
 * each is downloaded once) and read it as an upload is read, with the column mapping its columns
 * suggest. A split's files travel as one Blob (src/train/data/shards.ts).
 */
import type { ColumnMapping } from '../../engine/types';
import {
  type HubDataFile,
  hubDatasetSource,
  listHubDataset,
  splitDataName,
  splitFiles,
  splitsOf,
} from '../../train/data/hub';
import { suggestMapping } from '../../train/data/mapping';
import { cachingFetch } from '../../store/model-cache';
import { type AppContext, latestRequest, patch } from '../context';
import { describeError } from '../errors';
import { ALL_SPLIT_FILES, type HubDataSlice } from '../state';
import { loadHubToken } from '../token';
import { setDataset } from './dataset';

/** Field names records.ts reads as they are: with one of them, a JSON or CSV file needs no mapping. */
const RECORD_FIELDS = ['text', 'instruction', 'output', 'prompt', 'messages', 'conversations'];

function hubPatch(ctx: AppContext, value: Partial<HubDataSlice>): void {
  patch(ctx, 'dataset', { hub: { ...ctx.store.get().dataset.hub, ...value } });
}

function access(ctx: AppContext, fetchFn = ctx.platform.fetch) {
  return { token: loadHubToken(ctx.platform.settingsStorage), fetch: fetchFn };
}

/** Lists the data files of a dataset repo; the first split and its first file are chosen. */
export async function listHubFiles(ctx: AppContext, repo: string): Promise<boolean> {
  const id = repo.trim();
  hubPatch(ctx, { repo: id, status: 'listing', files: [], error: null, progress: null });
  try {
    const files = await listHubDataset(id, access(ctx));
    const split = splitsOf(files)[0]!;
    hubPatch(ctx, { status: 'listed', files, split, path: defaultPath(files, split) });
    return true;
  } catch (e) {
    hubPatch(ctx, { status: 'error', error: describeError(e, `Listing the dataset ${id}`) });
    return false;
  }
}

/** What a split reads first: its only file, or all of them. */
function defaultPath(files: readonly HubDataFile[], split: string): string {
  const of = files.filter((f) => f.split === split);
  return of.length > 1 ? ALL_SPLIT_FILES : (of[0]?.path ?? '');
}

/** Chooses a split (all its files, or its only one). */
export function chooseHubSplit(ctx: AppContext, split: string): void {
  hubPatch(ctx, { split, path: defaultPath(ctx.store.get().dataset.hub.files, split) });
}

export function chooseHubFile(ctx: AppContext, path: string): void {
  hubPatch(ctx, { path });
}

/** The mapping a downloaded file starts with: its columns' suggestion, unless its field names are read as they are. */
function startMapping(file: HubDataFile, columns: string[]): ColumnMapping | null {
  if (!/\.parquet$/i.test(file.path) && columns.some((c) => RECORD_FIELDS.includes(c.toLowerCase()))) return null;
  return suggestMapping(columns);
}

/**
 * Downloads the chosen file, or every file of the split in order (each taken from the cache when
 * there), and reads them as the dataset.
 */
export async function downloadHubFile(ctx: AppContext): Promise<boolean> {
  // A file uploaded (or the demo set chosen) during the download is the dataset, not the download.
  const current = latestRequest(ctx, 'dataset');
  const hub = ctx.store.get().dataset.hub;
  const files =
    hub.path === ALL_SPLIT_FILES ? splitFiles(hub.files, hub.split) : hub.files.filter((f) => f.path === hub.path);
  if (files.length === 0) return false;
  const total = files.reduce((n, f) => n + f.size, 0);
  hubPatch(ctx, { status: 'downloading', error: null, progress: { loaded: 0, total, file: files[0]!.path } });
  const blobs: Blob[] = [];
  let painted = 0;
  let before = 0;
  const source = hubDatasetSource(hub.repo, access(ctx, cachingFetch(ctx.platform.fetch)));
  for (const file of files) {
    const parts: Uint8Array[] = [];
    try {
      await source.stream(
        file.path,
        (chunk) => void parts.push(chunk.slice()),
        (loaded, size) => {
          const now = Date.now();
          if (now - painted < 100 && loaded !== size) return;
          painted = now;
          hubPatch(ctx, { progress: { loaded: before + loaded, total, file: file.path } });
        },
      );
    } catch (e) {
      hubPatch(ctx, { status: 'error', progress: null, error: describeError(e, `Downloading ${file.path}`) });
      return false;
    }
    blobs.push(new Blob(parts as BlobPart[]));
    before += file.size;
  }
  hubPatch(ctx, { status: 'listed', progress: null });
  const name = splitDataName(hub.repo, files);
  const [{ datasetColumns }, { blobSource }, { shardBundle }] = await Promise.all([
    import('../../train/data/parquet'),
    import('../../train/data/source'),
    import('../../train/data/shards'),
  ]);
  const blob =
    files.length === 1
      ? blobs[0]!
      : shardBundle(files.map((f, k) => ({ name: `${hub.repo}/${f.path}`, blob: blobs[k]! })));
  // A file whose columns cannot be read gets no mapping: the reader then says what is wrong with it.
  const mapping = await datasetColumns(blobSource(blob), name).then(
    (columns) => startMapping(files[0]!, columns),
    () => null,
  );
  return setDataset(ctx, name, blob, 'auto', mapping, current);
}
