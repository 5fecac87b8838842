/**
 * Where a dataset's bytes come from, read by range so a large file is never held whole: a Blob or
 * File in the browser (its `slice` reads only that range from disk), an open file in Node
 * (src/cli/file-source.ts), or bytes already in memory (tests, pasted text).
 */

export interface ByteSource {
  /** Total length in bytes. */
  readonly size: number;
  /** The bytes [start, end); end is clamped to size. */
  read(start: number, end: number): Promise<Uint8Array>;
  /** Releases a file handle, if any. */
  close?(): Promise<void>;
}

export function bytesSource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    read: (start, end) => Promise.resolve(bytes.subarray(start, Math.min(end, bytes.length))),
  };
}

/** A string as UTF-8 bytes. */
export function textSource(text: string): ByteSource {
  return bytesSource(new TextEncoder().encode(text));
}

/** A Blob or File (browser, and Node's Blob). */
export function blobSource(blob: Blob): ByteSource {
  return {
    size: blob.size,
    read: async (start, end) => new Uint8Array(await blob.slice(start, Math.min(end, blob.size)).arrayBuffer()),
  };
}
