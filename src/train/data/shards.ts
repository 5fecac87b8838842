/**
 * A dataset split in several files (a Hub split's shards, "data/train-00000-of-00003.parquet", ...)
 * read as one dataset, in file order, as the datasets library does.
 *
 * The shards travel as ONE Blob (so the app's state, the worker message, the run record and the
 * CLI's loader keep handling a single file): a header line naming each shard and its size, then the
 * shards' bytes one after another, unchanged. A Blob made of Blobs copies nothing (the browser and
 * Node keep references to the parts), and each shard is still read by range. Layout:
 *
 *   TABTUNE-SHARDS {"shards":[{"name":"owner/name/data/train-00000-of-00002.parquet","size":1234},...]}\n
 *   <shard 1 bytes><shard 2 bytes>...
 *
 * Each shard is indexed by its own reader (Parquet, JSONL, JSON, CSV...), the first deciding the
 * format for the rest; ShardIndex then numbers the records through the shards. Lines too: a shard's
 * lines follow the previous shard's last record or issue, and each issue also names its shard and
 * its line there.
 */

import { Digest } from './digest';
import { DatasetReadError, MAX_LISTED_ISSUES, type RecordIndex } from './record-index';
import type { DatasetRecord } from './records';
import type { ScanOptions } from './scan';
import type { ByteSource } from './source';
import type { DatasetIssue } from './types';

/** What a bundle starts with (its header's JSON follows the space). */
const MAGIC = 'TABTUNE-SHARDS {"shards":';
const JSON_AT = 'TABTUNE-SHARDS '.length;
/** The longest header read (a split of thousands of shards fits). */
const MAX_HEADER = 4 << 20;

export interface Shard {
  /** The shard as named in messages ("owner/name/data/train-00001-of-00003.parquet"). */
  name: string;
  source: ByteSource;
}

/** The shards of a split as one Blob (see the file comment). */
export function shardBundle(parts: readonly { name: string; blob: Blob }[]): Blob {
  const header = `TABTUNE-SHARDS ${JSON.stringify({ shards: parts.map((p) => ({ name: p.name, size: p.blob.size })) })}\n`;
  return new Blob([header, ...parts.map((p) => p.blob)]);
}

/** A range of a source as a source of its own. */
function slice(source: ByteSource, offset: number, size: number): ByteSource {
  return { size, read: (start, end) => source.read(offset + start, offset + Math.min(end, size)) };
}

/** Bytes of a file's head that tell a bundle (readShards' `head`). */
export const SHARDS_PROBE = MAGIC.length;

