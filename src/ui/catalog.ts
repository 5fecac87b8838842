/**
 * The models offered in the picker, and how a chosen model becomes an engine ModelSourceSpec.
 * Sizes here are for the list only; the cost shown before a download is computed from the
 * model's own config.json.
 */
import type { LoraSettings, ModelSourceSpec, TrainSettings } from '../engine/types';
import type { StoredModelSource } from '../store/types';
import { hubIdProblem } from '../model/source';

export const DEMO_MODEL_ID = 'tabtune/stories260K';
/** Relative to the page (public/models/stories260K, converted by scripts/make-demo-assets.ts). */
export const DEMO_MODEL_PATH = 'models/stories260K/';
export const DEMO_DATASET_PATH = 'data/demo-qa.jsonl';
export const DEMO_DATASET_NAME = 'demo-qa.jsonl';
/** Compare's prompts for the demo: two questions of the demo dataset. */
export const DEMO_PROMPTS = ["What was the little girl's name?", 'What did Lily see one day?'];

export interface CatalogEntry {
  id: string;
  label: string;
  /** What it is good for, one line. */
  note: string;
  approxParams: string;
  approxDownload: string;
  instruct: boolean;
  demo?: boolean;
  /** Settings that suit this model better than the general defaults. */
  train?: Partial<TrainSettings>;
  lora?: Partial<LoraSettings>;
  /** Where the model comes from and its licence, shown with it; `href` is its model card (relative to the page). */
  card?: { origin: string; licence: string; href: string };
}

export const CATALOG: CatalogEntry[] = [
  {
    id: DEMO_MODEL_ID,
    label: 'stories260K (tiny Llama)',
    note: "Ships with the app: no download. A 260K-parameter Llama that writes children's stories; fine-tune it to answer questions about its own story.",
    approxParams: '260K',
    approxDownload: '1 MB',
    instruct: true,
    demo: true,
    // The default demo run: after 16 steps (128 examples, under 6 epochs) the adapter answers the demo
    // questions (Compare's prompts among them) in one sentence; a few minutes on a software GPU.
    train: {
      lr: 1e-2,
      steps: 16,
      epochs: 0,
      maxLen: 64,
      batch: 8,
      scheduler: 'cosine',
      evalEvery: 5,
      checkpointEvery: 5,
      warmup: 0,
    },
    lora: { r: 8, lora_alpha: 16, lora_dropout: 0, target_modules: 'all-linear' },
    card: {
      origin:
        "Andrej Karpathy's stories260K from llama2.c, pretrained on TinyStories; converted to Hugging Face's format by Tabtune, which adds a Q/A chat template for the demo.",
      licence: 'MIT',
      href: `${DEMO_MODEL_PATH}README.md`,
    },
  },
  {
    id: 'HuggingFaceTB/SmolLM2-135M-Instruct',
    label: 'SmolLM2 135M Instruct',
    note: 'Smallest useful chat model; a good first fine-tune.',
    approxParams: '135M',
    approxDownload: '270 MB',
    instruct: true,
  },
  {
    id: 'HuggingFaceTB/SmolLM2-135M',
    label: 'SmolLM2 135M',
    note: 'Base model for plain-text continuation.',
    approxParams: '135M',
    approxDownload: '270 MB',
    instruct: false,
  },
  {
    id: 'HuggingFaceTB/SmolLM2-360M-Instruct',
    label: 'SmolLM2 360M Instruct',
    note: 'Better answers, still light.',
    approxParams: '362M',
    approxDownload: '724 MB',
    instruct: true,
  },
  {
    id: 'HuggingFaceTB/SmolLM2-360M',
    label: 'SmolLM2 360M',
    note: 'Base model.',
    approxParams: '362M',
    approxDownload: '724 MB',
    instruct: false,
  },
  {
    id: 'Qwen/Qwen2.5-0.5B-Instruct',
    label: 'Qwen2.5 0.5B Instruct',
    note: 'Strong small multilingual chat model.',
    approxParams: '494M',
    approxDownload: '988 MB',
    instruct: true,
  },
  {
    id: 'Qwen/Qwen2.5-0.5B',
    label: 'Qwen2.5 0.5B',
    note: 'Base model.',
    approxParams: '494M',
    approxDownload: '988 MB',
    instruct: false,
  },
  {
    id: 'Qwen/Qwen3-0.6B',
    label: 'Qwen3 0.6B',
    note: 'Newest small Qwen; chat template with thinking mode.',
    approxParams: '596M',
    approxDownload: '1.5 GB',
    instruct: true,
  },
  {
    id: 'unsloth/gemma-3-270m-it',
    label: 'Gemma 3 270M IT',
    note: "Google's smallest Gemma 3 chat model (an ungated copy of google/gemma-3-270m-it); a 262k-token vocabulary.",
    approxParams: '268M',
    approxDownload: '536 MB',
    instruct: true,
  },
  {
    id: 'EleutherAI/pythia-160m',
    label: 'Pythia 160M (GPT-NeoX)',
    note: 'Research base model with fully public training data; plain text.',
    approxParams: '162M',
    approxDownload: '325 MB',
    instruct: false,
  },
  {
    id: 'facebook/opt-125m',
    label: 'OPT 125M',
    note: "Meta's small GPT-3-style base model; plain text.",
    approxParams: '125M',
    approxDownload: '250 MB',
    instruct: false,
  },
  {
    id: 'bigscience/bloom-560m',
    label: 'BLOOM 560M',
    note: 'Multilingual base model (46 languages), ALiBi positions; a 250k-token vocabulary.',
    approxParams: '559M',
    approxDownload: '1.1 GB',
    instruct: false,
  },
  {
    id: 'allenai/OLMo-2-0425-1B',
    label: 'OLMo 2 1B',
    note: 'Fully open base model from Ai2; needs a discrete GPU or Apple silicon.',
    approxParams: '1.5B',
    approxDownload: '3 GB',
    instruct: false,
  },
  {
    id: 'TinyLlama/TinyLlama-1.1B-Chat-v1.0',
    label: 'TinyLlama 1.1B Chat',
    note: 'Largest in the list; needs a discrete GPU or Apple silicon.',
    approxParams: '1.1B',
    approxDownload: '2.2 GB',
    instruct: true,
  },
  {
    id: 'openai-community/gpt2',
    label: 'GPT-2 (124M)',
    note: 'The classic; plain text only (no chat template).',
    approxParams: '124M',
    approxDownload: '548 MB',
    instruct: false,
  },
];

