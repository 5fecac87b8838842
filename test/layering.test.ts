/**
 * The import order of src/, enforced. Each file belongs to a group; a file may import from its own
 * group and from groups on lower levels, never from a higher level or a sibling group on its own
 * level. Levels, lowest first:
 *
 *   numerics                 pure definitions both the kernels and the reference compute from
 *   gpu                      device, buffers, recorder
 *   kernels | reference      WGSL kernels | their float64 specs (beside each other, neither imports the other)
 *   model | selftest         the model on the GPU | kernels checked against the reference on a
 *                            device (selftest.ts and the harness it shares with the tests, kernel-check.ts)
 *   lora | reference/model   adapters | the float64 spec of the whole model (model*.ts;
 *                            reads model's types)
 *   train | generate         training loop and data | text generation
 *   recipe                   the Python training folder (train.py, docs) for the same run
 *   engine | bench           the one interface the app and CLI drive | measurements of train/ and generate/
 *   store | cli              the browser's storage | the Node command (runs engine and bench)
 *   worker                   owns the GPU in the browser
 *   ui                       React, the only place React or the DOM appear
 *
 * No file reaches itself through its imports (type imports too): a shared type or helper lives in
 * a file both sides import, owned by the lower one.
 *
 * Also: only kernels/ imports WGSL files (and bench/, its own measuring shaders such as the FMA
 * ceiling), and React is imported only in ui/. A failure names the
 * file, the import and both groups; move the type or helper to the layer that owns it.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(__dirname, '..');
const SRC = join(ROOT, 'src');

const ORDER: string[][] = [
  ['numerics'],
  ['gpu'],
  ['kernels', 'reference'],
  ['model', 'selftest'],
  ['lora', 'reference/model'],
  ['train', 'generate'],
  ['recipe'],
  ['engine', 'bench'],
  ['store', 'cli'],
  ['worker'],
  ['ui'],
];

const LEVEL = new Map(ORDER.flatMap((groups, level) => groups.map((g) => [g, level] as const)));

/** The group of a file under src/ (path relative to src, '/' separators). */
function groupOf(rel: string): string {
  if (/^reference\/model(-[\w-]+)?\.ts$/.test(rel)) return 'reference/model';
  if (rel === 'selftest.ts' || rel === 'kernel-check.ts') return 'selftest';
  const top = rel.split('/')[0]!;
  if (!rel.includes('/') || !LEVEL.has(top)) {
    throw new Error(`src/${rel} is in no layer: add its folder to ORDER in test/layering.test.ts.`);
  }
  return top;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return /\.(ts|tsx)$/.test(e.name) && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

const parsed = new Map<string, ts.SourceFile>();
function parse(file: string): ts.SourceFile {
  let sf = parsed.get(file);
  if (!sf) parsed.set(file, (sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true)));
  return sf;
}

