/**
 * `tabtune bench tune`: what autotuning adds to a cold first run (src/kernels/matmul/tune.ts).
 *
 * A run of the shipped demo model (stories260K: 5 layers, hidden 64, f32 weights; LoRA r = 8 on
 * every linear layer, dropout 0.05) trains one step on each of six batch shapes (1x24 to 8x256
 * tokens: 11 shape classes) and then each again, in one of three modes:
 *   tune           as a first run tunes now: the first steps run the prior (the device class's
 *                  likely best member, gpu.kernels.prior) and note their shape classes, every
 *                  class is tuned (clear losers left out), the second steps run the tuned kernels;
 *   tune-baseline  as before: the first steps run the baseline kernels (tile64, gemv), and every
 *                  candidate of every class is timed;
 *   given          the choices of the last run that tuned are applied up front (applyChoices, as
 *                  a run with a cache file does) and both steps of each shape run them.
 * Every mode compiles the shaders the run uses, so a tuning mode minus given is tuning's own cost:
 * the losing candidates' compiles, the kernels of the first steps the tuned run does not use, and
 * the timing. Each run is a fresh child process with an empty Mesa shader cache
 * (MESA_SHADER_CACHE_DIR: lavapipe compiles a shader at its first dispatch and keeps it on disk);
 * the modes run in rotating order round by round, and CPU seconds of the process are reported
 * beside wall time (the driver compiles on threads of the process; CPU time is steadier than wall
 * time on a shared machine).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Gpu } from '../gpu/context';
import { applyChoices, currentChoices, tuneMatmul, type TuneResult } from '../kernels/matmul/tune';
import { loraScaleInfo } from '../lora/config';
import { GpuLora } from '../lora/gpu-lora';
import { initLoraModules } from '../lora/init';
import { loraConfigFromSettings, resolveTargets } from '../lora/targets';
import { GpuModel } from '../model/gpu-model';
import { loadModel } from '../model/load';
import { DirSource } from '../model/source';
import { type MicroBatch, Trainer } from '../train/trainer';
import { BENCH_OPTIMIZER } from './model-bench';

/** The shipped demo model's folder (stories260K; also the data bench's default tokenizer). */
export const DEMO_MODEL = fileURLToPath(new URL('../../public/models/stories260K', import.meta.url));
const BIN = fileURLToPath(new URL('../../bin/tabtune.mjs', import.meta.url));

/** The batch shapes [B, S] of a run (the token-count classes of a short run with varied lengths). */
const SHAPES: [number, number][] = [
  [1, 24],
  [2, 48],
  [4, 64],
  [2, 128],
  [4, 256],
  [8, 256],
];

export type TuneMode = 'tune' | 'tune-baseline' | 'given';

/** One child run's figures (ms; CPU: user + system of the whole process, every thread). */
export interface TuneRun {
  mode: TuneMode;
  classes: number;
  /** The steps, tuning included, from the first step to the last. */
  wall_ms: number;
  cpu_ms: number;
  /** The first steps alone (every shape once). */
  first_wall_ms: number;
  first_cpu_ms: number;
  /** tuneMatmul alone. */
  tune_wall_ms: number;
  tune_cpu_ms: number;
  /** Pipelines created by the first steps, by tuning, and by the second steps. */
  compiled_first: number;
  compiled_tuning: number;
  compiled_after: number;
  choices: Record<string, string>;
  tuning: Pick<TuneResult, 'shapeClass' | 'chosen' | 'skipped' | 'ms' | 'compiled' | 'compileMs' | 'timedMs'>[];
}

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

function batch(B: number, S: number, V: number): MicroBatch {
  const T = B * S;
  const ids = new Uint32Array(T);
  const targets = new Uint32Array(T);
  const positions = new Uint32Array(T);
  for (let i = 0; i < T; i++) {
    ids[i] = (i * 7919 + 3) % V;
    targets[i] = (i * 104729 + 1) % V;
    positions[i] = i % S;
  }
  return { B, S, ids, targets, positions, counted: T };
}

/** One run in this process (the child's part; see the file comment). */
export async function tuneRun(gpu: Gpu, mode: TuneMode, choices: Record<string, string> = {}): Promise<TuneRun> {
  const loaded = await loadModel(new DirSource(DEMO_MODEL));
  const model = await GpuModel.upload(gpu, loaded);
  const cfg = loraConfigFromSettings(
    { r: 8, lora_alpha: 16, lora_dropout: 0.05, target_modules: 'all-linear', use_rslora: false },
    model.config.modelType,
  );
  const targets = resolveTargets(cfg, model.linears);
  const lora = GpuLora.fromArrays(gpu, model.linears, initLoraModules(cfg, targets, 1), (m) => loraScaleInfo(cfg, m));
  const maxTokens = Math.max(...SHAPES.map(([B, S]) => B * S));
  const trainer = new Trainer(gpu, model, lora, BENCH_OPTIMIZER, { maxTokens, lossEvery: 1000 });
  const micro = SHAPES.map(([B, S]) => batch(B, S, model.config.vocabSize));
  gpu.kernels.choices.clear();
  gpu.kernels.seen.clear();
  // As the engine runs a run that tunes (engine/device.ts): untuned classes run the prior member.
  gpu.kernels.prior = mode === 'tune';
  gpu.kernels.tally.clear();
  if (mode === 'given') applyChoices(gpu, choices);
  try {
    const steps = async () => {
      for (const m of micro) await trainer.trainStep([m], false);
      await gpu.sync();
    };
    const w0 = performance.now();
    const c0 = cpuMs();
    const p0 = gpu.pipelineCount;
    await steps();
    const p1 = gpu.pipelineCount;
    const tw = performance.now();
    const tc = cpuMs();
    const tuning = mode === 'given' ? [] : await tuneMatmul(gpu, { everyCandidate: mode === 'tune-baseline' });
    const tune_wall_ms = performance.now() - tw;
    const tune_cpu_ms = cpuMs() - tc;
    const p2 = gpu.pipelineCount;
    await steps();
    return {
      mode,
      classes: mode === 'given' ? Object.keys(choices).length : tuning.length,
      wall_ms: performance.now() - w0,
      cpu_ms: cpuMs() - c0,
      first_wall_ms: tw - w0,
      first_cpu_ms: tc - c0,
      tune_wall_ms,
      tune_cpu_ms,
      compiled_first: p1 - p0,
      compiled_tuning: p2 - p1,
      compiled_after: gpu.pipelineCount - p2,
      choices: mode === 'given' ? choices : currentChoices(gpu),
      tuning: tuning.map(({ shapeClass, chosen, skipped, ms, compiled, compileMs, timedMs }) => ({
        shapeClass,
        chosen,
        skipped,
        ms,
        compiled,
        compileMs,
        timedMs,
      })),
    };
  } finally {
    trainer.dispose();
    lora.dispose();
    model.dispose();
  }
}

