/**
 * The user's LoRA and training settings across model changes and reloads.
 *
 * Until the user edits a setting, a model starts with its preset (general defaults, its family's
 * targets, the catalog's values). Once edited, the settings are the user's: loading another model
 * keeps every one that still applies and says what had to change (target modules the new model
 * does not have, a max length past its positions). They are saved in the browser (localStorage, a
 * few hundred bytes) and restored on reload. The model card's cost is computed from the settings
 * the model would actually get, so its numbers are the ones a run will use.
 */
import type { LoraSettings, TrainSettings } from '../engine/types';
import { DEFAULT_LORA, DEFAULT_TRAIN } from '../engine/defaults';
import { ALL_LINEAR } from '../lora/config';
import { catalogEntry } from './catalog';

export interface Settings {
  lora: LoraSettings;
  train: TrainSettings;
}

/** What a model offers that the settings depend on. */
export interface ModelFacts {
  id: string;
  /** Its family's default targets; null when the family has none (then all-linear). */
  defaultTargets: string[] | null;
  linearModules: string[];
  maxPositions: number;
}

/**
 * The settings a model starts with: general defaults, its family's targets, the catalog's preset.
 * In the browser a run checkpoints and validates periodically by default, so a closed tab loses
 * little and the curve shows a validation line.
 */
export function presetSettings(id: string, defaultTargets: string[] | null, maxPositions = 0): Settings {
  const e = catalogEntry(id);
  const lora = { ...DEFAULT_LORA, target_modules: defaultTargets ?? DEFAULT_LORA.target_modules, ...e?.lora };
  const train = { ...DEFAULT_TRAIN, checkpointEvery: 25, evalEvery: 50, ...e?.train };
  // A model with a short context (e.g. a small GPT-2 variant) starts within it.
  if (maxPositions > 0 && train.maxLen > maxPositions) train.maxLen = maxPositions;
  return { lora, train };
}

/**
 * The settings `model` gets: its preset when the user has not edited any, else the user's own with
 * what does not apply to this model changed; `changes` says what changed, as sentences.
 */
export function settingsForModel(
  current: Settings,
  edited: boolean,
  model: ModelFacts,
): Settings & { changes: string[] } {
  if (!edited) return { ...presetSettings(model.id, model.defaultTargets, model.maxPositions), changes: [] };
  const lora = { ...current.lora };
  const train = { ...current.train };
  const changes: string[] = [];
  const t = lora.target_modules;
  if (Array.isArray(t)) {
    const missing = t.filter((name) => !model.linearModules.includes(name));
    if (missing.length) {
      const next = model.defaultTargets ?? ALL_LINEAR;
      lora.target_modules = next;
      changes.push(
        `${model.id} has no ${missing.join(', ')} modules (it has ${model.linearModules.join(', ')}): ` +
          `targets are now ${Array.isArray(next) ? next.join(', ') : next}.`,
      );
    }
  }
  if (model.maxPositions > 0 && train.maxLen > model.maxPositions) {
    changes.push(
      `Max length ${train.maxLen} is past ${model.id}'s ${model.maxPositions} positions: now ${model.maxPositions}.`,
    );
    train.maxLen = model.maxPositions;
  }
  return { lora, train, changes };
}

const KEY = 'tabtune-settings';

/** Where the settings are kept between visits (the browser's localStorage; tests pass a map). */
export interface SettingsStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** The saved settings, each field checked against the defaults' types; null when none or unreadable. */
export function loadSettings(storage: SettingsStorage | undefined): Settings | null {
  try {
    const raw = storage?.getItem(KEY);
    if (!raw) return null;
    const v = JSON.parse(raw) as Partial<Settings>;
    const pick = <T extends object>(defaults: T, saved: unknown): T => {
      const out = { ...defaults };
      if (!saved || typeof saved !== 'object') return out;
      for (const [k, d] of Object.entries(defaults)) {
        const s = (saved as Record<string, unknown>)[k];
        const ok =
          k === 'target_modules'
            ? typeof s === 'string' || (Array.isArray(s) && s.every((x) => typeof x === 'string'))
            : typeof s === typeof d;
        if (s !== undefined && ok) (out as Record<string, unknown>)[k] = s;
      }
      return out;
    };
    return { lora: pick(DEFAULT_LORA, v.lora), train: pick(DEFAULT_TRAIN, v.train) };
  } catch {
    return null;
  }
}

export function saveSettings(storage: SettingsStorage | undefined, s: Settings): void {
  try {
    storage?.setItem(KEY, JSON.stringify({ lora: s.lora, train: s.train }));
  } catch {
    /* storage full or blocked: the settings just are not kept */
  }
}
