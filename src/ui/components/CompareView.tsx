/** Step 6: compare — the same prompts through the base model and adapters, side by side; losses. */
import { methodSpec } from '../../lora/methods';
import { formatLoss, formatPerplexity } from '../format';
import { useAppState, useController } from '../hooks';
import type { AppState } from '../state';
import { MessageCard } from './common';
import { SamplingFields } from './SamplingFields';

/** "12 line breaks" / "3 spaces, 2 line breaks" for an output that is all whitespace. */
export function whitespaceNote(text: string): string {
  const breaks = (text.match(/\n/g) ?? []).length;
  const other = text.length - breaks;
  const parts = [];
  if (breaks) parts.push(`${breaks} line break${breaks === 1 ? '' : 's'}`);
  if (other) parts.push(`${other} space${other === 1 ? '' : 's'}`);
  return parts.join(', ');
}

/** Whitespace made visible (↵ for line breaks, · for spaces) for outputs that are nothing else. */
function showWhitespace(text: string): string {
  return text.replace(/\n/g, '↵').replace(/ /g, '·').replace(/\t/g, '→');
}

function Outputs({ s }: { s: AppState }) {
  const cmp = s.compare;
  if (cmp.promptList.length === 0 || cmp.outputs.length === 0) return null;
  return (
    <section className="card" aria-labelledby="out-h" data-testid="compare-outputs" data-status={cmp.status}>
      <h3 id="out-h">Outputs</h3>
      {cmp.promptList.map((prompt, p) => (
        <div key={p} className="compare-row">
          <div className="compare-prompt">
            <span className="muted small">Prompt {p + 1}</span>
            <p>{prompt}</p>
          </div>
          <div
            className="compare-cols"
            style={{ gridTemplateColumns: `repeat(${cmp.columns.length}, minmax(0, 1fr))` }}
          >
            {cmp.columns.map((col) => {
              const cell = cmp.outputs[p]?.[col.key];
              return (
                <article
                  key={col.key}
                  className={`compare-cell ${cell?.status ?? ''}`}
                  data-testid="compare-cell"
                  aria-busy={cell?.status === 'running'}
                >
                  <h4 title={col.label}>{col.label}</h4>
                  {cell?.status === 'error' ? (
                    <p className="field-error">{cell.error}</p>
                  ) : (
                    <pre className={`gen-text${cell?.text && !cell.text.trim() ? ' ws' : ''}`}>
                      {cell?.text && !cell.text.trim() ? showWhitespace(cell.text) : cell?.text}
                      {cell?.status === 'running' && <span className="cursor" aria-hidden="true" />}
                    </pre>
                  )}
                  {cell?.status === 'done' && !cell.text && (
                    <p className="muted small">(no text: the model stopped at once)</p>
                  )}
                  {cell?.status === 'done' && cell.text && !cell.text.trim() && (
                    <p className="muted small">(only whitespace: {whitespaceNote(cell.text)})</p>
                  )}
                </article>
              );
            })}
          </div>
        </div>
      ))}
    </section>
  );
}

function Evals({ s }: { s: AppState }) {
  const cmp = s.compare;
  if (cmp.evalStatus === 'idle') return null;
  return (
    <table className="results" data-testid="eval-table">
      <caption className="muted small">
        Mean loss per counted token on the{' '}
        {cmp.evalSplit === 'validation' ? 'validation split' : 'whole dataset (it has no validation split)'} of{' '}
        {cmp.evalDataset}. Lower is better; perplexity = e^loss.
      </caption>
      <thead>
        <tr>
          <th>Model</th>
          <th className="num">Loss</th>
          <th className="num">Perplexity</th>
          <th className="num">Tokens</th>
        </tr>
      </thead>
      <tbody>
        {cmp.evalColumns.map((col) => {
          const e = cmp.evals[col.key];
          return (
            <tr key={col.key}>
              <td>{col.label}</td>
              {e?.status === 'done' ? (
                <>
                  <td className="num">{formatLoss(e.loss)}</td>
                  <td className="num">{formatPerplexity(e.loss)}</td>
                  <td className="num">{e.tokens}</td>
                </>
              ) : (
                <td colSpan={3} className={e?.status === 'error' ? 'field-error' : 'muted'}>
                  {e?.status === 'error' ? e.error : e?.status === 'running' ? 'evaluating…' : 'waiting'}
                </td>
              )}
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

export function CompareView() {
  const s = useAppState();
  const c = useController();
  const cmp = s.compare;
  const blocker = c.compareBlocker();
  const loaded = s.model.info?.id ?? null;
  const generating = cmp.status === 'running';
  const evaluating = cmp.evalStatus === 'running';
  return (
    <div className="view">
      <h2>6 · Compare</h2>
      <p className="lead">The same prompts through the base model and your adapters, with the same sampling seed.</p>
      <div className="two-col">
        <section className="card" aria-labelledby="prompts-h">
          <h3 id="prompts-h">Prompts</h3>
          <div className="field">
            <label htmlFor="prompts">One prompt per line</label>
            <textarea id="prompts" rows={4} value={cmp.prompts} onChange={(e) => c.setPrompts(e.target.value)} />
          </div>
          <fieldset className="adapter-pick">
            <legend>Adapters</legend>
            {s.library.adapters.length === 0 && <p className="muted small">No adapters in the library yet.</p>}
            {s.library.adapters.map((a) => (
              <label key={a.id} className="check">
                <input
                  type="checkbox"
                  checked={cmp.adapterIds.includes(a.id)}
                  onChange={(e) => c.toggleCompareAdapter(a.id, e.target.checked)}
                />
                {a.name}
                <span className="pill" title="PEFT method">
                  {methodSpec(a.config.method ?? 'lora').label}
                </span>
                {loaded && a.baseModel !== loaded && <span className="pill warn">trained on {a.baseModel}</span>}
              </label>
            ))}
          </fieldset>
        </section>
        <section className="card" aria-labelledby="sampling-h">
          <h3 id="sampling-h">Sampling</h3>
          <SamplingFields sampling={cmp.sampling} onChange={(p) => c.setSampling(p)} seedHint="Shared by every column.">
            <div className="field">
              <span className="label-like">Prompt format</span>
              <label className="check">
                <input
                  type="checkbox"
                  checked={cmp.sampling.chat}
                  disabled={!!s.model.info && !s.model.info.hasChatTemplate}
                  onChange={(e) => c.setSampling({ chat: e.target.checked })}
                />
                chat template
              </label>
            </div>
          </SamplingFields>
        </section>
      </div>
      <div className="actions">
        {/* While its own work runs a button is aria-disabled, not disabled: a disabled button drops the keyboard focus. */}
        <button
          type="button"
          className="primary big"
          disabled={(!!blocker && !generating) || !cmp.prompts.trim()}
          aria-disabled={generating || undefined}
          onClick={() => !generating && void c.runCompare()}
          data-testid="run-compare"
        >
          {generating ? 'Generating…' : 'Generate side by side'}
        </button>
        <button
          type="button"
          className="secondary"
          disabled={!!blocker && !evaluating}
          aria-disabled={evaluating || undefined}
          onClick={() => !evaluating && void c.runEvaluation()}
          data-testid="run-eval"
        >
          {evaluating ? 'Evaluating…' : 'Validation loss and perplexity'}
        </button>
        {blocker && <span className="muted">{blocker}</span>}
      </div>
      {cmp.error && <MessageCard message={cmp.error} />}
      <Evals s={s} />
      <Outputs s={s} />
    </div>
  );
}
