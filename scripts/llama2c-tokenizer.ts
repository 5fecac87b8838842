/**
 * llama2.c's tokenizer (tokenizer.py's `tokenizer.bin` export) read and written as Hugging Face
 * tokenizer files; used by scripts/llama2c.ts (see there for the folder and the formats).
 *
 * tokenizer.bin: int32 max_token_length, then per token: float32 score, int32 byte length, UTF-8
 * bytes. Ids 0/1/2 are <unk>, <s>, </s> (stored as "<unk>", "\n<s>\n", "\n</s>\n"), 3..258 the byte
 * tokens "<0x00>".."<0xFF>", then the pieces with " " for sentencepiece's "▁"; llama2.c's encoder
 * merges the adjacent pair whose concatenation has the highest score first.
 */

export class Llama2cError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Llama2cError';
  }
}

export interface Llama2cTokenizer {
  maxTokenLength: number;
  /** Per id: the piece as transformers names it ("▁" for spaces, "<s>" for BOS) and its score. */
  pieces: { piece: string; score: number }[];
}

export const BOS_ID = 1;
export const EOS_ID = 2;
const SPECIALS = ['<unk>', '<s>', '</s>'] as const;
const SPACE = '▁';

/** Reads tokenizer.py's export (`tokenizer.bin`). `file` names it in errors. */
export function readLlama2cTokenizer(bytes: Uint8Array, vocabSize: number, file = 'tokenizer file'): Llama2cTokenizer {
  const hint = "expected llama2.c's tokenizer.bin (tokenizer.py export) for a vocabulary of";
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  if (bytes.byteLength < 4) throw new Llama2cError(`${file}: ${bytes.byteLength} bytes; ${hint} ${vocabSize} tokens.`);
  const maxTokenLength = view.getInt32(0, true);
  let at = 4;
  const pieces: { piece: string; score: number }[] = [];
  for (let id = 0; id < vocabSize; id++) {
    if (at + 8 > bytes.byteLength) {
      throw new Llama2cError(
        `${file}: ends at byte ${bytes.byteLength} inside token ${id}; ${hint} ${vocabSize} tokens (the model's vocab_size).`,
      );
    }
    const score = view.getFloat32(at, true);
    const len = view.getInt32(at + 4, true);
    at += 8;
    if (len < 0 || len > maxTokenLength || at + len > bytes.byteLength) {
      throw new Llama2cError(
        `${file}: token ${id} at byte ${at - 4} has length ${len} (max_token_length ${maxTokenLength}); ${hint} ${vocabSize} tokens.`,
      );
    }
    let text: string;
    try {
      text = utf8.decode(bytes.subarray(at, at + len));
    } catch {
      throw new Llama2cError(`${file}: token ${id} at byte ${at} is not valid UTF-8; ${hint} ${vocabSize} tokens.`);
    }
    at += len;
    pieces.push({ piece: hfPiece(id, text, file), score });
  }
  if (at !== bytes.byteLength) {
    throw new Llama2cError(
      `${file}: ${bytes.byteLength - at} bytes left after ${vocabSize} tokens; ${hint} ${vocabSize} tokens (the model's vocab_size).`,
    );
  }
  const seen = new Map<string, number>();
  pieces.forEach(({ piece }, id) => {
    if (seen.has(piece))
      throw new Llama2cError(`${file}: tokens ${seen.get(piece)} and ${id} are both ${JSON.stringify(piece)}.`);
    seen.set(piece, id);
  });
  return { maxTokenLength, pieces };
}

/** The piece of token `id` as transformers names it. */
function hfPiece(id: number, text: string, file: string): string {
  if (id < 3) {
    // tokenizer.py writes BOS and EOS as "\n<s>\n" and "\n</s>\n"; run.c never matches them in text.
    if (text.trim() !== SPECIALS[id])
      throw new Llama2cError(`${file}: token ${id} is ${JSON.stringify(text)}, expected ${SPECIALS[id]}.`);
    return SPECIALS[id];
  }
  if (id < 259) {
    const want = `<0x${(id - 3).toString(16).toUpperCase().padStart(2, '0')}>`;
    if (text !== want)
      throw new Llama2cError(`${file}: token ${id} is ${JSON.stringify(text)}, expected the byte token ${want}.`);
    return text;
  }
  return text.replaceAll(' ', SPACE);
}

/**
 * BPE merges as transformers derives them from a sentencepiece vocabulary: every split of a piece
 * into two pieces of the vocabulary, ordered by the merged piece's score (highest first), then by
 * the left and right piece's ids. Special and byte tokens take no part.
 */
export function bpeMerges(tok: Llama2cTokenizer): [string, string][] {
  const ids = new Map<string, number>();
  tok.pieces.forEach(({ piece }, id) => {
    if (id >= 259) ids.set(piece, id);
  });
  const merges: { l: string; r: string; score: number; id: number; li: number; ri: number }[] = [];
  tok.pieces.forEach(({ piece, score }, id) => {
    if (id < 259) return;
    const chars = [...piece];
    for (let k = 1; k < chars.length; k++) {
      const l = chars.slice(0, k).join('');
      const r = chars.slice(k).join('');
      const li = ids.get(l);
      const ri = ids.get(r);
      if (li !== undefined && ri !== undefined) merges.push({ l, r, score, id, li, ri });
    }
  });
  merges.sort((a, b) => b.score - a.score || a.id - b.id || a.li - b.li || a.ri - b.ri);
  return merges.map(({ l, r }) => [l, r]);
}

function addedToken(id: number) {
  return {
    id,
    content: SPECIALS[id]!,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  };
}

/** tokenizer.json (the `tokenizers` library's format). */
export function hfTokenizerJson(tok: Llama2cTokenizer): Record<string, unknown> {
  const bos = SPECIALS[BOS_ID];
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [0, 1, 2].map(addedToken),
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: SPACE, prepend_scheme: 'always', split: false },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: bos, type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: bos, type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { [bos]: { id: bos, ids: [BOS_ID], tokens: [bos] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPACE }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: SPECIALS[0],
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: Object.fromEntries(tok.pieces.map(({ piece }, id) => [piece, id])),
      merges: bpeMerges(tok),
    },
  };
}

/** tokenizer_config.json as transformers writes it for a Llama 2 tokenizer. */
export function hfTokenizerConfig(maxLength: number, chatTemplate?: string): Record<string, unknown> {
  const decoder = Object.fromEntries(
    [0, 1, 2].map((id) => {
      const { id: _, ...rest } = addedToken(id);
      return [String(id), rest];
    }),
  );
  return {
    add_bos_token: true,
    add_eos_token: false,
    add_prefix_space: null,
    added_tokens_decoder: decoder,
    bos_token: SPECIALS[BOS_ID],
    ...(chatTemplate ? { chat_template: chatTemplate } : {}),
    clean_up_tokenization_spaces: false,
    eos_token: SPECIALS[EOS_ID],
    extra_special_tokens: {},
    legacy: true,
    model_max_length: maxLength,
    pad_token: null,
    sp_model_kwargs: {},
    tokenizer_class: 'LlamaTokenizer',
    unk_token: SPECIALS[0],
    use_default_system_prompt: false,
  };
}
