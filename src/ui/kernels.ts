/**
 * The user's choice of matmul kernels (Diagnostics): 'auto' (tuned for this GPU on its first run,
 * the choices kept in the worker's IndexedDB), 'off' (the baseline kernels, no tuning) or one member
 * of the family pinned; and of attention kernels: 'auto' (by device class), 'tiled' or 'direct'.
 * Both are kept in this browser (localStorage) and given to the GPU worker at start-up and on every
 * change. Browser tests set the matmul mode to 'off' so SwiftShader does not tune in every test.
 */
import type { AttentionMode, KernelMode } from '../engine/types';
import { MATMUL_FAMILY } from '../kernels/matmul/variants';
import type { SettingsStorage } from './settings';

export const KERNEL_MODE_KEY = 'tabtune-kernels';
export const ATTENTION_MODE_KEY = 'tabtune-attention';

/** The members that can be pinned, as Diagnostics lists them. */
export const PINNABLE = MATMUL_FAMILY.map((c) => ({ name: c.name, about: c.about }));

/** The mode as kept: 'auto', 'off' or 'pin:<member>'. */
export function kernelModeText(mode: KernelMode): string {
  return typeof mode === 'object' ? `pin:${mode.pin}` : mode;
}

export function parseKernelMode(text: string | null | undefined): KernelMode {
  if (text === 'off') return 'off';
  const pin = text?.startsWith('pin:') ? text.slice(4) : null;
  return pin && PINNABLE.some((m) => m.name === pin) ? { pin } : 'auto';
}

export function loadKernelMode(storage: SettingsStorage | undefined): KernelMode {
  return parseKernelMode(readSetting(storage, KERNEL_MODE_KEY));
}

export function saveKernelMode(storage: SettingsStorage | undefined, mode: KernelMode): void {
  writeSetting(storage, KERNEL_MODE_KEY, kernelModeText(mode));
}

export function parseAttentionMode(text: string | null | undefined): AttentionMode {
  return text === 'tiled' || text === 'direct' ? text : 'auto';
}

export function loadAttentionMode(storage: SettingsStorage | undefined): AttentionMode {
  return parseAttentionMode(readSetting(storage, ATTENTION_MODE_KEY));
}

export function saveAttentionMode(storage: SettingsStorage | undefined, mode: AttentionMode): void {
  writeSetting(storage, ATTENTION_MODE_KEY, mode);
}

/** A kept setting's text (null: none, or storage blocked). */
function readSetting(storage: SettingsStorage | undefined, key: string): string | null {
  try {
    return storage?.getItem(key) ?? null;
  } catch {
    return null;
  }
}

function writeSetting(storage: SettingsStorage | undefined, key: string, text: string): void {
  try {
    storage?.setItem(key, text);
  } catch {
    /* storage blocked: not kept */
  }
}
