/**
 * Synthetic Alpaca-style records (about 230 bytes each as JSON Lines) for the data benchmarks:
 * deterministic for a given seed, varied enough that tokenization does real work.
 */

import { mulberry32 } from '../reference/check';

const NAMES = ['Lily', 'Tom', 'Sue', 'Ben', 'Mia', 'Max', 'Anna', 'Sam'];
const THINGS = ['ball', 'cat', 'tree', 'boat', 'kite', 'cake', 'dog', 'bird', 'hat', 'box'];
const COLORS = ['red', 'blue', 'green', 'big', 'small', 'shiny', 'old', 'happy'];
const VERBS = ['saw', 'found', 'liked', 'wanted', 'made', 'lost', 'shared', 'painted'];

export interface AlpacaLike {
  instruction: string;
  input: string;
  output: string;
}

/** `n` records, one after another. */
export function* syntheticAlpaca(n: number, seed = 1): Generator<AlpacaLike> {
  const rand = mulberry32(seed);
  const pick = (a: string[]): string => a[Math.floor(rand() * a.length)]!;
  for (let i = 0; i < n; i++) {
    const instruction = `Write a short story about a ${pick(COLORS)} ${pick(THINGS)} (#${i}).`;
    const input = rand() < 0.4 ? `The hero is ${pick(NAMES)}.` : '';
    const sentences = 4 + Math.floor(rand() * 5);
    const out: string[] = [];
    for (let s = 0; s < sentences; s++) out.push(`${pick(NAMES)} ${pick(VERBS)} a ${pick(COLORS)} ${pick(THINGS)}.`);
    yield { instruction, input, output: out.join(' ') };
  }
}

/** The records as a JSON Lines text. */
export function syntheticJsonl(n: number, seed = 1): string {
  const lines: string[] = [];
  for (const r of syntheticAlpaca(n, seed)) lines.push(JSON.stringify(r));
  return `${lines.join('\n')}\n`;
}
