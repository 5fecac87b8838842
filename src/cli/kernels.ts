/**
 * Which matmul kernels the CLI runs (src/kernels/matmul/variants.ts, tune.ts):
 *   TABTUNE_KERNELS=<member>   pins one member of the family wherever it can serve (e.g. direct8x4)
 *   TABTUNE_KERNELS=baseline   no tuning: the kernels every device ran before the family
 *   (unset)                    autotuned: choices cached per device in a file, tuned on first use
 *   TABTUNE_ATTENTION=tiled|direct  pins the attention kernels (src/kernels/attention.ts); unset:
 *                              direct on CPU drivers with subgroups, tiled elsewhere (direct on a
 *                              device without the subgroups it needs runs tiled, with a note)
 * The cache file is kernels.json in $TABTUNE_CACHE_DIR, else $XDG_CACHE_HOME/tabtune, else
 * ~/.cache/tabtune: { "<device key>": { "<shape class>": "<member>" } }. A file that cannot be read
 * or written only means tuning again.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { KernelChoiceStore } from '../engine/types';
import type { Gpu } from '../gpu/context';
import { attentionSet } from '../kernels/attention-variants';
import { pinMember } from '../kernels/matmul/tune';
import { UsageError } from './args';

/** The file that keeps the tuned choices. */
export function kernelCachePath(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.TABTUNE_CACHE_DIR || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'tabtune');
  return join(dir, 'kernels.json');
}

function readAll(path: string): Record<string, Record<string, string>> {
  try {
    const v: unknown = JSON.parse(readFileSync(path, 'utf8'));
    return v && typeof v === 'object' ? (v as Record<string, Record<string, string>>) : {};
  } catch {
    return {};
  }
}

/** Choices per device key in one JSON file (written whole, through a temporary name). */
export function fileChoiceStore(path: string): KernelChoiceStore {
  return {
    load: (key) => Promise.resolve(readAll(path)[key] ?? null),
    save: (key, choices) => {
      try {
        const all = readAll(path);
        all[key] = choices;
        mkdirSync(dirname(path), { recursive: true });
        const tmp = `${path}.${process.pid}.tmp`;
        writeFileSync(tmp, `${JSON.stringify(all, null, 1)}\n`);
        renameSync(tmp, path);
      } catch {
        // Not kept: the next run tunes again.
      }
      return Promise.resolve();
    },
  };
}

/**
 * Applies TABTUNE_ATTENTION and TABTUNE_KERNELS to `gpu` and returns the choice store to tune with (null: no tuning).
 * An unknown member name is a usage error naming the family; `note` gets a line when a pinned
 * attention set cannot run on this device (what runs instead).
 */
export function kernelSetup(
  gpu: Gpu,
  env: NodeJS.ProcessEnv = process.env,
  note: (line: string) => void = (line) => process.stderr.write(`tabtune: ${line}\n`),
): KernelChoiceStore | null {
  const a = env.TABTUNE_ATTENTION?.trim();
  if (a) {
    if (a !== 'tiled' && a !== 'direct') {
      throw new UsageError(`TABTUNE_ATTENTION: "${a}" is not an attention kernel set; use "tiled" or "direct".`);
    }
    gpu.kernels.attention = a;
    const runs = attentionSet(gpu);
    if (runs.set !== a) note(`TABTUNE_ATTENTION=${a}: ${runs.why}.`);
  }
  const v = env.TABTUNE_KERNELS?.trim();
  if (v === 'baseline') return null;
  if (v) {
    try {
      pinMember(gpu, v);
    } catch (e) {
      throw new UsageError(
        `TABTUNE_KERNELS: ${(e as Error).message} Or "baseline" (no tuning), or leave it unset (autotuned).`,
      );
    }
    return null;
  }
  return fileChoiceStore(kernelCachePath(env));
}
