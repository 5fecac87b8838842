/**
 * Training data: file formats, parsing with per-record issues, rendering to tokens, and loss masks.
 *
 * Containers (by file extension, else by sniffing the content):
 *   .jsonl / .ndjson  one JSON object per line (blank lines skipped)
 *   .json             a JSON array of objects (or one object)
 *   .csv / .tsv       header row + rows (RFC 4180 quoting: "a, ""b""", embedded newlines)
 *   .txt / other      plain text: one record per paragraph (blank-line separated), or the whole file
 *                     (a .txt whose first lines are JSON objects is read as JSON Lines)
 * Record formats:
 *   text    {"text": "..."}                         CSV column: text
 *   alpaca  {"instruction", "input"?, "output"}     CSV columns: instruction, input?, output
 *           {"prompt", "completion" | "response"}   (read as instruction = prompt, output = completion)
 *   chat    {"messages": [{"role", "content"}...]}  roles system / user / assistant
 *           {"conversations": [{"from", "value"}]}  (ShareGPT; human -> user, gpt -> assistant)
 * A bad record never stops parsing: it becomes a {line, message} issue (1-based line of the file where
 * the record starts, what was expected, what was found) and is skipped.
 *
 * Rendering and loss masks (`counted[t]`: does predicting token t count in the loss; counted[0] is
 * always false because nothing predicts the first token):
 *   text    encode(text, {addSpecialTokens: true}) (so BOS is added exactly when the tokenizer's
 *           own post-processor adds it, as transformers does), then EOS appended unless the encoding
 *           already ends with one. Every token counts.
 *   alpaca  with alpacaStyle 'template' (the default when the tokenizer has no chat template): the
 *           Stanford Alpaca prompt ("Below is an instruction ... ### Response:\n") + output + EOS;
 *           only the output tokens and EOS count. With 'chat' (the default when it has one): rendered
 *           as a user turn (instruction, blank line, input) and an assistant turn, as chat below.
 *   chat    the tokenizer's chat template (encoded without extra special tokens, as
 *           apply_chat_template does); only the tokens of assistant turns count, up to and including
 *           the turn's end-of-turn EOS token (text after that EOS, such as a newline, does not).
 *           Assistant spans are found by rendering prefixes: the conversation up to the turn with
 *           the generation prompt gives where the turn starts, the conversation through the turn
 *           gives where it ends; character spans become token spans by comparing the encoding of
 *           each prefix with the full encoding (a token straddling a boundary counts).
 *           Without a chat template a plain "### User: / ### Assistant:" layout is used.
 * Sequences longer than maxLen are cut to maxLen (`truncated`), or for text records optionally
 * split into maxLen windows (overflow 'chunk'). A record left with no counted token is an issue.
 */

import type { DatasetFormat, DatasetIssue, ExamplePreview } from '../engine/types';

export type { DatasetFormat, DatasetIssue } from '../engine/types';

/** What rendering needs from the tokenizer (a subset of src/model/tokenizer.ts TextTokenizer). */
export interface TokenizerLike {
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  applyChatTemplate(messages: { role: string; content: string }[], opts?: { addGenerationPrompt?: boolean }): string;
  hasChatTemplate: boolean;
  eosTokenIds: number[];
}

export type DatasetContainer = 'jsonl' | 'json' | 'csv' | 'tsv' | 'txt';

export interface TextRecord {
  kind: 'text';
  line: number;
  text: string;
}