/** A model the user picked: from the list/Hub, the demo, or a local folder. */
export type ModelChoice =
  | { kind: 'demo'; id: string }
  | { kind: 'hub'; id: string; revision?: string }
  | { kind: 'files'; id: string; files: File[] };

export function catalogEntry(id: string): CatalogEntry | undefined {
  return CATALOG.find((e) => e.id === id);
}

/** Absolute URL of the demo model folder for the current page. */
export function demoBaseUrl(base: string = globalThis.location?.href ?? 'http://localhost/'): string {
  return new URL(DEMO_MODEL_PATH, base).href;
}

export function sourceSpec(choice: ModelChoice): ModelSourceSpec {
  switch (choice.kind) {
    case 'demo':
      return { kind: 'url', id: choice.id, baseUrl: demoBaseUrl() };
    case 'hub':
      return { kind: 'hub', id: choice.id, revision: choice.revision };
    case 'files':
      return { kind: 'files', id: choice.id, files: choice.files };
  }
}

export function storedSource(choice: ModelChoice): StoredModelSource {
  switch (choice.kind) {
    case 'demo':
      return { kind: 'demo', id: choice.id, path: DEMO_MODEL_PATH };
    case 'hub':
      return { kind: 'hub', id: choice.id, revision: choice.revision };
    case 'files':
      return { kind: 'files', id: choice.id };
  }
}

/** The choice that loads a stored source again, or null for a dropped folder (must be dropped again). */
export function choiceFromStored(s: StoredModelSource): ModelChoice | null {
  switch (s.kind) {
    case 'demo':
      return { kind: 'demo', id: s.id };
    case 'hub':
      return { kind: 'hub', id: s.id, revision: s.revision };
    case 'url':
      return null;
    case 'files':
      return null;
  }
}

/** Instruct/chat models get chat-formatted prompts in Compare by default. */
export function looksInstruct(id: string, hasChatTemplate: boolean): boolean {
  const e = catalogEntry(id);
  if (e) return e.instruct && hasChatTemplate;
  return hasChatTemplate && /instruct|chat|-it\b|qwen3/i.test(id);
}

/** "owner/name" by the Hub's rules ("." and ".." refused: they would resolve to other URLs). */
export function isHubId(s: string): boolean {
  return hubIdProblem(s.trim()) === null;
}
