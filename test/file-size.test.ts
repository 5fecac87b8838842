/**
 * Source files stay small enough to read in one sitting: a file in src/ over 500 lines must say at
 * its top why it is long, with a sentence containing "over 500 lines" in its opening comment (the
 * first 40 lines). A failure names the file and its length: split it along its seams, or state why
 * it is one unit.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(__dirname, '..');
const LIMIT = 500;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return /\.(ts|tsx|wgsl)$/.test(e.name) ? [p] : [];
  });
}

/** The files over the limit whose opening lines give no reason. */
export function unexplainedLongFiles(files: { path: string; text: string }[]): string[] {
  const out: string[] = [];
  for (const f of files) {
    const lines = f.text.split('\n');
    const n = lines.length - (lines.at(-1) === '' ? 1 : 0);
    if (n <= LIMIT) continue;
    if (
      /over 500 lines/i.test(
        lines
          .slice(0, 40)
          .join(' ')
          .replace(/\s*(\*|\/\/)\s*/g, ' '),
      )
    )
      continue;
    out.push(`${f.path}: ${n} lines, no reason stated at its top (a sentence with "over 500 lines")`);
  }
  return out;
}

describe('source file sizes', () => {
  it('every file in src/ over 500 lines states why at its top', () => {
    const files = sources(join(ROOT, 'src')).map((p) => ({
      path: relative(ROOT, p),
      text: readFileSync(p, 'utf8'),
    }));
    expect(files.length).toBeGreaterThan(100);
    expect(unexplainedLongFiles(files)).toEqual([]);
  });

  it('the rule itself: a long file without a reason is named, one with a reason or a short one is not', () => {
    const long = (head: string) => head + '\nconst x = 1;\n'.repeat(LIMIT + 1);
    expect(
      unexplainedLongFiles([
        { path: 'a.ts', text: long('/** A. */') },
        {
          path: 'b.ts',
          text: long('/**\n * One state machine; over 500\n * lines because its states share buffers.\n */'),
        },
        { path: 'c.ts', text: 'const y = 2;\n'.repeat(LIMIT) },
      ]),
    ).toEqual(['a.ts: 1002 lines, no reason stated at its top (a sentence with "over 500 lines")']);
  });
});