export interface AlpacaRecord {
  kind: 'alpaca';
  line: number;
  instruction: string;
  input: string;
  output: string;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ChatRecord {
  kind: 'chat';
  line: number;
  messages: ChatMessage[];
}

export type DatasetRecord = TextRecord | AlpacaRecord | ChatRecord;

export interface ParsedDataset {
  container: DatasetContainer;
  format: DatasetFormat;
  records: DatasetRecord[];
  issues: DatasetIssue[];
}

export interface ParseOptions {
  /** Record format; 'auto' (default) takes the format of the first recognisable record. */
  format?: DatasetFormat | 'auto';
  /** Container; 'auto' (default) uses the file extension, else sniffs the content. */
  container?: DatasetContainer | 'auto';
  /** Plain text: one record per paragraph (default) or the whole file as one record. */
  txtSplit?: 'paragraphs' | 'whole';
}

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

/** The container and record format of a file (format 'text' when nothing is recognisable). */
export function detectFormat(
  fileName: string,
  content: string,
): { container: DatasetContainer; format: DatasetFormat } {
  const container = detectContainer(fileName, content);
  // The first records decide; a cut-off last record in the sample only adds an (ignored) issue.
  const rows = readRows(container, content.slice(0, 1 << 16), 'paragraphs', []);
  for (const row of rows) {
    const f = typeof row.value === 'string' ? 'text' : classify(row.value);
    if (f) return { container, format: f };
  }
  return { container, format: 'text' };
}

// ---------------------------------------------------------------------------------------------
// Containers -> rows (an object per record, or a string for plain text)

interface Row {
  line: number;
  value: Record<string, unknown> | string;
}

function readRows(
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

function preview(v: unknown, max = 80): string {
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

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array ${preview(v)}`;
  if (typeof v === 'object') return `an object ${preview(v)}`;
  return `${typeof v} ${preview(v)}`;
}

/** A JSON.parse error on one line: V8 quotes the offending text, newlines included. */
function jsonError(e: unknown): string {
  return (e as Error).message.replace(/\r\n|\n|\r/g, '\\n');
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
      issues.push({ line, message: `expected a JSON object, got invalid JSON (${jsonError(e)}): ${preview(s)}` });
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

/** RFC 4180 rows with the line each starts on. Quotes may hold delimiters, newlines and "" escapes. */
export function parseDelimited(
  text: string,
  delim: string,
  issues: DatasetIssue[],
): { line: number; fields: string[] }[] {
  const rows: { line: number; fields: string[] }[] = [];
  const n = text.length;
  let i = 0;
  let line = 1;
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
      while (i < n && text[i] !== delim && text[i] !== '\n' && text[i] !== '\r') field += text[i++];
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
  const header = table.shift();
  if (!header) {
    issues.push({ line: 1, message: `expected a header row with columns ${CSV_COLUMN_SETS}, got an empty file` });
    return [];
  }
  const names = header.fields.map((f) => f.trim().toLowerCase());
  const known = ['text', 'instruction', 'input', 'output', 'prompt', 'completion', 'response'];
  if (!names.some((c) => known.includes(c))) {
    issues.push({
      line: header.line,
      message: `expected a header row with columns ${CSV_COLUMN_SETS}, got ${preview(header.fields.join(delim))}`,
    });
    return [];
  }
  const rows: Row[] = [];
  for (const r of table) {
    let fields = r.fields;
    // Spreadsheet exports often pad rows with empty trailing cells.
    if (fields.length > names.length && fields.slice(names.length).every((f) => f === ''))
      fields = fields.slice(0, names.length);
    if (fields.length !== names.length) {
      issues.push({
        line: r.line,
        message: `expected ${names.length} fields (${names.join(', ')}), got ${fields.length}: ${preview(fields.join(delim))}`,
      });
      continue;
    }
    const obj: Record<string, unknown> = {};
    names.forEach((name, k) => {
      if (name && !(name in obj)) obj[name] = fields[k];
    });
    rows.push({ line: r.line, value: obj });
  }
  return rows;
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

// ---------------------------------------------------------------------------------------------
// Rows -> records

/** The format an object looks like, or null. */
function classify(o: Record<string, unknown>): DatasetFormat | null {
  if ('messages' in o || 'conversations' in o) return 'chat';
  if ('instruction' in o || 'output' in o || ('prompt' in o && ('completion' in o || 'response' in o))) return 'alpaca';
  if ('text' in o) return 'text';
  return null;
}

type Converted = DatasetRecord | { error: string };

function str(o: Record<string, unknown>, key: string): string | undefined | { bad: unknown } {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  return { bad: v };
}

function toText(o: Record<string, unknown>, line: number): Converted {
  const t = str(o, 'text');
  if (typeof t !== 'string')
    return {
      error: `expected {"text": "..."} with a string, got ${t === undefined ? `keys ${preview(Object.keys(o))}` : `text ${describe(t.bad)}`}`,
    };
  if (!t.trim()) return { error: 'expected non-empty "text", got an empty string' };
  return { kind: 'text', line, text: t };
}

function toAlpaca(o: Record<string, unknown>, line: number): Converted {
  const pick = (...keys: string[]): { key: string; v: ReturnType<typeof str> } => {
    for (const key of keys) if (o[key] !== undefined && o[key] !== null) return { key, v: str(o, key) };
    return { key: keys[0]!, v: undefined };
  };
  const ins = pick('instruction', 'prompt');
  const inp = pick('input');
  const out = pick('output', 'completion', 'response');
  const expected = 'expected {"instruction", "input" (optional), "output"} strings';
  for (const f of [ins, inp, out]) {
    if (f.v !== undefined && typeof f.v !== 'string')
      return { error: `${expected}, got "${f.key}" as ${describe(f.v.bad)}` };
  }
  if (typeof ins.v !== 'string' || !ins.v.trim()) {
    return {
      error: `${expected}, got ${ins.v === undefined ? `no "instruction" (keys ${preview(Object.keys(o))})` : 'an empty "instruction"'}`,
    };
  }
  if (typeof out.v !== 'string' || !out.v.trim()) {
    return {
      error: `${expected}, got ${out.v === undefined ? `no "output" (keys ${preview(Object.keys(o))})` : 'an empty "output" (nothing to learn)'}`,
    };
  }
  return { kind: 'alpaca', line, instruction: ins.v, input: typeof inp.v === 'string' ? inp.v : '', output: out.v };
}

const SHAREGPT_ROLES: Record<string, ChatMessage['role']> = {
  human: 'user',
  user: 'user',
  gpt: 'assistant',
  assistant: 'assistant',
  system: 'system',
};

function toChat(o: Record<string, unknown>, line: number): Converted {
  const shareGpt = !('messages' in o) && 'conversations' in o;
  const list = shareGpt ? o.conversations : o.messages;
  const expected = shareGpt
    ? 'expected "conversations": [{"from": "human" | "gpt" | "system", "value": "..."}]'
    : 'expected "messages": [{"role": "system" | "user" | "assistant", "content": "..."}]';
  if (!Array.isArray(list) || list.length === 0)
    return { error: `${expected}, got ${Array.isArray(list) ? 'an empty list' : describe(list)}` };
  const messages: ChatMessage[] = [];
  for (let k = 0; k < list.length; k++) {
    const m = list[k] as Record<string, unknown> | null;
    if (m === null || typeof m !== 'object' || Array.isArray(m))
      return { error: `${expected}, got message ${k + 1} as ${describe(m)}` };
    const rawRole = shareGpt ? m.from : m.role;
    const role =
      typeof rawRole === 'string'
        ? shareGpt
          ? SHAREGPT_ROLES[rawRole]
          : (['system', 'user', 'assistant'] as const).find((r) => r === rawRole)
        : undefined;
    if (!role)
      return { error: `${expected}, got message ${k + 1} with ${shareGpt ? '"from"' : '"role"'} ${describe(rawRole)}` };
    let content = shareGpt ? m.value : m.content;
    // OpenAI-style content parts: keep the text parts.
    if (
      Array.isArray(content) &&
      content.every((p) => p && typeof p === 'object' && (p as { type?: unknown }).type === 'text')
    ) {
      content = content.map((p) => String((p as { text?: unknown }).text ?? '')).join('');
    }
    if (typeof content !== 'string')
      return { error: `${expected}, got message ${k + 1} (${role}) with content ${describe(content)}` };
    messages.push({ role, content });
  }
  if (!messages.some((m) => m.role === 'assistant' && m.content.trim())) {
    return {
      error: `expected at least one non-empty assistant message (only assistant tokens are learned), got roles ${messages.map((m) => m.role).join(', ')}`,
    };
  }
  return { kind: 'chat', line, messages };
}

function convert(format: DatasetFormat, o: Record<string, unknown>, line: number): Converted {
  switch (format) {
    case 'text':
      return toText(o, line);
    case 'alpaca':
      return toAlpaca(o, line);
    case 'chat':
      return toChat(o, line);
  }
}

/**
 * Parses a dataset file. Never throws on bad content: every problem is an issue with its line, and
 * the records that could be read are returned in file order.
 */
export function parseDataset(fileName: string, content: string, opts: ParseOptions = {}): ParsedDataset {
  const issues: DatasetIssue[] = [];
  const container = !opts.container || opts.container === 'auto' ? detectContainer(fileName, content) : opts.container;
  const rows = readRows(container, content, opts.txtSplit ?? 'paragraphs', issues);
  let format: DatasetFormat;
  if (opts.format && opts.format !== 'auto') format = opts.format;
  else if (container === 'txt') format = 'text';
  else
    format =
      rows.map((r) => (typeof r.value === 'string' ? 'text' : classify(r.value))).find((f) => f !== null) ?? 'text';

  const records: DatasetRecord[] = [];
  for (const row of rows) {
    if (typeof row.value === 'string') {
      if (format !== 'text') {
        issues.push({
          line: row.line,
          message: `expected ${format === 'alpaca' ? 'an' : 'a'} ${format} record, got plain text (plain-text files hold text records only)`,
        });
        continue;
      }
      records.push({ kind: 'text', line: row.line, text: row.value });
      continue;
    }
    const r = convert(format, row.value, row.line);
    if ('error' in r) issues.push({ line: row.line, message: r.error });
    else records.push(r);
  }
  if (rows.length === 0 && issues.length === 0)
    issues.push({ line: 1, message: 'expected at least one record, got an empty file' });
  issues.sort((a, b) => a.line - b.line);
  return { container, format, records, issues };
}

// ---------------------------------------------------------------------------------------------
// Rendering

export const ALPACA_PROMPT_INPUT =
  'Below is an instruction that describes a task, paired with an input that provides further context. ' +
  'Write a response that appropriately completes the request.\n\n' +
  '### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n';

export const ALPACA_PROMPT_NO_INPUT =
  'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n' +
  '### Instruction:\n{instruction}\n\n### Response:\n';

/** The Stanford Alpaca prompt (with or without the Input section). Also what generation should use. */
export function alpacaPrompt(instruction: string, input = ''): string {
  return input.trim()
    ? ALPACA_PROMPT_INPUT.replace('{instruction}', () => instruction).replace('{input}', () => input)
    : ALPACA_PROMPT_NO_INPUT.replace('{instruction}', () => instruction);
}

/** An Alpaca record as a two-turn chat (instruction, blank line, input as the user turn). */
export function alpacaAsChat(r: Pick<AlpacaRecord, 'instruction' | 'input' | 'output'>): ChatMessage[] {
  const user = r.input.trim() ? `${r.instruction}\n\n${r.input}` : r.instruction;
  return [
    { role: 'user', content: user },
    { role: 'assistant', content: r.output },
  ];
}

export interface TokenizedExample {
  ids: number[];
  /** Per token: does predicting this token count in the loss (counted[0] is always false). */
  counted: boolean[];
  /** 1-based line of the record in the file. */
  line: number;
  /** Cut to maxLen. */
  truncated: boolean;
  /** Number of true entries of `counted`. */
  countedTokens: number;
}

export interface RenderOptions {
  maxLen: number;
  /** How Alpaca records are laid out: 'auto' = chat when the tokenizer has a chat template. */
  alpacaStyle?: 'auto' | 'template' | 'chat';
  /** Text records longer than maxLen: cut (default) or split into maxLen windows. */
  overflow?: 'truncate' | 'chunk';
}

export class RecordError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RecordError';
  }
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

function endsWithEos(tok: TokenizerLike, ids: number[]): boolean {
  return ids.length > 0 && tok.eosTokenIds.includes(ids[ids.length - 1]!);
}

function withEos(tok: TokenizerLike, ids: number[]): number[] {
  const eos = tok.eosTokenIds[0];
  return eos === undefined || endsWithEos(tok, ids) ? ids : [...ids, eos];
}

/** Token span [start, end) of the characters [c0, c1) of `text`, whose full encoding is `ids`. */
function tokenSpan(
  tok: TokenizerLike,
  text: string,
  ids: number[],
  c0: number,
  c1: number,
  addSpecial: boolean,
): [number, number] {
  const start = c0 === 0 ? 0 : commonPrefix(tok.encode(text.slice(0, c0), { addSpecialTokens: addSpecial }), ids);
  if (c1 >= text.length) return [start, ids.length];
  const upto = tok.encode(text.slice(0, c1), { addSpecialTokens: addSpecial });
  const l = commonPrefix(upto, ids);
  // When the prefix's encoding diverges, the full encoding's token at l straddles c1: count it.
  return [start, Math.min(ids.length, l < upto.length ? l + 1 : l)];
}

/** The plain layout used for chat data when the tokenizer has no chat template. */
function plainChat(tok: TokenizerLike): (messages: ChatMessage[], addGenerationPrompt: boolean) => string {
  // EOS as text only when the tokenizer reads that text back as the EOS token.
  const eos = tok.eosTokenIds[0];
  let eosText = '';
  if (eos !== undefined) {
    const s = tok.decode([eos], { skipSpecialTokens: false });
    const back = tok.encode(s, { addSpecialTokens: false });
    if (s && back.length === 1 && back[0] === eos) eosText = s;
  }
  return (messages, addGenerationPrompt) => {
    let out = '';
    for (const m of messages) {
      if (m.role === 'system') out += `${m.content}\n\n`;
      else if (m.role === 'user') out += `### User:\n${m.content}\n\n`;
      else out += `### Assistant:\n${m.content}${eosText}\n\n`;
    }
    if (addGenerationPrompt) out += '### Assistant:\n';
    return out;
  };
}

