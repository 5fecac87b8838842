/**
 * Datasets on the Hugging Face Hub: a dataset repo's data files (listed with @huggingface/hub's
 * listFiles, the access token sent for gated and private sets), their splits, and a source for
 * downloading one (`{endpoint}/datasets/{repo}/resolve/{revision}/{path}`, streamed with progress by
 * model/source.ts's UrlSource, so errors say what a refused model download says).
 *
 * Splits follow the datasets library's file naming: a path segment or a name part "train",
 * "test", "validation" (also "valid", "val", "dev", "eval"); a file named for none of them is train.
 * A split in several files (shards) is read whole, its files in order as one dataset.
 * Used by the app's Data step (the page downloads through its Cache API) and `tabtune train --data
 * hf:owner/name[:split]` (a cache folder on disk).
 */

import { HF_ENDPOINT, SourceError, UrlSource, hubIdProblem } from '../../model/source';

/** Files Tabtune can read as a dataset. */
const DATA_FILE = /\.(jsonl|ndjson|json|csv|tsv|parquet|txt)$/i;

export interface HubDataFile {
  path: string;
  size: number;
  split: string;
  /** The file's content hash on the Hub (LFS sha256, else the git blob id): what a disk cache keys it by. */
  oid: string | null;
}

export interface HubAccess {
  /** The user's access token (gated and private datasets). */
  token?: string | null;
  /** Defaults to https://huggingface.co (the CLI reads HF_ENDPOINT). */
  endpoint?: string;
  fetch?: typeof fetch;
  revision?: string;
}

/** `hf:owner/name[:split]` (the CLI's --data), or null when `given` does not start with "hf:". */
export function parseHubDataRef(given: string): { repo: string; split: string | null } | null {
  if (!given.startsWith('hf:')) return null;
  const [repo = '', split = null, ...rest] = given.slice(3).split(':');
  const problem = hubIdProblem(repo) ?? (rest.length ? 'expected hf:owner/name or hf:owner/name:split.' : null);
  if (problem) throw new SourceError(`"${given}" is not a Hub dataset: ${problem}`, 'invalid-path', given);
  return { repo, split: split || null };
}

const SPLIT_WORDS: [string, RegExp][] = [
  ['train', /^(train|training)$/],
  ['validation', /^(validation|valid|val|dev|eval)$/],
  ['test', /^(test|testing)$/],
];

/** The split a data file belongs to, from its path (see the file comment). */
export function splitOf(path: string): string {
  const words = path
    .toLowerCase()
    .replace(/\.[^/.]+$/, '')
    .split(/[/_.-]+/);
  for (const [split, re] of SPLIT_WORDS) if (words.some((w) => re.test(w))) return split;
  return 'train';
}

/** The splits of a file list, train first, then validation, test and any other. */
export function splitsOf(files: readonly HubDataFile[]): string[] {
  const order = ['train', 'validation', 'test'];
  return [...new Set(files.map((f) => f.split))].sort(
    (a, b) => (order.indexOf(a) + 1 || 9) - (order.indexOf(b) + 1 || 9) || a.localeCompare(b),
  );
}

/** The dataset's page on the Hub. */
export function datasetPage(repo: string, endpoint = HF_ENDPOINT): string {
  return `${endpoint.replace(/\/+$/, '')}/datasets/${repo}`;
}

/** Why listing failed, as the user should read it. */
function listError(e: unknown, repo: string, access: HubAccess): Error {
  const status = (e as { statusCode?: number }).statusCode;
  const page = datasetPage(repo, access.endpoint);
  if (status === 401 || status === 403)
    return new SourceError(
      access.token
        ? `Access denied (HTTP ${status}) to the dataset ${repo}: the access token given does not open it. If it is gated, accept its conditions at ${page} with the token's account; a private dataset needs a token of an account that can read it.`
        : `Access denied (HTTP ${status}) to the dataset ${repo}: it is gated or private. Accept its conditions at ${page} (signed in), then give an access token (read access).`,
      'unauthorized',
      repo,
      status,
    );
  if (status === 404)
    return new SourceError(
      `No dataset ${repo} on the Hub (HTTP 404): check the id (owner/name, as in ${page})${access.token ? '' : '; a private dataset needs an access token'}.`,
      'not-found',
      repo,
      404,
    );
  if (status)
    return new SourceError(
      `Listing the files of ${repo} failed: HTTP ${status} (${(e as Error).message}).`,
      'http',
      repo,
      status,
    );
  return new SourceError(
    `Could not reach the Hub to list ${repo}: ${(e as Error).message}. Check the network connection.`,
    'network',
    repo,
  );
}

