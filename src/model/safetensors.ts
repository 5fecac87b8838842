/**
 * safetensors read/write. Layout: u64 little-endian header length N, N bytes of JSON header
 * (`{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`, padded with
 * spaces to a multiple of 8), then the tensor bytes (C order, little-endian), offsets relative to
 * the start of the data section.
 */

import { f16BitsToF32 } from '../gpu/half';

export type SafeDType =
  'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL' | 'U16' | 'U32' | 'U64';

const ITEM_BYTES: Record<SafeDType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
  U16: 2,
  U32: 4,
  U64: 8,
};

export interface SafeTensor {
  dtype: SafeDType;
  shape: number[];
  /** The tensor's raw bytes (a view into the file when parsed). */
  data: Uint8Array;
}

export interface SafeFile {
  metadata: Record<string, string> | null;
  tensors: Map<string, SafeTensor>;
}

export class SafetensorsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SafetensorsError';
  }
}

export interface HeaderEntry {
  dtype: SafeDType;
  shape: number[];
  data_offsets: [number, number];
}

/** Parses only the header; `headerBytes` is 8 + N (the data starts there). */
export function parseSafetensorsHeader(
  bytes: Uint8Array,
  fileName = 'safetensors file',
): { entries: Map<string, HeaderEntry>; metadata: Record<string, string> | null; dataStart: number } {
  if (bytes.byteLength < 8)
    throw new SafetensorsError(`${fileName}: too short (${bytes.byteLength} bytes) to be safetensors.`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  if (n > 100_000_000 || 8 + n > bytes.byteLength) {
    throw new SafetensorsError(
      `${fileName}: header length ${n} does not fit a file of ${bytes.byteLength} bytes; not a safetensors file or truncated.`,
    );
  }
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    throw new SafetensorsError(`${fileName}: header is not valid JSON (${(e as Error).message}).`);
  }
  const entries = new Map<string, HeaderEntry>();
  let metadata: Record<string, string> | null = null;
  for (const [name, raw] of Object.entries(json)) {
    if (name === '__metadata__') {
      metadata = raw as Record<string, string>;
      continue;
    }
    const e = raw as HeaderEntry;
    if (!e || !(e.dtype in ITEM_BYTES) || !Array.isArray(e.shape) || !Array.isArray(e.data_offsets)) {
      throw new SafetensorsError(`${fileName}: tensor "${name}" has a malformed header entry ${JSON.stringify(raw)}.`);
    }
    const count = e.shape.reduce((a, b) => a * b, 1);
    const [b0, b1] = e.data_offsets;
    if (b1 - b0 !== count * ITEM_BYTES[e.dtype]) {
      throw new SafetensorsError(
        `${fileName}: tensor "${name}" ${e.dtype}[${e.shape.join(', ')}] needs ${count * ITEM_BYTES[e.dtype]} bytes, header gives ${b1 - b0}.`,
      );
    }
    entries.set(name, e);
  }
  return { entries, metadata, dataStart: 8 + n };
}

/** Parses a whole file held in memory. Tensor data are views into `bytes` (no copy). */
export function parseSafetensors(bytes: Uint8Array, fileName = 'safetensors file'): SafeFile {
  const { entries, metadata, dataStart } = parseSafetensorsHeader(bytes, fileName);
  const tensors = new Map<string, SafeTensor>();
  for (const [name, e] of entries) {
    const [b0, b1] = e.data_offsets;
    if (dataStart + b1 > bytes.byteLength) {
      throw new SafetensorsError(
        `${fileName}: tensor "${name}" ends at byte ${dataStart + b1}, past the end of the file (${bytes.byteLength}); the file is truncated.`,
      );
    }
    tensors.set(name, { dtype: e.dtype, shape: e.shape, data: bytes.subarray(dataStart + b0, dataStart + b1) });
  }
  return { metadata, tensors };
}

/** Serialises tensors in the given order. The header is padded with spaces to a multiple of 8. */
export function writeSafetensors(
  tensors: { name: string; dtype: SafeDType; shape: number[]; data: ArrayBufferView }[],
  metadata: Record<string, string> | null = null,
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    const bytes = count * ITEM_BYTES[t.dtype];
    if (t.data.byteLength !== bytes) {
      throw new SafetensorsError(
        `Tensor "${t.name}" ${t.dtype}[${t.shape.join(', ')}] needs ${bytes} bytes, got ${t.data.byteLength}.`,
      );
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  const enc = new TextEncoder();
  let hb = enc.encode(json);
  const pad = (8 - (hb.byteLength % 8)) % 8;
  if (pad) {
    json += ' '.repeat(pad);
    hb = enc.encode(json);
  }
  const out = new Uint8Array(8 + hb.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.byteLength), true);
  out.set(hb, 8);
  let p = 8 + hb.byteLength;
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), p);
    p += t.data.byteLength;
  }
  return out;
}

/** Reads a tensor's values as f32 (F32, F16, BF16, F64 supported). */
export function tensorToF32(t: SafeTensor): Float32Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const copy = t.data.slice(); // aligned copy
  switch (t.dtype) {
    case 'F32':
      return new Float32Array(copy.buffer, 0, n);
    case 'F64':
      return Float32Array.from(new Float64Array(copy.buffer, 0, n));
    case 'F16':
    case 'BF16': {
      const bits = new Uint16Array(copy.buffer, 0, n);
      const out = new Float32Array(n);
      const u = new Uint32Array(out.buffer);
      if (t.dtype === 'BF16') for (let i = 0; i < n; i++) u[i] = bits[i]! << 16;
      else for (let i = 0; i < n; i++) out[i] = f16BitsToF32(bits[i]!);
      return out;
    }
    default:
      throw new SafetensorsError(`Cannot read a ${t.dtype} tensor as floating point.`);
  }
}
