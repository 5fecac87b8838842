/**
 * Parquet datasets (the Hub's usual format), read with hyparquet one row group at a time: the
 * footer first (the schema and where each row group's column chunks lie), then, for the index
 * pass, each row group's mapped columns only, checked row by row and dropped. `read` decodes again
 * just the row groups holding the records asked for (the last two are kept), so a large file is
 * never decoded whole and its other columns are never read.
 *
 * A Parquet file has columns, not record field names, so it is always read through a column
 * mapping (mapping.ts): the one given, else the one its column names suggest; when none does, the
 * error lists its columns. Issues carry the 1-based row number as their line. Codecs: snappy
 * (hyparquet's own), gzip (fflate) and zstd (fzstd); another is an error naming it.
 */

import { gunzipSync } from 'fflate';
import { decompress as zstdDecompress } from 'fzstd';
import {
  type AsyncBuffer,
  type Compressors,
  type FileMetaData,
  parquetMetadataAsync,
  parquetReadObjects,
  parquetSchema,
} from 'hyparquet';
import type { DatasetFormat, DatasetIssue } from './types';
import { detectContainer, parseDelimited, readRows } from './containers';
import { Digest, mappedDigest } from './digest';
import {
  type ColumnMapping,
  mapRow,
  mappedColumns,
  mappingFormat,
  missingColumn,
  missingColumnText,
  suggestMapping,
} from './mapping';
import { DatasetReadError, IssueList, type RecordIndex } from './record-index';
import { type DatasetRecord, toRecord } from './records';
import type { ByteSource } from './source';
import { type ScanOptions, scanDataset } from './scan';
import { SHARDS_PROBE, indexShards, readShards } from './shards';

const COMPRESSORS: Compressors = {
  GZIP: (input) => gunzipSync(input),
  ZSTD: (input, outputLength) => zstdDecompress(input, new Uint8Array(outputLength)),
};

/** Decoded row groups `read` keeps (a batch's records usually sit in one or two). */
const KEPT_GROUPS = 2;

/** A Parquet file by name or by its first bytes ("PAR1"). */
export function isParquet(fileName: string, head: Uint8Array): boolean {
  if (/\.parquet$/i.test(fileName)) return true;
  return head.length >= 4 && head[0] === 0x50 && head[1] === 0x41 && head[2] === 0x52 && head[3] === 0x31;
}

/** hyparquet's file interface over a ByteSource; `onRead` sees every range read (the digest). */
function asyncBuffer(source: ByteSource, onRead?: (bytes: Uint8Array) => void): AsyncBuffer {
  return {
    byteLength: source.size,
    slice: async (start, end) => {
      const b = await source.read(start, end ?? source.size);
      onRead?.(b);
      return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? (b.buffer as ArrayBuffer) : b.slice().buffer;
    },
  };
}

async function metadataOf(file: AsyncBuffer, fileName: string): Promise<FileMetaData> {
  try {
    // The footer is usually a few KB: a small first read (a larger footer takes a second one).
    return await parquetMetadataAsync(file, { initialFetchSize: 1 << 16 });
  } catch (e) {
    throw new DatasetReadError(
      fileName,
      ` is not a readable Parquet file (${(e as Error).message}); expected Parquet (it ends with "PAR1"). Download it again, or use JSONL or CSV.`,
    );
  }
}

/** The top-level column names of a Parquet file. */
function columnsOf(metadata: FileMetaData): string[] {
  return parquetSchema(metadata).children.map((c) => c.element.name);
}

/** The column names of a Parquet file (for the column mapping), from its footer alone. */
export async function parquetColumns(source: ByteSource, fileName: string): Promise<string[]> {
  return columnsOf(await metadataOf(asyncBuffer(source), fileName));
}

type ParquetScanOptions = Omit<ScanOptions, 'chunkBytes'>;

/**
 * The columns of a dataset file, for the column mapping: a Parquet file's from its footer, a CSV or
 * TSV header's (in lower case, as they are read), the keys of the first JSON records; none for text.
 */
