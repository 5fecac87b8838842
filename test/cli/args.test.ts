/** The CLI's flag parser: values that are really the next flag, and numbers in plain decimal only. */
import { describe, expect, it } from 'vitest';
import { type FlagSpec, UsageError, parseFlags } from '../../src/cli/args';

const SPEC: Record<string, FlagSpec> = {
  out: { type: 'string' },
  prompt: { type: 'string' },
  lr: { type: 'number', min: 0, exclusiveMin: true },
  steps: { type: 'int', min: 1 },
  shift: { type: 'number' },
  json: { type: 'bool' },
};

function usage(argv: string[]): string {
  try {
    parseFlags(argv, SPEC, 'train');
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error(`no usage error for ${argv.join(' ')}`);
}

describe('parseFlags', () => {
  it('does not take the next flag as a missing value', () => {
    expect(usage(['--out', '--json'])).toBe('train: --out needs a value, got the flag --json.');
    expect(usage(['--lr', '--steps', '3'])).toBe('train: --lr needs a value, got the flag --steps.');
    expect(usage(['--out'])).toBe('train: --out needs a value.');
    // A value that starts with "--" can still be given with "=", and negative numbers are values.
    expect(parseFlags(['--prompt=--help', '--shift', '-2', '--out', '-'], SPEC, 'train')).toEqual({
      prompt: '--help',
      shift: -2,
      out: '-',
    });
  });

  it('takes numbers in plain decimal notation only', () => {
    expect(parseFlags(['--lr', '2e-4', '--steps', '12', '--shift', '-.5'], SPEC, 'train')).toEqual({
      lr: 2e-4,
      steps: 12,
      shift: -0.5,
    });
    expect(parseFlags(['--lr=.5E-3', '--steps=+3'], SPEC, 'train')).toEqual({ lr: 5e-4, steps: 3 });
    for (const bad of ['0x10', '0b11', '0o7', ' 3', '3 ', '1_000', 'Infinity', 'NaN', '', '1e', '.', '2e-4x']) {
      expect(usage(['--lr', bad])).toBe(`train: --lr expects a number, got "${bad}".`);
    }
    expect(usage(['--steps', '2.5'])).toBe('train: --steps expects an integer, got "2.5".');
    expect(usage(['--lr', '-1'])).toBe('train: --lr must be > 0, got -1.');
  });
});
