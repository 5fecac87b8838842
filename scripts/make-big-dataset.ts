#!/usr/bin/env -S node --import tsx
// Writes a synthetic Alpaca-style dataset of N records (src/bench/synthetic-data.ts: about 230
// bytes each as JSON Lines) for measuring the data path at scale. Never commit its output.
//
//   node --import tsx scripts/make-big-dataset.ts OUT [RECORDS=100000] [--format jsonl|json|csv|txt] [--seed 1]

import { createWriteStream } from 'node:fs';
import { syntheticAlpaca } from '../src/bench/synthetic-data';

const args = process.argv.slice(2);
function flag(name: string, dflt: string): string {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = args[i + 1] ?? dflt;
  args.splice(i, 2);
  return v;
}
const format = flag('format', 'jsonl');
const seed = Number(flag('seed', '1'));
const [out, n = '100000'] = args;
if (!out || !['jsonl', 'json', 'csv', 'txt'].includes(format) || !(Number(n) > 0)) {
  process.stderr.write(
    'usage: node --import tsx scripts/make-big-dataset.ts OUT [RECORDS] [--format jsonl|json|csv|txt] [--seed S]\n',
  );
  process.exit(2);
}

const csvField = (s: string): string => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
const stream = createWriteStream(out);
const write = (s: string): Promise<void> =>
  stream.write(s) ? Promise.resolve() : new Promise((r) => stream.once('drain', () => r()));
let buf = format === 'json' ? '[\n' : format === 'csv' ? 'instruction,input,output\n' : '';
let i = 0;
for (const r of syntheticAlpaca(Number(n), seed)) {
  if (format === 'jsonl') buf += `${JSON.stringify(r)}\n`;
  else if (format === 'json') buf += `${i ? ',\n' : ''}  ${JSON.stringify(r)}`;
  else if (format === 'csv') buf += `${csvField(r.instruction)},${csvField(r.input)},${csvField(r.output)}\n`;
  else buf += `${r.instruction}\n${r.output}\n\n`; // plain text: a paragraph per record
  i++;
  if (buf.length > 1 << 20) {
    await write(buf);
    buf = '';
  }
}
if (format === 'json') buf += '\n]\n';
await write(buf);
stream.end();
await new Promise<void>((r) => stream.on('finish', () => r()));
