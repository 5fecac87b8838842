/**
 * Writes the demo model and dataset that ship with the app in public/, so `npm start` leads to a
 * working fine-tune with no network:
 *   public/models/tabtune-demo/   a tiny random Llama-layout model (Hugging Face file layout, real
 *                                 byte-level BPE tokenizer.json with a ChatML template), ~1 MB
 *   public/data/demo-qa.jsonl     a small Alpaca-format question/answer set about a short story
 *
 * Run:  npx tsx scripts/make-demo-assets.ts            (always rewrites)
 *       npx tsx scripts/make-demo-assets.ts --if-missing (only when a file is missing; npm start)
 *
 * The output is deterministic (fixed seed), so regenerating leaves committed files unchanged.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTinyModelInMemory } from '../test/fixtures/tiny-model';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const DEMO_MODEL_DIR = join(ROOT, 'public', 'models', 'tabtune-demo');
export const DEMO_DATA_FILE = join(ROOT, 'public', 'data', 'demo-qa.jsonl');
const MODEL_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors'];

/**
 * Facts from the story the demo model is pretrained on, each asked three ways, so the held-out
 * validation questions are paraphrases of trained ones and the validation loss can fall too.
 */
const QA: [string[], string][] = [
  [['What did the cat watch?', 'What was the cat watching?', 'Tell me what the cat watched.'], 'The cat watched the rain.'],
  [['Where did the cat sit?', 'Where was the cat sitting?', 'On what did the cat sit?'], 'The cat sat on the warm mat.'],
  [['Where did the children play?', 'Where were the children playing?', 'Where did the children go to play?'], 'The children played in the garden.'],
  [['What color was the sea?', 'What was the color of the sea?', 'Which color did the sea have?'], 'The sea was deep and blue.'],
  [['What fell on the roof?', 'What was falling on the roof?', 'What came down on the roof?'], 'The rain fell on the roof.'],
  [['What did the cat listen to?', 'What was the cat listening to?', 'What sound did the cat hear?'], 'The cat listened to the sound of the water.'],
  [['When did the sun come out?', 'At what time did the sun come out?', 'When was the sun out?'], 'The sun came out in the morning.'],
  [['What was the garden like?', 'How did the garden look?', 'Describe the garden.'], 'The garden was green and bright.'],
  [['What sang in the tallest tree?', 'Who sang in the tree?', 'What was singing in the tallest tree?'], 'A bird sang in the tallest tree.'],
  [['What did the children read?', 'What book did the children read?', 'What was the book about?'], 'They read a book about the sea.'],
  [['What lives in the sea?', 'What is in the water of the sea?', 'Which animals live in the sea?'], 'Fish of every color live in the sea.'],
  [['What did the family do in the evening?', 'What happened in the evening?', 'How did the family spend the evening?'], 'The family ate dinner together.'],
  [['Where did the cat sleep?', 'Where was the cat sleeping?', 'Where did the small cat sleep at night?'], 'The small cat slept on the mat.'],
  [['Was the house loud at night?', 'Was the house quiet at night?', 'How was the house at night?'], 'The house was quiet.'],
  [['Who ran between the trees?', 'Who was running between the trees?', 'Who ran and laughed?'], 'The children ran between the trees.'],
  [['What did the cat look at?', 'What was the cat looking at?', 'Which animal did the cat look at?'], 'The cat looked at the bird.'],
];

/** One Alpaca record per line (instruction, empty input, output). */
export function demoDatasetJsonl(): string {
  const lines: string[] = [];
  for (const [questions, answer] of QA) for (const q of questions) lines.push(JSON.stringify({ instruction: q, input: '', output: answer }));
  return `${lines.join('\n')}\n`;
}

/** The demo model's files: small enough to ship (< 2 MB), big enough to learn the dataset in ~30 steps. */
export function demoModelFiles(): Map<string, Uint8Array> {
  return makeTinyModelInMemory({
    modelType: 'llama',
    dtype: 'F32',
    seed: 2024,
    merges: 160,
    overrides: {
      hidden_size: 64,
      intermediate_size: 160,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      num_hidden_layers: 2,
      max_position_embeddings: 128,
      vocab_size: 384,
    },
  });
}

export function demoAssetsMissing(): boolean {
  return !existsSync(DEMO_DATA_FILE) || MODEL_FILES.some((f) => !existsSync(join(DEMO_MODEL_DIR, f)));
}

export function writeDemoAssets(): void {
  mkdirSync(DEMO_MODEL_DIR, { recursive: true });
  mkdirSync(dirname(DEMO_DATA_FILE), { recursive: true });
  let bytes = 0;
  for (const [path, data] of demoModelFiles()) {
    writeFileSync(join(DEMO_MODEL_DIR, path), data);
    bytes += data.byteLength;
  }
  const data = demoDatasetJsonl();
  writeFileSync(DEMO_DATA_FILE, data);
  console.log(`[tabtune] demo model written to public/models/tabtune-demo (${(bytes / 1024).toFixed(0)} KiB), dataset to public/data/demo-qa.jsonl`);
}

const isMain = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1];
if (isMain) {
  if (process.argv.includes('--if-missing') && !demoAssetsMissing()) process.exit(0);
  writeDemoAssets();
}
