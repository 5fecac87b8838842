/**
 * Pre-quantized bitsandbytes 4-bit checkpoints ("...-bnb-4bit" repos on the Hub), read as stored.
 * transformers saves each quantized linear (bnb.nn.Linear4bit; GPT-2's Conv1D was transposed to
 * nn.Linear's [out, in] before quantizing) as, for its weight key W:
 *   W                                    the packed 4-bit indices: ceil(n / 2) bytes, shape [ceil(n / 2), 1]
 *                                        (U8, or another quant_storage dtype viewing the same bytes)
 *   W.absmax                             F32 [blocks] or, with double quantization, U8 [blocks]
 *   W.quant_map                          F32 [16], the NF4 code values
 *   W.nested_absmax                      F32 [ceil(blocks / 256)]       (double quantization)
 *   W.nested_quant_map                   F32 [256], the dynamic map     (double quantization)
 *   W.quant_state.bitsandbytes__nf4      U8: UTF-8 JSON {"quant_type": "nf4", "blocksize": 64,
 *                                        "dtype": "bfloat16", "shape": [out, in], and with double
 *                                        quantization "nested_blocksize": 256, "nested_dtype":
 *                                        "float32", "nested_offset": <mean of absmax>}
 * (bitsandbytes QuantState.as_dict(packed=True)). Biases, norms, embeddings and the LM head stay
 * in their 16-bit form. The rule that produced the bytes is in src/reference/nf4.ts.
 */
import { NESTED_BLOCK, NF4_BLOCK, type Nf4Host, nestedBlocks, nf4Blocks } from '../reference/nf4';
import type { LinearModule } from './registry';
import type { HeaderEntry } from './safetensors';

export class BnbCheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BnbCheckpointError';
  }
}

export const BNB_STATE = 'quant_state.bitsandbytes__nf4';
const FP4_STATE = 'quant_state.bitsandbytes__fp4';

/** The suffixes (after "W.") of a quantized weight's statistics. */
export function bnbStatSuffixes(doubleQuant: boolean): string[] {
  return doubleQuant
    ? ['absmax', 'quant_map', 'nested_absmax', 'nested_quant_map', BNB_STATE]
    : ['absmax', 'quant_map', BNB_STATE];
}

/**
 * The weight keys a checkpoint stores in bitsandbytes 4-bit form (those with a quant_state entry),
 * each with whether its absmax is double-quantized. An FP4 or 8-bit weight is an error naming it.
 */
export function bnbQuantizedKeys(names: Iterable<string>, fileOf: (key: string) => string): Map<string, boolean> {
  const all = new Set(names);
  const out = new Map<string, boolean>();
  for (const name of all) {
    if (name.endsWith(`.${FP4_STATE}`)) {
      throw new BnbCheckpointError(
        `${fileOf(name)}: "${name}" is a bitsandbytes FP4 weight; Tabtune reads NF4 only. Use the unquantized model ` +
          'with --quantize nf4 (CLI) or "4-bit NF4" (app) instead.',
      );
    }
    if (name.endsWith('.SCB') || name.endsWith('.weight_format')) {
      throw new BnbCheckpointError(
        `${fileOf(name)}: "${name}" belongs to a bitsandbytes 8-bit weight; Tabtune reads 4-bit NF4 checkpoints only. ` +
          'Use the unquantized model with --quantize nf4 (CLI) or "4-bit NF4" (app) instead.',
      );
    }
    if (!name.endsWith(`.${BNB_STATE}`)) continue;
    const w = name.slice(0, -BNB_STATE.length - 1);
    out.set(w, all.has(`${w}.nested_absmax`) || all.has(`${w}.nested_quant_map`));
  }
  return out;
}

interface Part {
  bytes: Uint8Array;
  entry: HeaderEntry;
}

/** Collects one quantized linear's parts as they stream in and assembles its Nf4Host. */
export class BnbWeight {
  private readonly parts = new Map<string, Part>();
  private readonly wanted: string[];

