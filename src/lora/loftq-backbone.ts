/**
 * LoftQ's backbone, kept small: what rebuilds the quantized base Q of every LoftQ module exactly,
 * instead of Q itself. Q = dequant(NF4(W - B·A)) depends only on the original weight W and the
 * previous alternating iteration's factors (none when loftq_iter = 1), and src/lora/loftq.ts
 * computes it deterministically (float64 products rounded to float32, bitsandbytes' NF4 rule), so
 * storing those factors and a fingerprint of W rebuilds Q bit for bit from the base model's own
 * files or GPU weights (test/lora/loftq-backbone.test.ts). For a 1B model with r = 16 that is a few
 * MB (nothing at all for one iteration) where Q is GBs; the price is one NF4 pass per module when
 * the backbone is applied (Compare, Chat, evaluate) or exported (as a Hugging Face model folder).
 *
 * File: `loftq_backbone.safetensors`, metadata {format: "tabtune-loftq-backbone", version: "1",
 * backbone: JSON {base_model, loftq_iter, modules: [{path, key, out, in, r, dtype, fingerprint}]}},
 * tensors `<path>.prev_A` F64 [r, in] and `<path>.prev_B` F64 [out, r] when loftq_iter > 1.
 * `key` is the weight's checkpoint key; `dtype` the frozen weight's dtype when Q was made (Q is held
 * in it, as PEFT stores Q in the weight's dtype).
 */
import { packHalf, roundThroughHalf } from '../gpu/half';
import { ownCopy, parseSafetensors, writeSafetensors } from '../model/safetensors';
import { type LoftqPrevious, loftqQuantize } from './loftq';

export const LOFTQ_BACKBONE_NAME = 'loftq_backbone.safetensors';
const FORMAT = 'tabtune-loftq-backbone';

export interface LoftqBackboneModule {
  path: string;
  /** The weight's checkpoint key (model.layers.0.self_attn.q_proj.weight). */
  key: string;
  outF: number;
  inF: number;
  r: number;
  dtype: 'f32' | 'f16' | 'bf16';
  /** weightFingerprint of the original W the backbone was made from. */
  fingerprint: string;
  prev: LoftqPrevious | null;
}

export interface LoftqBackbone {
  baseModel: string;
  loftqIter: number;
  modules: LoftqBackboneModule[];
}

export class LoftqBackboneError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LoftqBackboneError';
  }
}

/** A 64-bit fingerprint (two FNV-1a lanes over the float32 bits) of a weight's values, as hex. */
export function weightFingerprint(w: Float32Array): string {
  const bits = new Uint32Array(w.buffer, w.byteOffset, w.length);
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193 ^ w.length;
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i]!;
    h1 = Math.imul(h1 ^ x, 0x01000193);
    h2 = Math.imul(h2 ^ ((x >>> 16) | (x << 16)), 0x5bd1e995);
    h2 ^= h2 >>> 15;
  }
  return (h1 >>> 0).toString(16).padStart(8, '0') + (h2 >>> 0).toString(16).padStart(8, '0');
}

export function encodeLoftqBackbone(b: LoftqBackbone): Uint8Array {
  const tensors: Parameters<typeof writeSafetensors>[0] = [];
  for (const m of b.modules) {
    if (!m.prev) continue;
    tensors.push({ name: `${m.path}.prev_A`, dtype: 'F64', shape: [m.r, m.inF], data: m.prev.a });
    tensors.push({ name: `${m.path}.prev_B`, dtype: 'F64', shape: [m.outF, m.r], data: m.prev.b });
  }
  const modules = b.modules.map(({ prev: _prev, ...rest }) => rest);
  const backbone = { base_model: b.baseModel, loftq_iter: b.loftqIter, modules };
  return writeSafetensors(tensors, { format: FORMAT, version: '1', backbone: JSON.stringify(backbone) });
}

export function decodeLoftqBackbone(bytes: Uint8Array, fileName = LOFTQ_BACKBONE_NAME): LoftqBackbone {
  const file = parseSafetensors(bytes, fileName);
  if (file.metadata?.format !== FORMAT || !file.metadata.backbone) {
    throw new LoftqBackboneError(`${fileName} is not a Tabtune LoftQ backbone (no ${FORMAT} metadata).`);
  }
  if (file.metadata.version !== '1') {
    throw new LoftqBackboneError(`${fileName} has version ${file.metadata.version}; this build reads version 1.`);
  }
  const meta = JSON.parse(file.metadata.backbone) as {
    base_model: string;
    loftq_iter: number;
    modules: Omit<LoftqBackboneModule, 'prev'>[];
  };
  const f64 = (name: string, n: number): Float64Array => {
    const t = file.tensors.get(name);
    if (!t || t.dtype !== 'F64' || t.data.byteLength !== n * 8) {
      throw new LoftqBackboneError(`${fileName}: tensor "${name}" (F64, ${n} values) is missing or malformed.`);
    }
    return new Float64Array(ownCopy(t.data).buffer);
  };
  const modules = meta.modules.map((m) => ({
    ...m,
    prev:
      meta.loftq_iter > 1
        ? { a: f64(`${m.path}.prev_A`, m.r * m.inF), b: f64(`${m.path}.prev_B`, m.outF * m.r) }
        : null,
  }));
  return { baseModel: meta.base_model, loftqIter: meta.loftq_iter, modules };
}

/**
 * Q of one module from the original weight `w32` (float32 [out, in], as stored or as held on the
 * GPU): checked against the fingerprint (also after rounding to the module's dtype, for a base
 * stored in another precision than it was trained in), then quantized as loftqInit did.
 */
export function backboneWeight(m: LoftqBackboneModule, w32: Float32Array, where: string): Float32Array {
  if (w32.length !== m.outF * m.inF) {
    throw new LoftqBackboneError(
      `${where}: "${m.key}" has ${w32.length} values, the LoftQ adapter's backbone expects ${m.outF} x ${m.inF}; ` +
        'load the model the adapter was trained on.',
    );
  }
  let w = w32;
  if (weightFingerprint(w) !== m.fingerprint && m.dtype !== 'f32') {
    w = Float32Array.from(roundThroughHalf(w32, m.dtype));
  }
  if (weightFingerprint(w) !== m.fingerprint) {
    throw new LoftqBackboneError(
      `${where}: "${m.key}" is not the weight the LoftQ adapter was initialised from (its fingerprint differs), so its ` +
        'quantized backbone cannot be rebuilt; load the exact model (same files and revision) it was trained on.',
    );
  }
  return loftqQuantize(w, m.outF, m.inF, m.r, m.prev);
}

/** Q in the module's dtype, as the GPU holds it (bf16/f16 bits, or float32). */
export function packForDtype(q: Float32Array, dtype: LoftqBackboneModule['dtype']): Float32Array | Uint16Array {
  return dtype === 'f32' ? q : packHalf(q, dtype);
}