export async function datasetColumns(source: ByteSource, fileName: string): Promise<string[]> {
  const head = await source.read(0, 1 << 20);
  const shards = await readShards(source, fileName, head);
  if (shards) return datasetColumns(shards[0]!.source, shards[0]!.name);
  if (isParquet(fileName, head)) return parquetColumns(source, fileName);
  const whole = head.length < source.size ? head.subarray(0, head.lastIndexOf(0x0a) + 1) : head;
  const text = new TextDecoder().decode(whole);
  const container = detectContainer(fileName, text);
  if (container === 'txt') return [];
  if (container === 'csv' || container === 'tsv') {
    const [header] = parseDelimited(text.replace(/^\uFEFF/, ''), container === 'csv' ? ',' : '\t', []);
    return header ? header.fields.map((c) => c.trim().toLowerCase()).filter(Boolean) : [];
  }
  const keys = new Set<string>();
  for (const row of readRows(container, text, 'paragraphs', []).slice(0, 50))
    if (typeof row.value !== 'string') for (const k of Object.keys(row.value)) keys.add(k);
  return [...keys];
}

/**
 * A dataset file's index: a Parquet file's by scanParquet, any other's by scan.ts, a bundle of a
 * split's files (shards.ts) file by file as one.
 */
export async function indexDataset(source: ByteSource, fileName: string, opts: ScanOptions): Promise<RecordIndex> {
  const head = await source.read(0, Math.max(4, SHARDS_PROBE));
  const shards = await readShards(source, fileName, head);
  if (shards) return indexShards(shards, opts, indexDataset);
  return isParquet(fileName, head) ? scanParquet(source, fileName, opts) : scanDataset(source, fileName, opts);
}

/** Indexes a Parquet file's records (see the file comment). Throws DatasetReadError on a file it cannot use. */
export async function scanParquet(
  source: ByteSource,
  fileName: string,
  opts: ParquetScanOptions = {},
): Promise<RecordIndex> {
  const digest = opts.fingerprint ? new Digest() : null;
  const file = asyncBuffer(source, digest ? (b) => digest.add(b) : undefined);
  const metadata = await metadataOf(file, fileName);
  const columns = columnsOf(metadata);
  const mapping = opts.mapping ?? suggestMapping(columns);
  if (!mapping)
    throw new DatasetReadError(
      fileName,
      ` has no column Tabtune recognises by name (its columns are ${columns.map((c) => `"${c}"`).join(', ')}). Choose the columns to train on in the column mapping (command line: --columns, e.g. instruction=question,output=answer).`,
    );
  const missing = missingColumn(mapping, columns);
  if (missing) throw new DatasetReadError(fileName, ` ${missingColumnText(mapping, missing, columns)}`);
  const format = opts.format && opts.format !== 'auto' ? opts.format : mappingFormat(mapping);
  const groups = new RowGroups(metadata);
  const rows = new RowList();
  const issues = new IssueList();
  const index = new ParquetIndex(file, metadata, fileName, mapping, format, groups, rows, issues);
  for (let g = 0; g < groups.count; g++) {
    const values = await index.group(g);
    values.forEach((row, k) => {
      const r = index.record(row, groups.starts[g]! + k);
      if ('error' in r) issues.add(r.line, r.error);
      else rows.push(groups.starts[g]! + k);
    });
    const done = Math.round((source.size * groups.starts[g + 1]!) / Math.max(1, groups.total));
    opts.onProgress?.(done, source.size);
    if (opts.onPartial && g + 1 < groups.count) opts.onPartial({ index: index.snapshot(), done, total: source.size });
  }
  if (groups.total === 0) issues.add(1, 'expected at least one record, got a Parquet file with no rows');
  issues.listed.sort((a, b) => a.line - b.line);
  return index.finish(mappedDigest(await digest?.hex(source.size), mapping) ?? null);
}

