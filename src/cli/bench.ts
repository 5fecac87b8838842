/**
 * `tabtune bench`: benchmarks on the available WebGPU adapter (not tests; nothing here asserts).
 *
 *   node bin/tabtune.mjs bench [--json] [--quick]
 *   node bin/tabtune.mjs bench lora-linear --m M --k K --n N --r R [--json]
 *   node bin/tabtune.mjs bench memory [--config config.json] [--quantize nf4] [--no-double-quant]
 *     [--seq 512] [--r 16] [--no-checkpoint] [--layers 1,2] [--steps N] [--allocations-only] [--json]
 *     (peak GPU memory of one training step of any model shape, default Qwen2.5-0.5B's,
 *     extrapolated from two depths; --allocations-only makes and counts the buffers without the
 *     compute, at the full depth unless --layers says otherwise; src/bench/memory-bench.ts)
 *   node bin/tabtune.mjs bench data [--records 100000] [--sample 2000] [--model DIR] [--json]
 *     (the data path on a synthetic Alpaca set: records/s and bytes/record; src/bench/data-bench.ts)
 *   node bin/tabtune.mjs bench methods [--layers 4] [--seq 64] [--batch 1] [--rounds 3] [--json]
 *     (one training step of each PEFT method side by side, as ratios to LoRA; src/bench/methods-bench.ts)
 *   node bin/tabtune.mjs bench kernels [--m 512 --k 1024 --n 1024 --r 16] [--quick] [--json]
 *     (the matmul family side by side against the baseline, with the device's FMA peak and copy
 *     bandwidth, after tuning the layer's shapes; src/bench/kernels-bench.ts; then the same layer
 *     in TF.js's WebGPU backend alternately with tabtune's, src/bench/tfjs-bench.ts)
 *   node bin/tabtune.mjs bench attention [--batch 1 --seq 256 --heads 9 --kv-heads 3 --head-dim 64] [--quick] [--json]
 *     (attention forward and forward + backward with the tiled and the direct kernels alternately;
 *     src/bench/attention-bench.ts)
 *   node bin/tabtune.mjs bench tune [--rounds 3] [--json]
 *     (what autotuning adds to a cold first run: the demo model's run tuning its kernels, as now and
 *     with the baseline kernels first as before, against the same run given the tuned choices up
 *     front; fresh processes with empty Mesa shader caches in rotating order; wall and CPU seconds
 *     per shape class; src/bench/tune-bench.ts)
 *   node bin/tabtune.mjs bench generate [--layers 30] [--tokens 16] [--rounds 2] [--no-tune] [--json]
 *     (greedy generation tokens/s on the SmolLM2-135M shape as now and as before issue 12's
 *     generation work, timed alternately, after tuning the matmul kernels; src/bench/model-bench.ts)
 *   node bin/tabtune.mjs bench profile [--config config.json] [--layers N] [--seq 64] [--tokens 4] [--json]
 *     (per-kernel GPU time of one training step and of decoded tokens by kernel family, from
 *     timestamp queries; flags in bench-profile.ts, measurements in src/bench/profile-bench.ts)
 *
 * With --json the last stdout line is one JSON object with every number of the run, all measured
 * side by side in the same process so ratios are meaningful on a noisy shared machine. This file
 * parses the flags and prints; the measurements are in src/bench/.
 */

import { UsageError, parseFlags, type FlagSpec, num, bool, str } from './args';
import { log, openGpu, readShape } from './bench-common';
import { adapterName } from './common';
import { benchAttention } from '../bench/attention-bench';
import { benchData } from '../bench/data-bench';
import { benchFeatures } from '../bench/features-bench';
import { benchKernels } from '../bench/kernels-bench';
import { benchTfjs } from '../bench/tfjs-bench';
import { benchLoraLinear, benchMatmul } from '../bench/linear-bench';
import { benchMemory } from '../bench/memory-bench';
import { benchMethods } from '../bench/methods-bench';
import { benchGeneration, benchTrainingStep } from '../bench/model-bench';
import { DEMO_MODEL, type TuneMode, benchTuneCost, tuneRun } from '../bench/tune-bench';

