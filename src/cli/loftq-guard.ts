/**
 * Before `merge`, `eval`, `generate`, `chat` or `train`/`export-recipe --init-from` uses a LoftQ
 * adapter: is --model its quantized backbone (src/lora/loftq-grid.ts)? Reads only the first layer's
 * one or two targeted weights (their byte ranges in the safetensors files); any other adapter is not
 * checked. --any-base skips the check.
 */
import { existsSync, statSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Nf4GridMiss, isLoftqAdapterConfig, weightGridMiss } from '../lora/loftq-grid';
import { type HeaderEntry, parseSafetensorsHeader, tensorToF32 } from '../model/safetensors';
import type { PeftFiles } from '../engine/types';
import { LOFTQ_BASE_DIR } from '../engine/merge-zip';
import { type ParsedFlags, UsageError, bool, str } from './args';
import { readAdapter } from './common';

const WEIGHTS = 'model.safetensors';
const INDEX = 'model.safetensors.index.json';

/** The targeted modules' paths (base_model.model.<path>.lora_A.weight), first layer first. */
function targetPaths(adapterModel: Uint8Array): string[] {
  const paths = new Set<string>();
  for (const key of parseSafetensorsHeader(adapterModel, 'adapter_model.safetensors').entries.keys()) {
    const m = /^(?:base_model\.model\.)?(.+)\.lora_A(?:\.[^.]+)?\.weight$/.exec(key);
    if (m) paths.add(m[1]!);
  }
  const layer = (p: string) => Number(/\.(\d+)\./.exec(p)?.[1] ?? Infinity);
  return [...paths].sort((a, b) => layer(a) - layer(b) || (a < b ? -1 : a > b ? 1 : 0));
}

/** Which file of the model folder holds each weight. */
async function weightFiles(modelDir: string): Promise<Map<string, string> | null> {
  if (existsSync(join(modelDir, WEIGHTS))) {
    const header = await readHeader(join(modelDir, WEIGHTS));
    return new Map([...header.entries.keys()].map((k) => [k, WEIGHTS]));
  }
  if (!existsSync(join(modelDir, INDEX))) return null;
  const map = (JSON.parse(await readFile(join(modelDir, INDEX), 'utf8')) as { weight_map?: Record<string, string> })
    .weight_map;
  return map ? new Map(Object.entries(map)) : null;
}

async function readHeader(path: string): Promise<ReturnType<typeof parseSafetensorsHeader>> {
  const fh = await open(path, 'r');
  try {
    const len = new Uint8Array(8);
    await fh.read(len, 0, 8, 0);
    const n = Number(new DataView(len.buffer).getBigUint64(0, true));
    const bytes = new Uint8Array(8 + Math.min(n, 100_000_000));
    await fh.read(bytes, 0, bytes.byteLength, 0);
    return parseSafetensorsHeader(bytes, path);
  } finally {
    await fh.close();
  }
}

/** One tensor's values as float32, reading only its bytes. */
async function readTensor(path: string, key: string): Promise<{ entry: HeaderEntry; values: Float32Array } | null> {
  const header = await readHeader(path);
  const entry = header.entries.get(key);
  if (!entry || !['F32', 'F16', 'BF16'].includes(entry.dtype)) return null;
  const [begin, end] = entry.data_offsets;
  const bytes = new Uint8Array(end - begin);
  const fh = await open(path, 'r');
  try {
    await fh.read(bytes, 0, bytes.byteLength, header.dataStart + begin);
  } finally {
    await fh.close();
  }
  return { entry, values: tensorToF32({ dtype: entry.dtype, shape: entry.shape, data: bytes }) };
}

/** The loftq-base folder `tabtune train --init loftq` (or the app's export) put beside the adapter, if any. */
function loftqBaseNear(adapterDir: string): string | null {
  for (const p of [join(adapterDir, LOFTQ_BASE_DIR), join(adapterDir, '..', LOFTQ_BASE_DIR)]) {
    if (existsSync(join(p, 'config.json')) && statSync(p).isDirectory()) return p;
  }
  return null;
}

function missText(m: Nf4GridMiss): string {
  return (
    `its NF4 block ${m.block} (64 values) has ${m.distinct} distinct values and value ${m.value.toPrecision(6)} / ` +
    `absmax ${m.absmax.toPrecision(6)} lies ${m.distance.toFixed(4)} from the nearest NF4 code`
  );
}

