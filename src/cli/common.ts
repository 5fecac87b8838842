/**
 * What the CLI commands share: checks of the files and folders they are given (before any GPU
 * work, so mistakes fail fast), reading a dataset file as UTF-8 and a PEFT adapter folder, and
 * opening the Engine on Node's WebGPU.
 */

import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Engine } from '../engine/engine';
import type { PeftFiles } from '../engine/types';
import { DEFAULT_TRAIN } from '../engine/defaults';
import { type ModelConfig, positionLimitText } from '../model/config';
import { type FlagSpec, type ParsedFlags, UsageError, num } from './args';

export const FORMAT: FlagSpec = { type: 'string', choices: ['text', 'alpaca', 'chat', 'auto'] };

/** Runs `f`; an adapter that does not fit the model is reported with the folder it came from. */
export async function withAdapterDir<T>(dir: string | undefined, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (dir && (e as Error).name === 'PeftError')
      throw new Error(`--adapter ${dir}: ${(e as Error).message}`, { cause: e });
    throw e;
  }
}

export async function openEngine(): Promise<Engine> {
  const [{ createNodeGpu }, { Engine }] = await Promise.all([import('../gpu/node'), import('../engine/engine')]);
  return new Engine(await createNodeGpu());
}

export function requireFile(path: string, what: string): string {
  const p = resolve(path);
  if (!existsSync(p)) throw new UsageError(`${what} "${path}" does not exist.`);
  if (!statSync(p).isFile()) throw new UsageError(`${what} "${path}" is a directory; expected a file.`);
  return p;
}

export function requireDir(path: string, what: string): string {
  const p = resolve(path);
  if (!existsSync(p)) throw new UsageError(`${what} "${path}" does not exist.`);
  if (!statSync(p).isDirectory()) throw new UsageError(`${what} "${path}" is a file; expected a directory.`);
  return p;
}

/** --out may exist (a directory) or be created: its nearest existing ancestor must be a directory. */
export function checkOutDir(path: string): string {
  const p = resolve(path);
  if (existsSync(p)) {
    if (!statSync(p).isDirectory())
      throw new UsageError(`--out "${path}" is a file; expected a directory (existing or to be created).`);
    return p;
  }
  for (let up = dirname(p); ; up = dirname(up)) {
    if (existsSync(up)) {
      if (!statSync(up).isDirectory())
        throw new UsageError(`--out "${path}" cannot be created: "${up}" is a file, not a directory.`);
      return p;
    }
    if (dirname(up) === up) return p;
  }
}

/**
 * A dataset file as text. It must be UTF-8 (a BOM is fine): a UTF-16 file (Windows "Unicode") or a
 * Latin-1 one would otherwise parse as garbage or train on replacement characters without a word.
 */
export async function readDataText(path: string, given: string): Promise<string> {
  const bytes = new Uint8Array(await readFile(path));
  if (bytes.length >= 2 && ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff))) {
    throw new Error(
      `--data file "${given}" is UTF-16 text (it starts with a UTF-16 byte order mark); expected UTF-8: save it as UTF-8.`,
    );
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    // Name the first line that is not UTF-8.
    const strict = new TextDecoder('utf-8', { fatal: true });
    let line = 1;
    for (let start = 0; start < bytes.length; line++) {
      let end = bytes.indexOf(0x0a, start);
      if (end < 0) end = bytes.length;
      try {
        strict.decode(bytes.subarray(start, end));
      } catch {
        break;
      }
      start = end + 1;
    }
    throw new Error(`--data file "${given}": line ${line} is not UTF-8 text; expected UTF-8 (save the file as UTF-8).`);
  }
}

export interface ModelPreflight {
  path: string;
  config: ModelConfig;
}

/** Checks the model folder and its config.json before any GPU work, so mistakes fail fast. */
export async function preflightModel(dir: string): Promise<ModelPreflight> {
  const path = requireDir(dir, '--model directory');
  if (!existsSync(join(path, 'config.json'))) {
    throw new UsageError(`--model "${dir}" has no config.json; expected a Hugging Face model folder.`);
  }
  const { parseConfig } = await import('../model/config');
  const config = parseConfig(await readFile(join(path, 'config.json'), 'utf8'), join(path, 'config.json'));
  return { path, config };
}

/**
 * --max-len against the model's positions: longer sequences would index past GPT-2's learned
 * position table (and past what any model was trained for). Without the flag, the default is
 * capped to the model's length.
 */
export function maxLenFor(f: ParsedFlags, command: string, model: ModelPreflight): number {
  const maxPos = model.config.maxPositions;
  const given = num(f, 'max-len');
  if (given === undefined) return maxPos > 0 ? Math.min(DEFAULT_TRAIN.maxLen, maxPos) : DEFAULT_TRAIN.maxLen;
  if (maxPos > 0 && given > maxPos) {
    throw new UsageError(
      `${command}: --max-len ${given} is longer than the model allows (${positionLimitText(model.config)}).`,
    );
  }
  return given;
}

export async function loadModelFrom(engine: Engine, path: string): Promise<void> {
  await engine.loadModel({ kind: 'dir', id: basename(path), path });
}

export async function readAdapter(dir: string, flag = '--adapter'): Promise<PeftFiles> {
  const path = requireDir(dir, `${flag} directory`);
  const cfg = join(path, 'adapter_config.json');
  const model = join(path, 'adapter_model.safetensors');
  if (!existsSync(cfg) || !existsSync(model)) {
    throw new UsageError(
      `${flag} "${dir}" must hold adapter_config.json and adapter_model.safetensors (a PEFT adapter folder).`,
    );
  }
  return { adapterConfig: await readFile(cfg, 'utf8'), adapterModel: new Uint8Array(await readFile(model)) };
}