  constructor(
    readonly module: LinearModule,
    readonly doubleQuant: boolean,
    private readonly fileOf: (key: string) => string,
  ) {
    this.wanted = ['', ...bnbStatSuffixes(doubleQuant)];
  }

  /** The checkpoint keys this weight needs. */
  keys(): string[] {
    return this.wanted.map((s) => this.key(s));
  }

  private key(suffix: string): string {
    return suffix ? `${this.module.weightKey}.${suffix}` : this.module.weightKey;
  }

  add(key: string, bytes: Uint8Array, entry: HeaderEntry): void {
    const suffix = key === this.module.weightKey ? '' : key.slice(this.module.weightKey.length + 1);
    this.parts.set(suffix, { bytes, entry });
  }

  get complete(): boolean {
    return this.wanted.every((s) => this.parts.has(s));
  }

  private fail(suffix: string, what: string): never {
    const key = this.key(suffix);
    throw new BnbCheckpointError(`${this.fileOf(key)}: "${key}" ${what}`);
  }

  private f32(suffix: string, count: number): Float32Array {
    const p = this.parts.get(suffix)!;
    if (p.entry.dtype !== 'F32' || p.bytes.byteLength !== 4 * count) {
      this.fail(suffix, `is ${p.entry.dtype}[${p.entry.shape.join(', ')}]; expected F32 with ${count} values.`);
    }
    return new Float32Array(p.bytes.slice().buffer);
  }

  /** The host form of the weight, checked against the module's shape. */
  build(): Nf4Host {
    const m = this.module;
    let state: Record<string, unknown>;
    try {
      state = JSON.parse(new TextDecoder().decode(this.parts.get(BNB_STATE)!.bytes)) as Record<string, unknown>;
    } catch (e) {
      return this.fail(BNB_STATE, `is not the JSON quant state bitsandbytes writes (${(e as Error).message}).`);
    }
    const expect = (k: string, ok: boolean, want: string) => {
      if (!ok) this.fail(BNB_STATE, `has ${k} ${JSON.stringify(state[k])}; expected ${want}.`);
    };
    expect('quant_type', state.quant_type === 'nf4', '"nf4"');
    expect(
      'blocksize',
      state.blocksize === NF4_BLOCK,
      `${NF4_BLOCK} (the QLoRA default; other block sizes are not supported)`,
    );
    const shape = state.shape;
    expect(
      'shape',
      Array.isArray(shape) && shape.length === 2 && shape[0] === m.outF && shape[1] === m.inF,
      `[${m.outF}, ${m.inF}] (out, in) for ${m.path}`,
    );
    const n = m.outF * m.inF;
    const nb = nf4Blocks(n);
    const weight = this.parts.get('')!;
    if (weight.bytes.byteLength !== Math.ceil(n / 2)) {
      this.fail(
        '',
        `holds ${weight.bytes.byteLength} bytes; a packed 4-bit [${m.outF}, ${m.inF}] weight has ${Math.ceil(n / 2)}.`,
      );
    }
    const code = this.f32('quant_map', 16);
    const base = { n, packed: weight.bytes.slice(), code };
    if (!this.doubleQuant) {
      return { ...base, absmax: this.f32('absmax', nb), qAbsmax: null, absmax2: null, offset: 0, nestedCode: null };
    }
    expect('nested_blocksize', state.nested_blocksize === NESTED_BLOCK, String(NESTED_BLOCK));
    expect('nested_offset', typeof state.nested_offset === 'number', 'a number');
    const q = this.parts.get('absmax')!;
    if (q.entry.dtype !== 'U8' || q.bytes.byteLength !== nb) {
      this.fail(
        'absmax',
        `is ${q.entry.dtype}[${q.entry.shape.join(', ')}]; with double quantization it is U8 [${nb}].`,
      );
    }
    return {
      ...base,
      absmax: null,
      qAbsmax: q.bytes.slice(),
      absmax2: this.f32('nested_absmax', nestedBlocks(n)),
      offset: Math.fround(state.nested_offset as number),
      nestedCode: this.f32('nested_quant_map', 256),
    };
  }
}