const ONE_FLAGS: Record<string, FlagSpec> = {
  m: { type: 'int', min: 1, required: true },
  k: { type: 'int', min: 1, required: true },
  n: { type: 'int', min: 1, required: true },
  r: { type: 'int', min: 1, required: true },
  json: { type: 'bool' },
};

const MEMORY_FLAGS: Record<string, FlagSpec> = {
  config: { type: 'string' },
  quantize: { type: 'string', choices: ['nf4', 'none'] },
  'double-quant': { type: 'bool' },
  seq: { type: 'int', min: 8 },
  r: { type: 'int', min: 1 },
  'no-checkpoint': { type: 'bool' },
  layers: { type: 'string' },
  steps: { type: 'int', min: 0 },
  'allocations-only': { type: 'bool' },
  json: { type: 'bool' },
};

const DATA_FLAGS: Record<string, FlagSpec> = {
  records: { type: 'int', min: 1 },
  sample: { type: 'int', min: 1 },
  model: { type: 'string' },
  json: { type: 'bool' },
};

const KERNELS_FLAGS: Record<string, FlagSpec> = {
  m: { type: 'int', min: 1 },
  k: { type: 'int', min: 1 },
  n: { type: 'int', min: 1 },
  r: { type: 'int', min: 1 },
  quick: { type: 'bool' },
  json: { type: 'bool' },
};

const METHODS_FLAGS: Record<string, FlagSpec> = {
  layers: { type: 'int', min: 1 },
  seq: { type: 'int', min: 8 },
  batch: { type: 'int', min: 1 },
  rounds: { type: 'int', min: 1 },
  json: { type: 'bool' },
};

const ATTENTION_FLAGS: Record<string, FlagSpec> = {
  batch: { type: 'int', min: 1 },
  seq: { type: 'int', min: 1 },
  heads: { type: 'int', min: 1 },
  'kv-heads': { type: 'int', min: 1 },
  'head-dim': { type: 'int', min: 1 },
  quick: { type: 'bool' },
  json: { type: 'bool' },
};

const GENERATE_FLAGS: Record<string, FlagSpec> = {
  layers: { type: 'int', min: 1 },
  tokens: { type: 'int', min: 1 },
  rounds: { type: 'int', min: 1 },
  'no-tune': { type: 'bool' },
  json: { type: 'bool' },
};

const TUNE_FLAGS: Record<string, FlagSpec> = {
  rounds: { type: 'int', min: 1 },
  child: { type: 'string', choices: ['tune', 'tune-baseline', 'given'] },
  choices: { type: 'string' },
  json: { type: 'bool' },
};

const SUITE_FLAGS: Record<string, FlagSpec> = {
  json: { type: 'bool' },
  quick: { type: 'bool' },
  seq: { type: 'int', min: 8 },
  layers: { type: 'int', min: 1 },
};

/** bench attention's shape: one SmolLM2-135M layer (9 heads, 3 KV heads, head dim 64) unless told. */
function attentionShape(f: ReturnType<typeof parseFlags>, quick: boolean) {
  return {
    batch: num(f, 'batch') ?? 1,
    seq: num(f, 'seq') ?? (quick ? 64 : 256),
    heads: num(f, 'heads') ?? 9,
    kvHeads: num(f, 'kv-heads') ?? 3,
    headDim: num(f, 'head-dim') ?? 64,
  };
}

async function dawnPollingSwitch(): Promise<(mode: 'timer' | 'spin') => void> {
  return (await import('../gpu/node')).setDawnPolling;
}

