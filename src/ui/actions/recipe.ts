/**
 * "Run at scale": the loaded model, dataset and settings as a zip of a transformers + PEFT + TRL
 * project (src/recipe: train.py, the tokenized split, accelerate configs, SLURM script, README), made
 * by the worker's engine from the very examples the run would train on.
 */
import { recipeQuantize } from '../../engine/frozen';
import { safeFileName } from '../../store/peft-files';
import type { AppContext } from '../context';
import { describeError } from '../errors';
import { runBusy } from '../state';
import { hasErrors, validateLora, validateTrain } from '../validate';
import { analyseDataset, hasDatasetContent } from './dataset';
import type { DownloadFile } from './library';

/** Why the run cannot be exported now (empty when it can). Unlike training, it need not fit this GPU. */
export function recipeBlockers(ctx: AppContext): string[] {
  const s = ctx.store.get();
  const out: string[] = [];
  if (!s.model.info) out.push('Load a model first (Model).');
  if (!hasDatasetContent(s.dataset.content)) out.push('Choose a dataset first (Data).');
  else if (s.dataset.status === 'error') out.push('The dataset has a problem (Data).');
  if (hasErrors(validateLora(s.lora, s.model.info)) || hasErrors(validateTrain(s.train, s.model.info))) {
    out.push('Fix the highlighted settings (Settings).');
  }
  if (runBusy(s.run.status)) out.push('A run is in progress: export when it has finished.');
  return out;
}

export async function recipeDownload(ctx: AppContext): Promise<DownloadFile | null> {
  const blockers = recipeBlockers(ctx);
  if (blockers.length) {
    ctx.notify({ level: 'error', title: 'Cannot export the run', detail: blockers.join(' ') });
    return null;
  }
  // The dataset is tokenized (again) for the current max length, split and seed, as for training.
  if (!(await analyseDataset(ctx))) {
    const err = ctx.store.get().dataset.error;
    ctx.notify({
      level: 'error',
      ...(err ?? { title: 'Cannot export the run', detail: 'The dataset could not be read.' }),
    });
    return null;
  }
  const s = ctx.store.get();
  try {
    // The run's frozen weights: the model as loaded (Settings' 16-bit / 4-bit NF4 reloads it that way).
    const bytes = await ctx.engine.exportRecipe(s.lora, s.train, {
      quantize: recipeQuantize(s.model.info!.quantization),
    });
    const model = s.model.info!.id.split('/').pop() ?? 'model';
    return { name: `${safeFileName(`tabtune-recipe-${model}`)}.zip`, bytes, type: 'application/zip' };
  } catch (e) {
    ctx.notify({ level: 'error', ...describeError(e, 'Exporting the run') });
    return null;
  }
}
