/**
 * The `tabtune` command line: train, evaluate and generate with LoRA adapters on WebGPU from Node,
 * through the same Engine the browser app runs in its worker.
 *
 *   node bin/tabtune.mjs train --model DIR --data FILE --out DIR [...]
 *   node bin/tabtune.mjs eval --model DIR [--adapter DIR] --data FILE [--json]
 *   node bin/tabtune.mjs generate --model DIR [--adapter DIR] --prompt TEXT
 *   node bin/tabtune.mjs info | selftest | bench
 *
 * Exit codes: 0 success, 1 runtime failure (bad data, GPU error), 2 usage error.
 */

import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import type { Engine } from '../engine/engine';
import type { LoraSettings, PeftFiles, TrainProgress, TrainSettings } from '../engine/types';
import { DEFAULT_TRAIN } from '../engine/defaults';
import { type FlagSpec, type ParsedFlags, UsageError, bool, num, parseFlags, str } from './args';

const USAGE = `tabtune: LoRA fine-tuning on WebGPU

  tabtune train --model DIR --data FILE --out DIR [--format text|alpaca|chat|auto]
     [--targets q_proj,v_proj|all-linear] [--r 8] [--alpha 16] [--dropout 0.05] [--rslora]
     [--init-from ADAPTER_DIR] [--optimizer adamw|sgd] [--lr 2e-4] [--weight-decay 0]
     [--steps N | --epochs E] [--batch B] [--grad-accum G] [--max-len N]
     [--scheduler constant|linear|cosine] [--warmup N] [--max-grad-norm 1.0 (0 = off)]
     [--no-shuffle] [--seed S] [--val-fraction 0] [--loss-every 1] [--checkpoint-every N] [--resume]
     [--activation-checkpointing] [--json]
  tabtune eval --model DIR [--adapter DIR] --data FILE [--format ...] [--max-len N] [--json]
  tabtune generate --model DIR [--adapter DIR] --prompt TEXT [--chat] [--max-new-tokens N]
     [--temperature 0] [--top-k K] [--top-p P] [--seed S]
  tabtune info        the WebGPU adapter in use
  tabtune selftest    run the kernels against the float64 reference
  tabtune bench       benchmarks (see README, Performance)
`;

const FORMAT: FlagSpec = { type: 'string', choices: ['text', 'alpaca', 'chat', 'auto'] };

const TRAIN_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', required: true },
  data: { type: 'string', required: true },
  out: { type: 'string', required: true },
  format: FORMAT,
  targets: { type: 'string' },
  r: { type: 'int', min: 1, max: 4096 },
  alpha: { type: 'number', min: 0, exclusiveMin: true },
  dropout: { type: 'number', min: 0, max: 0.99 },
  rslora: { type: 'bool' },
  'init-from': { type: 'string' },
  optimizer: { type: 'string', choices: ['adamw', 'sgd'] },
  lr: { type: 'number', min: 0, exclusiveMin: true },
  'weight-decay': { type: 'number', min: 0 },
  steps: { type: 'int', min: 1 },
  epochs: { type: 'number', min: 0, exclusiveMin: true },
  batch: { type: 'int', min: 1 },
  'grad-accum': { type: 'int', min: 1 },
  'max-len': { type: 'int', min: 2 },
  scheduler: { type: 'string', choices: ['constant', 'linear', 'cosine'] },
  warmup: { type: 'int', min: 0 },
  'max-grad-norm': { type: 'number', min: 0 },
  shuffle: { type: 'bool' },
  seed: { type: 'int', min: 0 },
  'val-fraction': { type: 'number', min: 0, max: 0.5 },
  'loss-every': { type: 'int', min: 1 },
  'checkpoint-every': { type: 'int', min: 0 },
  resume: { type: 'bool' },
  'activation-checkpointing': { type: 'bool' },
  json: { type: 'bool' },
};

const EVAL_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', required: true },
  adapter: { type: 'string' },
  data: { type: 'string', required: true },
  format: FORMAT,
  'max-len': { type: 'int', min: 2 },
  batch: { type: 'int', min: 1 },
  json: { type: 'bool' },
};

