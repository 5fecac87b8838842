/**
 * One pass over a dataset's bytes that indexes its records without keeping them: the byte range of
 * every JSON Lines line, JSON array element, CSV/TSV row or plain-text paragraph. Each record is
 * parsed and checked on the way (so the count of usable records and the issue list are exact from
 * the start) and then dropped; `RecordIndex.read` parses it again from its bytes when it is needed.
 * Memory: 20 bytes per record (start, end, line), whatever the records hold. (A JSON file holding
 * one object is one record: it is read whole once, and its range kept like any other.)
 *
 * The records and issues are those of parseDataset on the whole text (records.ts), message for
 * message: the same per-line, per-element and per-row rules, the same format detection (the first
 * recognisable record decides). Lines and rows are found by split.ts; the index it leaves is
 * record-index.ts.
 *
 * Text must be UTF-8 (a BOM is skipped): a UTF-16 file or a line that is not UTF-8 is an error
 * naming the file and the line, not a record read as garbage.
 *
 * Slightly over 500 lines because the Scan class is one chunked state machine (format detection,
 * the JSON array walker, CSV quoting across chunks, paragraphs) whose states share the carry-over
 * buffer and the line counter; its per-format rules already live in containers.ts and split.ts.
 */

import type { DatasetFormat, DatasetIssue } from './types';
import {
  type DatasetContainer,
  type DelimitedRow,
  badJsonLine,
  delimitedColumns,
  delimitedRecord,
  describe,
  detectContainer,
  jsonError,
  parseDelimited,
  preview,
} from './containers';
import {
  DatasetReadError,
  IssueList,
  RangeIndex,
  type RecordIndex,
  type RowOf,
  Ranges,
  decodeAt,
  notUtf8,
  sortRanges,
} from './record-index';
import { type ColumnMapping, lowerMapping, mapRow, mappingFormat, missingColumn, missingColumnText } from './mapping';
import { Digest, mappedDigest } from './digest';
import { classify, parseDataset, toRecord } from './records';
import type { ByteSource } from './source';
import { type ChunkReader, eachDelimitedRow, eachLine } from './split';

/** Bytes read at a time by the scan. */
const CHUNK = 4 << 20;
/** Bytes of the file's head used to recognise its container. */
const HEAD = 1 << 20;

export interface ScanOptions {
  format?: DatasetFormat | 'auto';
  /**
   * Which columns hold the record (mapping.ts), for records not named as records.ts expects; it
   * also fixes the format. Without it the field names decide, as for an upload.
   */
  mapping?: ColumnMapping | null;
  /** Called as the scan advances (bytes done of total). */
  onProgress?: (done: number, total: number) => void;
  /** Bytes read at a time (tests use tiny chunks to cross every boundary). */
  chunkBytes?: number;
  /** Also compute `digest` (what a cache of the tokenized dataset is keyed by). */
  fingerprint?: boolean;
  /**
   * Called after each chunk once the format is known: the records indexed so far (in file order,
   * readable by `read`) and the issues found so far. What a preview before the pass ends is made of.
   */
  onPartial?: (p: PartialScan) => void;
}

/** The index as far as the scan has come (see ScanOptions.onPartial). */
export interface PartialScan {
  index: RecordIndex;
  /** Bytes read of total. */
  done: number;
  total: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Whole text (a single JSON object; the app's check of a file's head), naming the first line that is not UTF-8. */
export function decodeUtf8(bytes: Uint8Array, fileName: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    let line = 1;
    for (let start = 0; start < bytes.length; line++) {
      let end = bytes.indexOf(0x0a, start);
      if (end < 0) end = bytes.length;
      try {
        utf8.decode(bytes.subarray(start, end));
      } catch {
        break;
      }
      start = end + 1;
    }
    throw notUtf8(fileName, line);
  }
}

/** The error for a file that starts with a UTF-16 byte order mark (Windows "Unicode"), or null. */
export function utf16Error(head: Uint8Array, fileName: string): DatasetReadError | null {
  if (head.length >= 2 && ((head[0] === 0xff && head[1] === 0xfe) || (head[0] === 0xfe && head[1] === 0xff)))
    return new DatasetReadError(
      fileName,
      ' is UTF-16 text (it starts with a UTF-16 byte order mark); expected UTF-8: save it as UTF-8.',
    );
  return null;
}

