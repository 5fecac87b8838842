/**
 * Presets: named sets of LoRA and training settings. A few are built in; the user's own are saved
 * in the browser (localStorage, beside the settings) and shared as small JSON files
 * ({"tabtune_preset": 1, "name", "lora", "train"}), read back with every field checked.
 * A preset sets only what it names; applied to a model, targets and the max length still have to
 * fit it (settings.ts settingsForModel says what changed).
 */
import type { LoraSettings, TrainSettings } from '../engine/types';
import { DEFAULT_LORA, DEFAULT_TRAIN } from '../engine/defaults';
import { METHOD_IDS, type PeftMethod } from '../lora/methods';
import type { SettingsStorage } from './settings';

export interface Preset {
  name: string;
  lora: Partial<LoraSettings>;
  train: Partial<TrainSettings>;
  builtIn?: boolean;
}

export const BUILT_IN_PRESETS: readonly Preset[] = [
  {
    name: 'Quick check (30 steps)',
    builtIn: true,
    lora: { r: 8, lora_alpha: 16, lora_dropout: 0.05 },
    train: { steps: 30, epochs: 0, lr: 2e-4, evalEvery: 10, checkpointEvery: 0, warmup: 0 },
  },
  {
    name: 'Standard (1 epoch, r 8)',
    builtIn: true,
    lora: { r: 8, lora_alpha: 16, lora_dropout: 0.05, use_rslora: false },
    train: { steps: 0, epochs: 1, lr: 2e-4, scheduler: 'linear', warmup: 0, batch: 4, gradAccum: 1 },
  },
  {
    name: 'More capacity (r 32, all-linear, 2 epochs)',
    builtIn: true,
    lora: { r: 32, lora_alpha: 64, lora_dropout: 0.05, target_modules: 'all-linear' },
    train: { steps: 0, epochs: 2, lr: 1e-4, scheduler: 'cosine', warmup: 10 },
  },
  {
    name: 'Long examples, little memory',
    builtIn: true,
    lora: {},
    train: { maxLen: 2048, batch: 1, gradAccum: 8, activationCheckpointing: true, packing: true },
  },
];

const KEY = 'tabtune-presets';
export const PRESET_FORMAT = 1;

export class PresetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PresetError';
  }
}

/** The fields of `given` that the defaults have, each of the defaults' type; anything else is an error. */
function checked<T extends object>(defaults: T, given: unknown, file: string, part: string): Partial<T> {
  if (given === undefined) return {};
  if (!given || typeof given !== 'object' || Array.isArray(given))
    throw new PresetError(`${file}: "${part}" must be an object of settings, got ${JSON.stringify(given)}.`);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(given)) {
    if (!(k in defaults))
      throw new PresetError(
        `${file}: "${part}.${k}" is not a setting Tabtune knows; expected one of ${Object.keys(defaults).join(', ')}.`,
      );
    if (k === 'method' && !METHOD_IDS.includes(v as PeftMethod))
      throw new PresetError(
        `${file}: "${part}.method" must be one of ${METHOD_IDS.join(', ')}, got ${JSON.stringify(v)}.`,
      );
    const d = (defaults as Record<string, unknown>)[k];
    const ok =
      k === 'target_modules'
        ? v === 'all-linear' || (Array.isArray(v) && v.every((x) => typeof x === 'string'))
        : typeof v === typeof d && (typeof v !== 'number' || Number.isFinite(v));
    if (!ok)
      throw new PresetError(
        `${file}: "${part}.${k}" must be ${k === 'target_modules' ? 'a list of module names or "all-linear"' : `a ${typeof d}`}, got ${JSON.stringify(v)}.`,
      );
    out[k] = v;
  }
  return out as Partial<T>;
}

/** Reads a shared preset file; errors name the file and the field. */
export function parsePreset(text: string, file = 'preset file'): Preset {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new PresetError(`${file}: not valid JSON (${(e as Error).message}); expected a Tabtune preset.`);
  }
  const o = v as Record<string, unknown> | null;
  if (!o || typeof o !== 'object' || o.tabtune_preset !== PRESET_FORMAT)
    throw new PresetError(`${file}: not a Tabtune preset (expected "tabtune_preset": ${PRESET_FORMAT} at the top).`);
  if (typeof o.name !== 'string' || !o.name.trim())
    throw new PresetError(`${file}: "name" must be a non-empty string.`);
  return {
    name: o.name.trim(),
    lora: checked(DEFAULT_LORA, o.lora, file, 'lora'),
    train: checked(DEFAULT_TRAIN, o.train, file, 'train'),
  };
}

/** A preset as the JSON file that shares it. */
export function presetJson(p: Preset): string {
  return `${JSON.stringify({ tabtune_preset: PRESET_FORMAT, name: p.name, lora: p.lora, train: p.train }, null, 2)}\n`;
}

/** The user's saved presets (unreadable entries are skipped). */
export function loadPresets(storage: SettingsStorage | undefined): Preset[] {
  try {
    const raw = storage?.getItem(KEY);
    if (!raw) return [];
    const list = JSON.parse(raw) as unknown[];
    const out: Preset[] = [];
    for (const item of Array.isArray(list) ? list : []) {
      try {
        out.push(parsePreset(JSON.stringify(item)));
      } catch {
        /* an entry from another version: skipped */
      }
    }
    return out;
  } catch {
    return [];
  }
}

/** Saves (or replaces, by name) a preset; returns the new list. */
export function savePreset(storage: SettingsStorage | undefined, p: Preset): Preset[] {
  const list = loadPresets(storage).filter((x) => x.name !== p.name);
  list.push({ name: p.name, lora: p.lora, train: p.train });
  write(storage, list);
  return list;
}

export function deletePreset(storage: SettingsStorage | undefined, name: string): Preset[] {
  const list = loadPresets(storage).filter((x) => x.name !== name);
  write(storage, list);
  return list;
}

function write(storage: SettingsStorage | undefined, list: Preset[]): void {
  storage?.setItem(
    KEY,
    JSON.stringify(list.map((p) => ({ tabtune_preset: PRESET_FORMAT, name: p.name, lora: p.lora, train: p.train }))),
  );
}
