/**
 * Training data, step 1: file containers -> rows (an object per record, or a string for plain text).
 *
 * Containers (by file extension, else by sniffing the content):
 *   .jsonl / .ndjson  one JSON object per line (blank lines skipped)
 *   .json             a JSON array of objects (or one object)
 *   .csv / .tsv       header row + rows (RFC 4180 quoting: "a, ""b""", embedded newlines)
 *   .txt / other      plain text: one record per paragraph (blank-line separated), or the whole file
 *                     (a .txt whose first lines are JSON objects is read as JSON Lines)
 * A bad row never stops reading: it becomes a {line, message} issue (1-based line of the file where
 * the row starts, what was expected, what was found) and is skipped.
 * Next: records.ts turns rows into typed records; render.ts turns records into tokens.
 */

import type { DatasetIssue } from './types';

export type DatasetContainer = 'jsonl' | 'json' | 'csv' | 'tsv' | 'txt';

// ---------------------------------------------------------------------------------------------
// Detection

const EXT_CONTAINER: Record<string, DatasetContainer> = {
  jsonl: 'jsonl',
  ndjson: 'jsonl',
  json: 'json',
  csv: 'csv',
  tsv: 'tsv',
  txt: 'txt',
  text: 'txt',
  md: 'txt',
};

function stripBom(s: string): string {
  return s.charCodeAt(0) === 0xfeff ? s.slice(1) : s;
}

/** The container of a file: from its extension, else from its first non-blank character. */
export function detectContainer(fileName: string, content: string): DatasetContainer {
  const ext = /\.([A-Za-z0-9]+)$/.exec(fileName)?.[1]?.toLowerCase();
  const first = stripBom(content).trimStart()[0];
  if (ext === 'json') {
    // Many ".json" datasets are really JSON Lines.
    if (first === '{') {
      const lines = content.split(/\r?\n/).filter((l) => l.trim());
      if (lines.length > 1 && isJsonObject(lines[0]!) && isJsonObject(lines[1]!)) return 'jsonl';
    }
    return 'json';
  }
  // A ".txt" whose first lines are JSON objects is JSON Lines under the wrong extension; as plain
  // text it would train on the JSON syntax.
  if ((ext === 'txt' || ext === 'text') && first === '{' && looksLikeJsonl(content)) return 'jsonl';
  if (ext && EXT_CONTAINER[ext]) return EXT_CONTAINER[ext]!;
  if (first === '[') return 'json';
  if (first === '{') return 'jsonl';
  return 'txt';
}

/** The first (up to three) non-blank lines are each a JSON object. */
function looksLikeJsonl(content: string): boolean {
  const text = stripBom(content);
  const lines: string[] = [];
  for (let at = 0; at < text.length && lines.length < 3;) {
    let end = text.indexOf('\n', at);
    if (end < 0) end = text.length;
    const line = text.slice(at, end).trim();
    if (line) lines.push(line);
    at = end + 1;
  }
  return lines.length > 0 && lines.every(isJsonObject);
}

