/**
 * Text <-> token ids and chat templates, built from the tokenizer JSON objects already loaded
 * (no network, no file paths).
 *
 * This is what transformers.js v4's PreTrainedTokenizer does, without the rest of transformers.js
 * (whose Node entry pulls in onnxruntime): the tokenization itself is `@huggingface/tokenizers`'
 * `Tokenizer(tokenizerJson, tokenizerConfig)` and chat templates are rendered with
 * `@huggingface/jinja`, both imported lazily so the app's first load and the worker stay small.
 * test/model/tokenizer.test.ts checks the results against transformers.js's own AutoTokenizer and
 * apply_chat_template on the same files.
 */

import type { ModelConfig } from './config';
import { catastrophicShape, tokenizerRegexes } from './regex-budget';

export interface ChatTurn {
  role: string;
  content: string;
}

export interface TextTokenizer {
  /** addSpecialTokens (default true) applies the tokenizer's post-processor (e.g. a BOS for Llama). */
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  /** The rendered prompt text; throws TokenizerError when the tokenizer has no chat template. */
  applyChatTemplate(messages: ChatTurn[], opts?: { addGenerationPrompt?: boolean }): string;
  hasChatTemplate: boolean;
  bosTokenId: number | null;
  /** The tokenizer's eos_token first, then config/generation_config EOS ids. */
  eosTokenIds: number[];
  padTokenId: number | null;
  /** Largest token id + 1 (added tokens included); may be below config.vocabSize. */
  vocabSize: number;
}

export class TokenizerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenizerError';
  }
}

type Json = Record<string, unknown>;

/** A token in tokenizer_config.json: "text", {"content": "text", ...} (AddedToken), or null. */
function tokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return null;
}

const SPECIAL_KEYS = [
  'bos_token',
  'eos_token',
  'unk_token',
  'sep_token',
  'pad_token',
  'cls_token',
  'mask_token',
] as const;

/** The one template to use: a string, or the "default" of a list of named templates. */
function pickTemplate(raw: unknown): string | null {
  if (typeof raw === 'string') return raw || null;
  if (Array.isArray(raw)) {
    const named = new Map<string, string>();
    for (const t of raw) {
      if (
        t &&
        typeof t === 'object' &&
        typeof (t as Json).name === 'string' &&
        typeof (t as Json).template === 'string'
      ) {
        named.set((t as Json).name as string, (t as Json).template as string);
      }
    }
    return named.get('default') ?? null;
  }
  if (raw && typeof raw === 'object') {
    const d = (raw as Json).default;
    return typeof d === 'string' ? d : null;
  }
  return null;
}

// ------------------------------------------------------------------ chat template budgets

/**
 * Chat templates come from downloaded files and run in @huggingface/jinja's interpreter, which has
 * no limits: `{% for i in range(1000000000) %}` or a string doubled in a loop hangs the CLI or the
 * worker (where Stop cannot interrupt it). Rendering therefore counts interpreter steps, bounds the
 * size of every value it makes and the length of `range()`, and stops with a TokenizerError naming
 * the template. Real templates take tens to hundreds of
 * steps per message; the step budget is a few seconds of the interpreter's time.
 */
const MAX_TEMPLATE_CHARS = 256 * 1024;
const MAX_TEMPLATE_STEPS = 200_000;
/** Wall-clock budget of one render (a safety net behind the step count). */
const MAX_TEMPLATE_MS = 5_000;
const MAX_RANGE = 100_000;
/** Output allowed besides 4 characters per character of the messages. */
const TEMPLATE_MIN_CHARS = 1 << 20;
const TEMPLATE_WHERE = 'The chat template (chat_template in tokenizer_config.json, or chat_template.jinja)';

function budgetError(what: string): TokenizerError {
  return new TokenizerError(
    `${TEMPLATE_WHERE} ${what}; it loops too long or builds a huge string, so it was stopped. Use the model's original template or a plain-text dataset format.`,
  );
}

function boundedRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) {
    stop = start;
    start = 0;
  }
  if (![start, stop, step].every(Number.isFinite) || step === 0)
    throw new Error('range() needs finite numbers and a step other than 0');
  const n = Math.max(0, Math.ceil((stop - start) / step));
  if (n > MAX_RANGE) throw budgetError(`asked for range() of ${n} numbers (at most ${MAX_RANGE})`);
  return Array.from({ length: n }, (_, i) => start + i * step);
}

