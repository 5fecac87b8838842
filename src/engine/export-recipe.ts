/**
 * Engine.exportRecipe's folder: the run as the Python recipe (src/recipe) takes it, from the loaded
 * model and dataset (a lazily read dataset is tokenized whole here), zipped.
 */

import { hasConv1dWeights } from '../model/registry';
import type { PreparedDataset } from '../train/data/prepared';
import { recipeQuantize } from './frozen';
import type { LoadedModelState } from './loaded-model';
import type { DatasetSummary, LoraSettings, RecipeOptions, TrainSettings } from './types';

export async function recipeZip(
  m: LoadedModelState,
  summary: DatasetSummary,
  data: PreparedDataset,
  lora: LoraSettings,
  train: TrainSettings,
  opts: RecipeOptions,
): Promise<Uint8Array> {
  const [{ buildRecipe }, { zipRecipe }] = await Promise.all([import('../recipe/recipe'), import('../recipe/zip')]);
  const files = buildRecipe({
    model: m.id,
    modelType: m.config.modelType,
    config: m.config,
    fanInFanOut: hasConv1dWeights(m.config),
    lora,
    train,
    data: {
      fileName: summary.fileName,
      format: summary.format,
      // The examples of each split (a lazily read dataset is tokenized whole here).
      train: await data.examples(data.train),
      val: await data.examples(data.val),
    },
    decode: (ids) => m.tokenizer.decode(ids, { skipSpecialTokens: false }),
    initFrom: opts.initFrom,
    // By default the frozen weights the run has here: the model as loaded (QLoRA when in 4 bits).
    quantize: opts.quantize !== undefined ? opts.quantize : recipeQuantize(m.gpuModel.quantization),
  });
  return zipRecipe(files, 'tabtune-recipe');
}
