/**
 * scripts/llama2c.ts on small llama2.c files written here (random weights, odd sizes, grouped
 * KV heads): the converted folder loads through Tabtune's loader, and the float64 reference model
 * on it gives the logits of llama2.c's own forward (run.c's: interleaved RoPE pairs, w1/w3/w2 FFN,
 * shared or separate classifier) written out below on the original arrays. Also the readers' errors
 * and the tokenizer files for the shipped stories260K.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../src/model/load';
import { parseSafetensors } from '../../src/model/safetensors';
import { MemorySource } from '../../src/model/source';
import { modelForwardRef, modelLogitsRef } from '../../src/reference/model';
import { convertLlama2c, permuteRope, readLlama2cModel } from '../../scripts/llama2c';
import {
  Llama2cError,
  hfTokenizerConfig,
  hfTokenizerJson,
  readLlama2cTokenizer,
} from '../../scripts/llama2c-tokenizer';
import { expectClose, randArray } from '../helpers/close';
import { refWeights } from '../helpers/tiny-gpu-model';

interface Dims {
  dim: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  seqLen: number;
  shared: boolean;
}

/** llama2.c's arrays, as run.c maps them, [out, in] matrices. */
interface Llama2cArrays {
  embed: Float32Array;
  attnNorm: Float32Array[];
  wq: Float32Array[];
  wk: Float32Array[];
  wv: Float32Array[];
  wo: Float32Array[];
  ffnNorm: Float32Array[];
  w1: Float32Array[];
  w2: Float32Array[];
  w3: Float32Array[];
  finalNorm: Float32Array;
  cls: Float32Array;
}

function randomArrays(d: Dims, seed: number): Llama2cArrays {
  const kv = (d.dim / d.heads) * d.kvHeads;
  let s = seed;
  const mat = (rows: number, cols: number) => randArray(rows * cols, s++, 0.4);
  const norm = () => randArray(d.dim, s++, 0.3).map((v) => 1 + v);
  const per = <T>(f: () => T) => Array.from({ length: d.layers }, f);
  const embed = mat(d.vocab, d.dim);
  return {
    embed,
    attnNorm: per(norm),
    wq: per(() => mat(d.dim, d.dim)),
    wk: per(() => mat(kv, d.dim)),
    wv: per(() => mat(kv, d.dim)),
    wo: per(() => mat(d.dim, d.dim)),
    ffnNorm: per(norm),
    w1: per(() => mat(d.hidden, d.dim)),
    w2: per(() => mat(d.dim, d.hidden)),
    w3: per(() => mat(d.hidden, d.dim)),
    finalNorm: norm(),
    cls: d.shared ? embed : mat(d.vocab, d.dim),
  };
}

/** run.c's model file: the header, then the arrays in its order (RoPE tables as zeros). */
function llama2cModelFile(d: Dims, a: Llama2cArrays): Uint8Array {
  const head = new Int32Array([d.dim, d.hidden, d.layers, d.heads, d.kvHeads, d.shared ? d.vocab : -d.vocab, d.seqLen]);
  const parts: Float32Array[] = [
    a.embed,
    ...a.attnNorm,
    ...a.wq,
    ...a.wk,
    ...a.wv,
    ...a.wo,
    ...a.ffnNorm,
    ...a.w1,
    ...a.w2,
    ...a.w3,
    a.finalNorm,
    new Float32Array(d.seqLen * (d.dim / d.heads)),
    ...(d.shared ? [] : [a.cls]),
  ];
  const n = parts.reduce((k, p) => k + p.length, 0);
  const out = new Uint8Array(28 + 4 * n);
  out.set(new Uint8Array(head.buffer), 0);
  let at = 28;
  for (const p of parts) {
    out.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), at);
    at += p.byteLength;
  }
  return out;
}

