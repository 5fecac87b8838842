/**
 * Converts a llama2.c model and tokenizer into a Hugging Face Llama folder that transformers (and
 * Tabtune) load as they are:
 *   config.json              LlamaConfig (tied embeddings unless the model file has its own classifier)
 *   generation_config.json   BOS/EOS; generation also stops at BOS, where llama2.c's run.c stops
 *   model.safetensors        float32, transformers' tensor names; wq and wk permuted (below)
 *   tokenizer.json           sentencepiece-style BPE with byte fallback in the layout transformers
 *                            (5.x) writes for a Llama 2 tokenizer: `▁` for spaces and in front of
 *                            the text (Metaspace pre-tokenizer, prepend_scheme "always"), `<s>` added
 *                            in front (post-processor), merges ordered by the merged piece's score.
 *                            Same ids as llama2.c's encoder, except that a text (or a part between
 *                            special tokens) starting with a space gets no second `▁`, as in
 *                            transformers' own Llama tokenizer (llama2.c and sentencepiece add one)
 *   tokenizer_config.json    LlamaTokenizer settings, optionally with a chat template; `legacy: true`
 *                            makes transformers 5 (which rebuilds a Llama tokenizer from its class)
 *                            prepend `▁` after special tokens too, as tokenizer.json does
 *   README.md                a model card: where the files came from (sizes, sha256), how they were
 *                            converted, and any text the caller adds (licence, origin)
 *
 * Input formats (llama2.c's run.c, "version 0"):
 *   model      seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a
 *              negative vocab_size means the classifier is stored, not shared with the embeddings),
 *              then float32 arrays: token embeddings [vocab, dim], attention RMSNorm [layers, dim],
 *              wq [layers, dim, dim], wk and wv [layers, kv_dim, dim], wo [layers, dim, dim], FFN
 *              RMSNorm [layers, dim], w1 [layers, hidden, dim], w2 [layers, dim, hidden], w3 [layers,
 *              hidden, dim], final RMSNorm [dim], RoPE cos/sin tables [seq_len, head_size / 2] each
 *              (unused), then the classifier [vocab, dim] when it is not shared. Matrices are
 *              [out, in], as torch.nn.Linear stores them. w1 is the gate, w3 the up projection.
 *   tokenizer  tokenizer.py's tokenizer.bin (read in scripts/llama2c-tokenizer.ts)
 *
 * RoPE: llama2.c rotates adjacent pairs (2i, 2i+1) of each head with frequency theta^(-2i/head_size);
 * transformers' Llama rotates (i, i + head_size/2) with the same frequency. Moving row 2i + t of
 * each head of wq and wk to row t * head_size/2 + i makes the two compute the same attention.
 *
 * Run (from the repository):
 *   node scripts/llama2c-to-hf.mjs --model stories260K.bin --tokenizer tok512.bin --out DIR \
 *     [--chat-template FILE] [--card FILE]
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { writeSafetensors } from '../src/model/safetensors';
import {
  BOS_ID,
  EOS_ID,
  Llama2cError,
  hfTokenizerConfig,
  hfTokenizerJson,
  readLlama2cTokenizer,
} from './llama2c-tokenizer';

export interface Llama2cConfig {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
  /** The classifier is the token embedding table (vocab_size was positive). */
  sharedClassifier: boolean;
}

export interface Llama2cModel {
  config: Llama2cConfig;
  /** Transformers' tensor names, [out, in] matrices; wq/wk already in the rotate-half layout. */
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
}

const HEADER_FIELDS = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'] as const;
/** "ak42" as a little-endian uint32: the magic of llama2.c's newer export formats (version >= 1). */
const LLAMA2C_MAGIC = 0x616b3432;

/**
 * Rows of one projection from llama2.c's interleaved RoPE pairs to transformers' halves, per head:
 * the row 2i + t of a head becomes the row t * headDim/2 + i.
 */
