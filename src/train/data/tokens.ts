/**
 * Tokenized examples kept compactly, and the bounded cache of records tokenized on demand.
 *
 * A CompactExample holds its ids in a Uint16Array when the tokenizer's ids fit 16 bits (else a
 * Uint32Array) and its loss mask as one byte per token: 3 bytes per token instead of the ~17 of a
 * number[] plus boolean[] (and no per-element boxing). `TokenCache` keeps the examples of the
 * records tokenized most recently, up to a budget of tokens, dropping the least recently used; a
 * dropped record is tokenized again when it is needed again (the same ids: rendering is a pure
 * function of the record, the tokenizer and the settings).
 */

import type { DatasetIssue } from './types';
import type { DatasetRecord } from './records';
import {
  type PieceProgress,
  RecordError,
  type RenderOptions,
  type TokenizedExample,
  type TokenizerLike,
  renderRecord,
} from './render';

export interface CompactExample {
  ids: Uint16Array | Uint32Array;
  /** counted[t] = 1 when predicting token t counts in the loss. */
  counted: Uint8Array;
  line: number;
  truncated: boolean;
  countedTokens: number;
}

/** What a record gives: its usable examples, or the issue that made it unusable. */
export type RecordTokens = { examples: CompactExample[]; issue: null } | { examples: []; issue: DatasetIssue };

export function compactExample(ex: TokenizedExample, wide: boolean): CompactExample {
  const ids = wide ? Uint32Array.from(ex.ids) : Uint16Array.from(ex.ids);
  const counted = new Uint8Array(ex.counted.length);
  for (let t = 0; t < counted.length; t++) counted[t] = ex.counted[t] ? 1 : 0;
  return { ids, counted, line: ex.line, truncated: ex.truncated, countedTokens: ex.countedTokens };
}

/** Whether ids need 32 bits (a vocabulary past 65,536 ids, or an unknown one). */
export function needsWideIds(vocabSize: number | undefined): boolean {
  return !(vocabSize !== undefined && vocabSize > 0 && vocabSize <= 0x10000);
}

/**
 * A record rendered for training: its examples that have counted tokens, or why it has none (the
 * rules of the in-memory path: a RecordError, or examples with nothing learned).
 */
export function tokenizeRecord(
  tok: TokenizerLike,
  record: DatasetRecord,
  opts: RenderOptions,
  wide: boolean,
  onPiece?: PieceProgress,
): { tokens: RecordTokens; full: TokenizedExample[] } {
  let examples: TokenizedExample[];
  try {
    examples = renderRecord(tok, record, opts, onPiece);
  } catch (e) {
    if (e instanceof RecordError)
      return { tokens: { examples: [], issue: { line: record.line, message: e.message } }, full: [] };
    throw e;
  }
  const usable = examples.filter((ex) => ex.countedTokens > 0 && ex.ids.length >= 2);
  if (usable.length === 0) {
    return {
      tokens: {
        examples: [],
        issue: {
          line: record.line,
          message: 'no tokens of this record count in the loss (empty response or too short)',
        },
      },
      full: [],
    };
  }
  return { tokens: { examples: usable.map((ex) => compactExample(ex, wide)), issue: null }, full: usable };
}

/** The examples of recently used records, least recently used dropped past `budgetTokens`. */
export class TokenCache {
  private readonly map = new Map<number, RecordTokens>();
  private tokens = 0;

  constructor(private readonly budgetTokens: number) {}

  get(record: number): RecordTokens | undefined {
    const v = this.map.get(record);
    if (v) {
      this.map.delete(record);
      this.map.set(record, v);
    }
    return v;
  }

  has(record: number): boolean {
    return this.map.has(record);
  }

  set(record: number, v: RecordTokens): void {
    const old = this.map.get(record);
    if (old) this.tokens -= sizeOf(old);
    this.map.delete(record);
    this.map.set(record, v);
    this.tokens += sizeOf(v);
    for (const [k, e] of this.map) {
      if (this.tokens <= this.budgetTokens || this.map.size <= 1) break;
      this.map.delete(k);
      this.tokens -= sizeOf(e);
    }
  }

