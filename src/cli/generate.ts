/** `tabtune generate`: text from a prompt, with an adapter or without, streamed to stdout. */

import { resolve } from 'node:path';
import type { SamplingSettings } from '../engine/types';
import { type FlagSpec, type ParsedFlags, bool, num, parseFlags, str } from './args';
import { loadModelFrom, openEngine, preflightModel, withAdapterDir } from './common';
import { FROZEN_FLAGS, frozenFromFlags } from './frozen';
import { readAdapterForModel } from './loftq-guard';

/** transformers' generate arguments, shared with `tabtune chat`. */
export const SAMPLING_FLAGS: Record<string, FlagSpec> = {
  'max-new-tokens': { type: 'int', min: 1 },
  temperature: { type: 'number', min: 0 },
  'top-k': { type: 'int', min: 0 },
  'top-p': { type: 'number', min: 0, max: 1, exclusiveMin: true },
  seed: { type: 'int', min: 0 },
  'repetition-penalty': { type: 'number', min: 0, exclusiveMin: true },
};

/** The sampling flags given, else `d`'s values. */
export function samplingFromFlags(
  f: ParsedFlags,
  d: Omit<SamplingSettings, 'chat' | 'seed'>,
): Omit<SamplingSettings, 'chat'> {
  return {
    maxNewTokens: num(f, 'max-new-tokens') ?? d.maxNewTokens,
    temperature: num(f, 'temperature') ?? d.temperature,
    topK: num(f, 'top-k') ?? d.topK,
    topP: num(f, 'top-p') ?? d.topP,
    seed: num(f, 'seed') ?? 0,
    repetitionPenalty: num(f, 'repetition-penalty') ?? d.repetitionPenalty,
  };
}

const GENERATE_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', required: true },
  adapter: { type: 'string' },
  'any-base': { type: 'bool' },
  prompt: { type: 'string', required: true },
  chat: { type: 'bool' },
  ...SAMPLING_FLAGS,
  ...FROZEN_FLAGS,
};

export async function generate(argv: string[]): Promise<number> {
  const f = parseFlags(argv, GENERATE_FLAGS, 'generate');
  const temperature = num(f, 'temperature') ?? 0;
  if (temperature === 0) {
    const sampling = ['top-k', 'top-p', 'seed'].filter((k) => f[k] !== undefined);
    if (sampling.length) {
      process.stderr.write(
        `tabtune: warning: ${sampling.map((k) => `--${k}`).join(', ')} ignored: greedy decoding (--temperature 0, the default) ` +
          'does not sample; give --temperature above 0 to sample.\n',
      );
    }
  }
  const model = await preflightModel(str(f, 'model')!);
  const adapterDir = str(f, 'adapter');
  const adapterFiles = adapterDir
    ? await readAdapterForModel(f, { command: 'generate', dir: adapterDir, modelDir: model.path })
    : undefined;
  const frozen = frozenFromFlags(f, 'generate', model);
  const engine = await openEngine();
  try {
    await loadModelFrom(engine, model.path, frozen);
    const adapter = adapterDir && adapterFiles ? { key: resolve(adapterDir), files: adapterFiles } : null;
    const sampling = {
      ...samplingFromFlags(f, { maxNewTokens: 64, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 }),
      chat: bool(f, 'chat') ?? false,
    };
    const res = await withAdapterDir(adapterDir, () =>
      engine.generate(str(f, 'prompt')!, adapter, sampling, (delta) => process.stdout.write(delta)),
    );
    process.stdout.write('\n');
    if (res.stopReason === 'context') {
      process.stderr.write(
        `tabtune: generation stopped after ${res.tokens} tokens: the model's context (${model.config.maxPositions} positions) is full.\n`,
      );
    }
    return 0;
  } finally {
    engine.dispose();
  }
}
