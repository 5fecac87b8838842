/**
 * The regular expressions inside tokenizer.json (a Split pre-tokenizer's or a Replace normalizer's
 * `{"Regex": "..."}`) are run by JavaScript's backtracking engine on every text tokenized, and a
 * tokenizer can't use a linear-time matcher (RE2) instead because real ones need lookarounds
 * (GPT-2's `\s+(?!\S)`). A downloaded tokenizer.json holding `(.*.*)*X` would hang the worker or
 * the CLI on the first line of data. So each pattern is read before the tokenizer is built and
 * refused when it has the shape that backtracks exponentially: a repeated group that itself holds
 * a repetition (nested quantifiers, star height above one), or a repeated group whose alternatives
 * can match the same text. No published tokenizer has either (their repetitions apply to single
 * atoms and classes: ` ?\p{L}+`, `\p{N}{1,3}`, `[^\r\n\p{L}\p{N}]?\p{L}+`). Overlong patterns are
 * refused too.
 */

/** Longer patterns are refused (published ones are under 300 characters). */
const MAX_PATTERN_CHARS = 10_000;

interface Group {
  /** A quantifier that repeats (max above 1) applies somewhere inside. */
  repeats: boolean;
  /** The group's top-level alternatives, as source text (to spot `(a|a)*`). */
  alternatives: string[];
  start: number;
  branchStart: number;
}

/**
 * Why `pattern` could backtrack exponentially, or null when it has no such shape. Reads the syntax
 * JavaScript and Oniguruma share: escapes, classes `[...]`, groups `(`, `(?:`, `(?i:`, lookarounds,
 * quantifiers `* + ? {n} {n,} {n,m}` with a lazy or possessive suffix.
 */
export function catastrophicShape(pattern: string): string | null {
  if (pattern.length > MAX_PATTERN_CHARS)
    return `it is ${pattern.length} characters long (at most ${MAX_PATTERN_CHARS} are read)`;
  const stack: Group[] = [{ repeats: false, alternatives: [], start: 0, branchStart: 0 }];
  /** What the last atom was: a group just closed (with its facts), or a plain atom. */
  let last: { group: Group | null; end: number } | null = null;
  for (let i = 0; i < pattern.length;) {
    const c = pattern[i]!;
    if (c === '\\') {
      last = { group: null, end: i + 2 };
      i += 2;
      continue;
    }
    if (c === '[') {
      // A class: up to the first unescaped ']' that is not its first character.
      let j = i + 1;
      if (pattern[j] === '^') j++;
      if (pattern[j] === ']') j++;
      while (j < pattern.length && pattern[j] !== ']') j += pattern[j] === '\\' ? 2 : 1;
      last = { group: null, end: j + 1 };
      i = j + 1;
      continue;
    }
    if (c === '(') {
      const g: Group = { repeats: false, alternatives: [], start: i, branchStart: i + 1 };
      // Skip a group's prefix: (?:  (?=  (?!  (?<=  (?<!  (?<name>  (?i:  (?i-m:
      if (pattern[i + 1] === '?') {
        const m = /^\(\?(?:[:=!>]|<[=!]|<[A-Za-z_]\w*>|P<[A-Za-z_]\w*>|[a-zA-Z-]+:)/.exec(pattern.slice(i));
        g.branchStart = i + (m ? m[0].length : 2);
      }
      stack.push(g);
      last = null;
      i = g.branchStart;
      continue;
    }
    if (c === ')' && stack.length > 1) {
      const g = stack.pop()!;
      g.alternatives.push(pattern.slice(g.branchStart, i));
      const parent = stack[stack.length - 1]!;
      if (g.repeats) parent.repeats = true;
      last = { group: g, end: i + 1 };
      i++;
      continue;
    }
    if (c === '|') {
      const g = stack[stack.length - 1]!;
      g.alternatives.push(pattern.slice(g.branchStart, i));
      g.branchStart = i + 1;
      last = null;
      i++;
      continue;
    }
    const q = quantifier(pattern, i);
    if (q) {
      if (q.repeats && last) {
        if (last.group?.repeats)
          return `the group at character ${last.group.start + 1} repeats a repetition (nested quantifiers, as in (a+)+)`;
        if (last.group && overlapping(last.group.alternatives))
          return `the repeated group at character ${last.group.start + 1} has alternatives that match the same text (as in (a|a)*)`;
        stack[stack.length - 1]!.repeats = true;
      }
      last = null;
      i = q.end;
      continue;
    }
    last = { group: null, end: i + 1 };
    i++;
  }
  return null;
}

/** A quantifier at `i`: whether it can repeat (max above 1), and where it ends (lazy/possessive suffix included). */
function quantifier(p: string, i: number): { repeats: boolean; end: number } | null {
  const c = p[i];
  let end: number;
  let repeats: boolean;
  if (c === '*' || c === '+') {
    end = i + 1;
    repeats = true;
  } else if (c === '?') {
    end = i + 1;
    repeats = false;
  } else if (c === '{') {
    const m = /^\{(\d+)(,(\d*))?\}/.exec(p.slice(i));
    if (!m) return null; // a literal '{'
    end = i + m[0].length;
    const max = m[2] === undefined ? Number(m[1]) : m[3] === '' ? Infinity : Number(m[3]);
    repeats = max > 1;
  } else return null;
  if (p[end] === '?' || p[end] === '+') end++;
  return { repeats, end };
}

/** Two alternatives that are the same text, or one empty (`(a|)*`): both can match the same input. */
function overlapping(alternatives: string[]): boolean {
  if (alternatives.length < 2) return false;
  return new Set(alternatives).size < alternatives.length || alternatives.includes('');
}

/**
 * Every `{"Regex": "..."}` in a tokenizer.json, with where it is ("pre_tokenizer.pretokenizers[1].pattern.Regex").
 */
export function tokenizerRegexes(json: unknown, path = ''): { path: string; pattern: string }[] {
  const out: { path: string; pattern: string }[] = [];
  const walk = (v: unknown, at: string, depth: number): void => {
    if (depth > 64 || v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) {
      v.forEach((x, i) => walk(x, `${at}[${i}]`, depth + 1));
      return;
    }
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      // The vocabulary and merges hold no patterns (and are large): skip them.
      if (at === '' && (k === 'model' || k === 'added_tokens')) continue;
      const here = at ? `${at}.${k}` : k;
      if (k === 'Regex' && typeof x === 'string') out.push({ path: here, pattern: x });
      else walk(x, here, depth + 1);
    }
  };
  walk(json, path, 0);
  return out;
}