function renderChat(tok: TokenizerLike, messages: ChatMessage[]): { ids: number[]; counted: boolean[] } {
  const render = tok.hasChatTemplate
    ? (ms: ChatMessage[], gen: boolean): string => tok.applyChatTemplate(ms, { addGenerationPrompt: gen })
    : plainChat(tok);
  let full: string;
  try {
    full = render(messages, false);
  } catch (e) {
    throw new RecordError(`the chat template failed on this conversation: ${(e as Error).message}`);
  }
  const ids = tok.encode(full, { addSpecialTokens: false });
  const counted = new Array<boolean>(ids.length).fill(false);
  let searchFrom = 0;
  messages.forEach((m, i) => {
    if (m.role !== 'assistant') return;
    const tryRender = (ms: ChatMessage[], gen: boolean): string | null => {
      try {
        return render(ms, gen);
      } catch {
        return null;
      }
    };
    const before = tryRender(messages.slice(0, i), true);
    const through = tryRender(messages.slice(0, i + 1), false);
    let c0: number;
    let exact = true;
    if (before !== null && before.length >= searchFrom && full.startsWith(before)) c0 = before.length;
    else {
      // Templates that render earlier turns differently: find the content itself.
      c0 = full.indexOf(m.content, searchFrom);
      if (c0 < 0) throw new RecordError(`could not find assistant message ${i + 1} in the rendered chat template`);
      exact = false;
    }
    let c1: number;
    if (exact && through !== null && through.length > c0 && full.startsWith(through)) c1 = through.length;
    else c1 = c0 + m.content.length;
    let [t0, t1] = tokenSpan(tok, full, ids, c0, c1, false);
    // Through the turn's end-of-turn token, and nothing after it (e.g. the newline ChatML adds).
    let lastEos = -1;
    for (let t = t0; t < t1; t++) if (tok.eosTokenIds.includes(ids[t]!)) lastEos = t;
    if (lastEos >= 0) t1 = lastEos + 1;
    else if (t1 < ids.length && tok.eosTokenIds.includes(ids[t1]!)) t1++;
    for (let t = Math.max(1, t0); t < t1; t++) counted[t] = true;
    searchFrom = c1;
  });
  return { ids, counted };
}

