/**
 * A small, strict command-line parser: every flag is declared with its type, unknown flags and bad
 * values are errors that name the flag, what was expected and what was given.
 */

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type FlagType = 'string' | 'int' | 'number' | 'bool';

export interface FlagSpec {
  type: FlagType;
  /** Allowed values for string flags. */
  choices?: readonly string[];
  min?: number;
  max?: number;
  /** Minimum is exclusive (e.g. a learning rate must be > 0). */
  exclusiveMin?: boolean;
  required?: boolean;
  help?: string;
}

export type ParsedFlags = Record<string, string | number | boolean | undefined>;

/** Parses `--name value`, `--name=value` and boolean `--name` / `--no-name` flags. */
export function parseFlags(argv: string[], spec: Record<string, FlagSpec>, command: string): ParsedFlags {
  const out: ParsedFlags = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new UsageError(`${command}: unexpected argument "${arg}" (flags start with --).`);
    let name = arg.slice(2);
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const s = spec[name];
    if (!s && name.startsWith('no-') && spec[name.slice(3)]?.type === 'bool') {
      out[name.slice(3)] = false;
      continue;
    }
    if (!s) {
      const known = Object.keys(spec)
        .map((k) => `--${k}`)
        .join(', ');
      throw new UsageError(`${command}: unknown flag --${name}. Known flags: ${known}.`);
    }
    if (s.type === 'bool') {
      if (value !== undefined && !['true', 'false', '1', '0'].includes(value)) {
        throw new UsageError(`${command}: --${name} takes no value or true/false, got "${value}".`);
      }
      out[name] = value === undefined ? true : value === 'true' || value === '1';
      continue;
    }
    if (value === undefined) {
      value = argv[i + 1];
      // `--out --json` is a forgotten value, not an output folder named "--json" (a value that
      // starts with "--" can still be given as --name=--value).
      if (value === undefined || (value.startsWith('--') && value.length > 2)) {
        throw new UsageError(
          `${command}: --${name} needs a value${value === undefined ? '' : `, got the flag ${value}`}.`,
        );
      }
      i++;
    }
    out[name] = convert(command, name, value, s);
  }
  for (const [name, s] of Object.entries(spec)) {
    if (s.required && out[name] === undefined) throw new UsageError(`${command}: --${name} is required.`);
  }
  return out;
}

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

function convert(command: string, name: string, value: string, s: FlagSpec): string | number {
  if (s.type === 'string') {
    if (s.choices && !s.choices.includes(value)) {
      throw new UsageError(`${command}: --${name} must be one of ${s.choices.join(', ')}; got "${value}".`);
    }
    return value;
  }
  // Plain decimal notation only: Number() would also take "0x10", "0b1", " 3 " and "".
  const n = DECIMAL.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(n)) {
    throw new UsageError(`${command}: --${name} expects a number, got "${value}".`);
  }
  if (s.type === 'int' && !Number.isInteger(n))
    throw new UsageError(`${command}: --${name} expects an integer, got "${value}".`);
  if (s.min !== undefined && (s.exclusiveMin ? n <= s.min : n < s.min)) {
    throw new UsageError(`${command}: --${name} must be ${s.exclusiveMin ? '>' : '>='} ${s.min}, got ${value}.`);
  }
  if (s.max !== undefined && n > s.max)
    throw new UsageError(`${command}: --${name} must be <= ${s.max}, got ${value}.`);
  return n;
}

export function str(f: ParsedFlags, name: string): string | undefined {
  const v = f[name];
  return typeof v === 'string' ? v : undefined;
}

export function num(f: ParsedFlags, name: string): number | undefined {
  const v = f[name];
  return typeof v === 'number' ? v : undefined;
}

export function bool(f: ParsedFlags, name: string): boolean | undefined {
  const v = f[name];
  return typeof v === 'boolean' ? v : undefined;
}