/** Indexes a dataset file (see the file comment). Throws DatasetReadError on text that is not UTF-8. */
export async function scanDataset(source: ByteSource, fileName: string, opts: ScanOptions = {}): Promise<RecordIndex> {
  const head = await source.read(0, HEAD);
  const utf16 = utf16Error(head, fileName);
  if (utf16) throw utf16;
  const bom = head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf ? 3 : 0;
  const headText = new TextDecoder().decode(head.length < source.size ? cutPartialChar(head) : head);
  const container = detectContainer(fileName, headText);
  const given = opts.format && opts.format !== 'auto' ? opts.format : null;
  const digest = opts.fingerprint ? new Digest() : null;
  if (container === 'json' && firstNonSpace(head, bom) !== 0x5b /* [ */) {
    // Not an array: one object (one record) or an issue.
    const bytes = await source.read(0, source.size);
    digest?.add(bytes);
    const text = decodeUtf8(bytes.subarray(bom), fileName);
    opts.onProgress?.(source.size, source.size);
    const parsed = parseDataset(fileName, text, { format: given ?? 'auto', container });
    const ranges = new Ranges();
    for (const r of parsed.records) ranges.push(bom, source.size, r.line);
    const issues = new IssueList();
    for (const i of parsed.issues) issues.add(i.line, i.message);
    return new RangeIndex(
      source,
      fileName,
      container,
      parsed.format,
      ranges.done(),
      issues,
      jsonRow,
      await digest?.hex(source.size),
    );
  }
  // CSV/TSV column names are read in lower case (containers.ts).
  const mapping =
    container === 'txt' || !opts.mapping
      ? null
      : container === 'csv' || container === 'tsv'
        ? lowerMapping(opts.mapping)
        : opts.mapping;
  const scan = new Scan(source, fileName, container, given, opts.chunkBytes ?? CHUNK, opts.onProgress, digest, mapping);
  scan.onPartial = opts.onPartial;
  await scan.run(bom);
  return scan.finish(mappedDigest(await digest?.hex(source.size), mapping));
}

/** Drops a UTF-8 sequence cut at the end of a head read. */
function cutPartialChar(b: Uint8Array): Uint8Array {
  let k = b.length;
  while (k > 0 && k > b.length - 4 && (b[k - 1]! & 0xc0) === 0x80) k--;
  return k > 0 && b[k - 1]! >= 0xc0 ? b.subarray(0, k - 1) : b;
}

function firstNonSpace(b: Uint8Array, from: number): number | undefined {
  for (let i = from; i < b.length; i++) {
    const c = b[i]!;
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return c;
  }
  return undefined;
}

/** A pass over the file: record ranges, issues, and the format once a record shows it. */
class Scan implements ChunkReader {
  private readonly ranges = new Ranges();
  private readonly issues = new IssueList();
  private format: DatasetFormat | null;
  /** Rows read before the format was known: converted once it is. */
  private pending: { start: number; end: number; line: number }[] = [];
  private rows = 0;
  /** CSV/TSV: the column names once the header is read (null: a header we cannot read). */
  private columns: string[] | null | undefined;
  private readonly delim: string;
  onPartial?: (p: PartialScan) => void;

  constructor(
    private readonly source: ByteSource,
    private readonly fileName: string,
    private readonly container: DatasetContainer,
    given: DatasetFormat | null,
    private readonly chunkBytes: number,
    private readonly onProgress?: (done: number, total: number) => void,
    private readonly digest: Digest | null = null,
    private readonly mapping: ColumnMapping | null = null,
  ) {
    this.format = given ?? (mapping ? mappingFormat(mapping) : container === 'txt' ? 'text' : null);
    this.delim = container === 'tsv' ? '\t' : ',';
  }

  get size(): number {
    return this.source.size;
  }

  /** A chunk of the file as read (each byte once, in order), for the digest. */
  async read(at: number): Promise<Uint8Array> {
    const chunk = at < this.source.size ? await this.source.read(at, at + this.chunkBytes) : new Uint8Array(0);
    if (chunk.length) this.digest?.add(chunk);
    return chunk;
  }

  progress(at: number): void {
    this.onProgress?.(at, this.source.size);
    // Rows held back until the format showed would come first in file order: no partial index then.
    if (this.onPartial && this.format !== null && this.pending.length === 0) {
      const issues = this.issues.sortedCopy();
      // The ranges only grow, so the index over the first n of them stays valid as the scan goes on.
      const index = new RangeIndex(
        this.source,
        this.fileName,
        this.container,
        this.format,
        this.ranges,
        issues,
        this.rowOf(),
      );
      this.onPartial({ index, done: at, total: this.source.size });
    }
  }

  async run(bom: number): Promise<void> {
    switch (this.container) {
      case 'jsonl':
        return eachLine(this, bom, (b, s, e, line) => this.jsonlLine(b, s, e, line));
      case 'json':
        return this.jsonArray(bom);
      case 'csv':
      case 'tsv':
        return eachDelimitedRow(this, bom, this.delim, (b, s, e, line) => this.delimitedRow(b, s, e, line));
      case 'txt':
        return this.paragraphs(bom);
    }
  }