function renderAlpacaTemplate(tok: TokenizerLike, r: AlpacaRecord): { ids: number[]; counted: boolean[] } {
  const prompt = alpacaPrompt(r.instruction, r.input);
  const full = prompt + r.output;
  const ids = withEos(tok, tok.encode(full, { addSpecialTokens: true }));
  const start = Math.max(1, commonPrefix(tok.encode(prompt, { addSpecialTokens: true }), ids));
  return { ids, counted: ids.map((_, t) => t >= start) };
}

function finish(ids: number[], counted: boolean[], line: number, maxLen: number, what: string): TokenizedExample {
  let truncated = false;
  if (ids.length > maxLen) {
    ids = ids.slice(0, maxLen);
    counted = counted.slice(0, maxLen);
    truncated = true;
  }
  counted[0] = false;
  const countedTokens = counted.reduce((n, c) => n + (c ? 1 : 0), 0);
  if (countedTokens === 0) {
    throw new RecordError(
      truncated
        ? `expected trainable tokens within max length ${maxLen}, got a ${what} that fills all ${maxLen} tokens; raise max length or shorten the record`
        : `expected trainable tokens, got none: the record renders to ${ids.length} token(s), none of them learned`,
    );
  }
  return { ids, counted, line, truncated, countedTokens };
}

