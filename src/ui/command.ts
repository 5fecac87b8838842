/**
 * "Show as command": where the app's model and dataset are, as the CLI would be given them (run
 * from a clone of the repository), and the two command lines of the current settings.
 */
import { type CommandContext, commandText, recipeArgs, trainArgs } from '../engine/command-line';
import { DEMO_DATASET_NAME, DEMO_DATASET_PATH, DEMO_MODEL_ID, DEMO_MODEL_PATH } from './catalog';
import type { AppState } from './state';

export interface RunCommands {
  train: string;
  recipe: string;
  /** What to fetch first (a Hub model the CLI reads from a folder), or null. */
  note: string | null;
}

const lastPart = (id: string) =>
  id
    .replace(/[\\/]+$/, '')
    .split(/[\\/]/)
    .pop() || 'model';

export function commandContext(s: AppState): { ctx: CommandContext; note: string | null } | null {
  const info = s.model.info;
  if (!info) return null;
  const src = s.model.source;
  const demo = src?.kind === 'demo' || info.id === DEMO_MODEL_ID;
  const folder = demo ? `public/${DEMO_MODEL_PATH.replace(/\/$/, '')}` : `./${lastPart(info.id)}`;
  const data =
    s.dataset.fileName === DEMO_DATASET_NAME
      ? `public/${DEMO_DATASET_PATH}`
      : `./${s.dataset.fileName || 'data.jsonl'}`;
  const note =
    src?.kind === 'hub'
      ? `Download ${info.id} from the Hub into ${folder} first (export-recipe takes the Hub id as it is).`
      : demo
        ? null
        : `Put the model's files (config.json, tokenizer.json, *.safetensors) in ${folder}.`;
  return {
    ctx: {
      model: folder,
      recipeModel: src?.kind === 'hub' ? info.id : folder,
      data,
      format: s.dataset.summary?.format ?? s.dataset.format,
      frozen: s.frozen,
    },
    note,
  };
}

export function runCommands(s: AppState): RunCommands | null {
  const c = commandContext(s);
  if (!c) return null;
  return {
    train: commandText(trainArgs(s.lora, s.train, c.ctx)),
    recipe: commandText(recipeArgs(s.lora, s.train, c.ctx)),
    note: c.note,
  };
}
