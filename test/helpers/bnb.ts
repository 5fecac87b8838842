/**
 * Turns a tiny model's files into a bitsandbytes 4-bit checkpoint laid out as transformers saves a
 * model loaded with BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4") (see
 * src/model/bnb.ts for the layout): every linear weight packed with its statistics, a
 * quantization_config in config.json, everything else unchanged.
 */
import { quantizeNf4, type FloatDType } from '../../src/model/nf4';
import { parseConfig } from '../../src/model/config';
import { describeModel, linearModules } from '../../src/model/registry';
import { type SafeDType, parseSafetensors, writeSafetensors } from '../../src/model/safetensors';
import type { Nf4Host } from '../../src/reference/nf4';

interface Entry {
  name: string;
  dtype: SafeDType;
  shape: number[];
  data: ArrayBufferView;
}

/** The safetensors entries bitsandbytes' Linear4bit saves for one weight of [out, in]. */
export function bnbEntries(key: string, q: Nf4Host, out: number, inF: number, dtype = 'bfloat16'): Entry[] {
  const dq = !q.absmax;
  const state: Record<string, unknown> = { quant_type: 'nf4', blocksize: 64, dtype, shape: [out, inF] };
  if (dq) Object.assign(state, { nested_blocksize: 256, nested_dtype: 'float32', nested_offset: q.offset });
  const json = new TextEncoder().encode(JSON.stringify(state));
  const list: Entry[] = [
    { name: key, dtype: 'U8', shape: [q.packed.length, 1], data: q.packed },
    dq
      ? { name: `${key}.absmax`, dtype: 'U8', shape: [q.qAbsmax!.length], data: q.qAbsmax! }
      : { name: `${key}.absmax`, dtype: 'F32', shape: [q.absmax!.length], data: q.absmax! },
    { name: `${key}.quant_map`, dtype: 'F32', shape: [16], data: q.code },
    { name: `${key}.quant_state.bitsandbytes__nf4`, dtype: 'U8', shape: [json.length], data: json },
  ];
  if (dq) {
    list.push(
      { name: `${key}.nested_absmax`, dtype: 'F32', shape: [q.absmax2!.length], data: q.absmax2! },
      { name: `${key}.nested_quant_map`, dtype: 'F32', shape: [256], data: q.nestedCode! },
    );
  }
  return list;
}

/**
 * The files of a bitsandbytes 4-bit checkpoint of the same model (single model.safetensors).
 * Tensors are written in safetensors' own order for torch (by dtype, then name), so the statistics
 * of a weight may come before or after its packed bytes.
 */
export function toBnbCheckpoint(
  files: Map<string, Uint8Array>,
  o: { doubleQuant: boolean; edit?: (list: Entry[]) => Entry[] },
): Map<string, Uint8Array> {
  const configJson = JSON.parse(new TextDecoder().decode(files.get('config.json')!)) as Record<string, unknown>;
  const config = parseConfig(configJson);
  const tensors = parseSafetensors(files.get('model.safetensors')!).tensors;
  const arch = describeModel(config, tensors);
  const linears = new Map(linearModules(arch).map((m) => [m.weightKey, m]));
  let list: Entry[] = [];
  for (const [name, t] of tensors) {
    const m = linears.get(name);
    if (!m) {
      list.push({ name, dtype: t.dtype, shape: t.shape, data: t.data });
      continue;
    }
    const q = quantizeNf4({ dtype: t.dtype as FloatDType, data: t.data }, m.outF, m.inF, {
      transposed: m.transposed,
      doubleQuant: o.doubleQuant,
    });
    list.push(...bnbEntries(name, q, m.outF, m.inF));
  }
  const size: Record<string, number> = { F32: 4, BF16: 2, F16: 2, U8: 1 };
  list.sort((a, b) => (size[b.dtype] ?? 0) - (size[a.dtype] ?? 0) || (a.name < b.name ? -1 : 1));
  if (o.edit) list = o.edit(list);
  const quantization_config = {
    quant_method: 'bitsandbytes',
    _load_in_4bit: true,
    _load_in_8bit: false,
    load_in_4bit: true,
    load_in_8bit: false,
    bnb_4bit_quant_type: 'nf4',
    bnb_4bit_use_double_quant: o.doubleQuant,
    bnb_4bit_compute_dtype: 'bfloat16',
    bnb_4bit_quant_storage: 'uint8',
    llm_int8_skip_modules: null,
  };
  const out = new Map(files);
  out.set('config.json', new TextEncoder().encode(JSON.stringify({ ...configJson, quantization_config })));
  out.set('model.safetensors', writeSafetensors(list));
  return out;
}
