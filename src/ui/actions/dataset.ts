/**
 * The training data: an uploaded file, a paste, or the shipped demo set, read and tokenized by the
 * loaded model's tokenizer in the worker (EngineApi.loadDataset) into a DatasetSummary with the
 * format, counts, issues by line and rendered previews. An uploaded file stays a File: the worker
 * reads it by range (src/train/data/scan.ts), so a large one is never held whole by the page.
 */
import type { ColumnMapping, DatasetFormat } from '../../engine/types';
import { decodeUtf8, utf16Error } from '../../train/data/scan';
import { DEMO_DATASET_NAME, DEMO_DATASET_PATH } from '../catalog';
import { type AppContext, latestRequest, patch } from '../context';
import { type UserMessage, describeError } from '../errors';

/** How many rendered examples the worker sends for the paged preview. */
export const PREVIEW_COUNT = 200;
export const PAGE_SIZE = 5;

/**
 * Files larger than this are refused up front. The worker keeps 20 bytes per record of index and a
 * bounded token cache, whatever the file's size; the file itself stays on disk (and in the run
 * record, as a Blob).
 */
export const MAX_DATASET_BYTES = 2 * 2 ** 30;

/** Bytes read from the start of an upload to tell text from a binary file. */
const SNIFF_BYTES = 64 * 1024;

/** Whether there is any data: non-blank text, or a non-empty file. */
export function hasDatasetContent(content: string | Blob): boolean {
  return typeof content === 'string' ? content.trim() !== '' : content.size > 0;
}

export function datasetKey(ctx: AppContext): string {
  const s = ctx.store.get();
  return [
    s.train.maxLen,
    s.train.valFraction,
    s.train.seed,
    s.dataset.format,
    JSON.stringify(s.dataset.mapping),
    s.dataset.fileName,
    typeof s.dataset.content === 'string' ? s.dataset.content.length : s.dataset.content.size,
  ].join('|');
}

/**
 * Sets the text (from a file or a paste) and tokenizes it when a model is loaded. `current` is the
 * choice's latestRequest check (a new one by default): a choice the user has made another since
 * (a file picked while the demo set or a Hub download was still read) is dropped, returning false.
 */
export async function setDataset(
  ctx: AppContext,
  fileName: string,
  content: string | Blob,
  format?: DatasetFormat | 'auto',
  mapping: ColumnMapping | null = null,
  current = latestRequest(ctx, 'dataset'),
): Promise<boolean> {
  const columns = await fileColumns(fileName, content);
  if (!current()) return false;
  patch(ctx, 'dataset', {
    fileName,
    content,
    format: format ?? ctx.store.get().dataset.format,
    mapping,
    columns,
    summary: null,
    error: null,
    refused: null,
    key: null,
    page: 0,
    status: 'idle',
  });
  return analyseDataset(ctx);
}

/** A file's columns for the column mapping (parquet.ts's reader is loaded only now); null when unreadable. */
async function fileColumns(fileName: string, content: string | Blob): Promise<string[] | null> {
  try {
    const [{ datasetColumns }, { blobSource, textSource }] = await Promise.all([
      import('../../train/data/parquet'),
      import('../../train/data/source'),
    ]);
    return await datasetColumns(typeof content === 'string' ? textSource(content) : blobSource(content), fileName);
  } catch {
    return null;
  }
}

/** Reads the dataset again with another column mapping (null: the field names decide). */
export async function setDatasetMapping(ctx: AppContext, mapping: ColumnMapping | null): Promise<boolean> {
  patch(ctx, 'dataset', { mapping });
  return analyseDataset(ctx);
}

/** The demo set; `auto`: the app's default at start, which yields to a dataset the user chose meanwhile. */
export async function loadDemoDataset(ctx: AppContext, opts: { auto?: boolean } = {}): Promise<boolean> {
  const current = latestRequest(ctx, 'dataset', { onlyFirst: opts.auto });
  if (!current()) return false;
  try {
    const res = await ctx.platform.fetch(new URL(DEMO_DATASET_PATH, ctx.platform.pageUrl).href);
    if (!res.ok)
      throw new Error(`The demo dataset could not be read (HTTP ${res.status}); run \`node scripts/demo-assets.mjs\`.`);
    return await setDataset(ctx, DEMO_DATASET_NAME, await res.text(), 'auto', null, current);
  } catch (e) {
    if (current()) patch(ctx, 'dataset', { status: 'error', error: describeError(e, 'Reading the demo dataset') });
    return false;
  }
}

/**
 * Reads an upload. A file that cannot be used (too large, empty, binary, UTF-16, not UTF-8, or one
 * the worker's reader refuses) is refused saying why, and the dataset loaded before stays in use:
 * an empty file or a Windows-1252 CSV must not discard it (nor train on mojibake).
 */
