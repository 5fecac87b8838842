/**
 * A safetensors file read front to back as its bytes arrive, without holding the file: the header
 * is parsed as soon as its 8 + N bytes are in, then each wanted tensor's bytes are handed, in file
 * order, to the receiver the caller returns for it (pieces as they come; a piece is only valid
 * during the call). Tensors nobody wants are skipped. `finish()` checks that the file is exactly as
 * long as its header declares (cut short or with bytes after the last tensor: an error naming it).
 *
 * Layout (src/model/safetensors.ts): u64 LE header length N, N bytes of JSON, then the data section
 * with offsets relative to its start.
 */
import { type HeaderEntry, SafetensorsError, fileLengthError, parseSafetensorsHeader } from './safetensors';

export interface TensorReceiver {
  /** Bytes [offset, offset + piece.byteLength) of the tensor, in order. */
  write(piece: Uint8Array, offset: number): void;
  /** All bytes written; may return a promise the stream waits for before reading on. */
  end(): void | Promise<void>;
}

export interface StreamHandlers {
  /** Called once with the header, before any tensor's bytes (may throw to stop on a bad header). */
  header?(entries: Map<string, HeaderEntry>, metadata: Record<string, string> | null): void | Promise<void>;
  /** A receiver for one tensor, or null to skip its bytes. */
  tensor(name: string, entry: HeaderEntry): TensorReceiver | null;
}

interface Span {
  name: string;
  entry: HeaderEntry;
  begin: number;
  end: number;
}

export class SafetensorsStream {
  private head: Uint8Array[] = [];
  private headBytes = 0;
  private headerLength = -1;
  /** Absolute file position of the next byte pushed. */
  private pos = 0;
  private dataStart = -1;
  private dataBytes = 0;
  private spans: Span[] = [];
  private next = 0;
  private current: { span: Span; rx: TensorReceiver | null } | null = null;

  constructor(
    readonly fileName: string,
    private readonly handlers: StreamHandlers,
  ) {}

  /** Feeds the next bytes of the file. */
  async push(chunk: Uint8Array): Promise<void> {
    let c = chunk;
    if (this.dataStart < 0) {
      c = await this.takeHeader(c);
      if (this.dataStart < 0) return;
    }
    while (c.byteLength > 0) {
      const rel = this.pos - this.dataStart;
      if (!this.current) {
        const span = this.spans[this.next];
        if (!span) {
          // Past the last tensor (padding, or trailing bytes safetensors allows).
          this.pos += c.byteLength;
          return;
        }
        if (rel < span.begin) {
          const skip = Math.min(c.byteLength, span.begin - rel);
          this.pos += skip;
          c = c.subarray(skip);
          continue;
        }
        this.current = { span, rx: this.handlers.tensor(span.name, span.entry) };
      }
      const { span, rx } = this.current;
      const take = Math.min(c.byteLength, span.end - rel);
      if (take > 0) rx?.write(c.subarray(0, take), rel - span.begin);
      this.pos += take;
      c = c.subarray(take);
      if (this.pos - this.dataStart >= span.end) {
        this.current = null;
        this.next++;
        await rx?.end();
      }
    }
  }

  /** Checks the file was whole (call after the last chunk). */
  async finish(): Promise<void> {
    // Empty tensors at the very end take no bytes to complete.
    while (!this.current && this.next < this.spans.length && this.spans[this.next]!.end <= this.pos - this.dataStart) {
      const span = this.spans[this.next++]!;
      await this.handlers.tensor(span.name, span.entry)?.end();
    }
    if (this.dataStart < 0) {
      throw new SafetensorsError(
        `${this.fileName}: ended after ${this.pos} bytes, inside its header; the file is truncated or not safetensors.`,
      );
    }
    const bad = fileLengthError(this.fileName, this.dataStart + this.dataBytes, this.pos);
    if (bad) throw bad;
  }

  private async takeHeader(c: Uint8Array): Promise<Uint8Array> {
    const want = () => (this.headerLength < 0 ? 8 : 8 + this.headerLength);
    while (this.headBytes < want() && c.byteLength > 0) {
      const take = c.subarray(0, want() - this.headBytes);
      this.head.push(take.slice());
      this.headBytes += take.byteLength;
      this.pos += take.byteLength;
      c = c.subarray(take.byteLength);
      if (this.headerLength < 0 && this.headBytes === 8) {
        const n = new DataView(this.joined().buffer).getBigUint64(0, true);
        if (n > 100_000_000n) {
          throw new SafetensorsError(
            `${this.fileName}: header length ${n} is implausible; not a safetensors file or damaged.`,
          );
        }
        this.headerLength = Number(n);
      }
    }
    if (this.headerLength < 0 || this.headBytes < 8 + this.headerLength) return c;
    const bytes = this.joined();
    this.head = [];
    // Only the header is here (it is checked: tensors tile the data section); the file's length is
    // checked at the end (finish()).
    const { entries, metadata, dataStart, dataBytes } = parseSafetensorsHeader(bytes, this.fileName);
    this.dataStart = dataStart;
    this.dataBytes = dataBytes;
    this.spans = [...entries].map(([name, entry]) => ({
      name,
      entry,
      begin: entry.data_offsets[0],
      end: entry.data_offsets[1],
    }));
    this.spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
    await this.handlers.header?.(entries, metadata);
    return c;
  }

  private joined(): Uint8Array {
    if (this.head.length === 1) return this.head[0]!;
    const out = new Uint8Array(this.headBytes);
    let o = 0;
    for (const h of this.head) {
      out.set(h, o);
      o += h.byteLength;
    }
    this.head = [out];
    return out;
  }
}

/** A receiver that collects a tensor's bytes into one array and hands it over at the end. */
export function collectTensor(size: number, done: (bytes: Uint8Array) => void | Promise<void>): TensorReceiver {
  const bytes = new Uint8Array(size);
  return {
    write: (piece, offset) => bytes.set(piece, offset),
    end: () => done(bytes),
  };
}
