/**
 * `tabtune export-recipe`: takes the flags of `tabtune train` and, instead of training, writes the
 * run as a folder (--out) that Hugging Face's own stack runs: train.py (transformers + PEFT + TRL's
 * SFTTrainer), the tokenized training and validation examples as Tabtune split them, pinned
 * requirements, accelerate configs, a SLURM script and a README (src/recipe/).
 *
 * No GPU and no weights are needed: only the model's config.json and tokenizer, from a folder or
 * (for a model too big for the tab) a Hugging Face Hub id (HF_ENDPOINT is honoured).
 *   node bin/tabtune.mjs export-recipe --model DIR|owner/name --data FILE|hf:owner/name[:split] --out DIR [train's flags]
 * (--data, --data-file and --columns are read as train reads them: src/cli/data-flag.ts)
 * (train's flags include --quantize nf4|none and --no-double-quant: 4-bit NF4 frozen weights in
 * the recipe as bitsandbytes' BitsAndBytesConfig; a ...-bnb-4bit checkpoint is 4-bit as stored).
 */

import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { TrainSettings } from '../engine/types';
import type { ModelConfig } from '../model/config';
import type { RecipeInput } from '../recipe/recipe';
import { type ParsedFlags, UsageError, bool, parseFlags, str } from './args';
import { checkOutDir, maxLenFor, reportIssues } from './common';
import { openDataRef, resolveDataFlag } from './data-flag';
import { frozenFromFlags } from './frozen';
import { writeFolderAtomic } from './write';
import { readAdapterForModel } from './loftq-guard';
import {
  type LoraShape,
  TRAIN_FLAGS,
  adapterShape,
  applySettingFlags,
  baseTrainSettings,
  checkLoraFlags,
  checkStepsOrEpochs,
  loraFromFlags,
} from './run-flags';

const COMMAND = 'export-recipe';

/**
 * The recipe's 4-bit NF4 frozen weights from --quantize / --no-double-quant, read as `train` reads
 * them (src/cli/frozen.ts); a bitsandbytes 4-bit checkpoint is 4-bit as stored.
 */
function recipeQuantize(f: ParsedFlags, model: { path: string; config: ModelConfig }): RecipeInput['quantize'] {
  const stored = model.config.quantization;
  const frozen = frozenFromFlags(f, COMMAND, model);
  if (stored) return { doubleQuant: stored.doubleQuant, stored: true };
  return frozen.quantize === 'nf4' ? { doubleQuant: frozen.doubleQuant ?? true } : null;
}

/** The model as a folder when one exists at the path (`dir`), else as a Hub repo id (`dir` null). */
async function modelSource(given: string) {
  const m = await import('../model/source');
  const path = resolve(given);
  if (existsSync(path)) {
    if (!statSync(path).isDirectory())
      throw new UsageError(`--model "${given}" is a file; expected a model folder or a Hub id (owner/name).`);
    if (!existsSync(join(path, 'config.json')))
      throw new UsageError(`--model "${given}" has no config.json; expected a Hugging Face model folder.`);
    return { source: new m.DirSource(path), ref: path, dir: path };
  }
  if (!/^[\w.-]+\/[\w.-]+$/.test(given) || given.split('/').some((p) => p === '.' || p === '..')) {
    throw new UsageError(`--model "${given}" is neither a folder nor a Hugging Face Hub id (owner/name).`);
  }
  return {
    source: m.UrlSource.hub(given, 'main', { endpoint: process.env.HF_ENDPOINT, token: process.env.HF_TOKEN }),
    ref: given,
    dir: null,
  };
}

/** --out may be new, empty, or an earlier recipe folder (which is replaced); nothing else is overwritten. */
function checkRecipeOut(out: string): void {
  if (!existsSync(out)) return;
  const entries = readdirSync(out);
  if (entries.length > 0 && !entries.includes('tabtune_run.json')) {
    throw new UsageError(
      `--out "${out}" already holds other files; give a new or empty folder (an earlier recipe folder is replaced).`,
    );
  }
}

const shellQuote = (a: string): string => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);