const GENERATE_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', required: true },
  adapter: { type: 'string' },
  prompt: { type: 'string', required: true },
  chat: { type: 'bool' },
  'max-new-tokens': { type: 'int', min: 1 },
  temperature: { type: 'number', min: 0 },
  'top-k': { type: 'int', min: 0 },
  'top-p': { type: 'number', min: 0, max: 1, exclusiveMin: true },
  seed: { type: 'int', min: 0 },
};

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'train':
        return await train(parseFlags(rest, TRAIN_FLAGS, 'train'));
      case 'eval':
        return await evaluate(parseFlags(rest, EVAL_FLAGS, 'eval'));
      case 'generate':
        return await generate(parseFlags(rest, GENERATE_FLAGS, 'generate'));
      case 'info':
        return await info();
      case 'selftest':
        return await selftest();
      case 'bench': {
        const { runBench } = await import('../bench/bench');
        return await runBench(rest);
      }
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${command}". Commands: train, eval, generate, info, selftest, bench.`);
    }
  } catch (e) {
    const err = e as Error;
    process.stderr.write(`tabtune: ${err.message}\n`);
    if (process.env.TABTUNE_DEBUG && err.stack) process.stderr.write(`${err.stack}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}

async function openEngine(): Promise<Engine> {
  const [{ createNodeGpu }, { Engine }] = await Promise.all([import('../gpu/node'), import('../engine/engine')]);
  return new Engine(await createNodeGpu());
}

function requireFile(path: string, what: string): string {
  const p = resolve(path);
  if (!existsSync(p)) throw new UsageError(`${what} "${path}" does not exist.`);
  return p;
}

/** Checks the model folder and its config.json before any GPU work, so mistakes fail fast. */
async function preflightModel(dir: string): Promise<string> {
  const path = requireFile(dir, '--model directory');
  if (!existsSync(join(path, 'config.json'))) {
    throw new UsageError(`--model "${dir}" has no config.json; expected a Hugging Face model folder.`);
  }
  const { parseConfig } = await import('../model/config');
  parseConfig(await readFile(join(path, 'config.json'), 'utf8'), join(path, 'config.json'));
  return path;
}

async function loadModelFrom(engine: Engine, path: string): Promise<void> {
  await engine.loadModel({ kind: 'dir', id: basename(path), path });
}

async function readAdapter(dir: string): Promise<PeftFiles> {
  const path = requireFile(dir, 'adapter directory');
  const cfg = join(path, 'adapter_config.json');
  const model = join(path, 'adapter_model.safetensors');
  if (!existsSync(cfg) || !existsSync(model)) {
    throw new UsageError(`adapter directory "${dir}" must hold adapter_config.json and adapter_model.safetensors.`);
  }
  return { adapterConfig: await readFile(cfg, 'utf8'), adapterModel: new Uint8Array(await readFile(model)) };
}

async function writeAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await writeFile(`${path}.tmp`, data);
  await rename(`${path}.tmp`, path);
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${Math.round(s % 60)}s` : `${s.toFixed(1)}s`;
}

async function train(f: ParsedFlags): Promise<number> {
  const dataPath = requireFile(str(f, 'data')!, '--data file');
  const out = resolve(str(f, 'out')!);
  const json = bool(f, 'json') ?? false;
  const log = (line: string) => (json ? process.stderr : process.stdout).write(`${line}\n`);
  const settings: TrainSettings = {
    ...DEFAULT_TRAIN,
    optimizer: (str(f, 'optimizer') as TrainSettings['optimizer']) ?? DEFAULT_TRAIN.optimizer,
    lr: num(f, 'lr') ?? DEFAULT_TRAIN.lr,
    weightDecay: num(f, 'weight-decay') ?? DEFAULT_TRAIN.weightDecay,
    steps: num(f, 'steps') ?? 0,
    epochs: num(f, 'epochs') ?? (num(f, 'steps') ? 0 : DEFAULT_TRAIN.epochs),
    batch: num(f, 'batch') ?? DEFAULT_TRAIN.batch,
    gradAccum: num(f, 'grad-accum') ?? DEFAULT_TRAIN.gradAccum,
    maxLen: num(f, 'max-len') ?? DEFAULT_TRAIN.maxLen,
    scheduler: (str(f, 'scheduler') as TrainSettings['scheduler']) ?? DEFAULT_TRAIN.scheduler,
    warmup: num(f, 'warmup') ?? DEFAULT_TRAIN.warmup,
    maxGradNorm: num(f, 'max-grad-norm') ?? DEFAULT_TRAIN.maxGradNorm,
    shuffle: bool(f, 'shuffle') ?? true,
    seed: num(f, 'seed') ?? DEFAULT_TRAIN.seed,
    lossEvery: num(f, 'loss-every') ?? 1,
    evalEvery: 0,
    checkpointEvery: num(f, 'checkpoint-every') ?? 0,
    valFraction: num(f, 'val-fraction') ?? 0,
    activationCheckpointing: bool(f, 'activation-checkpointing') ?? false,
  };
  if (num(f, 'steps') !== undefined && num(f, 'epochs') !== undefined) {
    throw new UsageError('train: give either --steps or --epochs, not both.');
  }
  const modelPath = await preflightModel(str(f, 'model')!);
  const engine = await openEngine();
  try {
    await loadModelFrom(engine, modelPath);
    const modelInfo = await engine.modelInfo();
    const targetsFlag = str(f, 'targets');
    const lora: LoraSettings = {
      r: num(f, 'r') ?? 8,
      lora_alpha: num(f, 'alpha') ?? 16,
      lora_dropout: num(f, 'dropout') ?? 0.05,
      target_modules:
        targetsFlag === undefined
          ? modelInfo.defaultTargets
          : targetsFlag === 'all-linear'
            ? 'all-linear'
            : targetsFlag.split(',').map((s) => s.trim()).filter(Boolean),
      use_rslora: bool(f, 'rslora') ?? false,
    };
    const ds = await engine.loadDataset(basename(dataPath), await readFile(dataPath, 'utf8'), {
      format: (str(f, 'format') as 'auto') ?? 'auto',
      maxLen: settings.maxLen,
      valFraction: settings.valFraction,
      seed: settings.seed,
      previewCount: 0,
    });
    for (const issue of ds.issues) process.stderr.write(`tabtune: ${ds.fileName}:${issue.line}: ${issue.message} (skipped)\n`);
    log(
      `data: ${ds.fileName} (${ds.format}), ${ds.trainRecords} training records, ${ds.valRecords} validation, ` +
        `${ds.countedTokens} counted tokens`,
    );
    const est = await engine.estimate(lora, settings);
    log(
      `model: ${modelInfo.id} (${modelInfo.modelType}), trainable params: ${est.trainableParams.toLocaleString('en-US')} || ` +
        `all params: ${est.totalParams.toLocaleString('en-US')} || trainable%: ${est.trainablePercent.toFixed(4)}`,
    );
    await mkdir(out, { recursive: true });
    const ckptPath = join(out, 'checkpoint.safetensors');
    let resumeFrom: Uint8Array | undefined;
    if (bool(f, 'resume')) {
      if (!existsSync(ckptPath)) throw new UsageError(`train --resume: no checkpoint at ${ckptPath}.`);
      resumeFrom = new Uint8Array(await readFile(ckptPath));
    }
    const initFlag = str(f, 'init-from');
    const initFrom = initFlag ? await readAdapter(initFlag) : undefined;
    const result = await engine.train(lora, settings, {
      resumeFrom,
      initFrom,
      onProgress: (p: TrainProgress) => {
        if (p.loss === null && p.step !== p.totalSteps) return;
        const loss = p.loss === null ? '' : ` loss ${p.loss.toFixed(4)}`;
        const val = p.valLoss === null ? '' : ` val ${p.valLoss.toFixed(4)}`;
        log(
          `step ${p.step}/${p.totalSteps}${loss}${val} lr ${p.lr.toExponential(2)} ` +
            `${Math.round(p.tokensPerSecond)} tok/s eta ${fmtTime(p.etaSeconds)}`,
        );
      },
      onCheckpoint: settings.checkpointEvery > 0 ? (blob) => writeAtomic(ckptPath, blob) : undefined,
    });
    await writeAtomic(join(out, 'adapter_config.json'), result.adapter.adapterConfig);
    await writeAtomic(join(out, 'adapter_model.safetensors'), result.adapter.adapterModel);
    log(`saved PEFT adapter to ${out} (${result.steps} steps, ${fmtTime(result.seconds)})`);
    if (json) {
      const { adapter: _a, history, ...summary } = result;
      void _a;
      process.stdout.write(
        `${JSON.stringify({ ...summary, firstLoss: history.find((h) => h.loss !== null)?.loss ?? null, out })}\n`,
      );
    }
    return 0;
  } finally {
    engine.dispose();
  }
}

async function evaluate(f: ParsedFlags): Promise<number> {
  const dataPath = requireFile(str(f, 'data')!, '--data file');
  const modelPath = await preflightModel(str(f, 'model')!);
  const engine = await openEngine();
  try {
    await loadModelFrom(engine, modelPath);
    const maxLen = num(f, 'max-len') ?? DEFAULT_TRAIN.maxLen;
    const ds = await engine.loadDataset(basename(dataPath), await readFile(dataPath, 'utf8'), {
      format: (str(f, 'format') as 'auto') ?? 'auto',
      maxLen,
      valFraction: 0,
      seed: 0,
      previewCount: 0,
    });
    for (const issue of ds.issues) process.stderr.write(`tabtune: ${ds.fileName}:${issue.line}: ${issue.message} (skipped)\n`);
    const adapterDir = str(f, 'adapter');
    const adapter = adapterDir ? { key: resolve(adapterDir), files: await readAdapter(adapterDir) } : null;
    const r = await engine.evaluate(adapter, 'all');
    if (bool(f, 'json')) process.stdout.write(`${JSON.stringify({ loss: r.loss, tokens: r.tokens })}\n`);
    else process.stdout.write(`loss ${r.loss.toFixed(6)} nats/token over ${r.tokens} tokens (perplexity ${Math.exp(r.loss).toFixed(3)})\n`);
    return 0;
  } finally {
    engine.dispose();
  }
}

async function generate(f: ParsedFlags): Promise<number> {
  const modelPath = await preflightModel(str(f, 'model')!);
  const engine = await openEngine();
  try {
    await loadModelFrom(engine, modelPath);
    const adapterDir = str(f, 'adapter');
    const adapter = adapterDir ? { key: resolve(adapterDir), files: await readAdapter(adapterDir) } : null;
    await engine.generate(
      str(f, 'prompt')!,
      adapter,
      {
        maxNewTokens: num(f, 'max-new-tokens') ?? 64,
        temperature: num(f, 'temperature') ?? 0,
        topK: num(f, 'top-k') ?? 0,
        topP: num(f, 'top-p') ?? 1,
        seed: num(f, 'seed') ?? 0,
        chat: bool(f, 'chat') ?? false,
      },
      (delta) => process.stdout.write(delta),
    );
    process.stdout.write('\n');
    return 0;
  } finally {
    engine.dispose();
  }
}

async function info(): Promise<number> {
  const { createNodeGpu } = await import('../gpu/node');
  const gpu = await createNodeGpu();
  const i = gpu.info;
  process.stdout.write(
    `adapter: ${i.vendor || '?'} / ${i.architecture || '?'}${i.description ? ` (${i.description})` : ''}\n` +
      `shader-f16: ${gpu.features.f16 ? 'yes' : 'no'}, subgroups: ${gpu.features.subgroups ? `yes (kernels use ${gpu.features.subgroupLanes || 'none: layout probe failed'}${gpu.features.subgroupLanes ? ' lanes' : ''})` : 'no'}\n` +
      `maxBufferSize: ${gpu.limits.maxBufferSize}, maxStorageBufferBindingSize: ${gpu.limits.maxStorageBufferBindingSize}, ` +
      `maxComputeWorkgroupStorageSize: ${gpu.limits.maxComputeWorkgroupStorageSize}\n`,
  );
  gpu.destroy();
  return 0;
}

async function selftest(): Promise<number> {
  const [{ createNodeGpu }, { runSelfTest }] = await Promise.all([import('../gpu/node'), import('../selftest')]);
  const gpu = await createNodeGpu();
  try {
    const report = await runSelfTest(gpu);
    let ok = true;
    for (const c of report.checks) {
      ok &&= c.ok;
      process.stdout.write(`${c.ok ? 'ok  ' : 'FAIL'} ${c.name} (max abs err ${c.maxAbsErr.toExponential(2)}, ${c.ms.toFixed(1)} ms)\n`);
    }
    return ok ? 0 : 1;
  } finally {
    gpu.destroy();
  }
}