  /** Tokens held now. */
  get heldTokens(): number {
    return this.tokens;
  }
}

function sizeOf(v: RecordTokens): number {
  let n = 1;
  for (const ex of v.examples) n += ex.ids.length;
  return n;
}

/**
 * Where tokenized chunks of a large dataset are kept between runs (the app: IndexedDB, see
 * src/store/token-cache.ts). `set` names one tokenized dataset (its bytes, the tokenizer and the
 * settings); chunk c holds records [c·CHUNK_RECORDS, (c+1)·CHUNK_RECORDS).
 */
export interface TokenStore {
  get(set: string, chunk: number): Promise<Uint8Array | undefined>;
  put(set: string, chunk: number, bytes: Uint8Array): Promise<void>;
  /** Marks a set as in use (a store may drop the sets used least recently). */
  use(set: string): Promise<void>;
}

/** Records per stored chunk (a batch that needs one record tokenizes its chunk whole). */
export const CHUNK_RECORDS = 16;

interface ChunkHeader {
  wide: boolean;
  records: (
    { issue: DatasetIssue } | { examples: { line: number; n: number; counted: number; truncated: boolean }[] }
  )[];
}

/**
 * One chunk of records as bytes: u32 header length, the JSON header (per record its issue or its
 * examples' line, length, counted tokens, truncation), padding to 4 bytes, then every example's ids
 * (u16 or u32) and every example's mask bytes.
 */
export function encodeChunk(records: readonly RecordTokens[], wide: boolean): Uint8Array {
  const header: ChunkHeader = {
    wide,
    records: records.map((r) =>
      r.issue
        ? { issue: r.issue }
        : {
            examples: r.examples.map((e) => ({
              line: e.line,
              n: e.ids.length,
              counted: e.countedTokens,
              truncated: e.truncated,
            })),
          },
    ),
  };
  const head = new TextEncoder().encode(JSON.stringify(header));
  const headEnd = (4 + head.length + 3) & ~3;
  let tokens = 0;
  for (const r of records) for (const e of r.examples) tokens += e.ids.length;
  const idBytes = tokens * (wide ? 4 : 2);
  const out = new Uint8Array(headEnd + idBytes + tokens);
  new DataView(out.buffer).setUint32(0, head.length, true);
  out.set(head, 4);
  const ids = wide ? new Uint32Array(out.buffer, headEnd, tokens) : new Uint16Array(out.buffer, headEnd, tokens);
  let at = 0;
  for (const r of records) {
    for (const e of r.examples) {
      ids.set(e.ids, at);
      out.set(e.counted, headEnd + idBytes + at);
      at += e.ids.length;
    }
  }
  return out;
}

export function decodeChunk(bytes: Uint8Array): RecordTokens[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headLen = view.getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + headLen))) as ChunkHeader;
  const headEnd = (4 + headLen + 3) & ~3;
  let tokens = 0;
  for (const r of header.records) if ('examples' in r) for (const e of r.examples) tokens += e.n;
  // A copy, so the ids start on an aligned offset whatever the stored buffer.
  const body = bytes.slice(headEnd);
  const idBytes = tokens * (header.wide ? 4 : 2);
  const ids = header.wide ? new Uint32Array(body.buffer, 0, tokens) : new Uint16Array(body.buffer, 0, tokens);
  let at = 0;
  return header.records.map((r): RecordTokens => {
    if ('issue' in r) return { examples: [], issue: r.issue };
    return {
      issue: null,
      examples: r.examples.map((e) => {
        const ex: CompactExample = {
          ids: ids.subarray(at, at + e.n),
          counted: body.subarray(idBytes + at, idBytes + at + e.n),
          line: e.line,
          truncated: e.truncated,
          countedTokens: e.counted,
        };
        at += e.n;
        return ex;
      }),
    };
  });
}