interface InterpreterClass {
  prototype: {
    evaluate(statement: unknown, env: unknown): unknown;
    evaluateBlock(statements: unknown, env: unknown): unknown;
  };
}

interface EnvironmentClass {
  prototype: { set(name: string, value: unknown): unknown };
}

/**
 * Runs `render` with the interpreter's `evaluate` counting steps and checking the size of each
 * value, and `range` bounded. Rendering is synchronous, so the prototypes are patched only for this call.
 */
function withBudget<T>(Interp: InterpreterClass, Env: EnvironmentClass, maxChars: number, render: () => T): T {
  const proto = Interp.prototype;
  const original = proto.evaluate;
  // The interpreter's own range() builds its whole list first; the globals get the bounded one.
  const envProto = Env.prototype;
  const originalSet = envProto.set;
  envProto.set = function (this: unknown, name: string, value: unknown) {
    return originalSet.call(this, name, name === 'range' ? boundedRange : value);
  };
  let steps = 0;
  const t0 = Date.now();
  const step = () => {
    if (++steps > MAX_TEMPLATE_STEPS) throw budgetError(`took more than ${MAX_TEMPLATE_STEPS} steps`);
    if ((steps & 1023) === 0 && Date.now() - t0 > MAX_TEMPLATE_MS)
      throw budgetError(`ran for more than ${MAX_TEMPLATE_MS / 1000} s`);
  };
  // A loop over an empty body evaluates nothing but its block: count blocks too.
  const originalBlock = proto.evaluateBlock;
  proto.evaluateBlock = function (this: unknown, statements: unknown, env: unknown) {
    step();
    return originalBlock.call(this, statements, env);
  };
  proto.evaluate = function (this: unknown, statement: unknown, env: unknown) {
    step();
    const v = original.call(this, statement, env) as { value?: unknown } | undefined;
    const val = v?.value;
    if (typeof val === 'string' ? val.length > maxChars : Array.isArray(val) && val.length > MAX_RANGE) {
      throw budgetError(
        typeof val === 'string'
          ? `made a string of ${val.length} characters (at most ${maxChars} for these messages)`
          : `made a list of ${(val as unknown[]).length} items (at most ${MAX_RANGE})`,
      );
    }
    return v;
  };
  try {
    return render();
  } catch (e) {
    // A string past the engine's limit fails before the size check can see it.
    if (e instanceof RangeError && /string length/i.test(e.message))
      throw budgetError('made a string longer than JavaScript allows');
    throw e;
  } finally {
    proto.evaluate = original;
    proto.evaluateBlock = originalBlock;
    envProto.set = originalSet;
  }
}

