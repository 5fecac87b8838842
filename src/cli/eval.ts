/** `tabtune eval`: the loss of the model (with an adapter or without) on a dataset file. */

import { resolve } from 'node:path';
import { type FlagSpec, bool, parseFlags, str } from './args';
import { FORMAT, loadModelFrom, maxLenFor, openEngine, preflightModel, reportIssues, withAdapterDir } from './common';
import { DATA_FLAGS, loadData, resolveDataFlag } from './data-flag';
import { FROZEN_FLAGS, frozenFromFlags } from './frozen';
import { readAdapterForModel } from './loftq-guard';

const EVAL_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', required: true },
  adapter: { type: 'string' },
  'any-base': { type: 'bool' },
  data: { type: 'string', required: true },
  format: FORMAT,
  'max-len': { type: 'int', min: 2 },
  batch: { type: 'int', min: 1 },
  json: { type: 'bool' },
  ...FROZEN_FLAGS,
  ...DATA_FLAGS,
};

export async function evaluate(argv: string[]): Promise<number> {
  const f = parseFlags(argv, EVAL_FLAGS, 'eval');
  const data = await resolveDataFlag(f);
  const model = await preflightModel(str(f, 'model')!);
  const maxLen = maxLenFor(f, 'eval', model);
  const adapterDir = str(f, 'adapter');
  const adapterFiles = adapterDir
    ? await readAdapterForModel(f, { command: 'eval', dir: adapterDir, modelDir: model.path })
    : undefined;
  const frozen = frozenFromFlags(f, 'eval', model);
  const engine = await openEngine();
  try {
    await loadModelFrom(engine, model.path, frozen);
    const ds = await loadData(engine, data, str(f, 'data')!, {
      format: (str(f, 'format') as 'auto') ?? 'auto',
      maxLen,
      valFraction: 0,
      seed: 0,
      previewCount: 0,
    });
    reportIssues(ds);
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