export function permuteRope(w: Float32Array, heads: number, headDim: number, inDim: number): Float32Array {
  if (headDim % 2 !== 0) throw new Llama2cError(`RoPE needs an even head size, got ${headDim}.`);
  if (w.length !== heads * headDim * inDim)
    throw new Llama2cError(`permuteRope: ${w.length} values, expected ${heads} x ${headDim} x ${inDim}.`);
  const out = new Float32Array(w.length);
  const half = headDim / 2;
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < half; i++)
      for (let t = 0; t < 2; t++) {
        const from = (h * headDim + 2 * i + t) * inDim;
        const to = (h * headDim + t * half + i) * inDim;
        out.set(w.subarray(from, from + inDim), to);
      }
  return out;
}

/** Reads run.c's model file. `file` names it in errors. */
export function readLlama2cModel(bytes: Uint8Array, file = 'model file'): Llama2cModel {
  const hint = "expected a llama2.c model in run.c's format (export.py --version 0, the legacy format)";
  if (bytes.byteLength < 28) throw new Llama2cError(`${file}: ${bytes.byteLength} bytes is too short; ${hint}.`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) === LLAMA2C_MAGIC) {
    throw new Llama2cError(
      `${file}: starts with llama2.c's "ak42" magic (export format version ${view.getInt32(4, true)}); ${hint}. ` +
        'Export the checkpoint again with `python export.py out.bin --version 0 --checkpoint ckpt.pt`.',
    );
  }
  const h = HEADER_FIELDS.map((_, i) => view.getInt32(i * 4, true));
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, rawVocab, seqLen] = h as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const vocabSize = Math.abs(rawVocab);
  HEADER_FIELDS.forEach((name, i) => {
    const v = name === 'vocab_size' ? vocabSize : h[i]!;
    if (v <= 0 || v > 1 << 20)
      throw new Llama2cError(`${file}: header field ${name} (int32 #${i + 1}) is ${h[i]}; ${hint}.`);
  });
  if (dim % nHeads !== 0 || nHeads % nKvHeads !== 0) {
    throw new Llama2cError(
      `${file}: dim ${dim}, n_heads ${nHeads}, n_kv_heads ${nKvHeads}: expected dim divisible by n_heads and n_heads by n_kv_heads; ${hint}.`,
    );
  }
  const headDim = dim / nHeads;
  const kvDim = nKvHeads * headDim;
  const config: Llama2cConfig = {
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    vocabSize,
    seqLen,
    sharedClassifier: rawVocab > 0,
  };

  // [name, shape per layer (or whole), per layer?] in file order.
  const layout: [string, number[], boolean][] = [
    ['embed', [vocabSize, dim], false],
    ['attn_norm', [dim], true],
    ['wq', [dim, dim], true],
    ['wk', [kvDim, dim], true],
    ['wv', [kvDim, dim], true],
    ['wo', [dim, dim], true],
    ['ffn_norm', [dim], true],
    ['w1', [hiddenDim, dim], true],
    ['w2', [dim, hiddenDim], true],
    ['w3', [hiddenDim, dim], true],
    ['final_norm', [dim], false],
    ['rope_tables', [seqLen, headDim], false],
  ];
  if (!config.sharedClassifier) layout.push(['classifier', [vocabSize, dim], false]);
  const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
  const floats = layout.reduce((n, [, shape, perLayer]) => n + count(shape) * (perLayer ? nLayers : 1), 0);
  const expected = 28 + floats * 4;
  if (bytes.byteLength !== expected) {
    throw new Llama2cError(
      `${file}: the header (${HEADER_FIELDS.map((n, i) => `${n} ${h[i]}`).join(', ')}) needs ${expected} bytes, ` +
        `the file has ${bytes.byteLength}; ${hint}${bytes.byteLength < expected ? ', and whole (it may be cut short)' : ''}.`,
    );
  }
  // Copy out of the file (its float32 data need not be 4-byte aligned in memory).
  const all = new Float32Array(bytes.slice(28).buffer);
  let at = 0;
  const arrays = new Map<string, Float32Array[]>();
  for (const [name, shape, perLayer] of layout) {
    const n = count(shape);
    const list: Float32Array[] = [];
    for (let l = 0; l < (perLayer ? nLayers : 1); l++, at += n) list.push(all.subarray(at, at + n));
    arrays.set(name, list);
  }
  const get = (name: string, l = 0) => arrays.get(name)![l]!;

  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  tensors.set('model.embed_tokens.weight', { shape: [vocabSize, dim], data: get('embed') });
  for (let l = 0; l < nLayers; l++) {
    const p = `model.layers.${l}`;
    tensors.set(`${p}.input_layernorm.weight`, { shape: [dim], data: get('attn_norm', l) });
    tensors.set(`${p}.self_attn.q_proj.weight`, {
      shape: [dim, dim],
      data: permuteRope(get('wq', l), nHeads, headDim, dim),
    });
    tensors.set(`${p}.self_attn.k_proj.weight`, {
      shape: [kvDim, dim],
      data: permuteRope(get('wk', l), nKvHeads, headDim, dim),
    });
    tensors.set(`${p}.self_attn.v_proj.weight`, { shape: [kvDim, dim], data: get('wv', l) });
    tensors.set(`${p}.self_attn.o_proj.weight`, { shape: [dim, dim], data: get('wo', l) });
    tensors.set(`${p}.post_attention_layernorm.weight`, { shape: [dim], data: get('ffn_norm', l) });
    tensors.set(`${p}.mlp.gate_proj.weight`, { shape: [hiddenDim, dim], data: get('w1', l) });
    tensors.set(`${p}.mlp.down_proj.weight`, { shape: [dim, hiddenDim], data: get('w2', l) });
    tensors.set(`${p}.mlp.up_proj.weight`, { shape: [hiddenDim, dim], data: get('w3', l) });
  }
  tensors.set('model.norm.weight', { shape: [dim], data: get('final_norm') });
  if (!config.sharedClassifier) tensors.set('lm_head.weight', { shape: [vocabSize, dim], data: get('classifier') });
  return { config, tensors };
}

