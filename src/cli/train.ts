/**
 * `tabtune train`: fine-tunes a LoRA adapter on a dataset file and writes it as a PEFT folder
 * (--out), optionally continuing an adapter (--init-from) or the checkpoint in --out (--resume).
 */

import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FrozenWeightsSettings, QuantizedBase, TrainProgress, TrainSettings } from '../engine/types';
import { writeReplacedWeights } from '../lora/merge';
import { LOFTQ_BASE_DIR } from '../engine/merge-zip';
import { DirSource } from '../model/source';
import { DirSink } from './merge';
import type { CheckpointRun } from '../train/checkpoint';
import { UsageError, bool, num, parseFlags, str } from './args';
import { loadData, resolveDataFlag } from './data-flag';
import type { CardRun } from '../engine/model-card';
import { TRAINING_RUN } from './push';
import { frozenFromFlags, frozenSummary } from './frozen';
import { checkOutDir, loadModelFrom, maxLenFor, openEngine, preflightModel, reportIssues } from './common';
import {
  type LoraShape,
  TRAIN_FLAGS,
  TRAIN_SETTING_FLAGS,
  adapterShape,
  applySettingFlags,
  baseTrainSettings,
  checkLoraFlags,
  checkStepsOrEpochs,
  loraFromFlags,
} from './run-flags';
import { writeFilesAtomic } from './write';
import { readAdapterForModel } from './loftq-guard';

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${Math.round(s % 60)}s` : `${s.toFixed(1)}s`;
}

/** Settings that decide which records form which batch: a resumed run must keep them. */
const RESUME_FIXED = new Set<keyof TrainSettings>(['batch', 'gradAccum', 'maxLen', 'shuffle', 'seed', 'valFraction']);

const flagName = (name: string): string => (name === 'shuffle' ? '--shuffle/--no-shuffle' : `--${name}`);

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

/** The base model with its LoftQ-quantized weights, as a Hugging Face model folder `dir` (written atomically per file). */
async function writeQuantizedBase(modelDir: string, dir: string, q: QuantizedBase): Promise<void> {
  await mkdir(dir, { recursive: true });
  const sink = new DirSink(dir);
  try {
    await writeReplacedWeights(new DirSource(modelDir), q, sink);
    await sink.commit();
  } finally {
    await sink.cleanUp();
  }
}

export async function train(argv: string[]): Promise<number> {
  const f = parseFlags(argv, TRAIN_FLAGS, 'train');
  checkStepsOrEpochs(f, 'train');
  const resume = bool(f, 'resume') ?? false;
  const initFlag = str(f, 'init-from');
  if (resume && initFlag)
    throw new UsageError('train: --resume continues the checkpoint in --out; it cannot be combined with --init-from.');
  const data = await resolveDataFlag(f);
  const out = checkOutDir(str(f, 'out')!);
  const model = await preflightModel(str(f, 'model')!);
  const json = bool(f, 'json') ?? false;
  const log = (line: string) => (json ? process.stderr : process.stdout).write(`${line}\n`);
  const settings = baseTrainSettings(f, maxLenFor(f, 'train', model));

  // --resume: everything not given on the command line comes from the checkpoint's run.
  const ckptPath = join(out, 'checkpoint.safetensors');
  let resumeFrom: Uint8Array | undefined;
  let fixedShape: { shape: LoraShape; source: string } | undefined;
  let savedFrozen: FrozenWeightsSettings | undefined;
  if (resume) {
    if (!existsSync(ckptPath))
      throw new UsageError(`train --resume: no checkpoint at ${ckptPath} (write one with --checkpoint-every N).`);
    resumeFrom = new Uint8Array(await readFile(ckptPath));
    const { decodeCheckpoint } = await import('../train/checkpoint');
    const run: Partial<CheckpointRun> | undefined = decodeCheckpoint(resumeFrom, ckptPath).meta.run;
    savedFrozen = run?.frozen;
    const saved: Partial<TrainSettings> = run?.train ?? {};
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
    if (run?.lora)
      fixedShape = {
        shape: { ...run.lora, method: run.lora.use_dora ? 'dora' : 'lora' },
        source: `the checkpoint ${ckptPath}`,
      };
  }
  applySettingFlags(f, settings);
  const initFrom = initFlag
    ? await readAdapterForModel(f, { command: 'train', dir: initFlag, flag: '--init-from', modelDir: model.path })
    : undefined;
  if (initFrom) fixedShape = { shape: adapterShape(initFrom, initFlag!), source: `--init-from ${initFlag}` };
  if (fixedShape) checkLoraFlags(f, fixedShape.shape, fixedShape.source, 'train');
  const frozen = frozenFromFlags(f, 'train', model, savedFrozen);

  const engine = await openEngine();
  try {
    await loadModelFrom(engine, model.path, frozen);
    const modelInfo = engine.modelInfo();
    const lora = loraFromFlags(f, modelInfo, fixedShape?.shape, 'train');
    const ds = await loadData(engine, data, str(f, 'data')!, {
      format: (str(f, 'format') as 'auto') ?? 'auto',
      maxLen: settings.maxLen,
      valFraction: settings.valFraction,
      seed: settings.seed,
      previewCount: 0,
    });
    reportIssues(ds);
    log(
      `data: ${ds.fileName} (${ds.format}), ${ds.trainRecords} training records, ${ds.valRecords} validation, ` +
        (ds.tokensEstimated
          ? `about ${ds.countedTokens} counted tokens (estimated; records are tokenized as training reaches them)`
          : `${ds.countedTokens} counted tokens`),
    );
    const est = await engine.estimate(lora, settings);
    log(
      `model: ${modelInfo.id} (${modelInfo.modelType}), trainable params: ${est.trainableParams.toLocaleString('en-US')} || ` +
        `all params: ${est.totalParams.toLocaleString('en-US')} || trainable%: ${est.trainablePercent.toFixed(4)}`,
    );
    log(`frozen weights: ${frozenSummary(modelInfo)}`);
    await mkdir(out, { recursive: true });
    // LoftQ: the quantized backbone the adapter needs is saved beside it (src/lora/loftq.ts)
    const loftqBase = lora.init_lora_weights === 'loftq' ? join(out, LOFTQ_BASE_DIR) : null;
    const interrupt = onInterrupt(engine, log);
    let result;
    try {
      result = await engine.train(lora, settings, {
        resumeFrom,
        initFrom,
        ...(loftqBase ? { loftqBaseDir: loftqBase } : {}),
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
    // training_run.json: what `tabtune push` writes into the model card (dataset, settings, losses).
    const runLog: CardRun = {
      datasetName: data.name,
      train: settings,
      finalLoss: result.finalLoss,
      finalValLoss: result.finalValLoss,
      steps: result.steps,
      seconds: result.seconds,
      history: result.history.map(({ step, loss, valLoss }) => ({ step, loss, valLoss })),
    };
    if (loftqBase && result.quantizedBase) {
      await writeQuantizedBase(model.path, loftqBase, result.quantizedBase);
      log(
        `saved LoftQ's quantized backbone to ${loftqBase}: use it as --model with this adapter (16-bit, or --quantize nf4)`,
      );
    }
    await writeFilesAtomic([
      { path: join(out, 'adapter_model.safetensors'), data: result.adapter.adapterModel },
      { path: join(out, TRAINING_RUN), data: `${JSON.stringify(runLog, null, 1)}\n` },
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