/** The data files of a dataset repo (every folder), with their splits, in path order. */
export async function listHubDataset(repo: string, access: HubAccess = {}): Promise<HubDataFile[]> {
  const problem = hubIdProblem(repo);
  if (problem) throw new SourceError(`"${repo}" is not a Hub dataset id: ${problem}`, 'invalid-path', repo);
  const { listFiles } = await import('@huggingface/hub');
  const files: HubDataFile[] = [];
  try {
    for await (const f of listFiles({
      repo: { type: 'dataset', name: repo },
      recursive: true,
      revision: access.revision,
      hubUrl: access.endpoint?.replace(/\/+$/, ''),
      accessToken: access.token ?? undefined,
      fetch: access.fetch,
    })) {
      if (f.type === 'file' && DATA_FILE.test(f.path) && !/(^|\/)\./.test(f.path))
        files.push({
          path: f.path,
          size: f.lfs?.size ?? f.size,
          split: splitOf(f.path),
          oid: f.lfs?.oid ?? f.oid ?? null,
        });
    }
  } catch (e) {
    throw listError(e, repo, access);
  }
  if (files.length === 0)
    throw new SourceError(
      `The dataset ${repo} has no JSONL, JSON, CSV, TSV, Parquet or text files (see ${datasetPage(repo, access.endpoint)}).`,
      'not-found',
      repo,
    );
  return files.sort((a, b) => a.path.localeCompare(b.path));
}

/**
 * The files of a split, in the order the datasets library reads them (paths sorted by code point:
 * data/train-00000-of-00003.parquet, then -00001-, ...); a split the dataset lacks is an error
 * naming the ones it has. Several files are read as one dataset (shards.ts).
 */
export function splitFiles(files: readonly HubDataFile[], split: string | null): HubDataFile[] {
  const want = split ?? splitsOf(files)[0]!;
  const of = files.filter((x) => x.split === want).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  if (of.length === 0)
    throw new SourceError(
      `No "${want}" split in the dataset: it has ${splitsOf(files).join(', ')}.`,
      'not-found',
      want,
    );
  return of;
}

/** The name a split's files are read under: "owner/name/data/train.parquet", or "owner/name/train (3 files)". */
export function splitDataName(repo: string, files: readonly HubDataFile[]): string {
  return files.length === 1 ? `${repo}/${files[0]!.path}` : `${repo}/${files[0]!.split} (${files.length} files)`;
}

/** One file of the dataset to read (the one named), or the split's first. */
export function pickFile(files: readonly HubDataFile[], split: string | null, path?: string | null): HubDataFile {
  if (!path) return splitFiles(files, split)[0]!;
  const f = files.find((x) => x.path === path);
  if (!f)
    throw new SourceError(
      `No file "${path}" in the dataset's data files (${files.map((x) => x.path).join(', ')}).`,
      'not-found',
      path,
    );
  return f;
}

/** Downloads of the dataset's files, with the Hub's error messages (UrlSource.stream/read). */
export function hubDatasetSource(repo: string, access: HubAccess = {}): UrlSource {
  const endpoint = (access.endpoint ?? HF_ENDPOINT).replace(/\/+$/, '');
  const revision = access.revision ?? 'main';
  const base = `${endpoint}/datasets/${repo}/resolve/${encodeURIComponent(revision)}/`;
  const headers: Record<string, string> = access.token ? { Authorization: `Bearer ${access.token}` } : {};
  // As a repo "datasets/owner/name", a refusal points at the dataset's page for its conditions.
  return new UrlSource(base, repo, { headers, fetch: access.fetch }, { repo: `datasets/${repo}`, revision, endpoint });
}
