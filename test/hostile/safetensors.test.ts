// Hostile safetensors headers: every offset is validated (integers, ordered, inside the data section,
// no overlap, no gap) and the error names the file and the tensor, as the reference implementation does.
import { describe, expect, it } from 'vitest';
import { parseSafetensors, parseSafetensorsHeader, writeSafetensors } from '../../src/model/safetensors';

/** A file with a hand-written header and `data` bytes after it. */
function craft(header: Record<string, unknown>, dataBytes: number): Uint8Array {
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const hb = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + hb.byteLength + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.byteLength), true);
  out.set(hb, 8);
  for (let i = 0; i < dataBytes; i++) out[8 + hb.byteLength + i] = i & 255;
  return out;
}

const t = (offsets: unknown, shape: unknown = [2], dtype: unknown = 'F32') => ({ dtype, shape, data_offsets: offsets });

describe('safetensors offsets', () => {
  it('accepts a well-formed file written by writeSafetensors', () => {
    const bytes = writeSafetensors([
      { name: 'a', dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) },
      { name: 'b', dtype: 'F16', shape: [3], data: new Uint16Array(3) },
    ]);
    const f = parseSafetensors(bytes, 'w.safetensors');
    expect([...f.tensors.keys()]).toEqual(['a', 'b']);
  });

  it.each([
    ['negative begin', { a: t([-8, 0]) }, 8, /tensor "a": "data_offsets" must be two non-negative integers/],
    ['fractional offsets', { a: t([0.5, 8.5]) }, 8, /tensor "a": "data_offsets" must be two non-negative integers/],
    ['string offsets', { a: t(['0', '8']) }, 8, /tensor "a": "data_offsets"/],
    ['end before begin', { a: t([8, 0], [0]) }, 8, /tensor "a": "data_offsets".*begin <= end/],
    ['three offsets', { a: t([0, 8, 16]) }, 8, /tensor "a": "data_offsets"/],
    ['overlap', { a: t([0, 8]), b: t([4, 12]) }, 12, /tensor "b" \(bytes 4-12\) overlaps tensor "a"/],
    ['same bytes twice', { a: t([0, 8]), b: t([0, 8]) }, 8, /overlaps tensor/],
    ['a gap', { a: t([0, 8]), b: t([16, 24]) }, 24, /tensor "b" starts at byte 16, but the previous tensor ends at 8/],
    ['not starting at 0', { a: t([8, 16]) }, 16, /tensor "a" starts at byte 8/],
    [
      'past the end',
      { a: t([0, 8]), b: t([8, 16]) },
      12,
      /declares \d+ bytes, but the file has \d+; the file is truncated/,
    ],
    ['bytes after the last tensor', { a: t([0, 8]) }, 12, /4 bytes after the last tensor/],
    [
      'negative dimension',
      { a: t([0, 8], [-2, -1]) },
      8,
      /tensor "a": "shape" must be a list of non-negative integers/,
    ],
    ['fractional dimension', { a: t([0, 8], [0.5, 4]) }, 8, /"shape"/],
    ['unknown dtype', { a: t([0, 8], [2], 'F8') }, 8, /tensor "a" has no known "dtype"/],
    ['size mismatch', { a: t([0, 12]) }, 12, /F32\[2\] needs 8 bytes, header gives 12/],
    ['huge element count', { a: t([0, 8], [2 ** 40, 2 ** 40]) }, 8, /needs .* bytes, header gives 8/],
    [
      'metadata not strings',
      { __metadata__: { format: 1 }, a: t([0, 8]) },
      8,
      /"__metadata__" must map names to strings/,
    ],
    ['header not an object', [1, 2], 0, /header is not a JSON object/],
  ])('%s is refused naming the file and tensor', (_what, header, data, msg) => {
    const bytes = craft(header as Record<string, unknown>, data);
    expect(() => parseSafetensors(bytes, 'evil.safetensors')).toThrow(/^evil\.safetensors: /);
    expect(() => parseSafetensors(bytes, 'evil.safetensors')).toThrow(msg);
  });

  it('a header-only read reports the declared data size (for whole-file checks)', () => {
    const bytes = craft({ a: t([0, 8]), b: t([8, 20], [3]) }, 20);
    expect(parseSafetensorsHeader(bytes, 'x').dataBytes).toBe(20);
  });

  it('a header length past the file or over 100 MB is refused', () => {
    const bytes = new Uint8Array(16);
    new DataView(bytes.buffer).setBigUint64(0, 2n ** 63n, true);
    expect(() => parseSafetensors(bytes, 'big.safetensors')).toThrow(
      /big\.safetensors: header length \d+ does not fit/,
    );
  });
});
