/**
 * Where a dataset's records start and end, found on its bytes as they stream past (scan.ts reads
 * them, records.ts and containers.ts say what they mean). Two splitters:
 *  - `eachLine`: lines, ending at \n, \r\n or a lone \r (JSON Lines, plain text);
 *  - `eachDelimitedRow`: CSV/TSV rows, RFC 4180 as containers.ts's `parseDelimited` reads them: a
 *    field that starts with a quote runs to the closing quote ("" is a quote inside it) and may
 *    hold delimiters and line breaks; a quote anywhere else is text; rows end at a line break
 *    outside quotes.
 * Each unit is handed over as its bytes (the line break not included), its byte range in the file
 * and the 1-based line it starts on (every \n, \r\n and lone \r counts one line, inside quotes too).
 */

/** The file read chunk by chunk, in order. */
export interface ChunkReader {
  readonly size: number;
  /** The bytes from `at` on, one chunk of them (empty at the end). */
  read(at: number): Promise<Uint8Array>;
  /** Called once the bytes before `at` are done. */
  progress(at: number): void;
}

export type OnUnit = (bytes: Uint8Array, start: number, end: number, line: number) => void;

const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;

/**
 * Drives a splitter over the file from `from`: `step` gets the unfinished bytes carried over plus
 * the next chunk (buf[0] at file offset `base`), hands over the units it finds whole, and returns
 * how many bytes of buf it is done with; the rest is given again with the next chunk. The next
 * chunk is read while this one is split.
 */
async function drive(
  r: ChunkReader,
  from: number,
  step: (buf: Uint8Array, base: number, eof: boolean) => number,
): Promise<void> {
  let carry = new Uint8Array(0);
  let base = from;
  let ahead = r.read(from);
  for (let at = from; ;) {
    const chunk = await ahead;
    at += chunk.length;
    const eof = at >= r.size || chunk.length === 0;
    if (!eof) ahead = r.read(at);
    const buf = carry.length ? concat(carry, chunk) : chunk;
    const used = Math.min(step(buf, base, eof), buf.length);
    carry = used < buf.length ? buf.slice(used) : new Uint8Array(0);
    base += used;
    r.progress(Math.min(at, r.size));
    if (eof) return;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Every line of the file from `from` (a last line without a line break included, an empty one not). */
export async function eachLine(r: ChunkReader, from: number, onLine: OnUnit): Promise<void> {
  let line = 1;
  await drive(r, from, (buf, base, eof) => {
    let s = 0;
    let nextLf = -2;
    let nextCr = -2;
    while (s < buf.length) {
      if (nextLf !== -1 && nextLf < s) nextLf = buf.indexOf(LF, s);
      if (nextCr !== -1 && nextCr < s) nextCr = buf.indexOf(CR, s);
      let t = nextLf < 0 ? nextCr : nextCr < 0 ? nextLf : Math.min(nextLf, nextCr);
      if (t < 0 || (!eof && buf[t] === CR && t + 1 >= buf.length)) {
        if (!eof) break; // an unfinished line (or a \r whose \n may follow): read on
        t = buf.length;
      }
      onLine(buf.subarray(s, t), base + s, base + t, line);
      line++;
      s = buf[t] === CR && buf[t + 1] === LF ? t + 2 : t + 1;
    }
    return s;
  });
}

/**
 * Every row of a CSV (delimiter ",") or TSV ("\t") file from `from`, blank ones included; a field
 * whose quote never closes makes the rest of the file one row. A row cut by a chunk boundary is
 * split again from its start with the next chunk.
 */
export async function eachDelimitedRow(r: ChunkReader, from: number, delim: string, onRow: OnUnit): Promise<void> {
  const d = delim.charCodeAt(0);
  let line = 1;
  await drive(r, from, (buf, base, eof) => {
    const n = buf.length;
    let s = 0; // start of the current row
    while (s < n) {
      let i = s;
      let rowLines = 0; // line breaks inside quotes
      let end = -1; // the row's end (its line break), once found
      let fieldStart = true;
      while (i < n) {
        const c = buf[i]!;
        if (fieldStart && c === QUOTE) {
          // A quoted field: to the closing quote ("" is a quote inside it).
          i++;
          for (;;) {
            const q = buf.indexOf(QUOTE, i);
            const stop = q < 0 ? n : q;
            for (let k = i; k < stop; k++) {
              const b = buf[k]!;
              if (b === LF || (b === CR && buf[k + 1] !== LF)) rowLines++;
            }
            if (q < 0 || (q + 1 >= n && !eof)) {
              i = n; // unclosed here (or a quote whose "" partner may follow): read on or end
              break;
            }
            if (buf[q + 1] === QUOTE) {
              i = q + 2;
              continue;
            }
            i = q + 1;
            break;
          }
          fieldStart = false;
          continue;
        }
        if (c === d) fieldStart = true;
        else if (c === LF || c === CR) {
          end = i;
          break;
        } else fieldStart = false;
        i++;
      }
      if (end < 0) {
        if (!eof) break; // the row goes on in the next chunk
        end = n;
      } else if (buf[end] === CR && end + 1 >= n && !eof) break; // a \r whose \n may follow
      onRow(buf.subarray(s, end), base + s, base + end, line);
      line += rowLines + (end < n ? 1 : 0);
      s = end < n && buf[end] === CR && buf[end + 1] === LF ? end + 2 : end + 1;
    }
    return s;
  });
}
