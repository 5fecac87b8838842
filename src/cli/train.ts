/**
 * `tabtune train`: fine-tunes a LoRA adapter on a dataset file and writes it as a PEFT folder
 * (--out), optionally continuing an adapter (--init-from) or the checkpoint in --out (--resume).
 */

import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { LoraSettings, PeftFiles, TrainProgress, TrainSettings } from '../engine/types';
import { DEFAULT_TRAIN } from '../engine/defaults';
import { type FlagSpec, type ParsedFlags, UsageError, bool, num, parseFlags, str } from './args';
import {
  FORMAT,
  checkOutDir,
  loadModelFrom,
  maxLenFor,
  openEngine,
  preflightModel,
  readAdapter,
  readDataText,
  requireFile,
} from './common';
import { writeFilesAtomic } from './write';

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

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${Math.round(s % 60)}s` : `${s.toFixed(1)}s`;
}

/** Flags that set TrainSettings fields (for --resume: taken from the checkpoint unless given). */
const TRAIN_SETTING_FLAGS: readonly [string, keyof TrainSettings][] = [
  ['optimizer', 'optimizer'],
  ['lr', 'lr'],
  ['weight-decay', 'weightDecay'],
  ['batch', 'batch'],
  ['grad-accum', 'gradAccum'],
  ['max-len', 'maxLen'],
  ['scheduler', 'scheduler'],
  ['warmup', 'warmup'],
  ['max-grad-norm', 'maxGradNorm'],
  ['shuffle', 'shuffle'],
  ['seed', 'seed'],
  ['val-fraction', 'valFraction'],
  ['loss-every', 'lossEvery'],
  ['checkpoint-every', 'checkpointEvery'],
  ['activation-checkpointing', 'activationCheckpointing'],
];

/** Settings that decide which records form which batch: a resumed run must keep them. */
const RESUME_FIXED = new Set<keyof TrainSettings>(['batch', 'gradAccum', 'maxLen', 'shuffle', 'seed', 'valFraction']);

const flagName = (name: string): string => (name === 'shuffle' ? '--shuffle/--no-shuffle' : `--${name}`);

/** The LoRA shape an existing adapter or checkpoint fixes (r, alpha, targets, rsLoRA). */
interface LoraShape {
  r: number;
  lora_alpha: number;
  target_modules: string[] | string;
  use_rslora: boolean;
}

function adapterShape(files: PeftFiles, dir: string): LoraShape {
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(files.adapterConfig) as Record<string, unknown>;
  } catch (e) {
    throw new UsageError(`${join(dir, 'adapter_config.json')}: not valid JSON (${(e as Error).message}).`);
  }
  if (!c || typeof c !== 'object' || typeof c.r !== 'number' || typeof c.lora_alpha !== 'number') {
    throw new UsageError(
      `${join(dir, 'adapter_config.json')}: expected a PEFT LoRA config with numeric "r" and "lora_alpha".`,
    );
  }
  const t = c.target_modules;
  return {
    r: c.r,
    lora_alpha: c.lora_alpha,
    target_modules: typeof t === 'string' || Array.isArray(t) ? (t as string[] | string) : [],
    use_rslora: c.use_rslora === true,
  };
}

function describeTargets(t: string[] | string): string {
  if (typeof t === 'string') return JSON.stringify(t);
  const names = [...new Set(t.map((p) => p.slice(p.lastIndexOf('.') + 1)))];
  return names.length === t.length ? names.join(',') : `${names.join(',')} (${t.length} modules)`;
}

/** --r, --alpha, --rslora and --targets cannot change the shape of an adapter being continued. */
function checkLoraFlags(f: ParsedFlags, shape: LoraShape, source: string): void {
  const given: [string, unknown, unknown][] = [
    ['r', num(f, 'r'), shape.r],
    ['alpha', num(f, 'alpha'), shape.lora_alpha],
    ['rslora', bool(f, 'rslora'), shape.use_rslora],
  ];
  for (const [flag, mine, theirs] of given) {
    if (mine !== undefined && mine !== theirs) {
      throw new UsageError(
        `train: --${flag} ${String(mine)} conflicts with ${source}, which has ${flag === 'alpha' ? 'lora_alpha' : flag === 'rslora' ? 'use_rslora' : 'r'} ` +
          `${String(theirs)}; a continued adapter keeps its r, alpha and targets (leave --${flag} out).`,
      );
    }
  }
  if (str(f, 'targets') !== undefined) {
    throw new UsageError(
      `train: --targets conflicts with ${source}, whose targets are ${describeTargets(shape.target_modules)}; ` +
        'a continued adapter keeps its r, alpha and targets (leave --targets out).',
    );
  }
}

/** --targets as LoRA target_modules, checked against the model's linear module names. */
function parseTargets(flag: string, linearModules: string[], modelType: string): string[] | 'all-linear' {
  const list = flag.split(',').map((t) => t.trim());
  if (list.length === 1 && list[0]!.toLowerCase() === 'all-linear') return 'all-linear';
  const available = `this model (${modelType}) has ${linearModules.join(', ')}, or use all-linear`;
  if (list.every((t) => t === ''))
    throw new UsageError(`train: --targets is empty; expected module names (${available}).`);
  if (list.some((t) => t === ''))
    throw new UsageError(`train: --targets "${flag}" has an empty name; expected comma-separated module names.`);
  for (const t of list) {
    if (t.toLowerCase() === 'all-linear')
      throw new UsageError('train: --targets all-linear cannot be combined with module names.');
    // PEFT also takes a dotted suffix of the module path (self_attn.q_proj): its last part must be a module name.
    const last = t.slice(t.lastIndexOf('.') + 1);
    if (!linearModules.includes(last))
      throw new UsageError(`train: --targets "${t}" is not a linear module name; ${available}.`);
  }
  return list;
}

/**
 * Ctrl-C / SIGTERM during training: the first signal stops the run at the end of the current step,
 * after which the adapter so far and a checkpoint are saved; a second signal quits at once.
 */
function onInterrupt(
  engine: { stop(): void },
  log: (line: string) => void,
): { readonly signal: NodeJS.Signals | null; dispose(): void } {
  let signal: NodeJS.Signals | null = null;
  const handler = (sig: NodeJS.Signals) => {
    if (signal) {
      process.stderr.write(`tabtune: ${sig} again: quitting without saving.\n`);
      process.exit(sig === 'SIGINT' ? 130 : 143);
    }
    signal = sig;
    log(`${sig}: stopping after this step to save the adapter and a checkpoint (press Ctrl-C again to quit at once)`);
    engine.stop();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    get signal() {
      return signal;
    },
    dispose() {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}

export async function train(argv: string[]): Promise<number> {
  const f = parseFlags(argv, TRAIN_FLAGS, 'train');
  if (num(f, 'steps') !== undefined && num(f, 'epochs') !== undefined) {
    throw new UsageError('train: give either --steps or --epochs, not both.');
  }
  const resume = bool(f, 'resume') ?? false;
  const initFlag = str(f, 'init-from');
  if (resume && initFlag)
    throw new UsageError('train: --resume continues the checkpoint in --out; it cannot be combined with --init-from.');
  const dataPath = requireFile(str(f, 'data')!, '--data file');
  const dataText = await readDataText(dataPath, str(f, 'data')!);
  const out = checkOutDir(str(f, 'out')!);
  const model = await preflightModel(str(f, 'model')!);
  const json = bool(f, 'json') ?? false;
  const log = (line: string) => (json ? process.stderr : process.stdout).write(`${line}\n`);
  const settings: TrainSettings = {
    ...DEFAULT_TRAIN,
    steps: num(f, 'steps') ?? 0,
    epochs: num(f, 'epochs') ?? (num(f, 'steps') ? 0 : DEFAULT_TRAIN.epochs),
    maxLen: maxLenFor(f, 'train', model),
    shuffle: true,
    lossEvery: 1,
    evalEvery: 0,
    checkpointEvery: 0,
    valFraction: 0,
    activationCheckpointing: false,
  };

  // --resume: everything not given on the command line comes from the checkpoint's run.
  const ckptPath = join(out, 'checkpoint.safetensors');
  let resumeFrom: Uint8Array | undefined;
  let fixedShape: { shape: LoraShape; source: string } | undefined;
  if (resume) {
    if (!existsSync(ckptPath))
      throw new UsageError(`train --resume: no checkpoint at ${ckptPath} (write one with --checkpoint-every N).`);
    resumeFrom = new Uint8Array(await readFile(ckptPath));
    const { decodeCheckpoint } = await import('../train/checkpoint');
    const run = decodeCheckpoint(resumeFrom, ckptPath).meta.run as
      { train?: Partial<TrainSettings>; lora?: LoraShape } | undefined;
    const saved = run?.train ?? {};
    for (const [flag, key] of TRAIN_SETTING_FLAGS) {
      const theirs = saved[key];
      if (theirs === undefined) continue;
      const mine = f[flag];
      if (mine === undefined) (settings as unknown as Record<string, unknown>)[key] = theirs;
      else if (RESUME_FIXED.has(key) && mine !== theirs) {
        throw new UsageError(
          `train --resume: ${flagName(flag)} ${String(mine)} differs from the checkpoint's ${String(theirs)}; ` +
            'a resumed run keeps its batching (leave the flag out).',
        );
      }
    }
    if (
      num(f, 'steps') === undefined &&
      num(f, 'epochs') === undefined &&
      saved.steps !== undefined &&
      saved.epochs !== undefined
    ) {
      settings.steps = saved.steps;
      settings.epochs = saved.epochs;
    }
    if (run?.lora) fixedShape = { shape: run.lora, source: `the checkpoint ${ckptPath}` };
  }
  for (const [flag, key] of TRAIN_SETTING_FLAGS) {
    if (f[flag] !== undefined) (settings as unknown as Record<string, unknown>)[key] = f[flag];
  }
  const initFrom = initFlag ? await readAdapter(initFlag, '--init-from') : undefined;
  if (initFrom) fixedShape = { shape: adapterShape(initFrom, initFlag!), source: `--init-from ${initFlag}` };
  if (fixedShape) checkLoraFlags(f, fixedShape.shape, fixedShape.source);

  const engine = await openEngine();
  try {
    await loadModelFrom(engine, model.path);
    const modelInfo = engine.modelInfo();
    const targetsFlag = str(f, 'targets');
    const lora: LoraSettings = {
      r: fixedShape?.shape.r ?? num(f, 'r') ?? 8,
      lora_alpha: fixedShape?.shape.lora_alpha ?? num(f, 'alpha') ?? 16,
      lora_dropout: num(f, 'dropout') ?? 0.05,
      target_modules:
        // (a regex string from an adapter's config works too: the engine reads any string as PEFT does)
        (fixedShape?.shape.target_modules as LoraSettings['target_modules'] | undefined) ??
        (targetsFlag === undefined
          ? modelInfo.defaultTargets
          : parseTargets(targetsFlag, modelInfo.linearModules, modelInfo.modelType)),
      use_rslora: fixedShape?.shape.use_rslora ?? bool(f, 'rslora') ?? false,
    };
    const ds = await engine.loadDataset(basename(dataPath), dataText, {
      format: (str(f, 'format') as 'auto') ?? 'auto',
      maxLen: settings.maxLen,
      valFraction: settings.valFraction,
      seed: settings.seed,
      previewCount: 0,
    });
    for (const issue of ds.issues)
      process.stderr.write(`tabtune: ${ds.fileName}:${issue.line}: ${issue.message} (skipped)\n`);
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
    const interrupt = onInterrupt(engine, log);
    let result;
    try {
      result = await engine.train(lora, settings, {
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
        // The engine offers a checkpoint at the end of every run: kept with --checkpoint-every, or
        // when a signal stopped the run (so it can be resumed).
        onCheckpoint: (blob) =>
          settings.checkpointEvery > 0 || interrupt.signal
            ? writeFilesAtomic([{ path: ckptPath, data: blob }])
            : undefined,
      });
    } finally {
      interrupt.dispose();
    }
    await writeFilesAtomic([
      { path: join(out, 'adapter_model.safetensors'), data: result.adapter.adapterModel },
      { path: join(out, 'adapter_config.json'), data: result.adapter.adapterConfig },
    ]);
    log(`saved PEFT adapter to ${out} (${result.steps} steps, ${fmtTime(result.seconds)})`);
    for (const w of result.warnings) process.stderr.write(`tabtune: warning: ${w}\n`);
    if (interrupt.signal) {
      const again = ['train', ...argv.filter((a) => a !== '--resume'), '--resume'].join(' ');
      log(
        `interrupted (${interrupt.signal}) at step ${result.steps}: the adapter so far and checkpoint.safetensors are in ${out}. ` +
          `Resume with: tabtune ${again}`,
      );
      return interrupt.signal === 'SIGINT' ? 130 : 143;
    }
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