export async function readDatasetFile(ctx: AppContext, file: File): Promise<boolean> {
  const current = latestRequest(ctx, 'dataset');
  if (file.size > MAX_DATASET_BYTES) {
    refuse(ctx, {
      title: 'File too large',
      detail: `${file.name} is ${(file.size / 2 ** 20).toFixed(0)} MB; Tabtune reads datasets up to ${MAX_DATASET_BYTES / 2 ** 20} MB in the browser.`,
      action: 'Use a sample of it (e.g. the first few thousand lines).',
    });
    return false;
  }
  let problem: UserMessage | null;
  try {
    problem = sniff(file, new Uint8Array(await file.slice(0, SNIFF_BYTES).arrayBuffer()));
  } catch (e) {
    problem = describeError(e, `Reading ${file.name}`);
  }
  if (!current()) return false;
  if (problem) {
    refuse(ctx, problem);
    return false;
  }
  const before = ctx.store.get().dataset;
  const ok = await setDataset(ctx, file.name, file, undefined, null, current);
  const after = ctx.store.get().dataset;
  if (!ok && after.status === 'error' && after.content === file && before.status === 'ready' && before.summary) {
    // The worker's reader refused it (e.g. a line past the sniffed head that is not UTF-8): the
    // engine still holds the dataset loaded before, and so does the page again.
    const error = after.error ?? { title: 'The dataset file could not be read', detail: file.name };
    patch(ctx, 'dataset', before);
    refuse(ctx, error);
  }
  return ok;
}

/** What is wrong with an upload, judged from its first bytes (the worker reads the rest), or null. */
function sniff(file: File, head: Uint8Array): UserMessage | null {
  // Parquet is binary: its reader checks it (src/train/data/parquet.ts).
  if (/\.parquet$/i.test(file.name) || new TextDecoder().decode(head.subarray(0, 4)) === 'PAR1') return null;
  const utf16 = utf16Error(head, file.name);
  if (utf16) return describeError(utf16);
  if (head.includes(0)) {
    return {
      title: 'Not a text file',
      detail: `${file.name} looks binary. Upload JSONL, JSON, CSV, TSV, Parquet or plain text.`,
    };
  }
  // Whole lines only (a character may be cut at the end of the head).
  const whole = head.length < file.size ? head.subarray(0, head.lastIndexOf(0x0a) + 1) : head;
  try {
    const text = decodeUtf8(whole, file.name);
    if (head.length === file.size && !text.trim())
      return { title: 'Empty file', detail: `${file.name} holds no text.` };
  } catch (e) {
    return describeError(e);
  }
  return null;
}

/** Shows why a file was refused, and that the dataset loaded before (if any) is still in use. */
function refuse(ctx: AppContext, message: UserMessage): void {
  const name = ctx.store.get().dataset.fileName;
  const kept = name ? `The dataset loaded before (${name}) is still in use.` : undefined;
  const action = [message.action, kept].filter(Boolean).join(' ') || undefined;
  patch(ctx, 'dataset', { refused: { ...message, action } });
}

/**
 * Tokenizes the current text with the current settings (max length, validation fraction, seed).
 * Does nothing when the summary is already up to date. Returns true when a summary is ready.
 */
export async function analyseDataset(ctx: AppContext, opts: { force?: boolean } = {}): Promise<boolean> {
  const s = ctx.store.get();
  if (!hasDatasetContent(s.dataset.content)) {
    if (s.dataset.fileName) {
      patch(ctx, 'dataset', {
        status: 'error',
        error: { title: 'Empty dataset', detail: `${s.dataset.fileName} holds no text.` },
      });
    }
    return false;
  }
  if (!s.model.info) return false;
  const key = datasetKey(ctx);
  if (!opts.force && s.dataset.key === key && s.dataset.summary) return true;
  patch(ctx, 'dataset', { status: 'loading', error: null, progress: null });
  let painted = 0;
  try {
    const summary = await ctx.engine.loadDataset(
      s.dataset.fileName || 'pasted text',
      s.dataset.content,
      {
        format: s.dataset.format,
        mapping: s.dataset.mapping,
        maxLen: s.train.maxLen,
        valFraction: s.train.valFraction,
        seed: s.train.seed,
        previewCount: PREVIEW_COUNT,
      },
      (progress) => {
        // An early summary is always shown (the worker sends one every ~250 ms); it stays shown
        // with the plain progress that follows, until the final summary replaces it.
        const now = Date.now();
        if (!progress.provisional && now - painted < 100) return;
        painted = now;
        const d = ctx.store.get().dataset;
        if (datasetKey(ctx) !== key || d.status !== 'loading') return;
        const provisional = progress.provisional ?? d.progress?.provisional;
        patch(ctx, 'dataset', { progress: provisional ? { ...progress, provisional } : progress });
      },
    );
    if (datasetKey(ctx) !== key) return analyseDataset(ctx); // changed meanwhile
    patch(ctx, 'dataset', { status: 'ready', summary, key, error: null, page: 0, progress: null });
    return true;
  } catch (e) {
    if (datasetKey(ctx) !== key) return false; // another dataset or settings since: their own read answers
    patch(ctx, 'dataset', {
      status: 'error',
      summary: null,
      key: null,
      progress: null,
      error: describeError(e, 'Reading the dataset'),
    });
    return false;
  }
}
