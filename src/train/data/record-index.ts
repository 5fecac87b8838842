/**
 * A dataset's index as scan.ts leaves it: the byte range and line of every usable record (typed
 * columns, 20 bytes per record), the issues found, and how a record's text is read back into a
 * record (`RangeIndex.read` reads neighbouring ranges in one go and parses each again).
 * A record that no longer parses as it did is an error saying the file changed.
 */

import type { DatasetFormat, DatasetIssue } from './types';
import type { DatasetContainer } from './containers';
import { type DatasetRecord, toRecord } from './records';
import type { ByteSource } from './source';

/** The most bytes one read of neighbouring records spans. */
const READ_SPAN = 4 << 20;

/** Issues kept with their message; past this only the count grows (the CLI and app list these). */
export const MAX_LISTED_ISSUES = 1000;

export class DatasetReadError extends Error {
  /**
   * @param fileName the file as named to the reader
   * @param detail what is wrong, to follow the file's name (" is UTF-16 text...", ": line 3 is...")
   */
  constructor(
    readonly fileName: string,
    readonly detail: string,
  ) {
    super(`${fileName}${detail}`);
    this.name = 'DatasetReadError';
  }
}

/** The usable records of a file, by index in file order. */
export interface RecordIndex {
  /** The text container, or 'parquet' (parquet.ts). */
  readonly container: DatasetContainer | 'parquet';
  readonly format: DatasetFormat;
  readonly count: number;
  /** Issues in line order (at most MAX_LISTED_ISSUES of them). */
  readonly issues: DatasetIssue[];
  /** All issues, including those past the listed ones. */
  readonly issueCount: number;
  /** 1-based line of record i. */
  line(i: number): number;
  /** Records by index (any order, repeats allowed). */
  read(indices: readonly number[]): Promise<DatasetRecord[]>;
  /** Bytes this index holds in memory. */
  readonly bytes: number;
  /** SHA-256 of the file's bytes (hex), when asked for with `fingerprint`. */
  readonly digest: string | null;
}

export class IssueList {
  readonly listed: DatasetIssue[] = [];
  count = 0;
  add(line: number, message: string): void {
    this.count++;
    if (this.listed.length < MAX_LISTED_ISSUES) this.listed.push({ line, message });
  }
  /** A copy in line order, as the issues so far (a partial index's). */
  sortedCopy(): IssueList {
    const copy = new IssueList();
    copy.listed.push(...this.listed);
    copy.listed.sort((a, b) => a.line - b.line);
    copy.count = this.count;
    return copy;
  }
}

/** Growable typed columns of record ranges. */
export class Ranges {
  starts = new Float64Array(1024);
  ends = new Float64Array(1024);
  lines = new Uint32Array(1024);
  n = 0;
  push(start: number, end: number, line: number): void {
    if (this.n === this.starts.length) {
      const grow = <T extends Float64Array | Uint32Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(a.length * 2);
        b.set(a);
        return b;
      };
      this.starts = grow(this.starts);
      this.ends = grow(this.ends);
      this.lines = grow(this.lines);
    }
    this.starts[this.n] = start;
    this.ends[this.n] = end;
    this.lines[this.n] = line;
    this.n++;
  }
  /** Trimmed to length. */
  done(): Ranges {
    this.starts = this.starts.slice(0, this.n);
    this.ends = this.ends.slice(0, this.n);
    this.lines = this.lines.slice(0, this.n);
    return this;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function notUtf8(fileName: string, line: number): DatasetReadError {
  return new DatasetReadError(
    fileName,
    `: line ${line} is not UTF-8 text (it may be Windows-1252 or Latin-1); expected UTF-8 (save the file as UTF-8).`,
  );
}

/** Decodes one record's bytes; a byte sequence that is not UTF-8 is an error naming the line. */
export function decodeAt(bytes: Uint8Array, fileName: string, line: number): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw notUtf8(fileName, line);
  }
}

/** A record's text -> its row: an object, or a plain-text paragraph. */
export type RowOf = (text: string, line: number) => Record<string, unknown> | string;

/** Ranges in file order (pending rows were added at the end). */
export function sortRanges(r: Ranges): Ranges {
  const order = [...Array(r.n).keys()].sort((a, b) => r.starts[a]! - r.starts[b]!);
  const out = new Ranges();
  for (const k of order) out.push(r.starts[k]!, r.ends[k]!, r.lines[k]!);
  return out.done();
}

/** Records read back from their byte ranges. */
export class RangeIndex implements RecordIndex {
  readonly count: number;
  readonly issues: DatasetIssue[];
  readonly issueCount: number;

  constructor(
    private readonly source: ByteSource,
    private readonly fileName: string,
    readonly container: DatasetContainer,
    readonly format: DatasetFormat,
    private readonly ranges: Ranges,
    issues: IssueList,
    private readonly rowOf: RowOf,
    readonly digest: string | null = null,
  ) {
    this.count = ranges.n;
    this.issues = issues.listed;
    this.issueCount = issues.count;
  }

  get bytes(): number {
    return this.ranges.starts.byteLength + this.ranges.ends.byteLength + this.ranges.lines.byteLength;
  }

  line(i: number): number {
    return this.ranges.lines[i]!;
  }

  async read(indices: readonly number[]): Promise<DatasetRecord[]> {
    const { starts, ends, lines } = this.ranges;
    // Neighbouring records are read in one go (file-order reads are one read per run).
    const order = [...indices.keys()].sort((a, b) => indices[a]! - indices[b]!);
    const out = new Array<DatasetRecord>(indices.length);
    for (let k = 0; k < order.length;) {
      let last = k;
      while (
        last + 1 < order.length &&
        starts[indices[order[last + 1]!]!]! - ends[indices[order[last]!]!]! < 4096 &&
        ends[indices[order[last + 1]!]!]! - starts[indices[order[k]!]!]! < READ_SPAN
      )
        last++;
      const from = starts[indices[order[k]!]!]!;
      const bytes = await this.source.read(from, Math.max(...order.slice(k, last + 1).map((o) => ends[indices[o]!]!)));
      for (let j = k; j <= last; j++) {
        const i = indices[order[j]!]!;
        const line = lines[i]!;
        const text = decodeAt(bytes.subarray(starts[i]! - from, ends[i]! - from), this.fileName, line);
        let r: ReturnType<typeof toRecord>;
        try {
          r = toRecord(this.format, this.rowOf(text, line), line);
        } catch {
          r = { error: '' };
        }
        if ('error' in r) throw new DatasetReadError(this.fileName, ` changed while it was read (line ${line}).`);
        out[order[j]!] = r;
      }
      k = last + 1;
    }
    return out;
  }
}