export async function runBench(argv: string[]): Promise<number> {
  if (argv[0] === 'profile') return (await import('./bench-profile')).runBenchProfile(argv.slice(1));
  if (argv[0] === 'lora-linear') {
    const f = parseFlags(argv.slice(1), ONE_FLAGS, 'bench lora-linear');
    const gpu = await openGpu();
    try {
      const r = await benchLoraLinear(gpu, num(f, 'm')!, num(f, 'k')!, num(f, 'n')!, num(f, 'r')!);
      const json = bool(f, 'json') ?? false;
      log(json, `adapter: ${adapterName(gpu)}`);
      log(
        json,
        `lora-linear ${r.shape} r=${r.r}: fwd ${r.ms_forward.toFixed(2)} ms, bwd ${r.ms_backward.toFixed(2)} ms, ` +
          `${r.gflops.toFixed(2)} GFLOP/s; plain ${r.ms_plain.toFixed(2)} ms, unfused ${r.ms_unfused.toFixed(2)} ms, ` +
          `unfused with epilogue adds ${r.ms_unfused_epilogue.toFixed(2)} ms`,
      );
      if (json) {
        process.stdout.write(
          `${JSON.stringify({ ms_forward: r.ms_forward, ms_backward: r.ms_backward, gflops: r.gflops, ms_plain: r.ms_plain, ms_unfused: r.ms_unfused, ms_unfused_epilogue: r.ms_unfused_epilogue })}\n`,
        );
      }
      return 0;
    } finally {
      gpu.destroy();
    }
  }
  if (argv[0] === 'memory') {
    const f = parseFlags(argv.slice(1), MEMORY_FLAGS, 'bench memory');
    const json = bool(f, 'json') ?? false;
    const layerArg = str(f, 'layers');
    const layers = layerArg?.split(',').map((x) => Number(x));
    if (layers && (layers.length !== 2 || layers.some((x) => !Number.isInteger(x) || x < 1))) {
      throw new UsageError(`bench memory: --layers takes two depths like 1,2; got "${layerArg}".`);
    }
    const quantize = str(f, 'quantize') === 'nf4' ? 'nf4' : null;
    const doubleQuant = bool(f, 'double-quant');
    if (doubleQuant !== undefined && !quantize) {
      throw new UsageError('bench memory: --no-double-quant applies to 4-bit frozen weights; add --quantize nf4.');
    }
    const allocationsOnly = bool(f, 'allocations-only') ?? false;
    if (allocationsOnly && (num(f, 'steps') ?? 0) > 0) {
      throw new UsageError('bench memory: --allocations-only runs no compute, so it cannot time steps; drop --steps.');
    }
    const configPath = str(f, 'config');
    const shape = configPath ? await readShape(configPath, 'bench memory') : undefined;
    const gpu = await openGpu();
    try {
      log(json, `adapter: ${adapterName(gpu)}`);
      const r = await benchMemory(gpu, {
        seq: num(f, 'seq') ?? 512,
        r: num(f, 'r') ?? 16,
        checkpoint: !(bool(f, 'no-checkpoint') ?? false),
        layers: layers && [layers[0]!, layers[1]!],
        shape,
        frozen: { quantize, doubleQuant: doubleQuant ?? true },
        steps: num(f, 'steps') ?? 0,
        allocationsOnly,
        log: (l) => log(json, l),
      });
      if (json) process.stdout.write(`${JSON.stringify({ adapter: adapterName(gpu), ...r })}\n`);
      return 0;
    } finally {
      gpu.destroy();
    }
  }
  if (argv[0] === 'data') {
    const f = parseFlags(argv.slice(1), DATA_FLAGS, 'bench data');
    const json = bool(f, 'json') ?? false;
    const r = await benchData({
      records: num(f, 'records') ?? 100_000,
      sample: num(f, 'sample') ?? 2000,
      modelDir: str(f, 'model') ?? DEMO_MODEL,
      log: (l) => log(json, l),
    });
    if (json) process.stdout.write(`${JSON.stringify(r)}\n`);
    return 0;
  }
  if (argv[0] === 'generate') {
    const f = parseFlags(argv.slice(1), GENERATE_FLAGS, 'bench generate');
    const json = bool(f, 'json') ?? false;
    const gpu = await openGpu();
    try {
      log(json, `adapter: ${adapterName(gpu)}`);
      const r = await benchGeneration(gpu, {
        layers: num(f, 'layers') ?? 30,
        tokens: num(f, 'tokens') ?? 16,
        rounds: num(f, 'rounds') ?? 2,
        tune: !(bool(f, 'no-tune') ?? false),
        log: (l) => log(json, l),
        dawnPolling: await dawnPollingSwitch(),
      });
      if (json) process.stdout.write(`${JSON.stringify({ adapter: adapterName(gpu), ...r })}\n`);
      return 0;
    } finally {
      gpu.destroy();
    }
  }
  if (argv[0] === 'methods') {
    const f = parseFlags(argv.slice(1), METHODS_FLAGS, 'bench methods');
    const json = bool(f, 'json') ?? false;
    const gpu = await openGpu();
    try {
      log(json, `adapter: ${adapterName(gpu)}`);
      const r = await benchMethods(gpu, {
        layers: num(f, 'layers') ?? 4,
        seq: num(f, 'seq') ?? 64,
        batch: num(f, 'batch') ?? 1,
        rounds: num(f, 'rounds') ?? 3,
        log: (l) => log(json, l),
      });
      if (json) process.stdout.write(`${JSON.stringify({ adapter: adapterName(gpu), ...r })}\n`);
      return 0;
    } finally {
      gpu.destroy();
    }
  }
  if (argv[0] === 'attention') {
    const f = parseFlags(argv.slice(1), ATTENTION_FLAGS, 'bench attention');
    const json = bool(f, 'json') ?? false;
    const quick = bool(f, 'quick') ?? false;
    const gpu = await openGpu();
    try {
      log(json, `adapter: ${adapterName(gpu)}`);
      const r = await benchAttention(gpu, {
        ...attentionShape(f, quick),
        budgetMs: quick ? 1000 : 6000,
        log: (l) => log(json, l),
      });
      if (json) process.stdout.write(`${JSON.stringify({ adapter: adapterName(gpu), ...r })}\n`);
      return 0;
    } finally {
      gpu.destroy();
    }
  }
  if (argv[0] === 'tune') {
    const f = parseFlags(argv.slice(1), TUNE_FLAGS, 'bench tune');
    const mode = str(f, 'child') as TuneMode | undefined;
    if (mode) {
      // One run of the pairs (src/bench/tune-bench.ts), its figures as one JSON line.
      const gpu = await openGpu();
      try {
        const r = await tuneRun(gpu, mode, JSON.parse(str(f, 'choices') ?? '{}') as Record<string, string>);
        process.stdout.write(`${JSON.stringify(r)}\n`);
        return 0;
      } finally {
        gpu.destroy();
      }
    }
    const json = bool(f, 'json') ?? false;
    const r = await benchTuneCost({ rounds: num(f, 'rounds') ?? 3, log: (l) => log(json, l) });
    const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
    for (const mode of ['tune', 'tune-baseline'] as const) {
      const c = r[mode];
      log(
        json,
        `${mode}: tuning added per class (median of ${r.rounds} rounds) ${s(c.added_wall_ms)} wall, ` +
          `${s(c.added_cpu_ms)} CPU, ${c.extra_shaders} shaders in all; tuneMatmul alone ` +
          `${s(c.tune_wall_ms)} wall, ${s(c.tune_cpu_ms)} CPU per class`,
      );
    }
    if (json) process.stdout.write(`${JSON.stringify(r)}\n`);
    return 0;
  }
  if (argv[0] === 'kernels') {
    const f = parseFlags(argv.slice(1), KERNELS_FLAGS, 'bench kernels');
    const json = bool(f, 'json') ?? false;
    const quick = bool(f, 'quick') ?? false;
    const gpu = await openGpu();
    try {
      log(json, `adapter: ${adapterName(gpu)}`);
      const size = {
        M: num(f, 'm') ?? (quick ? 128 : 512),
        K: num(f, 'k') ?? (quick ? 256 : 1024),
        N: num(f, 'n') ?? (quick ? 256 : 1024),
        r: num(f, 'r') ?? 16,
        budgetMs: quick ? 1000 : 6000,
        log: (l: string) => log(json, l),
      };
      const r = await benchKernels(gpu, { ...size, tuned: true });
      const tfjs = await benchTfjs(gpu, size);
      if (json) process.stdout.write(`${JSON.stringify({ adapter: adapterName(gpu), ...r, tfjs })}\n`);
      return 0;
    } finally {
      gpu.destroy();
    }
  }
  const f = parseFlags(argv, SUITE_FLAGS, 'bench');
  const json = bool(f, 'json') ?? false;
  const quick = bool(f, 'quick') ?? false;
  const gpu = await openGpu();
  const budget = quick ? 800 : 2500;
  try {
    const out: Record<string, unknown> = {
      adapter: adapterName(gpu),
      runtime: gpu.info.runtime,
      f16: gpu.features.f16,
      subgroups: gpu.features.subgroups,
      subgroup_lanes: gpu.features.subgroupLanes,
      date: new Date().toISOString(),
    };
    log(json, `adapter: ${out.adapter}`);
    // The kernel family against the fixed baseline first (the LoRA-layer target shape).
    const layer = {
      M: quick ? 128 : 512,
      K: quick ? 256 : 1024,
      N: quick ? 256 : 1024,
      r: 16,
      budgetMs: quick ? 1000 : 6000,
      log: (l: string) => log(json, l),
    };
    out.kernels = await benchKernels(gpu, { ...layer, tuned: true });
    // The same layer in TF.js's WebGPU backend, alternately with tabtune's (skipped without TF.js).
    out.tfjs = await benchTfjs(gpu, layer);
    // The attention kernels alone, tiled against direct (one SmolLM2-135M layer).
    out.attention = await benchAttention(gpu, {
      ...attentionShape({}, quick),
      budgetMs: quick ? 1000 : 4000,
      log: (l: string) => log(json, l),
    });
    const shapes: [number, number, number][] = quick
      ? [
          [128, 576, 576],
          [128, 576, 1536],
        ]
      : [
          [512, 576, 576],
          [512, 1536, 576],
          [512, 576, 1536],
          [512, 576, 49152],
        ];
    const matmul = [];
    for (const [M, K, N] of shapes) {
      const r = await benchMatmul(gpu, M, K, N, budget);
      matmul.push(r);
      log(json, `matmul ${r.shape} (bf16 W): ${r.ms.toFixed(2)} ms, ${r.gflops.toFixed(2)} GFLOP/s`);
    }
    out.matmul = matmul;
    const lora = [];
    const M = quick ? 128 : 512;
    for (const [K, N] of [
      [576, 576],
      [576, 1536],
    ] as const) {
      for (const r of [8, 16, 64]) {
        const b = await benchLoraLinear(gpu, M, K, N, r, budget);
        lora.push(b);
        log(
          json,
          `lora-linear ${b.shape} r=${r}: fused fwd+bwd ${(b.ms_forward + b.ms_backward).toFixed(2)} ms; ` +
            `plain fwd+dX ${b.ms_plain.toFixed(2)} ms (ratio ${b.ratio_vs_plain.toFixed(3)}); ` +
            `unfused ${b.ms_unfused.toFixed(2)} ms (fused is ${b.speedup_vs_unfused.toFixed(2)}x faster); ` +
            `unfused with epilogue adds ${b.ms_unfused_epilogue.toFixed(2)} ms (${b.speedup_vs_unfused_epilogue.toFixed(2)}x)`,
        );
      }
    }
    out.lora_linear = lora;
    const plain = await openGpu({ plain: true });
    try {
      out.features = await benchFeatures(gpu, plain, { quick, log: (l) => log(json, l) });
    } finally {
      plain.destroy();
    }
    const stepOpts = {
      seq: num(f, 'seq') ?? (quick ? 32 : 64),
      layers: num(f, 'layers') ?? (quick ? 4 : 30),
      log: (l: string) => log(json, l),
    };
    // Baseline and tuned kernels alternately on the same steps (the before / after).
    // ... and the attention kernels: tiled and direct (CPU drivers' default) alternately.
    out.train_step = await benchTrainingStep(gpu, { ...stepOpts, compareTuned: true, compareAttention: true });
    out.train_step_checkpointed = await benchTrainingStep(gpu, { ...stepOpts, checkpoint: true });
    // The PEFT methods side by side on a few layers (LoRA = 1).
    out.methods = await benchMethods(gpu, {
      layers: quick ? 2 : 4,
      seq: stepOpts.seq,
      rounds: quick ? 2 : 3,
      log: stepOpts.log,
    });
    const gen = await benchGeneration(gpu, {
      dawnPolling: await dawnPollingSwitch(),
      layers: num(f, 'layers') ?? (quick ? 4 : 30),
      tokens: quick ? 4 : 16,
      log: (l: string) => log(json, l),
    });
    out.generation = gen;
    out.data = await benchData({
      records: quick ? 20_000 : 100_000,
      sample: quick ? 500 : 2000,
      modelDir: DEMO_MODEL,
      log: (l: string) => log(json, l),
    });
    if (json) process.stdout.write(`${JSON.stringify(out)}\n`);
    return 0;
  } finally {
    gpu.destroy();
  }
}