/** One record as token ids and loss mask (several examples for overflow 'chunk'). Throws RecordError. */
export function renderRecord(tok: TokenizerLike, record: DatasetRecord, opts: RenderOptions): TokenizedExample[] {
  const { maxLen } = opts;
  if (!Number.isInteger(maxLen) || maxLen < 2) throw new RangeError(`maxLen must be an integer >= 2, got ${maxLen}.`);
  switch (record.kind) {
    case 'text': {
      const ids = withEos(tok, tok.encode(record.text, { addSpecialTokens: true }));
      if (opts.overflow === 'chunk' && ids.length > maxLen) {
        const out: TokenizedExample[] = [];
        for (let s = 0; s < ids.length; s += maxLen) {
          const part = ids.slice(s, s + maxLen);
          if (part.length < 2) break;
          out.push(
            finish(
              part,
              part.map((_, t) => t > 0),
              record.line,
              maxLen,
              'text',
            ),
          );
        }
        return out;
      }
      return [
        finish(
          ids,
          ids.map((_, t) => t > 0),
          record.line,
          maxLen,
          'text',
        ),
      ];
    }
    case 'alpaca': {
      const style = opts.alpacaStyle ?? 'auto';
      const chat = style === 'chat' || (style === 'auto' && tok.hasChatTemplate);
      const r = chat ? renderChat(tok, alpacaAsChat(record)) : renderAlpacaTemplate(tok, record);
      return [finish(r.ids, r.counted, record.line, maxLen, 'prompt')];
    }
    case 'chat': {
      const r = renderChat(tok, record.messages);
      return [finish(r.ids, r.counted, record.line, maxLen, 'prompt')];
    }
  }
}

