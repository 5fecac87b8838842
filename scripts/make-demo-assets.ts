/**
 * Writes the demo model and dataset that ship with the app in public/, so `npm start` leads to a
 * working fine-tune with no network:
 *   public/models/tabtune-demo/   a tiny Llama-layout model (Hugging Face file layout, real byte-level
 *                                 BPE tokenizer.json with a ChatML template), ~0.5 MB. Its random
 *                                 weights are first "pretrained" on a short story (a full-rank LoRA
 *                                 on every linear layer, trained here with the engine on Node's
 *                                 WebGPU and merged into the weights), so the base model continues
 *                                 the story but cannot answer questions, and a fine-tune on the
 *                                 dataset visibly teaches it to.
 *   public/data/demo-qa.jsonl     Alpaca-format questions and answers about that story
 *
 * Run:  node scripts/demo-assets.mjs              (always rewrites)
 *       node scripts/demo-assets.mjs --if-missing (only when a file is missing; npm start)
 * Without a WebGPU adapter in Node (no Vulkan driver) the model is written untrained, with a note.
 *
 * Seeds are fixed and the engine's reductions are deterministic, so regenerating on the same driver
 * gives the same files.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_TRAIN } from '../src/engine/defaults';
import { loraScaleInfo } from '../src/lora/config';
import { importPeft, mergeLora } from '../src/lora/peft';
import { parseConfig } from '../src/model/config';
import { describeModel } from '../src/model/registry';
import { parseSafetensors, tensorToF32, writeSafetensors } from '../src/model/safetensors';
import { TINY_CORPUS, makeTinyModelInMemory } from '../test/fixtures/tiny-model';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const DEMO_MODEL_DIR = join(ROOT, 'public', 'models', 'tabtune-demo');
export const DEMO_DATA_FILE = join(ROOT, 'public', 'data', 'demo-qa.jsonl');
export const DEMO_MODEL_ID = 'tabtune/demo-tiny-llama';
const MODEL_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'model.safetensors',
];

/**
 * Facts from the story the demo model is pretrained on, each asked three ways, so the held-out
 * validation questions are paraphrases of trained ones and the validation loss can fall too.
 */
const QA: [string[], string][] = [
  [
    ['What did the cat watch?', 'What was the cat watching?', 'Tell me what the cat watched.'],
    'The cat watched the rain.',
  ],
  [
    ['Where did the cat sit?', 'Where was the cat sitting?', 'On what did the cat sit?'],
    'The cat sat on the warm mat.',
  ],
  [
    ['Where did the children play?', 'Where were the children playing?', 'Where did the children go to play?'],
    'The children played in the garden.',
  ],
  [
    ['What color was the sea?', 'What was the color of the sea?', 'Which color did the sea have?'],
    'The sea was deep and blue.',
  ],
  [
    ['What fell on the roof?', 'What was falling on the roof?', 'What came down on the roof?'],
    'The rain fell on the roof.',
  ],
  [
    ['What did the cat listen to?', 'What was the cat listening to?', 'What sound did the cat hear?'],
    'The cat listened to the sound of the water.',
  ],
  [
    ['When did the sun come out?', 'At what time did the sun come out?', 'When was the sun out?'],
    'The sun came out in the morning.',
  ],
  [
    ['What was the garden like?', 'How did the garden look?', 'Describe the garden.'],
    'The garden was green and bright.',
  ],
  [
    ['What sang in the tallest tree?', 'Who sang in the tree?', 'What was singing in the tallest tree?'],
    'A bird sang in the tallest tree.',
  ],
  [
    ['What did the children read?', 'What book did the children read?', 'What was the book about?'],
    'They read a book about the sea.',
  ],
  [
    ['What lives in the sea?', 'What is in the water of the sea?', 'Which animals live in the sea?'],
    'Fish of every color live in the sea.',
  ],
  [
    [
      'What did the family do in the evening?',
      'What happened in the evening?',
      'How did the family spend the evening?',
    ],
    'The family ate dinner together.',
  ],
  [
    ['Where did the cat sleep?', 'Where was the cat sleeping?', 'Where did the small cat sleep at night?'],
    'The small cat slept on the mat.',
  ],
  [
    ['Was the house loud at night?', 'Was the house quiet at night?', 'How was the house at night?'],
    'The house was quiet.',
  ],
  [
    ['Who ran between the trees?', 'Who was running between the trees?', 'Who ran and laughed?'],
    'The children ran between the trees.',
  ],
  [
    ['What did the cat look at?', 'What was the cat looking at?', 'Which animal did the cat look at?'],
    'The cat looked at the bird.',
  ],
];

