/**
 * A small deterministic tokenizer for data tests, with the shape of src/model/tokenizer.ts
 * TextTokenizer (declared here structurally so tests do not depend on the real one).
 *
 * Vocabulary: special tokens (ids 0-4), then multi-character pieces (greedy longest match; some of
 * them deliberately straddle the boundaries templates create, like "\nA" after "### Response:\n"),
 * then the 256 bytes of UTF-8. Special-token text in the input is always read as the special token,
 * as Hugging Face tokenizers do for added tokens. The chat template is ChatML:
 *   <|im_start|>{role}\n{content}<|im_end|>\n ...   generation prompt: <|im_start|>assistant\n
 */

export interface FakeTokenizerOptions {
  /** encode(..., {addSpecialTokens: true}) prepends <s> (Llama style). Default false (GPT-2 / Qwen style). */
  addBos?: boolean;
  /** Has the ChatML chat template. Default true. */
  chatTemplate?: boolean;
  /** EOS ids. Default [</s>, <|im_end|>]. */
  eosTokenIds?: number[];
}

export const PAD = 0;
export const BOS = 1;
export const EOS = 2;
// 3 is <|im_start|>
export const IM_END = 4;

const SPECIALS = ['<pad>', '<s>', '</s>', '<|im_start|>', '<|im_end|>'];
const PIECES = [
  '###',
  ' the',
  'ing',
  '\n\n',
  '\nA',
  'Response',
  'Instruction',
  'assistant',
  'user',
  'system',
  'hello',
  ' world',
];
const BYTE_BASE = SPECIALS.length + PIECES.length;

export class FakeTokenizer {
  readonly bosTokenId: number | null = BOS;
  readonly padTokenId: number | null = PAD;
  readonly eosTokenIds: number[];
  readonly vocabSize = BYTE_BASE + 256;
  readonly hasChatTemplate: boolean;
  private readonly addBos: boolean;
  /** Calls to encode (to check the renderer does not re-encode excessively). */
  encodeCalls = 0;

  constructor(opts: FakeTokenizerOptions = {}) {
    this.addBos = opts.addBos ?? false;
    this.hasChatTemplate = opts.chatTemplate ?? true;
    this.eosTokenIds = opts.eosTokenIds ?? [EOS, IM_END];
  }

  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    this.encodeCalls++;
    const ids: number[] = [];
    if ((opts.addSpecialTokens ?? true) && this.addBos) ids.push(BOS);
    const enc = new TextEncoder();
    let i = 0;
    outer: while (i < text.length) {
      for (let s = 0; s < SPECIALS.length; s++) {
        if (text.startsWith(SPECIALS[s]!, i)) {
          ids.push(s);
          i += SPECIALS[s]!.length;
          continue outer;
        }
      }
      let best = -1;
      for (let p = 0; p < PIECES.length; p++) {
        if (text.startsWith(PIECES[p]!, i) && (best < 0 || PIECES[p]!.length > PIECES[best]!.length)) best = p;
      }
      if (best >= 0) {
        ids.push(SPECIALS.length + best);
        i += PIECES[best]!.length;
        continue;
      }
      const cp = text.codePointAt(i)!;
      const ch = String.fromCodePoint(cp);
      for (const b of enc.encode(ch)) ids.push(BYTE_BASE + b);
      i += ch.length;
    }
    return ids;
  }

  decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    let out = '';
    let bytes: number[] = [];
    const flush = (): void => {
      if (bytes.length) out += new TextDecoder().decode(new Uint8Array(bytes));
      bytes = [];
    };
    for (const id of ids) {
      if (id >= BYTE_BASE) {
        bytes.push(id - BYTE_BASE);
        continue;
      }
      flush();
      if (id < SPECIALS.length) {
        if (!opts.skipSpecialTokens) out += SPECIALS[id];
      } else out += PIECES[id - SPECIALS.length];
    }
    flush();
    return out;
  }

  applyChatTemplate(
    messages: { role: string; content: string }[],
    opts: { addGenerationPrompt?: boolean } = {},
  ): string {
    if (!this.hasChatTemplate) throw new Error('This tokenizer has no chat template.');
    let s = '';
    for (const m of messages) s += `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`;
    if (opts.addGenerationPrompt) s += '<|im_start|>assistant\n';
    return s;
  }

  /** The token strings of ids (for readable assertions). */
  pieces(ids: number[]): string[] {
    return ids.map((id) => this.decode([id]));
  }
}