/** Every module specifier in a file: static imports and re-exports, import(), import types. */
function importsOf(file: string): string[] {
  const sf = parse(file);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier) {
      if (ts.isStringLiteral(node.moduleSpecifier)) found.push(node.moduleSpecifier.text);
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] &&
      ts.isStringLiteralLike(node.arguments[0])
    ) {
      found.push(node.arguments[0].text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      const lit = node.argument.literal;
      if (ts.isStringLiteral(lit)) found.push(lit.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

/**
 * Identifiers of the DOM used as values or types: not property names (`x.window`, `{ window: 4 }`)
 * and not a file's own variables or parameters of the same name (a sliding `window`).
 */
function domUses(file: string): string[] {
  const sf = parse(file);
  const own = new Set<string>();
  const declared = (node: ts.Node): void => {
    if (
      (ts.isVariableDeclaration(node) || ts.isParameter(node) || ts.isBindingElement(node)) &&
      ts.isIdentifier(node.name)
    )
      own.add(node.name.text);
    ts.forEachChild(node, declared);
  };
  declared(sf);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (
      ts.isIdentifier(node) &&
      /^(document|window|HTML\w*Element)$/.test(node.text) &&
      !own.has(node.text) &&
      !(ts.isPropertyAccessExpression(node.parent) && node.parent.name === node) &&
      !(ts.isPropertySignature(node.parent) || ts.isPropertyAssignment(node.parent))
    ) {
      found.push(node.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

/** What is wrong with the imports `specs` of the file src/`rel` (empty when nothing). */
function importProblems(rel: string, specs: string[]): string[] {
  const from = groupOf(rel);
  const bad: string[] = [];
  for (const spec of specs) {
    if (spec.endsWith('.wgsl?raw') && from !== 'kernels' && from !== 'bench')
      bad.push(`src/${rel} imports '${spec}' (WGSL outside kernels/)`);
    if (/^react(-dom)?(\/|$)/.test(spec) && from !== 'ui') bad.push(`src/${rel} imports '${spec}' (React outside ui/)`);
    if (!spec.startsWith('.')) continue;
    const target = relative(SRC, resolve(SRC, dirname(rel), spec))
      .split('\\')
      .join('/');
    if (target.startsWith('..')) continue; // outside src/ (shaders)
    const to = groupOf(/\.(ts|tsx)$/.test(target) ? target : `${target}.ts`);
    if (to === from || LEVEL.get(to)! < LEVEL.get(from)!) continue;
    const how = LEVEL.get(to) === LEVEL.get(from) ? 'a sibling on its level' : 'a higher layer';
    bad.push(`src/${rel} imports '${spec}': ${from} may not import from ${to} (${how})`);
  }
  return bad;
}

/** The file src/`rel` imports with `spec`, relative to src/ (null outside src/ or for a package). */
function resolveImport(rel: string, spec: string): string | null {
  if (!spec.startsWith('.') || spec.endsWith('?raw')) return null;
  const target = relative(SRC, resolve(SRC, dirname(rel), spec))
    .split('\\')
    .join('/');
  if (target.startsWith('..')) return null;
  if (/\.(ts|tsx)$/.test(target)) return target;
  for (const cand of [`${target}.ts`, `${target}.tsx`, `${target}/index.ts`]) if (known.has(cand)) return cand;
  return null;
}

/**
 * The import circles among `files` (each as its files in order, the first repeated at the end),
 * one per strongly connected group: Tarjan's algorithm, then one shortest circle through each group.
 */
function importCircles(graph: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const groups: string[][] = [];
  const connect = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const group: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        group.push(w);
      } while (w !== v);
      if (group.length > 1 || graph.get(v)?.includes(v)) groups.push(group);
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) connect(v);
  return groups.map((group) => {
    // Shortest path from the group's first file (sorted) back to itself, within the group.
    const inGroup = new Set(group);
    const start = [...group].sort()[0]!;
    const prev = new Map<string, string>();
    const queue = [start];
    for (let i = 0; i < queue.length; i++) {
      for (const w of graph.get(queue[i]!) ?? []) {
        if (!inGroup.has(w)) continue;
        if (w === start) {
          const path = [queue[i]!];
          while (path[0] !== start) path.unshift(prev.get(path[0]!)!);
          return [...path, start];
        }
        if (!prev.has(w)) {
          prev.set(w, queue[i]!);
          queue.push(w);
        }
      }
    }
    return [start, start];
  });
}

const files = sourceFiles(SRC).map((abs) => ({ abs, rel: relative(SRC, abs).split('\\').join('/') }));

const known = new Set(files.map((f) => f.rel));

describe('src/ layering', () => {
  it('places every source file in a layer', () => {
    expect(files.length).toBeGreaterThan(50);
    for (const f of files) expect(LEVEL.has(groupOf(f.rel))).toBe(true);
  });

  it('no file imports from a higher layer or a sibling group; WGSL only in kernels/, React only in ui/', () => {
    const bad = files.flatMap((f) => importProblems(f.rel, importsOf(f.abs)));
    expect(bad, bad.join('\n')).toEqual([]);
  });

  it('no import circles: no file reaches itself through its imports (type imports included)', () => {
    const graph = new Map(
      files.map((f) => [f.rel, [...new Set(importsOf(f.abs).flatMap((spec) => resolveImport(f.rel, spec) ?? []))]]),
    );
    const circles = importCircles(graph).map((c) => c.map((f) => `src/${f}`).join(' -> '));
    expect(circles, circles.join('\n')).toEqual([]);
  });

  it('no file below ui/ uses the DOM', () => {
    const bad = files
      .filter((f) => groupOf(f.rel) !== 'ui')
      .flatMap((f) => [...new Set(domUses(f.abs))].map((name) => `src/${f.rel} uses the DOM's ${name}`));
    expect(bad, bad.join('\n')).toEqual([]);
  });

  it('the check names the file and the import of each kind of violation', () => {
    expect(importProblems('lora/targets.ts', ['../engine/types', './config', '../model/registry'])).toEqual([
      "src/lora/targets.ts imports '../engine/types': lora may not import from engine (a higher layer)",
    ]);
    expect(importProblems('kernels/rope.ts', ['../reference/rope', '../numerics/rope'])).toEqual([
      "src/kernels/rope.ts imports '../reference/rope': kernels may not import from reference (a sibling on its level)",
    ]);
    expect(importProblems('reference/model.ts', ['../model/config', './rope'])).toEqual([]);
    expect(importProblems('reference/rope.ts', ['./model'])).toHaveLength(1);
    expect(importProblems('engine/x.ts', ['react', '../../shaders/rope.wgsl?raw'])).toHaveLength(2);
    expect(() => groupOf('newdir/x.ts')).toThrow(/in no layer/);
    const circle = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts', 'd.ts']],
      ['c.ts', ['a.ts']],
      ['d.ts', []],
      ['e.ts', ['e.ts']],
    ]);
    expect(importCircles(circle)).toEqual([
      ['a.ts', 'b.ts', 'c.ts', 'a.ts'],
      ['e.ts', 'e.ts'],
    ]);
    expect(
      importCircles(
        new Map([
          ['a.ts', ['b.ts']],
          ['b.ts', []],
        ]),
      ),
    ).toEqual([]);
  });
});
