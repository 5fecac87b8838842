/**
 * `tabtune bench profile`: per-kernel GPU time of one training step and of decoded tokens, grouped
 * by kernel family (src/bench/profile-bench.ts), on the training-step benchmark's model shapes.
 *
 *   node bin/tabtune.mjs bench profile [--config config.json] [--layers N] [--seq 64] [--batch 1]
 *     [--r 16] [--quantize nf4] [--checkpoint] [--tokens 4] [--no-tune] [--json]
 *
 * Default shape SmolLM2-135M's (30 layers); with --config a config.json's (bench/configs), at its
 * own depth unless --layers. Needs the adapter's `timestamp-query` feature (exits 1 without it).
 */
import { parseFlags, type FlagSpec, bool, num, str } from './args';
import { log, openGpu, readShape } from './bench-common';
import { adapterName } from './common';
import { benchProfile } from '../bench/profile-bench';

const PROFILE_FLAGS: Record<string, FlagSpec> = {
  config: { type: 'string' },
  layers: { type: 'int', min: 1 },
  seq: { type: 'int', min: 1 },
  batch: { type: 'int', min: 1 },
  r: { type: 'int', min: 1 },
  quantize: { type: 'string', choices: ['nf4', 'none'] },
  checkpoint: { type: 'bool' },
  tokens: { type: 'int', min: 1 },
  tune: { type: 'bool' },
  json: { type: 'bool' },
};

export async function runBenchProfile(argv: string[]): Promise<number> {
  const f = parseFlags(argv, PROFILE_FLAGS, 'bench profile');
  const json = bool(f, 'json') ?? false;
  const configPath = str(f, 'config');
  const shape = configPath ? await readShape(configPath, 'bench profile') : null;
  const layers = num(f, 'layers') ?? shape?.fullLayers ?? 30;
  const gpu = await openGpu();
  try {
    log(json, `adapter: ${adapterName(gpu)}`);
    const config = shape ? { config: shape.atDepth(layers), name: shape.name } : undefined;
    // A bitsandbytes 4-bit config is profiled in 4 bits (its own double-quant setting), as bench memory does.
    const stored = config?.config.quantization;
    const r = await benchProfile(gpu, {
      config,
      layers,
      seq: num(f, 'seq') ?? 64,
      batch: num(f, 'batch') ?? 1,
      r: num(f, 'r') ?? 16,
      frozen: stored
        ? { quantize: 'nf4', doubleQuant: stored.doubleQuant }
        : { quantize: str(f, 'quantize') === 'nf4' ? 'nf4' : null },
      checkpoint: bool(f, 'checkpoint') ?? false,
      tokens: num(f, 'tokens') ?? 4,
      tune: bool(f, 'tune') ?? true,
      log: (l) => log(json, l),
    });
    if (json) process.stdout.write(`${JSON.stringify({ adapter: adapterName(gpu), ...r })}\n`);
    return 0;
  } finally {
    gpu.destroy();
  }
}
