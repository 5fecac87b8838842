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

/** Questions and answers about the story the demo tokenizer was built from. */
const QA: [string, string][] = [
  ['What did the cat watch?', 'The cat watched the rain.'],
  ['Where did the cat sit?', 'The cat sat on the warm mat.'],
  ['Where did the children play?', 'The children played in the garden.'],
  ['What color was the sea?', 'The sea was deep and blue.'],
  ['What fell on the roof?', 'The rain fell on the roof.'],
  ['What did the cat listen to?', 'The cat listened to the sound of the water.'],
  ['When did the sun come out?', 'The sun came out in the morning.'],
  ['What was the garden like?', 'The garden was green and bright.'],
  ['What sang in the tallest tree?', 'A bird sang in the tallest tree.'],
  ['Why could the cat not catch the bird?', 'The bird was too high.'],
  ['What did the children read after lunch?', 'They read a book about the sea.'],
  ['What lives in the sea?', 'Fish of every color live in the sea.'],
  ['What did the teacher say about the sea?', 'The sea covers most of the world.'],
  ['What did the family do in the evening?', 'The family ate dinner together.'],
  ['What did the family talk about?', 'They talked about the day.'],
  ['Where did the cat sleep?', 'The small cat slept on the mat.'],
  ['Was the house loud at night?', 'No, the house was quiet.'],
  ['Who ran between the trees?', 'The children ran between the trees.'],
  ['Did the children laugh?', 'Yes, the children laughed.'],
  ['How big was the cat?', 'The cat was small.'],
  ['What was warm?', 'The mat was warm.'],
  ['Where did the rain fall?', 'The rain fell on the roof.'],
  ['What did the cat look at?', 'The cat looked at the bird.'],
  ['What was deep?', 'The sea was deep and blue.'],
];

/** One Alpaca record per line; two lines use the optional input field. */
export function demoDatasetJsonl(): string {
  const lines = QA.map(([q, a]) => JSON.stringify({ instruction: q, input: '', output: a }));
  lines.push(JSON.stringify({ instruction: 'Answer with one word.', input: 'What color was the garden?', output: 'Green.' }));
  lines.push(JSON.stringify({ instruction: 'Answer with one word.', input: 'What fell on the roof?', output: 'Rain.' }));
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
