#!/usr/bin/env node
// Writes a synthetic Alpaca-style JSON Lines file of N records (about 250 bytes each) for the data
// benchmarks. Deterministic for a given N and seed; never commit its output.
//
//   node scripts/make-big-dataset.mjs OUT.jsonl [RECORDS=100000] [--format jsonl|json|csv] [--seed 1]

import { createWriteStream } from 'node:fs';

const args = process.argv.slice(2);
const flag = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const format = flag('format', 'jsonl');
let seed = Number(flag('seed', '1')) >>> 0;
const [out, n = '100000'] = args;
if (!out || !['jsonl', 'json', 'csv'].includes(format)) {
  process.stderr.write('usage: node scripts/make-big-dataset.mjs OUT [RECORDS] [--format jsonl|json|csv] [--seed S]\n');
  process.exit(2);
}
const records = Number(n);

function rand() {
  // mulberry32
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];
const NAMES = ['Lily', 'Tom', 'Sue', 'Ben', 'Mia', 'Max', 'Anna', 'Sam'];
const THINGS = ['ball', 'cat', 'tree', 'boat', 'kite', 'cake', 'dog', 'bird', 'hat', 'box'];
const COLORS = ['red', 'blue', 'green', 'big', 'small', 'shiny', 'old', 'happy'];
const VERBS = ['saw', 'found', 'liked', 'wanted', 'made', 'lost', 'shared', 'painted'];
const sentence = () => `${pick(NAMES)} ${pick(VERBS)} a ${pick(COLORS)} ${pick(THINGS)}.`;

function record(i) {
  const instruction = `Write a short story about a ${pick(COLORS)} ${pick(THINGS)} (#${i}).`;
  const input = rand() < 0.4 ? `The hero is ${pick(NAMES)}.` : '';
  let output = '';
  const k = 4 + Math.floor(rand() * 5);
  for (let s = 0; s < k; s++) output += (s ? ' ' : '') + sentence();
  return { instruction, input, output };
}

const csvField = (s) => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
const stream = createWriteStream(out);
const write = (s) => (stream.write(s) ? Promise.resolve() : new Promise((r) => stream.once('drain', r)));
if (format === 'json') await write('[\n');
if (format === 'csv') await write('instruction,input,output\n');
let buf = '';
for (let i = 0; i < records; i++) {
  const r = record(i);
  if (format === 'jsonl') buf += `${JSON.stringify(r)}\n`;
  else if (format === 'json') buf += `${i ? ',\n' : ''}  ${JSON.stringify(r)}`;
  else buf += `${csvField(r.instruction)},${csvField(r.input)},${csvField(r.output)}\n`;
  if (buf.length > 1 << 20) {
    await write(buf);
    buf = '';
  }
}
if (format === 'json') buf += '\n]\n';
await write(buf);
stream.end();
await new Promise((r) => stream.on('finish', r));
