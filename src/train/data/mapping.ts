/**
 * Column mapping: which columns of a table (a Parquet file, a CSV header, the keys of JSON records)
 * hold what Tabtune trains on, for datasets whose columns are not named as records.ts expects
 * (typically Hub datasets: "question"/"answer", "prompt"/"chosen", "dialog"...).
 *
 *   text         one column of plain text                    -> {"text"}
 *   instruction  instruction, optional input, output columns -> {"instruction", "input", "output"}
 *                (prompt/response and prompt/completion sets are this kind too)
 *   chat         one column holding a list of turns          -> {"messages"} or {"conversations"}
 *                [{role, content}] (OpenAI / TRL "messages") or [{from, value}] (ShareGPT; roles
 *                human/gpt/system become user/assistant/system in records.ts), told apart by the turns'
 *                keys; a cell holding that list as JSON text (CSV, a Parquet string column) is parsed.
 *
 * A mapped row is an object with records.ts's field names, so it goes through the same checks
 * (toRecord) as an upload. A row that lacks a mapped column is an issue naming the column.
 */

import type { DatasetFormat } from './types';
import { preview } from './containers';

export type ColumnMapping =
  | { kind: 'text'; text: string }
  | { kind: 'instruction'; instruction: string; input?: string; output: string }
  | { kind: 'chat'; messages: string };

/** The record format a mapping gives. */
export function mappingFormat(m: ColumnMapping): DatasetFormat {
  return m.kind === 'text' ? 'text' : m.kind === 'instruction' ? 'alpaca' : 'chat';
}

/** The columns a mapping reads (the ones a Parquet reader needs to decode). */
export function mappedColumns(m: ColumnMapping): string[] {
  switch (m.kind) {
    case 'text':
      return [m.text];
    case 'instruction':
      return m.input ? [m.instruction, m.input, m.output] : [m.instruction, m.output];
    case 'chat':
      return [m.messages];
  }
}

/** A short description for messages and the CLI ("instruction=question, output=answer"). */
export function describeMapping(m: ColumnMapping): string {
  switch (m.kind) {
    case 'text':
      return `text=${m.text}`;
    case 'instruction':
      return `instruction=${m.instruction}${m.input ? `, input=${m.input}` : ''}, output=${m.output}`;
    case 'chat':
      return `messages=${m.messages}`;
  }
}

/**
 * A mapping from the command line's `--columns` ("instruction=q,output=a", "messages=dialog",
 * "text=body"; "prompt"/"response"/"completion" are accepted for instruction/output, and
 * "conversations" for messages). Throws an Error saying what is expected.
 */
export function parseMapping(spec: string): ColumnMapping {
  const pairs = new Map<string, string>();
  const alias: Record<string, string> = {
    prompt: 'instruction',
    question: 'instruction',
    response: 'output',
    completion: 'output',
    answer: 'output',
    conversations: 'messages',
  };
  for (const part of spec.split(',')) {
    const m = /^\s*([A-Za-z_]+)\s*=\s*(.+?)\s*$/.exec(part);
    if (!m) throw new Error(`expected FIELD=COLUMN pairs separated by commas, got "${part.trim()}"`);
    const field = alias[m[1]!.toLowerCase()] ?? m[1]!.toLowerCase();
    if (!['text', 'instruction', 'input', 'output', 'messages'].includes(field))
      throw new Error(`"${m[1]}" is not a field: expected text, instruction, input, output or messages`);
    pairs.set(field, m[2]!);
  }
  const get = (k: string): string | undefined => pairs.get(k);
  if (get('messages')) {
    if (pairs.size > 1) throw new Error('messages=COLUMN takes no other fields');
    return { kind: 'chat', messages: get('messages')! };
  }
  if (get('text')) {
    if (pairs.size > 1) throw new Error('text=COLUMN takes no other fields');
    return { kind: 'text', text: get('text')! };
  }
  if (!get('instruction') || !get('output'))
    throw new Error('expected text=COLUMN, messages=COLUMN, or instruction=COLUMN,output=COLUMN (input optional)');
  return { kind: 'instruction', instruction: get('instruction')!, input: get('input'), output: get('output')! };
}

