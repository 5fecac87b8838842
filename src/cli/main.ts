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

import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Engine } from '../engine/engine';
import type { LoraSettings, PeftFiles, TrainProgress, TrainSettings } from '../engine/types';
import { DEFAULT_TRAIN } from '../engine/defaults';
import { type ModelConfig, positionLimitText } from '../model/config';
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
  // `tabtune train --help` prints the usage (it is not an unknown flag); a value "--help" can be given as --prompt=--help.
  if (['train', 'eval', 'generate'].includes(command ?? '') && rest.some((a) => a === '--help' || a === '-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
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

/** Runs `f`; an adapter that does not fit the model is reported with the folder it came from. */
async function withAdapterDir<T>(dir: string | undefined, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (dir && (e as Error).name === 'PeftError')
      throw new Error(`--adapter ${dir}: ${(e as Error).message}`, { cause: e });
    throw e;
  }
}

async function openEngine(): Promise<Engine> {
  const [{ createNodeGpu }, { Engine }] = await Promise.all([import('../gpu/node'), import('../engine/engine')]);
  return new Engine(await createNodeGpu());
}

function requireFile(path: string, what: string): string {
  const p = resolve(path);
  if (!existsSync(p)) throw new UsageError(`${what} "${path}" does not exist.`);
  if (!statSync(p).isFile()) throw new UsageError(`${what} "${path}" is a directory; expected a file.`);
  return p;
}

function requireDir(path: string, what: string): string {
  const p = resolve(path);
  if (!existsSync(p)) throw new UsageError(`${what} "${path}" does not exist.`);
  if (!statSync(p).isDirectory()) throw new UsageError(`${what} "${path}" is a file; expected a directory.`);
  return p;
}

/** --out may exist (a directory) or be created: its nearest existing ancestor must be a directory. */
function checkOutDir(path: string): string {
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
async function readDataText(path: string, given: string): Promise<string> {
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

interface ModelPreflight {
  path: string;
  config: ModelConfig;
}

/** Checks the model folder and its config.json before any GPU work, so mistakes fail fast. */
async function preflightModel(dir: string): Promise<ModelPreflight> {
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
function maxLenFor(f: ParsedFlags, command: string, model: ModelPreflight): number {
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

async function loadModelFrom(engine: Engine, path: string): Promise<void> {
  await engine.loadModel({ kind: 'dir', id: basename(path), path });
}

async function readAdapter(dir: string, flag = '--adapter'): Promise<PeftFiles> {
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

async function writeAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await writeFile(`${path}.tmp`, data);
  await rename(`${path}.tmp`, path);
}

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

async function train(f: ParsedFlags): Promise<number> {
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
  const dataText = await readDataText(dataPath, str(f, 'data')!);
  const model = await preflightModel(str(f, 'model')!);
  const maxLen = maxLenFor(f, 'eval', model);
  const adapterDir = str(f, 'adapter');
  const adapterFiles = adapterDir ? await readAdapter(adapterDir) : undefined;
  const engine = await openEngine();
  try {
    await loadModelFrom(engine, model.path);
    const ds = await engine.loadDataset(basename(dataPath), dataText, {
      format: (str(f, 'format') as 'auto') ?? 'auto',
      maxLen,
      valFraction: 0,
      seed: 0,
      previewCount: 0,
    });
    for (const issue of ds.issues)
      process.stderr.write(`tabtune: ${ds.fileName}:${issue.line}: ${issue.message} (skipped)\n`);
    const adapter = adapterDir && adapterFiles ? { key: resolve(adapterDir), files: adapterFiles } : null;
    const r = await withAdapterDir(adapterDir, () => engine.evaluate(adapter, 'all'));
    if (bool(f, 'json')) process.stdout.write(`${JSON.stringify({ loss: r.loss, tokens: r.tokens })}\n`);
    else
      process.stdout.write(
        `loss ${r.loss.toFixed(6)} nats/token over ${r.tokens} tokens (perplexity ${Math.exp(r.loss).toFixed(3)})\n`,
      );
    return 0;
  } finally {
    engine.dispose();
  }
}

async function generate(f: ParsedFlags): Promise<number> {
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
  const adapterFiles = adapterDir ? await readAdapter(adapterDir) : undefined;
  const engine = await openEngine();
  try {
    await loadModelFrom(engine, model.path);
    const adapter = adapterDir && adapterFiles ? { key: resolve(adapterDir), files: adapterFiles } : null;
    const sampling = {
      maxNewTokens: num(f, 'max-new-tokens') ?? 64,
      temperature,
      topK: num(f, 'top-k') ?? 0,
      topP: num(f, 'top-p') ?? 1,
      seed: num(f, 'seed') ?? 0,
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
      process.stdout.write(
        `${c.ok ? 'ok  ' : 'FAIL'} ${c.name} (max abs err ${c.maxAbsErr.toExponential(2)}, ${c.ms.toFixed(1)} ms)\n`,
      );
    }
    return ok ? 0 : 1;
  } finally {
    gpu.destroy();
  }
}
