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

/** safetensors' own cap on the header (the Rust reference refuses larger ones). */
const MAX_HEADER_BYTES = 100_000_000;

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * Parses and validates only the header; `bytes` needs to hold at least 8 + N bytes. As the reference
 * implementation does, every entry must have a known dtype, a shape of non-negative integers and
 * integer `data_offsets` [begin, end] whose length matches the shape; sorted by begin, the tensors
 * must tile the data section from 0 with no gap and no overlap. `dataBytes` is the data section's
 * length the header declares (the file must be 8 + N + dataBytes bytes long).
 */
export function parseSafetensorsHeader(
  bytes: Uint8Array,
  fileName = 'safetensors file',
): {
  entries: Map<string, HeaderEntry>;
  metadata: Record<string, string> | null;
  dataStart: number;
  dataBytes: number;
} {
  function fail(msg: string): never {
    throw new SafetensorsError(`${fileName}: ${msg}`);
  }
  if (bytes.byteLength < 8) fail(`too short (${bytes.byteLength} bytes) to be safetensors.`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES) || 8 + Number(n64) > bytes.byteLength) {
    fail(`header length ${n64} does not fit a file of ${bytes.byteLength} bytes; not a safetensors file or truncated.`);
  }
  const n = Number(n64);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    fail(`header is not valid JSON (${(e as Error).message}); not a safetensors file.`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) fail('header is not a JSON object.');
  const entries = new Map<string, HeaderEntry>();
  let metadata: Record<string, string> | null = null;
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null) continue;
      if (typeof raw !== 'object' || Array.isArray(raw) || Object.values(raw).some((v) => typeof v !== 'string'))
        fail('"__metadata__" must map names to strings.');
      metadata = raw as Record<string, string>;
      continue;
    }
    const e = raw as Partial<HeaderEntry> | null;
    const what = `tensor "${name}"`;
    if (!e || typeof e !== 'object' || typeof e.dtype !== 'string' || !(e.dtype in ITEM_BYTES))
      fail(
        `${what} has no known "dtype" (got ${JSON.stringify(e?.dtype)}; expected one of ${Object.keys(ITEM_BYTES).join(', ')}).`,
      );
    if (!Array.isArray(e.shape) || !e.shape.every(isCount))
      fail(`${what}: "shape" must be a list of non-negative integers, got ${JSON.stringify(e.shape)}.`);
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !isCount(off[0]) || !isCount(off[1]) || off[1] < off[0])
      fail(
        `${what}: "data_offsets" must be two non-negative integers [begin, end] with begin <= end, got ${JSON.stringify(off)}.`,
      );
    const count = e.shape.reduce((a, b) => a * b, 1);
    const need = count * ITEM_BYTES[e.dtype];
    const [b0, b1] = off as [number, number];
    if (!Number.isSafeInteger(need) || b1 - b0 !== need) {
      fail(`${what} ${e.dtype}[${e.shape.join(', ')}] needs ${need} bytes, header gives ${b1 - b0}.`);
    }
    entries.set(name, { dtype: e.dtype, shape: e.shape, data_offsets: [b0, b1] });
  }
  // Tensors must tile the data section: each one starts where the previous one ended.
  const sorted = [...entries].sort(
    (a, b) => a[1].data_offsets[0] - b[1].data_offsets[0] || a[1].data_offsets[1] - b[1].data_offsets[1],
  );
  let end = 0;
  let prev: string | null = null;
  for (const [name, e] of sorted) {
    const [b0, b1] = e.data_offsets;
    if (b0 !== end) {
      fail(
        b0 < end
          ? `tensor "${name}" (bytes ${b0}-${b1}) overlaps tensor "${prev}" (which ends at ${end}); a safetensors file stores each tensor in its own bytes.`
          : `tensor "${name}" starts at byte ${b0}, but the previous tensor ends at ${end}; the data section has a gap.`,
      );
    }
    end = b1;
    prev = name;
  }
  return { entries, metadata, dataStart: 8 + n, dataBytes: end };
}

/** The error for a file whose length is not the 8 + N + data bytes its header declares, or null. */
export function fileLengthError(fileName: string, declared: number, actual: number): SafetensorsError | null {
  if (declared === actual) return null;
  return new SafetensorsError(
    declared > actual
      ? `${fileName}: its header declares ${declared} bytes, but the file has ${actual}; the file is truncated.`
      : `${fileName}: its header declares ${declared} bytes, but the file has ${actual} (${actual - declared} bytes after the last tensor); the file is damaged.`,
  );
}

/** The file must be exactly as long as its header declares (8 + N + the data section). */
function checkLength(fileName: string, declared: number, size: number): void {
  const bad = fileLengthError(fileName, declared, size);
  if (bad) throw bad;
}

/**
 * Checks a file without reading its tensors: the header (read by range: 8 bytes, then N) is valid
 * and the file's `size` is the one it declares, so a truncated download or a file of random bytes
 * is named before a load reads gigabytes of it. A header longer than `maxHeaderRead` bytes (a check
 * over the network bounds what it reads) is only checked to fit the file; the loader parses it.
 */
export async function checkSafetensorsFile(
  read: (start: number, end: number) => Promise<Uint8Array>,
  size: number,
  fileName: string,
  maxHeaderRead = MAX_HEADER_BYTES,
): Promise<void> {
  if (size < 8) throw new SafetensorsError(`${fileName}: too short (${size} bytes) to be safetensors.`);
  const n64 = new DataView((await read(0, 8)).slice().buffer).getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES) || 8 + Number(n64) > size) {
    throw new SafetensorsError(
      `${fileName}: header length ${n64} does not fit a file of ${size} bytes; not a safetensors file or truncated.`,
    );
  }
  if (Number(n64) > maxHeaderRead) return;
  const { dataStart, dataBytes } = parseSafetensorsHeader(await read(0, 8 + Number(n64)), fileName);
  checkLength(fileName, dataStart + dataBytes, size);
}

/** Parses a whole file held in memory. Tensor data are views into `bytes` (no copy). */
export function parseSafetensors(bytes: Uint8Array, fileName = 'safetensors file'): SafeFile {
  const { entries, metadata, dataStart, dataBytes } = parseSafetensorsHeader(bytes, fileName);
  checkLength(fileName, dataStart + dataBytes, bytes.byteLength);
  const tensors = new Map<string, SafeTensor>();
  for (const [name, e] of entries) {
    const [b0, b1] = e.data_offsets;
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

/**
 * A copy of `data` in its own buffer at offset 0 (aligned for any element type). Not `data.slice()`:
 * on a Node Buffer (what readFile gives) slice() is a view of the same memory.
 */
export function ownCopy(data: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(data);
}

/** Reads a tensor's values as f32 (F32, F16, BF16, F64 supported). */
export function tensorToF32(t: SafeTensor): Float32Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const copy = ownCopy(t.data);
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