/** tokenizer.py's export: <unk>, BOS/EOS as it writes them, 256 byte tokens, then pieces with scores. */
function llama2cTokenizerFile(pieces: [string, number][]): Uint8Array {
  const all: [string, number][] = [
    ['<unk>', 0],
    ['\n<s>\n', 0],
    ['\n</s>\n', 0],
    ...Array.from(
      { length: 256 },
      (_, b) => [`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, 0] as [string, number],
    ),
    ...pieces,
  ];
  const enc = new TextEncoder();
  const chunks: Uint8Array[] = [];
  let max = 0;
  for (const [text, score] of all) {
    const bytes = enc.encode(text);
    max = Math.max(max, bytes.length);
    const rec = new Uint8Array(8 + bytes.length);
    const v = new DataView(rec.buffer);
    v.setFloat32(0, score, true);
    v.setInt32(4, bytes.length, true);
    rec.set(bytes, 8);
    chunks.push(rec);
  }
  const out = new Uint8Array(4 + chunks.reduce((n, c) => n + c.length, 0));
  new DataView(out.buffer).setInt32(0, max, true);
  let at = 4;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** run.c's forward in float64, all positions of `ids`: logits [T, vocab]. */
function llama2cForward(d: Dims, a: Llama2cArrays, ids: number[]): Float64Array {
  const hs = d.dim / d.heads;
  const kvDim = hs * d.kvHeads;
  const group = d.heads / d.kvHeads;
  const T = ids.length;
  const matvec = (w: Float32Array, x: Float64Array, rows: number, cols: number) => {
    const y = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let c = 0; c < cols; c++) s += w[r * cols + c]! * x[c]!;
      y[r] = s;
    }
    return y;
  };
  const rmsnorm = (x: Float64Array, w: Float32Array) => {
    let ss = 0;
    for (const v of x) ss += v * v;
    const scale = 1 / Math.sqrt(ss / x.length + 1e-5);
    return x.map((v, i) => w[i]! * v * scale);
  };
  const keys: Float64Array[][] = Array.from({ length: d.layers }, () => []);
  const values: Float64Array[][] = Array.from({ length: d.layers }, () => []);
  const logits = new Float64Array(T * d.vocab);
  for (let pos = 0; pos < T; pos++) {
    const x = Float64Array.from(a.embed.subarray(ids[pos]! * d.dim, (ids[pos]! + 1) * d.dim));
    for (let l = 0; l < d.layers; l++) {
      const xb = rmsnorm(x, a.attnNorm[l]!);
      const q = matvec(a.wq[l]!, xb, d.dim, d.dim);
      const k = matvec(a.wk[l]!, xb, kvDim, d.dim);
      const v = matvec(a.wv[l]!, xb, kvDim, d.dim);
      // RoPE on adjacent pairs, frequency by the pair's place in its head
      for (let i = 0; i < d.dim; i += 2) {
        const freq = 1 / 10000 ** ((i % hs) / hs);
        const [cos, sin] = [Math.cos(pos * freq), Math.sin(pos * freq)];
        for (const vec of i < kvDim ? [q, k] : [q]) {
          const [v0, v1] = [vec[i]!, vec[i + 1]!];
          vec[i] = v0 * cos - v1 * sin;
          vec[i + 1] = v0 * sin + v1 * cos;
        }
      }
      keys[l]!.push(k);
      values[l]!.push(v);
      const out = new Float64Array(d.dim);
      for (let h = 0; h < d.heads; h++) {
        const kvh = Math.floor(h / group);
        const att = new Float64Array(pos + 1);
        for (let t = 0; t <= pos; t++) {
          let s = 0;
          for (let j = 0; j < hs; j++) s += q[h * hs + j]! * keys[l]![t]![kvh * hs + j]!;
          att[t] = s / Math.sqrt(hs);
        }
        const m = Math.max(...att);
        const e = att.map((s) => Math.exp(s - m));
        const z = e.reduce((p, c) => p + c, 0);
        for (let t = 0; t <= pos; t++)
          for (let j = 0; j < hs; j++) out[h * hs + j]! += (e[t]! / z) * values[l]![t]![kvh * hs + j]!;
      }
      const o = matvec(a.wo[l]!, out, d.dim, d.dim);
      for (let i = 0; i < d.dim; i++) x[i]! += o[i]!;
      const xf = rmsnorm(x, a.ffnNorm[l]!);
      const h1 = matvec(a.w1[l]!, xf, d.hidden, d.dim);
      const h3 = matvec(a.w3[l]!, xf, d.hidden, d.dim);
      const hb = h1.map((g, i) => (g / (1 + Math.exp(-g))) * h3[i]!);
      const f = matvec(a.w2[l]!, hb, d.dim, d.hidden);
      for (let i = 0; i < d.dim; i++) x[i]! += f[i]!;
    }
    logits.set(matvec(a.cls, rmsnorm(x, a.finalNorm), d.vocab, d.dim), pos * d.vocab);
  }
  return logits;
}

const PIECES: [string, number][] = [
  [' a', -1],
  ['ab', -2],
  [' ab', -3],
  [' ', -4],
  ['a', -5],
  ['b', -6],
  ['c', -7],
];

describe('llama2c-to-hf: model', () => {
  for (const shared of [true, false]) {
    it(`the converted folder computes llama2.c's logits (${shared ? 'shared' : 'separate'} classifier, 6 heads over 2 KV heads)`, async () => {
      const d: Dims = {
        dim: 36,
        hidden: 50,
        layers: 2,
        heads: 6,
        kvHeads: 2,
        vocab: 259 + PIECES.length,
        seqLen: 16,
        shared,
      };
      const arrays = randomArrays(d, shared ? 11 : 12);
      const files = convertLlama2c(llama2cModelFile(d, arrays), llama2cTokenizerFile(PIECES), {
        modelFile: 'model.bin',
        tokenizerFile: 'tok.bin',
      });
      const loaded = await loadModel(new MemorySource(files, 'converted'));
      expect(loaded.config.tieWordEmbeddings).toBe(shared);
      expect(loaded.config).toMatchObject({
        hiddenSize: 36,
        numLayers: 2,
        numHeads: 6,
        numKvHeads: 2,
        vocabSize: d.vocab,
      });
      const st = parseSafetensors(files.get('model.safetensors')!);
      expect(st.tensors.has('lm_head.weight')).toBe(!shared);
      expect(st.tensors.get('model.layers.1.self_attn.k_proj.weight')!.shape).toEqual([12, 36]);
      expect(st.tensors.get('model.layers.1.mlp.down_proj.weight')!.shape).toEqual([36, 50]);

      const ids = [1, 265, 3, 100, 261, 264, 262, 7, 259, 263, 2];
      const T = ids.length;
      const fwd = modelForwardRef(refWeights(loaded), new Map(), {
        B: 1,
        S: T,
        ids,
        positions: ids.map((_, i) => i),
        targets: new Array(T).fill(0xffffffff),
      });
      expectClose(llama2cForward(d, arrays, ids), modelLogitsRef(refWeights(loaded), fwd, T), {
        // the reference computes RoPE's angles in float32, as the GPU does
        name: 'logits',
        atol: 1e-6,
        rtol: 1e-6,
      });
    });
  }

  it('permuteRope moves row 2i + t of each head to t * head/2 + i', () => {
    const w = Float32Array.from({ length: 2 * 6 }, (_, i) => i); // 2 heads of 6 rows, 1 column
    expect([...permuteRope(w, 2, 6, 1)]).toEqual([0, 2, 4, 1, 3, 5, 6, 8, 10, 7, 9, 11]);
  });

  it('refuses files that are not llama2.c models, naming the file and what was expected', () => {
    const d: Dims = { dim: 8, hidden: 12, layers: 1, heads: 2, kvHeads: 1, vocab: 266, seqLen: 4, shared: true };
    const good = llama2cModelFile(d, randomArrays(d, 3));
    expect(readLlama2cModel(good, 'm.bin').tensors.size).toBe(1 + 9 + 1);
    expect(() => readLlama2cModel(good.subarray(0, good.length - 4), 'm.bin')).toThrow(
      /m\.bin: the header \(dim 8, hidden_dim 12, .*\) needs \d+ bytes, the file has \d+; expected a llama2\.c model .*cut short/,
    );
    const v1 = good.slice();
    new DataView(v1.buffer).setUint32(0, 0x616b3432, true);
    expect(() => readLlama2cModel(v1, 'm.bin')).toThrow(/m\.bin: starts with llama2\.c's "ak42" magic .*--version 0/);
    const badHeads = good.slice();
    new DataView(badHeads.buffer).setInt32(12, 3, true);
    expect(() => readLlama2cModel(badHeads, 'm.bin')).toThrow(
      /m\.bin: dim 8, n_heads 3, n_kv_heads 1: expected dim divisible by n_heads/,
    );
    expect(() => readLlama2cModel(new Uint8Array(10), 'm.bin')).toThrow(Llama2cError);
  });
});

