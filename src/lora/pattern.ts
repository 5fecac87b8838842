/**
 * Module-path patterns from adapter_config.json (`target_modules` and `exclude_modules` as a
 * string, the keys of `rank_pattern` and `alpha_pattern`), matched in linear time.
 *
 * These patterns come from files people download. JavaScript's RegExp backtracks, so a pattern such
 * as `(.*.*)*X` runs for ever on an ordinary module path (and, in the app, froze the tab). RE2's
 * automaton (the re2js port) matches in time linear in the path, whatever the pattern; its syntax is
 * Python's `re` for everything PEFT configs use, and it refuses what cannot be matched that way
 * (lookarounds, backreferences) with an error naming the field. Sizes are bounded as well.
 */
import { RE2JS } from 're2js';

/** Longest pattern accepted (real ones are tens of characters). */
export const MAX_PATTERN_CHARS = 4096;

const compiled = new Map<string, RE2JS | string>();

/** The compiled pattern (full-match semantics via `matches`), or why it cannot be used. */
function compile(pattern: string): RE2JS | string {
  let c = compiled.get(pattern);
  if (c === undefined) {
    if (pattern.length > MAX_PATTERN_CHARS)
      c = `it is ${pattern.length} characters long (at most ${MAX_PATTERN_CHARS})`;
    else {
      try {
        c = RE2JS.compile(pattern);
      } catch (e) {
        const msg = (e as Error).message.replace(/^error parsing regexp: /, '');
        c = /unsupported Perl syntax|invalid escape sequence: `\\\d/.test(msg)
          ? `${msg} (lookarounds and backreferences cannot be matched in linear time, so Tabtune does not accept them)`
          : msg;
      }
    }
    if (compiled.size > 1000) compiled.clear();
    compiled.set(pattern, c);
  }
  return c;
}

/** Why `pattern` is not a usable pattern, or null. */
export function patternProblem(pattern: string): string | null {
  const c = compile(pattern);
  return typeof c === 'string' ? c : null;
}

/**
 * Python's `re.fullmatch(pattern, s)`. The pattern must have passed `patternProblem` (the config
 * validation does that); an unusable one matches nothing.
 */
export function fullMatch(pattern: string, s: string): boolean {
  const c = compile(pattern);
  return typeof c !== 'string' && c.matches(s);
}
