/**
 * What the token store (tokens.ts) keys a file's tokenized records by: a SHA-256 over the bytes the
 * records were read from, and the column mapping they were read with.
 */

import { type ColumnMapping, describeMapping } from './mapping';

/** SHA-256 of a sequence of byte chunks: the hash of their hashes (Web Crypto, native in browsers and Node). */
export class Digest {
  private readonly parts: Promise<ArrayBuffer>[] = [];
  add(bytes: Uint8Array): void {
    this.parts.push(crypto.subtle.digest('SHA-256', bytes.slice()));
  }
  async hex(size: number): Promise<string> {
    const all = await Promise.all(this.parts);
    const joined = new Uint8Array(8 + 32 * all.length);
    new DataView(joined.buffer).setFloat64(0, size);
    all.forEach((d, i) => joined.set(new Uint8Array(d), 8 + 32 * i));
    const h = new Uint8Array(await crypto.subtle.digest('SHA-256', joined));
    return Array.from(h, (b) => b.toString(16).padStart(2, '0')).join('');
  }
}

/** A file's digest and the mapping its records were read with: what the token store is keyed by. */
export function mappedDigest(hex: string | undefined, mapping: ColumnMapping | null | undefined): string | undefined {
  return hex && mapping ? `${hex}|${describeMapping(mapping)}` : hex;
}