/** The shards of a bundle, or null when `source` is not one (`head`: at least its first SHARDS_PROBE bytes). */
export async function readShards(source: ByteSource, fileName: string, head: Uint8Array): Promise<Shard[] | null> {
  if (head.length < MAGIC.length || new TextDecoder().decode(head.subarray(0, MAGIC.length)) !== MAGIC) return null;
  const bytes = await source.read(0, Math.min(source.size, MAX_HEADER));
  const nl = bytes.indexOf(0x0a);
  const bad = (why: string) => new DatasetReadError(fileName, ` is a damaged bundle of dataset files (${why}).`);
  if (nl < 0) throw bad('its header line has no end');
  let listed: { name: string; size: number }[];
  try {
    listed = (JSON.parse(new TextDecoder().decode(bytes.subarray(JSON_AT, nl))) as { shards: typeof listed }).shards;
  } catch (e) {
    throw bad(`its header is not JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(listed) || listed.length === 0) throw bad('its header lists no files');
  const shards: Shard[] = [];
  let at = nl + 1;
  for (const s of listed) {
    if (typeof s?.name !== 'string' || !Number.isSafeInteger(s.size) || s.size < 0)
      throw bad('a file without name or size');
    shards.push({ name: s.name, source: slice(source, at, s.size) });
    at += s.size;
  }
  if (at !== source.size) throw bad(`its files hold ${at} bytes with the header, the bundle ${source.size}`);
  return shards;
}

/** Indexes one file (parquet.ts's indexDataset, passed in to keep the imports one way). */
export type IndexOne = (source: ByteSource, fileName: string, opts: ScanOptions) => Promise<RecordIndex>;

/** Indexes the shards in order as one dataset (see the file comment). */
export async function indexShards(
  shards: readonly Shard[],
  opts: ScanOptions,
  indexOne: IndexOne,
): Promise<RecordIndex> {
  const total = shards.reduce((n, s) => n + s.source.size, 0);
  const done: RecordIndex[] = [];
  let before = 0;
  let format = opts.format;
  for (const shard of shards) {
    const offset = before;
    const index = await indexOne(shard.source, shard.name, {
      ...opts,
      format,
      onProgress: opts.onProgress && ((d) => opts.onProgress!(offset + d, total)),
      onPartial:
        opts.onPartial &&
        ((p) =>
          opts.onPartial!({
            index: new ShardIndex(
              [...done, p.index],
              shards.map((s) => s.name),
              null,
            ),
            done: offset + p.done,
            total,
          })),
    });
    done.push(index);
    format = index.format;
    before += shard.source.size;
  }
  let digest: string | null = null;
  if (opts.fingerprint && done.every((d) => d.digest)) {
    const d = new Digest();
    for (const part of done) d.add(new TextEncoder().encode(part.digest!));
    digest = await d.hex(total);
  }
  return new ShardIndex(
    done,
    shards.map((s) => s.name),
    digest,
  );
}

/** The records of several files' indexes, numbered through them. */
class ShardIndex implements RecordIndex {
  readonly container: RecordIndex['container'];
  readonly format: RecordIndex['format'];
  readonly count: number;
  readonly issues: DatasetIssue[] = [];
  readonly issueCount: number;
  /** Index of each part's first record, and the line its lines follow. */
  private readonly firsts: number[] = [];
  private readonly lineOffsets: number[] = [];

  constructor(
    private readonly parts: readonly RecordIndex[],
    names: readonly string[],
    readonly digest: string | null,
  ) {
    this.container = parts[0]!.container;
    this.format = parts[0]!.format;
    let count = 0;
    let lines = 0;
    for (const [k, p] of parts.entries()) {
      this.firsts.push(count);
      this.lineOffsets.push(lines);
      for (const i of p.issues)
        if (this.issues.length < MAX_LISTED_ISSUES)
          this.issues.push({ line: lines + i.line, message: `${i.message} (${names[k]}, line ${i.line})` });
      const last = Math.max(p.count > 0 ? p.line(p.count - 1) : 0, p.issues.at(-1)?.line ?? 0);
      count += p.count;
      lines += last;
    }
    this.count = count;
    this.issueCount = parts.reduce((n, p) => n + p.issueCount, 0);
  }

  get bytes(): number {
    return this.parts.reduce((n, p) => n + p.bytes, 0);
  }

  /** The part holding record i. */
  private partOf(i: number): number {
    let lo = 0;
    let hi = this.parts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.firsts[mid]! <= i) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  line(i: number): number {
    const k = this.partOf(i);
    return this.lineOffsets[k]! + this.parts[k]!.line(i - this.firsts[k]!);
  }

  async read(indices: readonly number[]): Promise<DatasetRecord[]> {
    const out = new Array<DatasetRecord>(indices.length);
    const byPart = new Map<number, number[]>();
    indices.forEach((i, at) => {
      const k = this.partOf(i);
      const list = byPart.get(k) ?? [];
      list.push(at);
      byPart.set(k, list);
    });
    for (const [k, ats] of byPart) {
      const records = await this.parts[k]!.read(ats.map((at) => indices[at]! - this.firsts[k]!));
      ats.forEach((at, j) => (out[at] = { ...records[j]!, line: this.lineOffsets[k]! + records[j]!.line }));
    }
    return out;
  }
}