/** config.json (LlamaConfig). llama2.c's RMSNorm epsilon is 1e-5 and its RoPE theta 10000. */
export function hfConfig(c: Llama2cConfig): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: BOS_ID,
    eos_token_id: EOS_ID,
    head_dim: c.dim / c.nHeads,
    hidden_act: 'silu',
    hidden_size: c.dim,
    initializer_range: 0.02,
    intermediate_size: c.hiddenDim,
    max_position_embeddings: c.seqLen,
    mlp_bias: false,
    model_type: 'llama',
    num_attention_heads: c.nHeads,
    num_hidden_layers: c.nLayers,
    num_key_value_heads: c.nKvHeads,
    pretraining_tp: 1,
    rms_norm_eps: 1e-5,
    rope_scaling: null,
    rope_theta: 10000.0,
    tie_word_embeddings: c.sharedClassifier,
    torch_dtype: 'float32',
    use_cache: true,
    vocab_size: c.vocabSize,
  };
}

export interface ConvertOptions {
  /** Names of the source files, for the model card. */
  modelFile: string;
  tokenizerFile: string;
  chatTemplate?: string;
  /** Markdown added to the model card (licence, origin, what the chat template is for). */
  card?: string;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function modelCard(model: Llama2cModel, modelBytes: Uint8Array, tokBytes: Uint8Array, o: ConvertOptions): string {
  const c = model.config;
  const extra = o.card ? `${o.card.trim()}\n\n` : '';
  return `---
library_name: transformers
pipeline_tag: text-generation
---

${extra}## Conversion

Converted from llama2.c's format by Tabtune's \`scripts/llama2c.ts\`:

| file | bytes | sha256 |
| --- | --- | --- |
| ${basename(o.modelFile)} | ${modelBytes.byteLength} | ${sha256(modelBytes)} |
| ${basename(o.tokenizerFile)} | ${tokBytes.byteLength} | ${sha256(tokBytes)} |

- Llama: hidden size ${c.dim}, ${c.nLayers} layers, ${c.nHeads} heads (${c.nKvHeads} key/value heads), MLP ${c.hiddenDim},
  vocabulary ${c.vocabSize}, ${c.seqLen} positions, ${c.sharedClassifier ? 'shared' : 'separate'} input/output embeddings, float32.
- \`q_proj\` and \`k_proj\` are permuted from llama2.c's interleaved RoPE pairs to transformers'
  rotate-half layout; \`gate_proj\`, \`up_proj\`, \`down_proj\` are llama2.c's w1, w3, w2.
- The tokenizer is llama2.c's sentencepiece BPE with byte fallback, as transformers lays out Llama 2's:
  \`<s>\` is added at the start, spaces are \`▁\` and one is put in front of the text. It gives llama2.c's
  ids, except that a text starting with a space gets no second \`▁\` (as in transformers' own Llama
  tokenizer; llama2.c and sentencepiece add one).
- Generation stops at \`</s>\` and, as in llama2.c's \`run.c\`, at \`<s>\` (the pretraining data separates
  stories with it).
`;
}

/** The converted folder's files (name -> bytes). */
export function convertLlama2c(
  modelBytes: Uint8Array,
  tokBytes: Uint8Array,
  o: ConvertOptions,
): Map<string, Uint8Array> {
  const model = readLlama2cModel(modelBytes, o.modelFile);
  const tok = readLlama2cTokenizer(tokBytes, model.config.vocabSize, o.tokenizerFile);
  const enc = new TextEncoder();
  const json = (v: unknown) => enc.encode(`${JSON.stringify(v, null, 2)}\n`);
  const files = new Map<string, Uint8Array>();
  files.set('config.json', json(hfConfig(model.config)));
  files.set(
    'generation_config.json',
    json({ _from_model_config: true, bos_token_id: BOS_ID, eos_token_id: [EOS_ID, BOS_ID] }),
  );
  files.set(
    'model.safetensors',
    writeSafetensors(
      [...model.tensors].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: t.data })),
      { format: 'pt' },
    ),
  );
  files.set('tokenizer.json', json(hfTokenizerJson(tok)));
  files.set('tokenizer_config.json', json(hfTokenizerConfig(model.config.seqLen, o.chatTemplate)));
  files.set('README.md', enc.encode(modelCard(model, modelBytes, tokBytes, o)));
  return files;
}