/** Where each row group starts (row numbers), and the rows in all. */
class RowGroups {
  readonly starts: number[] = [0];
  readonly count: number;
  readonly total: number;
  constructor(metadata: FileMetaData) {
    for (const g of metadata.row_groups) this.starts.push(this.starts.at(-1)! + Number(g.num_rows));
    this.count = metadata.row_groups.length;
    this.total = this.starts.at(-1)!;
  }
  /** The row group holding row `row`. */
  of(row: number): number {
    let lo = 0;
    let hi = this.count - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= row) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

/** The row numbers of the usable records, growable (8 bytes each). */
class RowList {
  rows = new Float64Array(1024);
  n = 0;
  push(row: number): void {
    if (this.n === this.rows.length) {
      const more = new Float64Array(this.rows.length * 2);
      more.set(this.rows);
      this.rows = more;
    }
    this.rows[this.n++] = row;
  }
}

class ParquetIndex implements RecordIndex {
  readonly container = 'parquet' as const;
  private readonly kept = new Map<number, Promise<Record<string, unknown>[]>>();
  count: number;
  issues: DatasetIssue[];
  issueCount: number;
  digest: string | null = null;

  constructor(
    private readonly file: AsyncBuffer,
    private readonly metadata: FileMetaData,
    private readonly fileName: string,
    private readonly mapping: ColumnMapping,
    readonly format: DatasetFormat,
    private readonly groups: RowGroups,
    private readonly rows: RowList,
    private readonly issueList: IssueList,
  ) {
    this.count = rows.n;
    this.issues = issueList.listed;
    this.issueCount = issueList.count;
  }

  /** The index as far as the pass has come (the row list only grows, so it stays valid). */
  snapshot(): ParquetIndex {
    return new ParquetIndex(
      this.file,
      this.metadata,
      this.fileName,
      this.mapping,
      this.format,
      this.groups,
      this.rows,
      this.issueList.sortedCopy(),
    );
  }

  finish(digest: string | null): ParquetIndex {
    this.count = this.rows.n;
    this.issueCount = this.issueList.count;
    this.digest = digest;
    this.kept.clear();
    return this;
  }

  get bytes(): number {
    return this.rows.rows.byteLength;
  }

  line(i: number): number {
    return this.rows.rows[i]! + 1;
  }

  /** Row group g's mapped columns, decoded (the last KEPT_GROUPS are kept). */
  group(g: number): Promise<Record<string, unknown>[]> {
    let p = this.kept.get(g);
    if (!p) {
      p = parquetReadObjects({
        file: this.file,
        metadata: this.metadata,
        columns: mappedColumns(this.mapping).filter((c, k, all) => all.indexOf(c) === k),
        rowStart: this.groups.starts[g],
        rowEnd: this.groups.starts[g + 1],
        rowFormat: 'object',
        compressors: COMPRESSORS,
      }).catch((e: unknown) => {
        this.kept.delete(g);
        throw new DatasetReadError(
          this.fileName,
          `: row group ${g + 1} (rows ${this.groups.starts[g]! + 1}-${this.groups.starts[g + 1]}) could not be read: ${(e as Error).message}.`,
        );
      });
      this.kept.set(g, p);
      if (this.kept.size > KEPT_GROUPS) this.kept.delete(this.kept.keys().next().value!);
    }
    return p;
  }

  /** A row through the mapping and the format's checks, or why not (`line`: the 1-based row). */
  record(row: Record<string, unknown>, at: number): DatasetRecord | { error: string; line: number } {
    const line = at + 1;
    const mapped = mapRow(this.mapping, row);
    if ('error' in mapped) return { error: mapped.error, line };
    const r = toRecord(this.format, mapped.row, line);
    return 'error' in r ? { error: r.error, line } : r;
  }

  async read(indices: readonly number[]): Promise<DatasetRecord[]> {
    const out = new Array<DatasetRecord>(indices.length);
    // Group by row group so each is decoded once per call.
    const order = [...indices.keys()].sort((a, b) => this.rows.rows[indices[a]!]! - this.rows.rows[indices[b]!]!);
    for (const k of order) {
      const at = this.rows.rows[indices[k]!]!;
      const g = this.groups.of(at);
      const row = (await this.group(g))[at - this.groups.starts[g]!];
      const r = row ? this.record(row, at) : { error: '', line: at + 1 };
      if ('error' in r) throw new DatasetReadError(this.fileName, ` changed while it was read (row ${at + 1}).`);
      out[k] = r;
    }
    return out;
  }
}
