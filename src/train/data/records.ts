/**
 * Training data, step 2: rows -> typed records, and the whole parse of a file (`parseDataset`).
 *
 * Record formats:
 *   text    {"text": "..."}                         CSV column: text
 *   alpaca  {"instruction", "input"?, "output"}     CSV columns: instruction, input?, output
 *           {"prompt", "completion" | "response"}   (read as instruction = prompt, output = completion)
 *   chat    {"messages": [{"role", "content"}...]}  roles system / user / assistant
 *           {"conversations": [{"from", "value"}]}  (ShareGPT; human -> user, gpt -> assistant)
 * A bad record never stops parsing: it becomes a {line, message} issue (1-based line of the file where
 * the record starts, what was expected, what was found) and is skipped.
 */

import type { DatasetFormat, DatasetIssue } from './types';
import { type DatasetContainer, describe, detectContainer, preview, readRows } from './containers';

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
// Rows -> records

/** The format an object looks like, or null. */
export function classify(o: Record<string, unknown>): DatasetFormat | null {
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
    return {
      error: `${expected}, got ${Array.isArray(list) ? 'an empty list' : list === undefined ? `no "messages" (keys ${preview(Object.keys(o))})` : describe(list)}`,
    };
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

export function convert(format: DatasetFormat, o: Record<string, unknown>, line: number): Converted {
  switch (format) {
    case 'text':
      return toText(o, line);
    case 'alpaca':
      return toAlpaca(o, line);
    case 'chat':
      return toChat(o, line);
  }
}

/** A row (an object, or a plain-text paragraph) as a record of the format, or why it is not one. */
export function toRecord(format: DatasetFormat, value: Record<string, unknown> | string, line: number): Converted {
  if (typeof value !== 'string') return convert(format, value, line);
  if (format === 'text') return { kind: 'text', line, text: value };
  return {
    error: `expected ${format === 'alpaca' ? 'an' : 'a'} ${format} record, got plain text (plain-text files hold text records only)`,
  };
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
    const r = toRecord(format, row.value, row.line);
    if ('error' in r) issues.push({ line: row.line, message: r.error });
    else records.push(r);
  }
  if (rows.length === 0 && issues.length === 0)
    issues.push({ line: 1, message: 'expected at least one record, got an empty file' });
  issues.sort((a, b) => a.line - b.line);
  return { container, format, records, issues };
}