/**
 * Stops with a UsageError when `adapter` (from folder `adapterDir`, given as `flag`) is a LoftQ
 * adapter and --model `modelDir` is not its backbone. `command` names the command for the message.
 */
async function checkLoftqBase(opts: {
  command: string;
  flag: string;
  adapterDir: string;
  adapter: PeftFiles;
  modelDir: string;
  /** --model as given, for the message (default modelDir). */
  modelShown?: string;
  anyBase: boolean;
}): Promise<void> {
  const { command, flag, adapterDir, adapter, modelDir } = opts;
  const shown = opts.modelShown ?? modelDir;
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(adapter.adapterConfig) as Record<string, unknown>;
  } catch {
    return; // the adapter's own reader reports a broken config
  }
  if (!cfg || typeof cfg !== 'object' || !isLoftqAdapterConfig(cfg) || opts.anyBase) return;
  const files = await weightFiles(modelDir);
  if (!files) return; // the model reader reports a folder without weights
  const checked: string[] = [];
  let miss: { key: string; file: string; m: Nf4GridMiss } | null = null;
  for (const path of targetPaths(adapter.adapterModel)) {
    const key = [`${path}.weight`, `${path.split('.').slice(1).join('.')}.weight`].find((k) => files.has(k));
    if (!key) continue;
    const file = files.get(key)!;
    const t = await readTensor(join(modelDir, file), key);
    if (!t) continue;
    const [rows = 1, cols = t.values.length] = t.entry.shape;
    const m = weightGridMiss(t.values, rows, t.entry.shape.length === 2 ? cols : t.values.length, t.entry.dtype);
    checked.push(key);
    if (m) {
      miss = { key, file, m };
      break;
    }
    if (checked.length === 2) break;
  }
  if (checked.length === 0) {
    process.stderr.write(
      `tabtune: ${command}: ${flag} ${adapterDir} is a LoftQ adapter, but none of its targeted weights was found in ` +
        `--model ${shown}, so it could not be checked that the model is its quantized backbone\n`,
    );
    return;
  }
  if (!miss) return;
  const near = loftqBaseNear(adapterDir);
  const why = cfg.init_lora_weights === 'loftq' ? 'init_lora_weights "loftq"' : 'a loftq_config';
  const named =
    typeof cfg.base_model_name_or_path === 'string'
      ? ` (adapter_config.json names ${JSON.stringify(cfg.base_model_name_or_path)})`
      : '';
  const instead = near
    ? `pass --model ${near} (the ${LOFTQ_BASE_DIR} folder beside the adapter)`
    : `pass as --model the LoftQ backbone the adapter was initialised with${named} (tabtune train --init loftq saves it as OUT/${LOFTQ_BASE_DIR})`;
  throw new UsageError(
    `${command}: ${flag} ${adapterDir} is a LoftQ adapter (adapter_config.json: ${why}): it fits the NF4-quantized ` +
      `backbone it was initialised with, not the original model, and --model ${shown} is not that backbone: its ` +
      `weight "${miss.key}" (${miss.file}) is not NF4-dequantized (${missText(miss.m)}). ${instead[0]!.toUpperCase()}${instead.slice(1)}, ` +
      `or add --any-base to go on with this model anyway.`,
  );
}

/**
 * An adapter folder given as `flag` (readAdapter), checked to fit --model `modelDir` when it is a
 * LoftQ adapter (checkLoftqBase; the flags' --any-base skips that). `modelDir` null: not a local
 * folder (export-recipe's Hub id), nothing to check.
 */
export async function readAdapterForModel(
  f: ParsedFlags,
  opts: { command: string; dir: string; flag?: string; modelDir: string | null },
): Promise<PeftFiles> {
  const flag = opts.flag ?? '--adapter';
  const adapter = await readAdapter(opts.dir, flag);
  if (opts.modelDir !== null) {
    await checkLoftqBase({
      command: opts.command,
      flag,
      adapterDir: opts.dir,
      adapter,
      modelDir: opts.modelDir,
      modelShown: str(f, 'model'),
      anyBase: bool(f, 'any-base') ?? false,
    });
  }
  return adapter;
}