const INSTRUCTION_NAMES = ['instruction', 'prompt', 'question', 'query', 'input'];
const OUTPUT_NAMES = ['output', 'response', 'completion', 'answer', 'chosen'];
const CHAT_NAMES = ['messages', 'conversations', 'conversation', 'dialog', 'dialogue', 'chat'];
const TEXT_NAMES = ['text', 'content', 'document', 'body'];

/**
 * The mapping a table's column names suggest, or null when none does. Chat columns win, then an
 * instruction + output pair (with "input" as the input when "instruction" is the instruction), then
 * a text column. Names are compared without case.
 */
export function suggestMapping(columns: readonly string[]): ColumnMapping | null {
  const find = (names: readonly string[], not?: string): string | undefined => {
    for (const n of names) {
      const c = columns.find((col) => col.toLowerCase() === n && col !== not);
      if (c) return c;
    }
    return undefined;
  };
  const chat = find(CHAT_NAMES);
  if (chat) return { kind: 'chat', messages: chat };
  const instruction = find(INSTRUCTION_NAMES);
  const output = instruction && find(OUTPUT_NAMES, instruction);
  if (instruction && output) {
    const input = instruction.toLowerCase() !== 'input' ? columns.find((c) => c.toLowerCase() === 'input') : undefined;
    return input ? { kind: 'instruction', instruction, input, output } : { kind: 'instruction', instruction, output };
  }
  const text = find(TEXT_NAMES);
  return text ? { kind: 'text', text } : null;
}

/** The first mapped column missing from `columns`, or null. */
export function missingColumn(m: ColumnMapping, columns: readonly string[]): string | null {
  return mappedColumns(m).find((c) => !columns.includes(c)) ?? null;
}

/** The error text for a mapping that names a column the file lacks. */
export function missingColumnText(m: ColumnMapping, column: string, columns: readonly string[]): string {
  return `has no column "${column}" (the mapping ${describeMapping(m)}; its columns are ${columns.map((c) => `"${c}"`).join(', ') || 'none'}). Choose the columns to train on in the column mapping (command line: --columns).`;
}

/** A chat cell: a list of turns, or that list as JSON text. */
function turns(v: unknown): unknown {
  if (typeof v === 'string' && /^\s*\[/.test(v)) {
    try {
      return JSON.parse(v) as unknown;
    } catch {
      return v;
    }
  }
  return v;
}

function isShareGpt(list: unknown): boolean {
  const first = Array.isArray(list) ? (list[0] as unknown) : undefined;
  return !!first && typeof first === 'object' && 'from' in first && !('role' in first);
}

/**
 * A row through a mapping: an object with records.ts's field names, or why not (a missing column,
 * named). Values are passed on as they are; toRecord checks their types.
 */
export function mapRow(
  m: ColumnMapping,
  row: Record<string, unknown>,
): { row: Record<string, unknown> } | { error: string } {
  for (const c of mappedColumns(m)) {
    if (!(c in row) && !(m.kind === 'instruction' && c === m.input))
      return {
        error: `expected a column "${c}" (mapping ${describeMapping(m)}), got keys ${preview(Object.keys(row))}`,
      };
  }
  switch (m.kind) {
    case 'text':
      return { row: { text: row[m.text] } };
    case 'instruction':
      return {
        row: { instruction: row[m.instruction], input: m.input ? row[m.input] : undefined, output: row[m.output] },
      };
    case 'chat': {
      const list = turns(row[m.messages]);
      return { row: isShareGpt(list) ? { conversations: list } : { messages: list } };
    }
  }
}

/** The mapping with its column names in lower case (CSV/TSV headers are read so). */
export function lowerMapping(m: ColumnMapping): ColumnMapping {
  switch (m.kind) {
    case 'text':
      return { kind: 'text', text: m.text.toLowerCase() };
    case 'instruction':
      return {
        kind: 'instruction',
        instruction: m.instruction.toLowerCase(),
        input: m.input?.toLowerCase(),
        output: m.output.toLowerCase(),
      };
    case 'chat':
      return { kind: 'chat', messages: m.messages.toLowerCase() };
  }
}