export async function createTokenizer(
  tokenizerJson: object,
  tokenizerConfig: object,
  config?: ModelConfig,
): Promise<TextTokenizer> {
  const tj = { ...(tokenizerJson as Json) };
  const tc = { ...(tokenizerConfig as Json) };
  if (!tj || typeof tj !== 'object' || !tj.model || typeof tj.model !== 'object') {
    throw new TokenizerError('tokenizer.json has no "model" section; it is not a Hugging Face tokenizers file.');
  }
  if (!Array.isArray(tj.added_tokens)) tj.added_tokens = [];
  // Its regular expressions run on every text tokenized: one that backtracks exponentially would
  // hang the worker (or the CLI) on the first record, so it is refused here (src/model/regex-budget.ts).
  for (const { path, pattern } of tokenizerRegexes(tj)) {
    const why = catastrophicShape(pattern);
    if (why) {
      const shown = pattern.length > 80 ? `${pattern.slice(0, 80)}…` : pattern;
      throw new TokenizerError(
        `tokenizer.json: ${path} ${JSON.stringify(shown)} could take exponential time on some texts: ${why}. ` +
          'Tabtune does not run it; use the tokenizer.json that came with the model.',
      );
    }
  }

  const [{ Tokenizer }, { Template, Interpreter, Environment }] = await Promise.all([
    import('@huggingface/tokenizers'),
    import('@huggingface/jinja'),
  ]);

  let tok: InstanceType<typeof Tokenizer>;
  try {
    tok = new Tokenizer(tj, tc);
  } catch (e) {
    const type = (tj.model as Json).type;
    throw new TokenizerError(
      `tokenizer.json (model type ${JSON.stringify(type ?? 'unknown')}) could not be loaded: ${(e as Error).message}`,
    );
  }

  const vocab = tok.get_vocab(true);
  let maxId = -1;
  let maxToken = '';
  for (const [text, id] of vocab) {
    if (id > maxId) {
      maxId = id;
      maxToken = text;
    }
  }
  const vocabSize = maxId + 1;
  // An id past the embedding would read another row (or nothing) on the GPU: refuse the pair.
  if (config && vocabSize > config.vocabSize) {
    throw new TokenizerError(
      `tokenizer.json: token ${JSON.stringify(maxToken)} has id ${maxId}, but the model's embedding has only ` +
        `${config.vocabSize} rows (vocab_size = ${config.vocabSize} in config.json); this tokenizer belongs to another model. ` +
        'Use the tokenizer.json that came with these weights.',
    );
  }

  const idOf = (key: (typeof SPECIAL_KEYS)[number]): number | null | undefined => {
    if (!(key in tc)) return undefined; // not stated: caller may fall back to config.json
    const text = tokenText(tc[key]);
    if (text === null) return null;
    return tok.token_to_id(text) ?? null;
  };

  const bosTok = idOf('bos_token');
  const bosTokenId = bosTok === undefined ? (config?.bosTokenId ?? null) : bosTok;
  const eosTok = idOf('eos_token');
  const eosTokenIds = [...new Set([...(eosTok != null ? [eosTok] : []), ...(config?.eosTokenIds ?? [])])];
  const padTok = idOf('pad_token');
  const padTokenId = padTok ?? config?.padTokenId ?? null;

  const cleanUp = typeof tc.clean_up_tokenization_spaces === 'boolean' ? tc.clean_up_tokenization_spaces : false;

  const templateText = pickTemplate(tc.chat_template);
  let compiled: InstanceType<typeof Template> | null = null;
  const specialStrings: Record<string, string> = {};
  for (const key of SPECIAL_KEYS) {
    const t = tokenText(tc[key]);
    if (t) specialStrings[key] = t;
  }

  return {
    bosTokenId,
    eosTokenIds,
    padTokenId,
    vocabSize,
    hasChatTemplate: templateText !== null,

    encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
      return tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
    },

    decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
      // Ids past the tokenizer (embedding rows beyond its vocabulary) have no text.
      const known = ids.filter(
        (id) => Number.isInteger(id) && id >= 0 && id < vocabSize && tok.id_to_token(id) !== undefined,
      );
      if (known.length === 0) return '';
      return tok.decode(known, {
        skip_special_tokens: opts.skipSpecialTokens ?? false,
        clean_up_tokenization_spaces: cleanUp,
      });
    },

    applyChatTemplate(messages: ChatTurn[], opts: { addGenerationPrompt?: boolean } = {}): string {
      if (templateText === null) {
        throw new TokenizerError(
          'This model has no chat template (tokenizer_config.json has no "chat_template" and there is no chat_template.jinja); ' +
            'use a plain-text or instruction dataset format, or an instruct/chat variant of the model.',
        );
      }
      if (templateText.length > MAX_TEMPLATE_CHARS) {
        throw new TokenizerError(
          `${TEMPLATE_WHERE} is ${templateText.length} characters long; chat templates are a few kilobytes (at most ${MAX_TEMPLATE_CHARS} accepted).`,
        );
      }
      try {
        compiled ??= new Template(templateText);
      } catch (e) {
        throw new TokenizerError(`The chat template could not be parsed: ${(e as Error).message}`);
      }
      const inputChars = messages.reduce((n, m) => n + m.content.length + m.role.length, 0);
      const template = compiled;
      try {
        return withBudget(
          Interpreter as unknown as InterpreterClass,
          Environment,
          TEMPLATE_MIN_CHARS + 4 * inputChars,
          () =>
            template.render({
              messages: messages.map((m) => ({ role: m.role, content: m.content })),
              add_generation_prompt: opts.addGenerationPrompt ?? false,
              tools: null,
              documents: null,
              ...specialStrings,
            }),
        );
      } catch (e) {
        if (e instanceof TokenizerError) throw e;
        throw new TokenizerError(`The chat template failed to render: ${(e as Error).message}`);
      }
    },
  };
}
