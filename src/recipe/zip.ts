/** A recipe folder as one zip (the app's "Run at scale" download), every file under one top folder. */
import { zipSync } from 'fflate';
import type { RecipeFile } from './recipe';

export function zipRecipe(files: RecipeFile[], folder: string): Uint8Array {
  const entries: Record<string, [Uint8Array, { os: number; attrs: number }]> = {};
  const enc = new TextEncoder();
  for (const f of files) {
    // Unix modes in the high bits of the external attributes, so unzip keeps train.py executable.
    const mode = f.executable ? 0o100755 : 0o100644;
    entries[`${folder}/${f.path}`] = [
      typeof f.data === 'string' ? enc.encode(f.data) : f.data,
      { os: 3, attrs: mode << 16 },
    ];
  }
  return zipSync(entries, { level: 6 });
}