/** Runs `tabtune bench tune --child MODE` in a fresh process with an empty Mesa shader cache. */
function child(mode: TuneMode, choices: Record<string, string>, env: NodeJS.ProcessEnv): Promise<TuneRun> {
  const cache = mkdtempSync(join(tmpdir(), 'tabtune-mesa-'));
  const args = [BIN, 'bench', 'tune', '--child', mode, '--choices', JSON.stringify(choices)];
  return new Promise<TuneRun>((resolve, reject) => {
    const p = spawn(process.execPath, args, {
      env: { ...env, MESA_SHADER_CACHE_DIR: cache },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => {
      rmSync(cache, { recursive: true, force: true });
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0) reject(new Error(`bench tune: the ${mode} run exited with ${code}.`));
      else resolve(JSON.parse(last) as TuneRun);
    });
  });
}

/** Per tuning mode: medians over the rounds, ms per class tuned. */
export interface TuneCost {
  /** The run minus the given run of the same round. */
  added_wall_ms: number;
  added_cpu_ms: number;
  /** tuneMatmul alone. */
  tune_wall_ms: number;
  tune_cpu_ms: number;
  /** Shaders compiled by the run beyond the given run's (median). */
  extra_shaders: number;
}

export interface TuneCostBench {
  rounds: number;
  runs: TuneRun[];
  tune: TuneCost;
  'tune-baseline': TuneCost;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const MODES: TuneMode[] = ['tune', 'tune-baseline', 'given'];

/** The parent: `rounds` rounds of the three modes, in rotating order (see the file comment). */
export async function benchTuneCost(opts: {
  rounds: number;
  log: (l: string) => void;
  env?: NodeJS.ProcessEnv;
}): Promise<TuneCostBench> {
  const env = opts.env ?? process.env;
  const runs: TuneRun[] = [];
  const added: Record<'tune' | 'tune-baseline', { wall: number; cpu: number; shaders: number }[]> = {
    tune: [],
    'tune-baseline': [],
  };
  let choices: Record<string, string> = {};
  const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  const pipelines = (r: TuneRun) => r.compiled_first + r.compiled_tuning + r.compiled_after;
  const show = (r: TuneRun) =>
    opts.log(
      `${r.mode}: ${r.classes} classes, run ${s(r.wall_ms)} wall / ${s(r.cpu_ms)} CPU ` +
        `(first steps ${s(r.first_wall_ms)} / ${s(r.first_cpu_ms)})` +
        (r.mode !== 'given' ? `; tuneMatmul ${s(r.tune_wall_ms)} wall / ${s(r.tune_cpu_ms)} CPU` : '') +
        `; pipelines ${r.compiled_first} (first steps) + ${r.compiled_tuning} (tuning) + ${r.compiled_after} (after)`,
    );
  for (let i = 0; i < opts.rounds; i++) {
    // Rotated each round; the given run takes the choices of the last run that tuned (the first
    // round tunes before it).
    const order = MODES.map((_, j) => MODES[(j + 3 - (i % 3)) % 3]!);
    const round: Partial<Record<TuneMode, TuneRun>> = {};
    for (const mode of order) {
      const r = await child(mode, choices, env);
      if (mode !== 'given') choices = r.choices;
      round[mode] = r;
      runs.push(r);
      show(r);
    }
    const g = round.given!;
    for (const mode of ['tune', 'tune-baseline'] as const) {
      const t = round[mode]!;
      const per = Math.max(1, t.classes);
      const a = {
        wall: (t.wall_ms - g.wall_ms) / per,
        cpu: (t.cpu_ms - g.cpu_ms) / per,
        shaders: pipelines(t) - pipelines(g),
      };
      added[mode].push(a);
      opts.log(
        `  round ${i + 1}, ${mode}: tuning added ${s(a.wall)} wall, ${s(a.cpu)} CPU per class, ${a.shaders} shaders`,
      );
    }
  }
  const cost = (mode: 'tune' | 'tune-baseline'): TuneCost => {
    const mine = runs.filter((r) => r.mode === mode);
    return {
      added_wall_ms: median(added[mode].map((a) => a.wall)),
      added_cpu_ms: median(added[mode].map((a) => a.cpu)),
      tune_wall_ms: median(mine.map((r) => r.tune_wall_ms / Math.max(1, r.classes))),
      tune_cpu_ms: median(mine.map((r) => r.tune_cpu_ms / Math.max(1, r.classes))),
      extra_shaders: median(added[mode].map((a) => a.shaders)),
    };
  };
  return { rounds: opts.rounds, runs, tune: cost('tune'), 'tune-baseline': cost('tune-baseline') };
}
