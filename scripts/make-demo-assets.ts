/**
 * The demo model and dataset that ship with the app in public/, so `npm start` leads to a working
 * fine-tune with no network:
 *   public/models/stories260K/   Andrej Karpathy's stories260K (llama2.c, MIT licence): a 260K-parameter
 *                                Llama pretrained on TinyStories, converted to Hugging Face's layout by
 *                                scripts/llama2c.ts, with a one-line Q/A chat template (DEMO_CHAT_TEMPLATE)
 *                                and a model card; ~1 MB. Committed: the llama2.c files are not in the
 *                                repository.
 *   public/data/demo-qa.jsonl    Alpaca questions and answers about the story the model tells from
 *                                "Once upon a time" (Lily and the red ball)
 *
 * Run:  node scripts/demo-assets.mjs --llama2c DIR   converts DIR/stories260K.bin + DIR/tok512.bin
 *                                                    (checked against their sha256) and writes the dataset
 *       node scripts/demo-assets.mjs                 writes the dataset (the model folder is committed)
 *       node scripts/demo-assets.mjs --if-missing    only what is missing (npm start)
 * The conversion is deterministic: the same llama2.c files give the committed folder byte for byte.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { convertLlama2cFiles } from './llama2c';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const DEMO_MODEL_DIR = join(ROOT, 'public', 'models', 'stories260K');
export const DEMO_DATA_FILE = join(ROOT, 'public', 'data', 'demo-qa.jsonl');
const MODEL_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'model.safetensors',
  'README.md',
  'LICENSE',
];

/** The llama2.c files the demo model is converted from, as published (see the model card). */
const SOURCES = [
  {
    file: 'stories260K.bin',
    bytes: 1056540,
    sha256: 'b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696',
  },
  { file: 'tok512.bin', bytes: 6227, sha256: '037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312' },
] as const;

/**
 * Questions become "Q: ..." lines, answers "A: ..." ended by `<s>` (a next question follows it as a
 * story follows `<s>` in pretraining: "<s>▁Q..."). stories260K never saw `</s>`:
 * llama2.c's pretraining data separates stories with `<s>`, which the model predicts where a story
 * ends and where llama2.c's run.c stops; generation_config.json lists it as a stop token. An answer
 * ended the same way is learned in a few steps; `</s>`, an untrained embedding row, is not.
 */
export const DEMO_CHAT_TEMPLATE =
  '{{- bos_token }}' +
  '{%- for message in messages %}' +
  "{%- if message['role'] == 'user' %}{{- 'Q: ' + message['content'] + '\\n' }}" +
  "{%- elif message['role'] == 'assistant' %}{{- 'A: ' + message['content'] + bos_token }}" +
  "{%- else %}{{- message['content'] + '\\n' }}" +
  '{%- endif %}' +
  '{%- endfor %}' +
  "{%- if add_generation_prompt %}{{- 'A:' }}{%- endif %}";

/**
 * Facts of the story stories260K tells greedily from "Once upon a time" (Lily, the red ball too high
 * to reach, her mom, the park), each asked three ways (the validation split holds paraphrases of trained
 * questions). The answers keep to words the model knows.
 */
const QA: [string[], string][] = [
  [["What was the little girl's name?", 'What was the girl called?', 'Who is the story about?'], 'Her name was Lily.'],
  [
    ['Where did Lily love to play?', 'Where did Lily like to play?', 'Where did Lily play every day?'],
    'She loved to play outside in the park.',
  ],
  [
    ['What did Lily see one day?', 'What did Lily find in the park?', 'What did Lily see in the park?'],
    'She saw a big, red ball.',
  ],
  [['What color was the ball?', 'Was the ball red or blue?', 'What color was the big ball?'], 'The ball was red.'],
  [
    ['Why could Lily not play with the ball?', 'Why did Lily not get the ball?', 'Why could Lily not reach the ball?'],
    'It was too high.',
  ],
  [['How did Lily feel?', 'Was Lily happy or sad?', 'How did Lily feel when she could not play?'], 'Lily was sad.'],
  [['Who helped Lily?', 'Who came to help Lily?', 'Who talked to Lily?'], 'Her mom helped her.'],
  [
    ['How did the story end?', 'What happened at the end?', 'What did Lily and her mom do at the end?'],
    'They played together and had fun.',
  ],
];

/** One Alpaca record per line (instruction, empty input, output). */
export function demoDatasetJsonl(): string {
  const lines: string[] = [];
  for (const [questions, answer] of QA)
    for (const q of questions) lines.push(JSON.stringify({ instruction: q, input: '', output: answer }));
  return `${lines.join('\n')}\n`;
}

const LICENSE = `MIT License

Copyright (c) 2023 Andrej

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
`;