export async function exportRecipe(argv: string[]): Promise<number> {
  // train's flag table, --quantize / --no-double-quant included: one definition for both commands.
  const f = parseFlags(argv, TRAIN_FLAGS, COMMAND);
  checkStepsOrEpochs(f, COMMAND);
  if (bool(f, 'resume')) {
    throw new UsageError(
      `${COMMAND}: --resume continues a Tabtune checkpoint; the recipe's train.py resumes its own ` +
        '(python train.py --output_dir OUT --resume_from_checkpoint).',
    );
  }
  // --data as train reads it: a file, or a Hugging Face dataset (hf:owner/name[:split]) downloaded into the cache.
  const dataRef = await resolveDataFlag(f);
  const out = checkOutDir(str(f, 'out')!);
  const json = bool(f, 'json') ?? false;
  const log = (line: string) => (json ? process.stderr : process.stdout).write(`${line}\n`);

  const { source, ref, dir } = await modelSource(str(f, 'model')!);
  const [
    { loadConfigOnly, loadTokenizerFiles },
    { createTokenizer },
    { hasConv1dWeights, linearModuleNames },
    targets,
  ] = await Promise.all([
    import('../model/load'),
    import('../model/tokenizer'),
    import('../model/registry'),
    import('../lora/targets'),
  ]);
  const config = await loadConfigOnly(source);
  const quantize = recipeQuantize(f, { path: ref, config });
  const { tokenizerJson, tokenizerConfig } = await loadTokenizerFiles(source);
  const tok = await createTokenizer(tokenizerJson, tokenizerConfig, config);

  const settings: TrainSettings = baseTrainSettings(f, maxLenFor(f, COMMAND, { path: ref, config }));
  applySettingFlags(f, settings);
  const initFlag = str(f, 'init-from');
  const initFrom = initFlag
    ? await readAdapterForModel(f, { command: COMMAND, dir: initFlag, flag: '--init-from', modelDir: dir })
    : undefined;
  const fixed: LoraShape | undefined = initFrom ? adapterShape(initFrom, initFlag!) : undefined;
  if (fixed) checkLoraFlags(f, fixed, `--init-from ${initFlag}`, COMMAND);
  const linearModules = linearModuleNames(config);
  let defaultTargets: string[];
  try {
    defaultTargets = targets.defaultTargetModules(config.modelType);
  } catch {
    defaultTargets = linearModules;
  }
  const lora = loraFromFlags(f, { modelType: config.modelType, linearModules, defaultTargets }, fixed, COMMAND);

  // The split a run makes (src/train/data/prepared.ts), the file (or a Hub split's files) read by range.
  const [{ PreparedDataset }, { blobSource }] = await Promise.all([
    import('../train/data/prepared'),
    import('../train/data/source'),
  ]);
  const data = await openDataRef(dataRef, str(f, 'data')!, async (name, blob) => {
    try {
      return await PreparedDataset.open(blobSource(blob), name, tok, {
        format: (str(f, 'format') as 'auto') ?? 'auto',
        mapping: dataRef.mapping,
        maxLen: settings.maxLen,
        valFraction: settings.valFraction,
        seed: settings.seed,
        previewCount: 0,
      });
    } catch (e) {
      if ((e as Error).name === 'DatasetError') throw new Error((e as Error).message, { cause: e });
      throw e;
    }
  });
  // Every example of both splits (a lazily read dataset is tokenized whole here).
  const split = {
    format: data.summary.format,
    train: await data.examples(data.train),
    val: await data.examples(data.val),
  };
  reportIssues({
    ...data.summary,
    issues: [...data.summary.issues, ...data.lateIssues],
    issueCount: data.summary.issueCount + data.lateIssues.length,
  });

  const { buildRecipe } = await import('../recipe/recipe');
  const files = buildRecipe({
    model: ref,
    modelType: config.modelType,
    config,
    fanInFanOut: hasConv1dWeights(config),
    lora,
    train: settings,
    data: { fileName: dataRef.name, format: split.format, train: split.train, val: split.val },
    decode: (ids) => tok.decode(ids, { skipSpecialTokens: false }),
    initFrom,
    quantize,
    command: ['tabtune', COMMAND, ...argv].map(shellQuote).join(' '),
  });
  checkRecipeOut(out);
  await writeFolderAtomic(out, files);
  const counted = split.train.reduce((n, e) => n + e.countedTokens, 0);
  log(
    `data: ${dataRef.name} (${split.format}), ${split.train.length} training examples, ${split.val.length} validation, ` +
      `${counted} counted tokens`,
  );
  log(`wrote the recipe to ${out}: python ${join(out, 'train.py')} --output_dir ADAPTER_DIR (see its README.md)`);
  if (json) {
    process.stdout.write(
      `${JSON.stringify({ out, files: files.map((x) => x.path), trainExamples: split.train.length, valExamples: split.val.length, countedTokens: counted })}\n`,
    );
  }
  return 0;
}
