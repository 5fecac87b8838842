/**
 * Run history in the library: each trained adapter keeps its run (settings, data, duration, loss
 * curves), shown under the adapter; two runs' curves can be laid over each other.
 */
import { useState } from 'react';
import type { AdapterRecord } from '../../store/types';
import { formatDuration, formatSci } from '../format';
import { LossChart } from './LossChart';

function settingsLine(a: AdapterRecord): string[] {
  const t = a.train;
  if (!t) return [];
  return [
    `lr ${formatSci(t.lr)} (${t.scheduler}${t.warmup ? `, warmup ${t.warmup}` : ''})`,
    t.steps > 0 ? `${t.steps} steps` : `${t.epochs} epoch${t.epochs === 1 ? '' : 's'}`,
    `batch ${t.batch} × ${t.gradAccum}`,
    `max length ${t.maxLen}`,
    `${t.optimizer === 'adamw' ? 'AdamW' : 'SGD'}, weight decay ${t.weightDecay}, grad norm ${t.maxGradNorm || 'off'}`,
    `dropout ${a.config.lora_dropout}, seed ${t.seed}`,
    ...(t.packing ? ['packed'] : []),
    ...(t.activationCheckpointing ? ['activation checkpointing'] : []),
  ];
}

/** The run behind a trained adapter: its settings, data, duration and loss curves. */
export function RunDetails({ a }: { a: AdapterRecord }) {
  if (!a.train && a.history.length === 0) return null;
  return (
    <details className="advanced run-details" data-testid="run-details">
      <summary>Run: settings and loss curves</summary>
      <p className="small">
        {settingsLine(a).join(' · ')}
        {a.datasetName ? ` · data ${a.datasetName}` : ''}
        {a.seconds != null ? ` · trained in ${formatDuration(a.seconds)}` : ''}
      </p>
      {a.history.length > 0 && <LossChart history={a.history} totalSteps={a.train?.steps || a.steps} />}
    </details>
  );
}

/** Two runs' loss curves over each other (trained adapters with a history). */
export function CompareRuns({ adapters }: { adapters: AdapterRecord[] }) {
  const runs = adapters.filter((a) => a.history.some((h) => h.loss !== null));
  const [first, setFirst] = useState<string>('');
  const [second, setSecond] = useState<string>('');
  if (runs.length < 2) return null;
  const a = runs.find((r) => r.id === first) ?? runs[0]!;
  const b = runs.find((r) => r.id === second) ?? runs.find((r) => r.id !== a.id)!;
  const pick = (id: string, value: string, set: (v: string) => void, label: string) => (
    <label className="inline-field">
      {label}{' '}
      <select id={id} value={value} onChange={(e) => set(e.target.value)}>
        {runs.map((r) => (
          <option key={r.id} value={r.id}>
            {r.name}
          </option>
        ))}
      </select>
    </label>
  );
  return (
    <section className="card" aria-labelledby="runs-h" data-testid="compare-runs">
      <h3 id="runs-h">Compare runs</h3>
      <div className="preset-row">
        {pick('run-a', a.id, setFirst, 'Run')}
        {pick('run-b', b.id, setSecond, 'over')}
      </div>
      <LossChart history={a.history} totalSteps={null} label={a.name} overlay={{ label: b.name, history: b.history }} />
      <p className="small muted">
        {a.name}: {settingsLine(a).slice(0, 3).join(', ') || 'imported'} · {b.name}:{' '}
        {settingsLine(b).slice(0, 3).join(', ') || 'imported'}
      </p>
    </section>
  );
}
