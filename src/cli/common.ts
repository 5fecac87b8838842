/**
 * What the CLI commands share: checks of the files and folders they are given (before any GPU
 * work, so mistakes fail fast), loading a dataset file (read by range) and a PEFT adapter folder, and
 * opening the Engine on Node's WebGPU.
 */

import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Engine } from '../engine/engine';
import type { Gpu } from '../gpu/context';
import type { DatasetSummary, FrozenWeightsSettings, PeftFiles } from '../engine/types';
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

/** The Engine on Node's WebGPU, its matmul kernels pinned or autotuned as TABTUNE_KERNELS says, attention as TABTUNE_ATTENTION (cli/kernels.ts). */
export async function openEngine(): Promise<Engine> {
  const [{ createNodeGpu }, { Engine }, threads, { kernelSetup }] = await Promise.all([
    import('../gpu/node'),
    import('../engine/engine'),
    import('../train/data/node-threads'),
    import('./kernels'),
  ]);
  const gpu = await createNodeGpu();
  const engine = new Engine(gpu);
  engine.setTokenizerWorkers(threads.nodeTokenizerWorker, threads.tokenizerThreadCount());
  try {
    engine.setKernelTuning(kernelSetup(gpu));
  } catch (e) {
    gpu.destroy();
    throw e;
  }
  return engine;
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

/** The WebGPU adapter as `tabtune info` and the bench commands name it: vendor / architecture (description). */
export function adapterName(gpu: Gpu): string {
  const i = gpu.info;
  return `${i.vendor || '?'} / ${i.architecture || '?'}${i.description ? ` (${i.description})` : ''}`;
}

/** The issues of a dataset, one line each on stderr (the first ones, then how many more). */
export function reportIssues(ds: DatasetSummary): void {
  for (const issue of ds.issues)
    process.stderr.write(`tabtune: ${ds.fileName}:${issue.line}: ${issue.message} (skipped)\n`);
  if (ds.issueCount > ds.issues.length)
    process.stderr.write(`tabtune: ${ds.fileName}: ... and ${ds.issueCount - ds.issues.length} more lines skipped\n`);
  const cut = ds.truncated;
  if (cut.examples > 0) {
    process.stderr.write(
      `tabtune: ${ds.fileName}: ${ds.tokensEstimated ? 'in the first records, ' : ''}${cut.examples} example${cut.examples === 1 ? ' is' : 's are'} ` +
        `longer than --max-len and cut to it (line${cut.lines.length === 1 ? '' : 's'} ${cut.lines.join(', ')}${cut.examples > cut.lines.length ? ', ...' : ''}); ` +
        'their end is not trained on: raise --max-len or shorten them\n',
    );
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

export async function loadModelFrom(engine: Engine, path: string, frozen: FrozenWeightsSettings): Promise<void> {
  await engine.loadModel({ kind: 'dir', id: basename(path), path }, undefined, frozen);
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
