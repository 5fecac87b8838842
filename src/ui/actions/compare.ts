/**
 * Compare: the same prompts through the base model and chosen adapters, streamed side by side
 * with the same sampling settings (greedy by default), and validation loss / perplexity of each.
 */
import type { AdapterRef } from '../../engine/types';
import { type AppContext, patch } from '../context';
import { describeError } from '../errors';
import { type CompareCell, type CompareColumn, runBusy } from '../state';
import { hasErrors, validateSampling } from '../validate';
import { analyseDataset } from './dataset';
import { gpuBlocker } from './training';

export function promptList(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

async function columnsAndRefs(
  ctx: AppContext,
): Promise<{ columns: CompareColumn[]; refs: Map<string, AdapterRef | null> }> {
  const s = ctx.store.get();
  const columns: CompareColumn[] = [{ key: 'base', label: `Base · ${s.model.info?.id.split('/').pop() ?? 'model'}` }];
  const refs = new Map<string, AdapterRef | null>([['base', null]]);
  for (const id of s.compare.adapterIds) {
    const rec = s.library.adapters.find((a) => a.id === id);
    if (!rec || !ctx.stores) continue;
    columns.push({ key: id, label: rec.name });
    refs.set(id, { key: id, files: await ctx.stores.adapters.files(id) });
  }
  return { columns, refs };
}

export function compareBlocker(ctx: AppContext): string | null {
  const s = ctx.store.get();
  const gpu = gpuBlocker(s.gpu.status);
  if (gpu) return gpu;
  if (!s.model.info) return 'Load a model first.';
  if (runBusy(s.run.status)) return 'Wait for training to finish.';
  if (s.compare.status === 'running' || s.compare.evalStatus === 'running') return 'A comparison is running.';
  return null;
}

/**
 * Whether a comparison or an evaluation started while this one read the dataset and the adapters
 * (a double click: the button is enabled until one runs). The one running goes on; this one is
 * dropped, or both would write into the same outputs.
 */
function startedMeanwhile(ctx: AppContext): boolean {
  const c = ctx.store.get().compare;
  return c.status === 'running' || c.evalStatus === 'running';
}

export async function runCompare(ctx: AppContext): Promise<void> {
  const blocker = compareBlocker(ctx);
  const s0 = ctx.store.get();
  const prompts = promptList(s0.compare.prompts);
  if (blocker || prompts.length === 0 || hasErrors(validateSampling(s0.compare.sampling))) {
    patch(ctx, 'compare', {
      error: {
        title: 'Cannot compare',
        detail: blocker ?? (prompts.length ? 'Fix the sampling settings.' : 'Enter at least one prompt.'),
      },
    });
    return;
  }
  let columns: CompareColumn[];
  let refs: Map<string, AdapterRef | null>;
  try {
    ({ columns, refs } = await columnsAndRefs(ctx));
  } catch (e) {
    patch(ctx, 'compare', { error: describeError(e, 'Reading the adapters') });
    return;
  }
  if (startedMeanwhile(ctx)) return;
  const outputs: Record<string, CompareCell>[] = prompts.map(() =>
    Object.fromEntries(columns.map((c) => [c.key, { text: '', status: 'waiting' as const }])),
  );
  patch(ctx, 'compare', { status: 'running', columns, outputs, promptList: prompts, error: null });
  const setCell = (p: number, key: string, cell: Partial<CompareCell>) => {
    ctx.store.update((s) => {
      const out = s.compare.outputs.slice();
      const row = { ...out[p]! };
      row[key] = { ...row[key]!, ...cell };
      out[p] = row;
      return { ...s, compare: { ...s.compare, outputs: out } };
    });
  };
  const sampling = s0.compare.sampling;
  for (let p = 0; p < prompts.length; p++) {
    for (const col of columns) {
      setCell(p, col.key, { status: 'running' });
      let text = '';
      try {
        const res = await ctx.engine.generate(prompts[p]!, refs.get(col.key) ?? null, sampling, (delta) => {
          text += delta;
          setCell(p, col.key, { text });
        });
        setCell(p, col.key, { text: res.text, status: 'done' });
      } catch (e) {
        setCell(p, col.key, { status: 'error', error: describeError(e, 'Generating').detail });
        if ((e as Error).name === 'GpuDeviceLostError' || (e as Error).name === 'WorkerError') {
          patch(ctx, 'compare', { status: 'error', error: describeError(e) });
          return;
        }
      }
    }
  }
  patch(ctx, 'compare', { status: 'done' });
}

/** Validation loss (and perplexity) of the base model and each chosen adapter on the loaded dataset. */
export async function runEvaluation(ctx: AppContext): Promise<void> {
  const blocker = compareBlocker(ctx);
  if (blocker) {
    patch(ctx, 'compare', { error: { title: 'Cannot evaluate', detail: blocker } });
    return;
  }
  if (!(await analyseDataset(ctx))) {
    patch(ctx, 'compare', {
      error: { title: 'Cannot evaluate', detail: 'Choose a dataset in Data first: losses are measured on it.' },
    });
    return;
  }
  const summary = ctx.store.get().dataset.summary!;
  const split = summary.valRecords > 0 ? 'validation' : 'all';
  let columns: CompareColumn[];
  let refs: Map<string, AdapterRef | null>;
  try {
    ({ columns, refs } = await columnsAndRefs(ctx));
  } catch (e) {
    patch(ctx, 'compare', { error: describeError(e, 'Reading the adapters') });
    return;
  }
  if (startedMeanwhile(ctx)) return;
  patch(ctx, 'compare', {
    evalStatus: 'running',
    evals: {},
    evalSplit: split,
    evalColumns: columns,
    evalDataset: summary.fileName,
    error: null,
  });
  for (const col of columns) {
    ctx.store.update((s) => ({
      ...s,
      compare: { ...s.compare, evals: { ...s.compare.evals, [col.key]: { status: 'running' } } },
    }));
    try {
      const r = await ctx.engine.evaluate(refs.get(col.key) ?? null, split);
      ctx.store.update((s) => ({
        ...s,
        compare: {
          ...s.compare,
          evals: { ...s.compare.evals, [col.key]: { status: 'done', loss: r.loss, tokens: r.tokens } },
        },
      }));
    } catch (e) {
      ctx.store.update((s) => ({
        ...s,
        compare: {
          ...s.compare,
          evals: { ...s.compare.evals, [col.key]: { status: 'error', error: describeError(e, 'Evaluating').detail } },
        },
      }));
    }
  }
  patch(ctx, 'compare', { evalStatus: 'done' });
}