function readInput(path: string, what: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new Llama2cError(`${what} ${path} could not be read: ${(e as Error).message}`);
  }
}

/** Converts files on disk and writes the folder. Returns the files written. */
export function convertLlama2cFiles(
  modelPath: string,
  tokenizerPath: string,
  outDir: string,
  extra: { chatTemplate?: string; card?: string } = {},
): Map<string, Uint8Array> {
  const files = convertLlama2c(readInput(modelPath, 'the model file'), readInput(tokenizerPath, 'the tokenizer file'), {
    modelFile: modelPath,
    tokenizerFile: tokenizerPath,
    ...extra,
  });
  mkdirSync(outDir, { recursive: true });
  for (const [name, bytes] of files) writeFileSync(join(outDir, name), bytes);
  return files;
}

const USAGE =
  'usage: node scripts/llama2c-to-hf.mjs --model MODEL.bin --tokenizer TOKENIZER.bin --out DIR [--chat-template FILE] [--card FILE]';

/** Entry point of scripts/llama2c-to-hf.mjs. */
export function main(argv: string[]): number {
  const opts = new Map<string, string>();
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i]!;
    const value = argv[i + 1];
    if (!['--model', '--tokenizer', '--out', '--chat-template', '--card'].includes(flag) || value === undefined) {
      console.error(`llama2c-to-hf: unexpected argument ${JSON.stringify(flag)}.\n${USAGE}`);
      return 2;
    }
    opts.set(flag, value);
  }
  const [model, tokenizer, out] = ['--model', '--tokenizer', '--out'].map((f) => opts.get(f));
  if (!model || !tokenizer || !out) {
    console.error(`llama2c-to-hf: --model, --tokenizer and --out are required.\n${USAGE}`);
    return 2;
  }
  try {
    const template = opts.get('--chat-template');
    const card = opts.get('--card');
    const files = convertLlama2cFiles(model, tokenizer, out, {
      chatTemplate: template ? readFileSync(template, 'utf8') : undefined,
      card: card ? readFileSync(card, 'utf8') : undefined,
    });
    const bytes = [...files.values()].reduce((n, b) => n + b.byteLength, 0);
    console.log(`wrote ${[...files.keys()].join(', ')} to ${out} (${(bytes / 1024).toFixed(0)} KiB)`);
    return 0;
  } catch (e) {
    console.error(`llama2c-to-hf: ${(e as Error).message}`);
    return 1;
  }
}
