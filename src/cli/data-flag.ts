/**
 * The CLI's `--data`: a local file, or a Hugging Face dataset as `hf:owner/name[:split]` (a prefix,
 * since "owner/name" could be a local path). A Hub dataset's split (all its files, read in order as
 * one dataset as the datasets library does; `--data-file PATH` picks one) is downloaded once into the
 * cache folder, file by file, keyed by each file's content hash, with progress on stderr; HF_TOKEN opens gated and private sets and HF_ENDPOINT points at another Hub,
 * as for Hugging Face's own tools. `--columns` maps the columns that hold the records (mapping.ts).
 *
 * Cache folder: $TABTUNE_CACHE, else $XDG_CACHE_HOME/tabtune, else ~/.cache/tabtune;
 * datasets/OWNER--NAME/HASH/PATH inside it.
 *
 * openDataRef / loadData open what resolveDataFlag found (one file, or a split's files as one).
 */

import { createWriteStream, existsSync, mkdirSync, openAsBlob, renameSync, rmSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { Engine } from '../engine/engine';
import type { ColumnMapping, DatasetSummary } from '../engine/types';
import {
  type HubAccess,
  type HubDataFile,
  hubDatasetSource,
  listHubDataset,
  parseHubDataRef,
  pickFile,
  splitDataName,
  splitFiles,
} from '../train/data/hub';
import { parseMapping } from '../train/data/mapping';
import { shardBundle } from '../train/data/shards';
import { type FlagSpec, type ParsedFlags, UsageError, str } from './args';
import { requireFile } from './common';

export const DATA_FLAGS: Record<string, FlagSpec> = {
  'data-file': { type: 'string' },
  columns: { type: 'string' },
};

export interface DataRef {
  /** The file on disk (a split in several files: the first). */
  path: string;
  /**
   * The name the dataset is read under (messages, the summary): "owner/name/data/train.parquet" for a
   * Hub file, "owner/name/train (3 files)" for a split in several.
   */
  name: string;
  /** A Hub split in several files: each on disk with its name, in order (read as one, shards.ts). */
  shards?: { path: string; name: string }[];
  mapping: ColumnMapping | null;
}

function cacheRoot(): string {
  if (process.env.TABTUNE_CACHE) return process.env.TABTUNE_CACHE;
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'tabtune');
}

function mb(n: number): string {
  return `${(n / 2 ** 20).toFixed(1)} MB`;
}

/** The --data file (downloaded first when it is on the Hub) and the --columns mapping. */
export async function resolveDataFlag(f: ParsedFlags): Promise<DataRef> {
  const given = str(f, 'data')!;
  const columns = str(f, 'columns');
  let mapping: ColumnMapping | null = null;
  if (columns) {
    try {
      mapping = parseMapping(columns);
    } catch (e) {
      throw new UsageError(`--columns "${columns}": ${(e as Error).message}.`);
    }
  }
  let ref: ReturnType<typeof parseHubDataRef>;
  try {
    ref = parseHubDataRef(given);
  } catch (e) {
    throw new UsageError(`--data ${(e as Error).message}`);
  }
  if (!ref) {
    if (str(f, 'data-file')) throw new UsageError('--data-file picks a file of a Hub dataset (--data hf:owner/name).');
    const path = requireFile(given, '--data file');
    return { path, name: basename(path), mapping };
  }
  const access = { token: process.env.HF_TOKEN || null, endpoint: process.env.HF_ENDPOINT || undefined };
  const files = await listHubDataset(ref.repo, access);
  const picked = str(f, 'data-file');
  const chosen = picked ? [pickFile(files, ref.split, picked)] : splitFiles(files, ref.split);
  const shards: { path: string; name: string }[] = [];
  for (const [k, file] of chosen.entries()) {
    const of = chosen.length > 1 ? ` (file ${k + 1} of ${chosen.length})` : '';
    shards.push({ path: await cachedFile(ref.repo, file, access, of), name: `${ref.repo}/${file.path}` });
  }
  return {
    path: shards[0]!.path,
    name: splitDataName(ref.repo, chosen),
    ...(shards.length > 1 ? { shards } : {}),
    mapping,
  };
}

/** A Hub dataset file on disk: from the cache, else downloaded into it (`of`: which of the split's files). */
async function cachedFile(repo: string, file: HubDataFile, access: HubAccess, of: string): Promise<string> {
  const path = join(cacheRoot(), 'datasets', repo.replace('/', '--'), file.oid ?? 'main', file.path);
  const name = `${repo}/${file.path}`;
  if (existsSync(path) && statSync(path).size === file.size) {
    process.stderr.write(`tabtune: ${name}${of} (${mb(file.size)}) from the cache (${path})\n`);
    return path;
  }
  mkdirSync(dirname(path), { recursive: true });
  const part = `${path}.part`;
  const out = createWriteStream(part);
  let last = 0;
  try {
    await hubDatasetSource(repo, access).stream(
      file.path,
      (chunk) =>
        new Promise<void>((res, rej) => {
          out.write(chunk, (e) => (e ? rej(e) : res()));
        }),
      (loaded, total) => {
        const now = Date.now();
        if (now - last < 1000 && loaded !== total) return;
        last = now;
        const pct = total ? ` of ${mb(total)} (${Math.floor((100 * loaded) / total)}%)` : '';
        process.stderr.write(`tabtune: downloading ${name}${of}: ${mb(loaded)}${pct}\n`);
      },
    );
    await new Promise<void>((res, rej) => out.end((e?: Error | null) => (e ? rej(e) : res())));
    renameSync(part, path);
  } catch (e) {
    out.destroy();
    rmSync(part, { force: true });
    throw e;
  }
  return path;
}

/**
 * Opens the --data file (resolveDataFlag's DataRef) as one Blob read by range (a large file is never
 * held whole; a split in several files is one Blob of them all, each still read by range, shards.ts)
 * and hands it to `open` under the dataset's name. A reader's complaint (not UTF-8, a column it
 * lacks...) names the --data file as given and, for a Hub dataset, the file it came to.
 */
export async function openDataRef<T>(
  data: DataRef,
  given: string,
  open: (name: string, blob: Blob) => Promise<T>,
): Promise<T> {
  try {
    const blob = data.shards
      ? shardBundle(await Promise.all(data.shards.map(async (s) => ({ name: s.name, blob: await openAsBlob(s.path) }))))
      : await openAsBlob(data.path);
    return await open(data.name, blob);
  } catch (e) {
    throw dataFileError(e, given, data.name !== basename(data.path) ? data.name : undefined);
  }
}

/** Loads the --data file into the engine (openDataRef). */
export async function loadData(
  engine: Engine,
  data: DataRef,
  given: string,
  opts: Omit<Parameters<Engine['loadDataset']>[2], 'mapping'>,
): Promise<DatasetSummary> {
  return openDataRef(data, given, (name, blob) => engine.loadDataset(name, blob, { ...opts, mapping: data.mapping }));
}

/**
 * A dataset reader's complaint about the file (not UTF-8, a column it lacks...), naming the --data
 * file as given (and the file a Hub dataset's reference came to).
 */
function dataFileError(e: unknown, given: string, file?: string): unknown {
  if ((e as Error).name === 'DatasetReadError')
    return new Error(`--data file "${given}"${file ? ` (${file})` : ''}${(e as { detail: string }).detail}`, {
      cause: e,
    });
  return e;
}
