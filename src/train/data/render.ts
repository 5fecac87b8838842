/**
 * Training data, step 3: records -> token ids and loss masks.
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
 * split into maxLen windows (overflow 'chunk', each window numbered as a `part` of its record). A
 * record left with no counted token is an issue.
 *
 * A text record over PIECE_CHARS characters (a 3 MB file on one line is one record) is encoded in
 * pieces cut at a space between two words, with a callback after each piece, so it shows progress
 * and never holds the tokenizer for one huge call; a token at a cut may differ from encoding the
 * text whole (one in tens of thousands).
 */

import type { ExamplePreview, DatasetIssue } from './types';
import type { AlpacaRecord, ChatMessage, DatasetRecord } from './records';

/** What rendering needs from the tokenizer (a subset of src/model/tokenizer.ts TextTokenizer). */
export interface TokenizerLike {
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  applyChatTemplate(messages: { role: string; content: string }[], opts?: { addGenerationPrompt?: boolean }): string;
  hasChatTemplate: boolean;
  eosTokenIds: number[];
}

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
  /** A window of a text record split by overflow 'chunk': which one (1-based) of how many. */
  part?: { index: number; of: number };
}

/** Text records longer than this many characters are encoded piece by piece. */
export const PIECE_CHARS = 1 << 16;

/** Called after each piece of a long text record is encoded (done and total pieces). */
export type PieceProgress = (done: number, total: number) => void;

/** Cuts `text` into pieces of about PIECE_CHARS characters, each cut at a space that follows a non-space. */
function pieces(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  while (text.length - start > PIECE_CHARS) {
    let cut = start + PIECE_CHARS;
    const limit = Math.min(text.length, cut + 4096);
    while (cut < limit && !(text[cut] === ' ' && text[cut - 1] !== ' ' && text[cut + 1] !== ' ')) cut++;
    if (cut >= limit) {
      cut = start + PIECE_CHARS; // no space near: cut between characters (never inside a surrogate pair)
      if (/[\uDC00-\uDFFF]/.test(text[cut]!)) cut++;
    }
    out.push(text.slice(start, cut));
    start = cut;
  }
  out.push(text.slice(start));
  return out;
}

/**
 * encode(text, {addSpecialTokens: true}) of a long text, piece by piece: the special tokens the
 * post-processor puts around the first piece go around the whole.
 */
function encodeLong(tok: TokenizerLike, text: string, onPiece?: PieceProgress): number[] {
  const parts = pieces(text);
  if (parts.length === 1) return tok.encode(text, { addSpecialTokens: true });
  const first = tok.encode(parts[0]!, { addSpecialTokens: false });
  const framed = tok.encode(parts[0]!, { addSpecialTokens: true });
  let at = 0;
  while (at + first.length <= framed.length && !first.every((id, k) => framed[at + k] === id)) at++;
  const [before, after] =
    at + first.length <= framed.length ? [framed.slice(0, at), framed.slice(at + first.length)] : [[], []];
  const ids = [...before, ...first];
  onPiece?.(1, parts.length);
  for (let k = 1; k < parts.length; k++) {
    for (const id of tok.encode(parts[k]!, { addSpecialTokens: false })) ids.push(id);
    onPiece?.(k + 1, parts.length);
  }
  for (const id of after) ids.push(id);
  return ids;
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
export function renderRecord(
  tok: TokenizerLike,
  record: DatasetRecord,
  opts: RenderOptions,
  onPiece?: PieceProgress,
): TokenizedExample[] {
  const { maxLen } = opts;
  if (!Number.isInteger(maxLen) || maxLen < 2) throw new RangeError(`maxLen must be an integer >= 2, got ${maxLen}.`);
  switch (record.kind) {
    case 'text': {
      const ids = withEos(tok, encodeLong(tok, record.text, onPiece));
      if (opts.overflow === 'chunk' && ids.length > maxLen) {
        const out: TokenizedExample[] = [];
        // A last window under 2 tokens has nothing to learn and is dropped.
        const of = Math.ceil(ids.length / maxLen) - (ids.length % maxLen === 1 ? 1 : 0);
        for (let s = 0; s < ids.length; s += maxLen) {
          const part = ids.slice(s, s + maxLen);
          if (part.length < 2) break;
          const ex = finish(
            part,
            part.map((_, t) => t > 0),
            record.line,
            maxLen,
            'text',
          );
          out.push({ ...ex, part: { index: out.length + 1, of } });
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
export function examplePreview(
  tok: Pick<TokenizerLike, 'decode'>,
  ex: {
    ids: ArrayLike<number>;
    counted: ArrayLike<boolean | number>;
    line: number;
    truncated: boolean;
    countedTokens: number;
    part?: { index: number; of: number };
  },
): ExamplePreview {
  const pieces: { text: string; counted: boolean }[] = [];
  let start = 0;
  for (let t = 1; t <= ex.ids.length; t++) {
    if (t === ex.ids.length || !ex.counted[t] !== !ex.counted[start]) {
      pieces.push({
        text: tok.decode(
          Array.from({ length: t - start }, (_, k) => ex.ids[start + k]!),
          { skipSpecialTokens: false },
        ),
        counted: !!ex.counted[start],
      });
      start = t;
    }
  }
  return {
    line: ex.line,
    pieces,
    tokens: ex.ids.length,
    countedTokens: ex.countedTokens,
    truncated: ex.truncated,
    ...(ex.part ? { part: ex.part } : {}),
  };
}
