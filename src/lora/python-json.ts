/**
 * Python's JSON, as `json.dumps(obj, indent=2, sort_keys=True)` writes it: 2-space indent, ", " /
 * ": " separators, keys sorted at every level (by code point), non-ASCII escaped as \uXXXX, floats
 * with a decimal point (PyFloat marks a number Python holds as a float). PEFT's adapter_config.json
 * is written this way.
 */

/** A number Python holds as a float: written with a decimal point ("0.0", "0.05", "1e-05"). */
export class PyFloat {
  constructor(readonly value: number) {}
}

/** Python's repr of a float (the shortest round-trip digits, Python's exponent rules). */
export function pythonFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  // toExponential() with no argument gives the shortest digits that round-trip.
  const [mant, expStr] = x.toExponential().split('e') as [string, string];
  const exp = Number(expStr);
  const neg = mant.startsWith('-');
  const digits = mant.replace('-', '').replace('.', '');
  const sign = neg ? '-' : '';
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const e = Math.abs(exp) < 10 ? `0${Math.abs(exp)}` : `${Math.abs(exp)}`;
    return `${sign}${m}e${exp < 0 ? '-' : '+'}${e}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  const intLen = exp + 1;
  if (digits.length <= intLen) return `${sign}${digits}${'0'.repeat(intLen - digits.length)}.0`;
  return `${sign}${digits.slice(0, intLen)}.${digits.slice(intLen)}`;
}

function pyString(s: string): string {
  // JSON.stringify escapes ", \, and control characters like Python; ensure_ascii also escapes
  // everything outside printable ASCII (DEL included), per UTF-16 code unit, in lowercase hex.
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** `json.dumps(value, indent=2, sort_keys=True)` of a JSON-like value (PyFloat marks Python floats). */
export function pythonJsonDumps(value: unknown, indent = ''): string {
  if (value === null || value === undefined) return 'null';
  if (value instanceof PyFloat) return pythonFloatRepr(value.value);
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      return Number.isInteger(value) ? String(value) : pythonFloatRepr(value);
    case 'string':
      return pyString(value);
    case 'object': {
      const inner = `${indent}  `;
      if (Array.isArray(value)) {
        if (value.length === 0) return '[]';
        return `[\n${value.map((v) => inner + pythonJsonDumps(v, inner)).join(',\n')}\n${indent}]`;
      }
      const keys = Object.keys(value).sort(compareCodePoints);
      if (keys.length === 0) return '{}';
      const obj = value as Record<string, unknown>;
      return `{\n${keys.map((k) => `${inner}${pyString(k)}: ${pythonJsonDumps(obj[k], inner)}`).join(',\n')}\n${indent}}`;
    }
    default:
      throw new TypeError(`Cannot write a ${typeof value} to adapter_config.json.`);
  }
}

export function compareCodePoints(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