const CARD = `# stories260K (Tabtune's demo model)

A 260K-parameter Llama pretrained on [TinyStories](https://huggingface.co/datasets/roneneldan/TinyStories)
(short children's stories) by Andrej Karpathy for [llama2.c](https://github.com/karpathy/llama2.c):
\`stories260K\` of its \`tinyllamas\` models ([karpathy/tinyllamas](https://huggingface.co/karpathy/tinyllamas)
on the Hugging Face Hub). **Licence: MIT** (llama2.c's; see LICENSE). The llama2.c files converted here
are copies published in the GitHub repository DaveBben/esp32-llm (\`data/\`, commit 6baf21a8); their
checksums are below.

Greedy from "Once upon a time" it writes, as llama2.c's documentation shows: "Once upon a time, there was a
little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted
to play with it, but it was too high." (and goes on: Lily is sad, her mom helps, they play in the park).

## Chat template (Tabtune's addition)

The model was never trained on a chat format. For Tabtune's demo, \`tokenizer_config.json\` carries a
one-line template: a question is \`Q: ...\` on its own line, the answer \`A: ...\` ended by \`<s>\`.
stories260K never saw \`</s>\`: llama2.c's data separates stories with \`<s>\`, which the model
predicts where a story ends and where llama2.c's \`run.c\` stops, so it also ends an answer here and
\`generation_config.json\` lists it as a stop token. The base model answers a question with a story;
the demo dataset (\`data/demo-qa.jsonl\`: questions about the story above) teaches a LoRA adapter to
answer in one sentence.`;

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Converts the llama2.c files in `dir` into public/models/stories260K, after checking they are the published ones. */
function writeDemoModel(dir: string, log: (m: string) => void): void {
  for (const s of SOURCES) {
    const path = join(dir, s.file);
    if (!existsSync(path))
      throw new Error(
        `${path} not found: --llama2c names the folder holding ${SOURCES.map((x) => x.file).join(' and ')}.`,
      );
    const bytes = new Uint8Array(readFileSync(path));
    const sum = sha256(bytes);
    if (bytes.byteLength !== s.bytes || sum !== s.sha256) {
      throw new Error(
        `${path}: expected stories260K's published ${s.file} (${s.bytes} bytes, sha256 ${s.sha256}), got ${bytes.byteLength} bytes, sha256 ${sum}.`,
      );
    }
  }
  const files = convertLlama2cFiles(join(dir, SOURCES[0].file), join(dir, SOURCES[1].file), DEMO_MODEL_DIR, {
    chatTemplate: DEMO_CHAT_TEMPLATE,
    card: CARD,
  });
  writeFileSync(join(DEMO_MODEL_DIR, 'LICENSE'), LICENSE);
  const bytes = [...files.values()].reduce((n, b) => n + b.byteLength, 0);
  log(`demo model converted to public/models/stories260K (${(bytes / 1024).toFixed(0)} KiB)`);
}

function writeDemoDataset(log: (m: string) => void): void {
  mkdirSync(dirname(DEMO_DATA_FILE), { recursive: true });
  writeFileSync(DEMO_DATA_FILE, demoDatasetJsonl());
  log('demo dataset written to public/data/demo-qa.jsonl');
}

function missingModelFiles(): string[] {
  return MODEL_FILES.filter((f) => !existsSync(join(DEMO_MODEL_DIR, f)));
}

/** Entry point of scripts/demo-assets.mjs. */
export function main(argv: string[], log: (m: string) => void = (m) => console.log(`[tabtune] ${m}`)): number {
  const at = argv.indexOf('--llama2c');
  const llama2c = at >= 0 ? argv[at + 1] : undefined;
  if (at >= 0 && !llama2c) {
    console.error('demo-assets: --llama2c needs the folder holding stories260K.bin and tok512.bin.');
    return 2;
  }
  const ifMissing = argv.includes('--if-missing');
  try {
    if (llama2c && (!ifMissing || missingModelFiles().length > 0)) writeDemoModel(llama2c, log);
    const missing = missingModelFiles();
    if (missing.length > 0) {
      console.error(
        `demo-assets: public/models/stories260K lacks ${missing.join(', ')}. The folder is part of the repository: ` +
          "restore it with `git checkout -- public/models/stories260K`, or convert llama2.c's files with " +
          '`node scripts/demo-assets.mjs --llama2c DIR` (DIR holding stories260K.bin and tok512.bin).',
      );
      return 1;
    }
    if (!ifMissing || !existsSync(DEMO_DATA_FILE)) writeDemoDataset(log);
    return 0;
  } catch (e) {
    console.error(`demo-assets: ${(e as Error).message}`);
    return 1;
  }
}