  /** A row at [start, end) of the file: an object, or a plain-text paragraph. */
  private row(v: Record<string, unknown> | string, start: number, end: number, line: number): void {
    this.rows++;
    if (this.mapping && typeof v !== 'string') {
      const mapped = mapRow(this.mapping, v);
      if ('error' in mapped) {
        this.issues.add(line, mapped.error);
        return;
      }
      v = mapped.row;
    }
    if (this.format === null) {
      const f = typeof v === 'string' ? 'text' : classify(v);
      if (f === null) {
        this.pending.push({ start, end, line });
        return;
      }
      this.format = f;
    }
    const r = toRecord(this.format, v, line);
    if ('error' in r) this.issues.add(line, r.error);
    else this.ranges.push(start, end, line);
  }

  /** One JSON Lines line: blank (skipped), an object (a row), or an issue. */
  private jsonlLine(bytes: Uint8Array, start: number, end: number, line: number): void {
    const s = decodeAt(bytes, this.fileName, line).trim();
    if (!s) return;
    let v: unknown;
    try {
      v = JSON.parse(s);
    } catch (e) {
      // The last line, unfinished, says the file was cut short.
      this.issues.add(line, badJsonLine(e, s, end >= this.source.size));
      return;
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      this.issues.add(line, `expected a JSON object, got ${describe(v)}`);
      return;
    }
    this.row(v as Record<string, unknown>, start, end, line);
  }

  /** One CSV/TSV row: blank (skipped), the header, a data row, or issues. */
  private delimitedRow(bytes: Uint8Array, start: number, end: number, line: number): void {
    const found: DatasetIssue[] = [];
    const parsed = parseDelimited(decodeAt(bytes, this.fileName, line), this.delim, found, line);
    for (const r of parsed) {
      if (this.columns === undefined) {
        this.columns = delimitedColumns(r, this.delim, found, !!this.mapping);
        const missing = this.columns && this.mapping && missingColumn(this.mapping, this.columns);
        if (missing)
          throw new DatasetReadError(this.fileName, ` ${missingColumnText(this.mapping!, missing, this.columns!)}`);
      } else if (this.columns) {
        const v = delimitedRecord(this.columns, r, this.delim, found);
        if (v) {
          for (const i of found.splice(0)) this.issues.add(i.line, i.message);
          this.row(v, start, end, line);
        }
      }
    }
    for (const i of found) this.issues.add(i.line, i.message);
  }

  /** Plain text: a record per paragraph (lines up to a blank one), kept as its byte range. */
  private async paragraphs(bom: number): Promise<void> {
    let first = -1; // the open paragraph's start, line and end
    let firstLine = 0;
    let last = 0;
    const flush = (): void => {
      if (first >= 0) this.row('', first, last, firstLine);
      first = -1;
    };
    await eachLine(this, bom, (bytes, start, end, line) => {
      if (decodeAt(bytes, this.fileName, line).trim() === '') flush();
      else {
        if (first < 0) {
          first = start;
          firstLine = line;
        }
        last = end;
      }
    });
    flush();
  }