/** One Alpaca record per line (instruction, empty input, output). */
export function demoDatasetJsonl(): string {
  const lines: string[] = [];
  for (const [questions, answer] of QA)
    for (const q of questions) lines.push(JSON.stringify({ instruction: q, input: '', output: answer }));
  return `${lines.join('\n')}\n`;
}

/** The demo model's files with random weights: small enough to ship (< 2 MB). */
export function randomDemoModelFiles(): Map<string, Uint8Array> {
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

/**
 * Trains the random model on the story's sentences (a LoRA of rank 64 = the hidden size, on every
 * linear layer) and merges the result into the weights. Returns null without a WebGPU adapter.
 */
export async function pretrainDemoModel(
  files: Map<string, Uint8Array>,
  log: (m: string) => void = () => {},
): Promise<Map<string, Uint8Array> | null> {
  const [{ createNodeGpu }, { Engine }] = await Promise.all([
    import('../src/gpu/node'),
    import('../src/engine/engine'),
  ]);
  let gpu;
  try {
    gpu = await createNodeGpu();
  } catch (e) {
    log(`no WebGPU adapter in Node (${(e as Error).message.split('.')[0]}): the demo model is written untrained.`);
    return null;
  }
  const engine = new Engine(gpu);
  try {
    const asFiles = [...files].map(([name, bytes]) => new File([bytes.slice()], name));
    await engine.loadModel({ kind: 'files', id: DEMO_MODEL_ID, files: asFiles });
    const story = TINY_CORPUS.trim()
      .split('\n')
      .map((text) => JSON.stringify({ text }))
      .join('\n');
    await engine.loadDataset('story.jsonl', story, { maxLen: 64, valFraction: 0, seed: 1 });
    const t0 = Date.now();
    const run = await engine.train(
      { r: 64, lora_alpha: 64, lora_dropout: 0, target_modules: 'all-linear', use_rslora: false },
      {
        ...DEFAULT_TRAIN,
        lr: 5e-3,
        steps: 300,
        epochs: 0,
        batch: 4,
        maxLen: 64,
        scheduler: 'cosine',
        warmup: 10,
        valFraction: 0,
        seed: 1,
      },
    );
    log(
      `pretrained the demo model on the story: ${run.steps} steps, final loss ${run.finalLoss?.toFixed(3)}, ${((Date.now() - t0) / 1000).toFixed(0)} s`,
    );
    // Merge W += scale * B·A into the checkpoint's weights.
    const st = parseSafetensors(files.get('model.safetensors')!);
    const config = parseConfig(JSON.parse(new TextDecoder().decode(files.get('config.json')!)));
    const linears = describeModel(config, st.tensors).layers.flatMap((l) => l.linears);
    const adapter = importPeft(run.adapter, linears);
    const weights = new Map([...st.tensors].map(([k, t]) => [k, tensorToF32(t).slice()]));
    for (const m of adapter.modules) {
      const lin = linears.find((l) => l.path === m.path)!;
      const { scale } = loraScaleInfo(adapter.config, m);
      mergeLora(weights.get(lin.weightKey)!, lin.transposed, m.a, m.b, m.r, scale, m.inF, m.outF);
    }
    const names = [...weights.keys()].sort();
    const out = new Map(files);
    out.set(
      'model.safetensors',
      writeSafetensors(
        names.map((name) => ({
          name,
          dtype: 'F32' as const,
          shape: st.tensors.get(name)!.shape,
          data: weights.get(name)!,
        })),
        { format: 'pt' },
      ),
    );
    return out;
  } finally {
    engine.dispose();
  }
}

export function demoAssetsMissing(): boolean {
  return !existsSync(DEMO_DATA_FILE) || MODEL_FILES.some((f) => !existsSync(join(DEMO_MODEL_DIR, f)));
}

export async function writeDemoAssets(log: (m: string) => void = (m) => console.log(`[tabtune] ${m}`)): Promise<void> {
  const random = randomDemoModelFiles();
  const files = (await pretrainDemoModel(random, log)) ?? random;
  mkdirSync(DEMO_MODEL_DIR, { recursive: true });
  mkdirSync(dirname(DEMO_DATA_FILE), { recursive: true });
  let bytes = 0;
  for (const [path, data] of files) {
    writeFileSync(join(DEMO_MODEL_DIR, path), data);
    bytes += data.byteLength;
  }
  writeFileSync(DEMO_DATA_FILE, demoDatasetJsonl());
  log(
    `demo model written to public/models/tabtune-demo (${(bytes / 1024).toFixed(0)} KiB), dataset to public/data/demo-qa.jsonl`,
  );
}

/** Entry point of scripts/demo-assets.mjs. */
export async function main(argv: string[]): Promise<number> {
  if (argv.includes('--if-missing') && !demoAssetsMissing()) return 0;
  await writeDemoAssets();
  return 0;
}