function isJsonObject(line: string): boolean {
  try {
    const v = JSON.parse(line);
    return v !== null && typeof v === 'object' && !Array.isArray(v);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Containers -> rows (an object per record, or a string for plain text)

export interface Row {
  line: number;
  value: Record<string, unknown> | string;
}

export function readRows(
  container: DatasetContainer,
  content: string,
  txtSplit: 'paragraphs' | 'whole',
  issues: DatasetIssue[],
): Row[] {
  const text = stripBom(content);
  switch (container) {
    case 'jsonl':
      return jsonlRows(text, issues);
    case 'json':
      return jsonRows(text, issues);
    case 'csv':
      return delimitedRows(text, ',', issues);
    case 'tsv':
      return delimitedRows(text, '\t', issues);
    case 'txt':
      return txtRows(text, txtSplit);
  }
}

export function preview(v: unknown, max = 80): string {
  let s: string;
  if (typeof v === 'string') s = JSON.stringify(v);
  else if (v === undefined) s = 'nothing';
  else {
    try {
      s = JSON.stringify(v) ?? String(v);
    } catch {
      s = String(v);
    }
  }
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

export function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array ${preview(v)}`;
  if (typeof v === 'object') return `an object ${preview(v)}`;
  return `${typeof v} ${preview(v)}`;
}

/** A JSON.parse error on one line: V8 quotes the offending text, newlines included. */
export function jsonError(e: unknown): string {
  return (e as Error).message.replace(/\r\n|\n|\r/g, '\\n');
}

/**
 * The issue for a JSON Lines line that does not parse. The file's last line (no line break after
 * it) that starts an object but never closes it was cut off: the file is truncated.
 */
export function badJsonLine(e: unknown, s: string, last: boolean): string {
  if (last && (s.startsWith('{') || s.startsWith('[')) && !/[}\]]$/.test(s))
    return `expected a JSON object, got a last line cut off at the end of the file (the file looks truncated: copy or download it again): ${preview(s)}`;
  return `expected a JSON object, got invalid JSON (${jsonError(e)}): ${preview(s)}`;
}

function jsonlRows(text: string, issues: DatasetIssue[]): Row[] {
  const rows: Row[] = [];
  const lines = text.split(/\r\n|\n|\r/);
  lines.forEach((raw, i) => {
    const line = i + 1;
    const s = raw.trim();
    if (!s) return;
    let v: unknown;
    try {
      v = JSON.parse(s);
    } catch (e) {
      issues.push({ line, message: badJsonLine(e, s, i === lines.length - 1) });
      return;
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      issues.push({ line, message: `expected a JSON object, got ${describe(v)}` });
      return;
    }
    rows.push({ line, value: v as Record<string, unknown> });
  });
  return rows;
}

/**
 * A JSON array of records, element by element, so one broken element is one issue with its line
 * number. The scanner splits the top-level array at commas outside strings and nested brackets.
 */
function jsonRows(text: string, issues: DatasetIssue[]): Row[] {
  let i = 0;
  let line = 1;
  const n = text.length;
  const skipWs = (): void => {
    for (; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c === 10) line++;
      else if (c !== 32 && c !== 9 && c !== 13) break;
    }
  };
  skipWs();
  if (i >= n) {
    issues.push({ line: 1, message: 'expected a JSON array of records, got an empty file' });
    return [];
  }
  if (text[i] !== '[') {
    // A single object is one record.
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      issues.push({ line, message: `expected a JSON array of records, got invalid JSON (${jsonError(e)})` });
      return [];
    }
    if (v !== null && typeof v === 'object' && !Array.isArray(v))
      return [{ line, value: v as Record<string, unknown> }];
    issues.push({ line, message: `expected a JSON array of records, got ${describe(v)}` });
    return [];
  }
  i++; // past '['
  const rows: Row[] = [];
  let closed = false;
  while (i < n) {
    skipWs();
    if (i >= n) break;
    if (text[i] === ']') {
      i++;
      closed = true;
      break;
    }
    const startLine = line;
    const start = i;
    let depth = 0;
    let inString = false;
    for (; i < n; i++) {
      const c = text[i]!;
      if (c === '\n') line++;
      if (inString) {
        if (c === '\\') {
          i++;
          if (text[i] === '\n') line++;
        } else if (c === '"') inString = false;
        continue;
      }
      if (c === '"') inString = true;
      else if (c === '{' || c === '[') depth++;
      else if (c === ']' && depth === 0)
        break; // the array's own ']'
      else if ((c === '}' || c === ']') && depth > 0) depth--;
      else if (c === ',' && depth === 0) break;
    }
    const chunk = text.slice(start, i).trim();
    if (text[i] === ',') i++;
    if (!chunk) {
      issues.push({
        line: startLine,
        message: 'expected a JSON object, got an empty array element (two commas in a row?)',
      });
      continue;
    }
    let v: unknown;
    try {
      v = JSON.parse(chunk);
    } catch (e) {
      issues.push({
        line: startLine,
        message: `expected a JSON object, got invalid JSON (${jsonError(e)}): ${preview(chunk)}`,
      });
      continue;
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      issues.push({ line: startLine, message: `expected a JSON object, got ${describe(v)}` });
      continue;
    }
    rows.push({ line: startLine, value: v as Record<string, unknown> });
  }
  if (!closed)
    issues.push({ line, message: 'expected "]" closing the JSON array, got the end of the file (truncated?)' });
  else {
    skipWs();
    if (i < n)
      issues.push({ line, message: `expected nothing after the closing "]", got ${preview(text.slice(i, i + 40))}` });
  }
  return rows;
}

export interface DelimitedRow {
  line: number;
  fields: string[];
}

/**
 * RFC 4180 rows with the line each starts on. Quotes may hold delimiters, newlines and "" escapes.
 * `firstLine` is the line the text starts on (scan.ts parses a file row by row).
 */
export function parseDelimited(text: string, delim: string, issues: DatasetIssue[], firstLine = 1): DelimitedRow[] {
  const rows: DelimitedRow[] = [];
  const n = text.length;
  let i = 0;
  let line = firstLine;
  while (i < n) {
    const rowLine = line;
    const fields: string[] = [];
    let field = '';
    let endOfRow = false;
    while (!endOfRow) {
      if (text[i] === '"') {
        const quoteLine = line;
        i++;
        let closed = false;
        while (i < n) {
          const c = text[i]!;
          if (c === '"') {
            if (text[i + 1] === '"') {
              field += '"';
              i += 2;
              continue;
            }
            i++;
            closed = true;
            break;
          }
          if (c === '\n' || (c === '\r' && text[i + 1] !== '\n')) line++;
          field += c;
          i++;
        }
        if (!closed) {
          issues.push({
            line: quoteLine,
            message: `expected a closing quote for the field opened on line ${quoteLine}, got the end of the file`,
          });
          return rows;
        }
        // After a closing quote only a delimiter or the end of the row may follow; keep any stray text.
        if (i < n && text[i] !== delim && text[i] !== '\n' && text[i] !== '\r') {
          issues.push({
            line,
            message: `expected ${delim === '\t' ? 'a tab' : '","'} or a line break after a closing quote, got ${preview(text[i])}; kept it as text`,
          });
        }
      }
      const from = i;
      while (i < n && text[i] !== delim && text[i] !== '\n' && text[i] !== '\r') i++;
      field += text.slice(from, i);
      fields.push(field);
      field = '';
      if (i >= n) endOfRow = true;
      else if (text[i] === delim) {
        i++;
        if (i >= n) {
          fields.push(''); // a delimiter at the very end of the file: one more, empty, field
          endOfRow = true;
        }
      } else {
        if (text[i] === '\r' && text[i + 1] === '\n') i++;
        i++;
        line++;
        endOfRow = true;
      }
    }
    if (fields.length === 1 && fields[0]!.trim() === '') continue; // blank line
    rows.push({ line: rowLine, fields });
  }
  return rows;
}

const CSV_COLUMN_SETS = 'text; or instruction, output (and optionally input); or prompt, completion (or response)';

function delimitedRows(text: string, delim: string, issues: DatasetIssue[]): Row[] {
  const table = parseDelimited(text, delim, issues);
  const names = delimitedColumns(table.shift(), delim, issues);
  if (!names) return [];
  const rows: Row[] = [];
  for (const r of table) {
    const value = delimitedRecord(names, r, delim, issues);
    if (value) rows.push({ line: r.line, value });
  }
  return rows;
}

/**
 * The column names of a header row (lower case), or null with an issue when it has none we read
 * (`anyNames`: a column mapping says which columns to read, so any names do).
 */
export function delimitedColumns(
  header: DelimitedRow | undefined,
  delim: string,
  issues: DatasetIssue[],
  anyNames = false,
): string[] | null {
  if (!header) {
    issues.push({ line: 1, message: `expected a header row with columns ${CSV_COLUMN_SETS}, got an empty file` });
    return null;
  }
  const names = header.fields.map((f) => f.trim().toLowerCase());
  const known = ['text', 'instruction', 'input', 'output', 'prompt', 'completion', 'response'];
  if (!anyNames && !names.some((c) => known.includes(c))) {
    issues.push({
      line: header.line,
      message: `expected a header row with columns ${CSV_COLUMN_SETS}, got ${preview(header.fields.join(delim))}`,
    });
    return null;
  }
  return names;
}

/** A data row as an object keyed by the column names, or null with an issue when its fields do not fit. */
export function delimitedRecord(
  names: string[],
  r: DelimitedRow,
  delim: string,
  issues: DatasetIssue[],
): Record<string, unknown> | null {
  let fields = r.fields;
  // Spreadsheet exports often pad rows with empty trailing cells.
  if (fields.length > names.length && fields.slice(names.length).every((f) => f === ''))
    fields = fields.slice(0, names.length);
  if (fields.length !== names.length) {
    issues.push({
      line: r.line,
      message: `expected ${names.length} fields (${names.join(', ')}), got ${fields.length}: ${preview(fields.join(delim))}`,
    });
    return null;
  }
  const obj: Record<string, unknown> = {};
  names.forEach((name, k) => {
    if (name && !(name in obj)) obj[name] = fields[k];
  });
  return obj;
}

function txtRows(text: string, split: 'paragraphs' | 'whole'): Row[] {
  const lines = text.split(/\r\n|\n|\r/);
  if (split === 'whole') {
    const first = lines.findIndex((l) => l.trim() !== '');
    if (first < 0) return [];
    return [{ line: first + 1, value: lines.slice(first).join('\n').replace(/\s+$/, '') }];
  }
  const rows: Row[] = [];
  let buf: string[] = [];
  let start = 0;
  const flush = (): void => {
    if (buf.length) rows.push({ line: start, value: buf.join('\n') });
    buf = [];
  };
  lines.forEach((l, i) => {
    if (l.trim() === '') flush();
    else {
      if (!buf.length) start = i + 1;
      buf.push(l);
    }
  });
  flush();
  return rows;
}
