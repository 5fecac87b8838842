/**
 * What the `tabtune bench` commands share (bench.ts, bench-profile.ts): the device, a model shape
 * from a config.json, and where the human-readable lines go (the adapter's name: common.ts).
 */
import { UsageError } from './args';
import type { Gpu } from '../gpu/context';
import { type ShapeSource, shapeFromConfig } from '../bench/memory-bench';

/** The model shape of a config.json given to `command`'s --config. */
export async function readShape(path: string, command: string): Promise<ShapeSource> {
  const { readFile } = await import('node:fs/promises');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new UsageError(`${command}: cannot read --config ${path}: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${command}: --config ${path} is not JSON (${(e as Error).message}).`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) {
    throw new UsageError(`${command}: --config ${path} is not a JSON object (expected a model's config.json).`);
  }
  return shapeFromConfig(json as Record<string, unknown>, path);
}

export function log(json: boolean, line: string): void {
  (json ? process.stderr : process.stdout).write(`${line}\n`);
}

export async function openGpu(opts: { plain?: boolean } = {}): Promise<Gpu> {
  const { createNodeGpu } = await import('../gpu/node');
  return createNodeGpu(opts.plain ? { wantF16: false, wantSubgroups: false } : {});
}
