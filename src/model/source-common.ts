/**
 * What every model source shares (source.ts lists the origins): the ModelSource interface, its
 * progress and chunk callbacks, SourceError, relative-path checks, and the stream helpers the
 * sources read with.
 */

/** `total` is null when the size is not known in advance (e.g. a compressed HTTP response). */
export type ReadProgress = (loaded: number, total: number | null) => void;

/**
 * Takes the next bytes of a file being streamed. The chunk is only valid until the call returns
 * (or its promise settles): the source may reuse the memory for the next one.
 */
export type ChunkFn = (chunk: Uint8Array) => void | Promise<void>;

export interface ModelSource {
  /** Human-readable origin, used in error messages ("HuggingFaceTB/SmolLM2-135M", "/models/tiny"). */
  name: string;
  /** Every file path the source holds, when it can tell (not every origin can). */
  list?(): Promise<string[]>;
  has(path: string): Promise<boolean>;
  /** The whole file in memory (config, tokenizer and other small files). */
  read(path: string, onProgress?: ReadProgress): Promise<Uint8Array>;
  /**
   * The file front to back in chunks, each awaited before the next is read, so that a big weight
   * file is never held whole (the model loader quantizes and uploads tensors as they complete).
   */
  stream(path: string, onChunk: ChunkFn, onProgress?: ReadProgress): Promise<void>;
}

export type SourceErrorCode = 'not-found' | 'unauthorized' | 'http' | 'network' | 'io' | 'invalid-path' | 'aborted';

export class SourceError extends Error {
  constructor(
    message: string,
    readonly code: SourceErrorCode,
    /** The relative path that was asked for. */
    readonly path: string,
    /** HTTP status, when the error came from a server. */
    readonly status: number | null = null,
  ) {
    super(message);
    this.name = 'SourceError';
  }
}

export function isNotFound(e: unknown): boolean {
  return e instanceof SourceError && e.code === 'not-found';
}

/** Normalises a relative path: '\\' -> '/', no leading './' or '/', no '..' segments. */
export function normalizeRelPath(path: string, sourceName = 'model source'): string {
  const parts = path
    .replace(/\\/g, '/')
    .split('/')
    .filter((p) => p !== '' && p !== '.');
  if (parts.length === 0 || parts.some((p) => p === '..')) {
    throw new SourceError(`${sourceName}: "${path}" is not a valid relative file path.`, 'invalid-path', path);
  }
  return parts.join('/');
}

/** Hands a byte stream's chunks to onChunk to its end, reporting progress; returns the byte count. */
export async function pumpStream(
  stream: ReadableStream<Uint8Array>,
  total: number | null,
  onChunk: ChunkFn,
  onProgress: ReadProgress | undefined,
): Promise<number> {
  const reader = stream.getReader();
  let loaded = 0;
  onProgress?.(0, total);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!value || value.byteLength === 0) continue;
      await onChunk(value);
      loaded += value.byteLength;
      onProgress?.(loaded, total);
    }
  } catch (e) {
    await reader.cancel().catch(() => undefined);
    throw e;
  }
  return loaded;
}

/** Collects chunks into one array (preallocated when the size is known: no second copy). */
export function collector(total: number | null): { onChunk: ChunkFn; bytes: () => Uint8Array } {
  let buf = new Uint8Array(total ?? 1 << 16);
  let loaded = 0;
  return {
    onChunk: (value) => {
      if (loaded + value.byteLength > buf.byteLength) {
        const grown = new Uint8Array(Math.max(buf.byteLength * 2, loaded + value.byteLength));
        grown.set(buf.subarray(0, loaded));
        buf = grown;
      }
      buf.set(value, loaded);
      loaded += value.byteLength;
    },
    bytes: () => (loaded === buf.byteLength ? buf : buf.slice(0, loaded)),
  };
}

/** Wraps an error thrown by a stream's consumer so that the source does not report it as its own. */
export class ConsumerError {
  constructor(readonly cause: unknown) {}
}