export interface TokenizedDataset {
  examples: TokenizedExample[];
  issues: DatasetIssue[];
  /** Sum of example lengths, counted tokens, and how many examples were cut. */
  tokens: number;
  countedTokens: number;
  truncated: number;
}

/** Renders every record; a record that cannot be rendered becomes an issue and is skipped. */
export function tokenizeRecords(
  tok: TokenizerLike,
  records: readonly DatasetRecord[],
  opts: RenderOptions,
): TokenizedDataset {
  const examples: TokenizedExample[] = [];
  const issues: DatasetIssue[] = [];
  for (const r of records) {
    try {
      examples.push(...renderRecord(tok, r, opts));
    } catch (e) {
      if (e instanceof RecordError) issues.push({ line: r.line, message: e.message });
      else throw e;
    }
  }
  return {
    examples,
    issues,
    tokens: examples.reduce((n, e) => n + e.ids.length, 0),
    countedTokens: examples.reduce((n, e) => n + e.countedTokens, 0),
    truncated: examples.filter((e) => e.truncated).length,
  };
}

/** The UI's view of an example: runs of text that do / do not count in the loss. */
export function examplePreview(tok: Pick<TokenizerLike, 'decode'>, ex: TokenizedExample): ExamplePreview {
  const pieces: { text: string; counted: boolean }[] = [];
  let start = 0;
  for (let t = 1; t <= ex.ids.length; t++) {
    if (t === ex.ids.length || ex.counted[t] !== ex.counted[start]) {
      pieces.push({
        text: tok.decode(ex.ids.slice(start, t), { skipSpecialTokens: false }),
        counted: ex.counted[start]!,
      });
      start = t;
    }
  }
  return { line: ex.line, pieces, tokens: ex.ids.length, countedTokens: ex.countedTokens, truncated: ex.truncated };
}