describe('llama2c-to-hf: tokenizer', () => {
  it('reads tokenizer.py exports and refuses ones that do not fit the model', () => {
    const file = llama2cTokenizerFile(PIECES);
    const tok = readLlama2cTokenizer(file, 266, 't.bin');
    expect(tok.pieces.slice(0, 4).map((p) => p.piece)).toEqual(['<unk>', '<s>', '</s>', '<0x00>']);
    expect(tok.pieces.slice(259).map((p) => p.piece)).toEqual(['▁a', 'ab', '▁ab', '▁', 'a', 'b', 'c']);
    expect(() => readLlama2cTokenizer(file, 300, 't.bin')).toThrow(
      /t\.bin: ends at byte \d+ inside token 266; .*300 tokens/,
    );
    expect(() => readLlama2cTokenizer(file, 200, 't.bin')).toThrow(/t\.bin: \d+ bytes left after 200 tokens/);
    const swapped = llama2cTokenizerFile([
      ['a', -1],
      ['a', -2],
    ]);
    expect(() => readLlama2cTokenizer(swapped, 261, 't.bin')).toThrow(/tokens 259 and 260 are both "a"/);
  });

  it('merges are every split into two pieces, by the merged piece score, as transformers derives them', () => {
    const tok = readLlama2cTokenizer(llama2cTokenizerFile(PIECES), 266, 't.bin');
    const merges = (hfTokenizerJson(tok).model as { merges: [string, string][] }).merges;
    expect(merges).toEqual([
      ['▁', 'a'],
      ['a', 'b'],
      ['▁a', 'b'],
      ['▁', 'ab'],
    ]);
  });

  it("gives the shipped stories260K's tokenizer files from llama2.c's tok512.bin", () => {
    const fixture = new Uint8Array(readFileSync(join(import.meta.dirname, '../fixtures/llama2c/tok512.bin')));
    const tok = readLlama2cTokenizer(fixture, 512, 'tok512.bin');
    const shipped = (f: string) =>
      JSON.parse(readFileSync(join(process.cwd(), 'public/models/stories260K', f), 'utf8'));
    expect(hfTokenizerJson(tok)).toEqual(shipped('tokenizer.json'));
    const config = shipped('tokenizer_config.json');
    expect(hfTokenizerConfig(512, config.chat_template)).toEqual(config);
  });
});