  /**
   * A JSON array, element by element (the byte form of the in-memory reader's scanner: commas and
   * brackets outside strings and nested values split the top level). An element cut by a chunk
   * boundary is scanned again from its start with the next chunk.
   */
  private async jsonArray(bom: number): Promise<void> {
    const size = this.source.size;
    let line = 1;
    let state: 'before' | 'in' | 'closed' = 'before';
    let carry = new Uint8Array(0);
    let base = bom;
    let ahead = this.read(bom);
    for (let at = bom; ;) {
      const chunk = await ahead;
      at += chunk.length;
      ahead = this.read(at); // the next chunk is read while this one is scanned
      const eof = at >= size;
      const buf = carry.length ? concat(carry, chunk) : chunk;
      const n = buf.length;
      let i = 0;
      const skipWs = (): void => {
        for (; i < n; i++) {
          const c = buf[i]!;
          if (c === 0x0a) line++;
          else if (c !== 0x20 && c !== 0x09 && c !== 0x0d) break;
        }
      };
      let resumeAt = n; // where the next buffer starts (an unfinished element, or the end)
      let resumeLine = line;
      scanning: while (state !== 'closed') {
        skipWs();
        if (i >= n) break;
        if (state === 'before') {
          i++; // past '[' (the caller checked it is there)
          state = 'in';
          continue;
        }
        if (buf[i] === 0x5d /* ] */) {
          i++;
          state = 'closed';
          break;
        }
        const startLine = line;
        const start = i;
        let depth = 0;
        let inString = false;
        let ended = false;
        for (; i < n; i++) {
          const c = buf[i]!;
          if (c === 0x0a) line++;
          if (inString) {
            if (c === 0x5c /* \ */) {
              i++;
              if (buf[i] === 0x0a) line++;
            } else if (c === 0x22) inString = false;
            continue;
          }
          if (c === 0x22) inString = true;
          else if (c === 0x7b || c === 0x5b) depth++;
          else if (c === 0x5d && depth === 0) {
            ended = true;
            break;
          } else if ((c === 0x7d || c === 0x5d) && depth > 0) depth--;
          else if (c === 0x2c && depth === 0) {
            ended = true;
            break;
          }
        }
        if (!ended && !eof) {
          // Cut by the chunk: read on from the element's start.
          resumeAt = start;
          resumeLine = startLine;
          line = startLine;
          break scanning;
        }
        const end = Math.min(i, n);
        if (buf[i] === 0x2c) i++;
        this.element(buf.subarray(start, end), base + start, base + end, startLine);
      }
      if (state === 'closed') {
        // Only white space may follow the closing bracket.
        skipWs();
        if (i < n) {
          const rest = new TextDecoder().decode(await this.source.read(base + i, base + i + 160));
          this.issues.add(line, `expected nothing after the closing "]", got ${preview(rest.slice(0, 40))}`);
          await ahead; // (its bytes belong to the digest)
          return;
        }
        if (eof) return;
        carry = new Uint8Array(0);
        base += n;
        continue;
      }
      if (eof) {
        this.issues.add(line, 'expected "]" closing the JSON array, got the end of the file (truncated?)');
        return;
      }
      carry = resumeAt < n ? buf.slice(resumeAt) : new Uint8Array(0);
      base += resumeAt;
      if (resumeAt < n) line = resumeLine;
      this.progress(Math.min(at, size));
    }
  }

  private element(bytes: Uint8Array, start: number, end: number, line: number): void {
    const chunk = decodeAt(bytes, this.fileName, line).trim();
    if (!chunk) {
      this.issues.add(line, 'expected a JSON object, got an empty array element (two commas in a row?)');
      return;
    }
    let v: unknown;
    try {
      v = JSON.parse(chunk);
    } catch (e) {
      this.issues.add(line, `expected a JSON object, got invalid JSON (${jsonError(e)}): ${preview(chunk)}`);
      return;
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      this.issues.add(line, `expected a JSON object, got ${describe(v)}`);
      return;
    }
    this.row(v as Record<string, unknown>, start, end, line);
  }

  async finish(digest: string | null = null): Promise<RecordIndex> {
    const format = this.format ?? 'text';
    if (this.columns === undefined && (this.container === 'csv' || this.container === 'tsv')) {
      const found: DatasetIssue[] = [];
      delimitedColumns(undefined, this.delim, found); // no header row: the file is empty
      for (const i of found) this.issues.add(i.line, i.message);
    }
    const rowOf = this.rowOf();
    // Rows seen before the format was known, and all rows when none showed it.
    for (const p of this.pending) {
      const v = rowOf(decodeAt(await this.source.read(p.start, p.end), this.fileName, p.line), p.line);
      const r = toRecord(format, v, p.line);
      if ('error' in r) this.issues.add(p.line, r.error);
      else this.ranges.push(p.start, p.end, p.line);
    }
    if (this.rows === 0 && this.issues.count === 0)
      this.issues.add(1, 'expected at least one record, got an empty file');
    const ranges = this.pending.length ? sortRanges(this.ranges.done()) : this.ranges.done();
    this.issues.listed.sort((a, b) => a.line - b.line);
    return new RangeIndex(this.source, this.fileName, this.container, format, ranges, this.issues, rowOf, digest);
  }

  /** How a record's text is read back. */
  private rowOf(): RowOf {
    const { columns, delim, mapping } = this;
    if (this.container === 'txt') return (t) => t.replace(/\r\n|\n|\r/g, '\n'); // the paragraph's lines
    const plain: (t: string, line: number) => Record<string, unknown> = !columns
      ? jsonRow
      : (t, line) => {
          const row = parseDelimited(t, delim, [], line)[0] as DelimitedRow | undefined;
          const v = row && delimitedRecord(columns, row, delim, []);
          if (!v) throw new Error('not a row');
          return v;
        };
    if (!mapping) return plain;
    return (t, line) => {
      const v = mapRow(mapping, plain(t, line));
      if ('error' in v) throw new Error(v.error);
      return v.row;
    };
  }
}

const jsonRow = (t: string): Record<string, unknown> => JSON.parse(t.trim()) as Record<string, unknown>;

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
