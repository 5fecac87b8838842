/**
 * A dataset from the Hugging Face Hub (Data step): list a dataset repo's data files (with the
 * access token, for gated and private sets), choose a split and a file, download it with progress
 * (through the Cache API like model files, so it is downloaded once) and read it as an upload is
 * read, with the column mapping its columns suggest.
 */
import type { ColumnMapping } from '../../engine/types';
import { type HubDataFile, hubDatasetSource, listHubDataset, pickFile } from '../../train/data/hub';
import { suggestMapping } from '../../train/data/mapping';
import { cachingFetch } from '../../store/model-cache';
import { type AppContext, patch } from '../context';
import { describeError } from '../errors';
import type { HubDataSlice } from '../state';
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
    const first = pickFile(files, null);
    hubPatch(ctx, { status: 'listed', files, split: first.split, path: first.path });
    return true;
  } catch (e) {
    hubPatch(ctx, { status: 'error', error: describeError(e, `Listing the dataset ${id}`) });
    return false;
  }
}

/** Chooses a split (and its first file). */
export function chooseHubSplit(ctx: AppContext, split: string): void {
  const { files } = ctx.store.get().dataset.hub;
  hubPatch(ctx, { split, path: files.find((f) => f.split === split)?.path ?? '' });
}

export function chooseHubFile(ctx: AppContext, path: string): void {
  hubPatch(ctx, { path });
}

/** The mapping a downloaded file starts with: its columns' suggestion, unless its field names are read as they are. */
function startMapping(file: HubDataFile, columns: string[]): ColumnMapping | null {
  if (!/\.parquet$/i.test(file.path) && columns.some((c) => RECORD_FIELDS.includes(c.toLowerCase()))) return null;
  return suggestMapping(columns);
}

/** Downloads the chosen file (or takes it from the cache) and reads it as the dataset. */
export async function downloadHubFile(ctx: AppContext): Promise<boolean> {
  const hub = ctx.store.get().dataset.hub;
  const file = hub.files.find((f) => f.path === hub.path);
  if (!file) return false;
  hubPatch(ctx, { status: 'downloading', error: null, progress: { loaded: 0, total: file.size } });
  const parts: Uint8Array[] = [];
  let painted = 0;
  try {
    const source = hubDatasetSource(hub.repo, access(ctx, cachingFetch(ctx.platform.fetch)));
    await source.stream(
      file.path,
      (chunk) => void parts.push(chunk.slice()),
      (loaded, total) => {
        const now = Date.now();
        if (now - painted < 100 && loaded !== total) return;
        painted = now;
        hubPatch(ctx, { progress: { loaded, total: total ?? file.size } });
      },
    );
  } catch (e) {
    hubPatch(ctx, { status: 'error', progress: null, error: describeError(e, `Downloading ${file.path}`) });
    return false;
  }
  hubPatch(ctx, { status: 'listed', progress: null });
  const blob = new Blob(parts as BlobPart[]);
  const name = `${hub.repo}/${file.path}`;
  const [{ datasetColumns }, { blobSource }] = await Promise.all([
    import('../../train/data/parquet'),
    import('../../train/data/source'),
  ]);
  // A file whose columns cannot be read gets no mapping: the reader then says what is wrong with it.
  const mapping = await datasetColumns(blobSource(blob), name).then(
    (columns) => startMapping(file, columns),
    () => null,
  );
  return setDataset(ctx, name, blob, 'auto', mapping);
}
