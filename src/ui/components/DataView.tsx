/** Step 2: the dataset — upload, paste or demo; detected format, counts, issues, paged preview. */
import { useRef, useState } from 'react';
import type { DatasetFormat, DatasetIssue, DatasetProvisional, ExamplePreview } from '../../engine/types';
import { PAGE_SIZE } from '../actions/dataset';
import { formatInt } from '../format';
import { useAppState, useController } from '../hooks';
import { type AppState, runBusy } from '../state';
import { MessageCard, NumberField, SelectField, Stat } from './common';
import { ColumnMappingFields, HubDatasetSource } from './HubDataset';
import { validateTrain } from '../validate';

/**
 * The name a paste is read under. It has no extension, so the reader picks the container from the
 * text itself (a JSON array, JSON Lines, or plain text paragraphs) instead of taking any paste for
 * JSONL.
 */
export const PASTED_NAME = 'pasted text';

const FORMAT_LABEL: Record<DatasetFormat, string> = {
  text: 'Plain text (all tokens count)',
  alpaca: 'Instruction / Alpaca (responses count)',
  chat: 'Chat messages (assistant turns count)',
};

/** The rendered examples of a summary, or of the early one while the file is still counted. */
function Preview({ s, summary }: { s: AppState; summary: { preview: ExamplePreview[]; records: number } }) {
  const c = useController();
  const pages = Math.max(1, Math.ceil(summary.preview.length / PAGE_SIZE));
  const page = Math.min(s.dataset.page, pages - 1);
  const rows = summary.preview.slice(page * PAGE_SIZE, page * PAGE_SIZE + PAGE_SIZE);
  return (
    <section className="card" aria-labelledby="preview-h" data-testid="dataset-preview">
      <div className="card-head">
        <h3 id="preview-h">Rendered examples</h3>
        <span className="legend">
          <mark className="counted">counted in the loss</mark> <span className="uncounted">context only</span>
        </span>
      </div>
      <p className="muted small">
        Each record as the model sees it (chat template and special tokens included). Only highlighted tokens are
        trained on.
        {summary.preview.length < summary.records
          ? ` Showing the first ${summary.preview.length} of ${summary.records}.`
          : ''}
      </p>
      <ol className="examples" start={page * PAGE_SIZE + 1}>
        {rows.map((ex, i) => (
          <li key={`${ex.line}-${i}`} className="example">
            <div className="example-meta">
              line {ex.line}
              {ex.part ? ` · part ${formatInt(ex.part.index)} of ${formatInt(ex.part.of)}` : ''} · {ex.tokens} tokens ·{' '}
              {ex.countedTokens} counted
              {ex.truncated ? ' · truncated to max length' : ''}
            </div>
            <pre className="example-text">
              {ex.pieces.map((p, j) =>
                p.counted ? (
                  <mark key={j} className="counted">
                    {p.text}
                  </mark>
                ) : (
                  <span key={j} className="uncounted">
                    {p.text}
                  </span>
                ),
              )}
            </pre>
          </li>
        ))}
      </ol>
      <nav className="pager" aria-label="Preview pages">
        <button type="button" className="secondary" disabled={page === 0} onClick={() => c.setDatasetPage(page - 1)}>
          ← Previous
        </button>
        <span aria-live="polite">
          Page {page + 1} of {pages}
        </span>
        <button
          type="button"
          className="secondary"
          disabled={page >= pages - 1}
          onClick={() => c.setDatasetPage(page + 1)}
        >
          Next →
        </button>
      </nav>
    </section>
  );
}

function Summary({ s }: { s: AppState }) {
  const summary = s.dataset.summary!;
  const approx = summary.tokensEstimated ? '≈ ' : '';
  return (
    <section className="card" aria-labelledby="summary-h" data-testid="dataset-summary">
      <h3 id="summary-h">{summary.fileName}</h3>
      <div className="stats">
        <Stat label="format" value={summary.format} />
        <Stat label="records" value={formatInt(summary.records)} />
        <Stat
          label="train / validation"
          value={`${formatInt(summary.trainRecords)} / ${formatInt(summary.valRecords)}`}
        />
        <Stat label="train tokens" value={`${approx}${formatInt(summary.trainTokens)}`} />
        <Stat label="counted tokens" value={`${approx}${formatInt(summary.countedTokens)}`} />
        <Stat label="issues" value={formatInt(summary.issueCount)} />
      </div>
      <p className="muted small">
        {FORMAT_LABEL[summary.format]}.
        {summary.tokensEstimated
          ? ' Token counts are estimated from the first records: a dataset this large is tokenized as training reaches each record.'
          : ''}
      </p>
      {summary.truncated.examples > 0 && (
        <p className="small field-error" role="status" data-testid="dataset-truncated">
          {summary.tokensEstimated ? 'In the first records, ' : ''}
          {formatInt(summary.truncated.examples)} example{summary.truncated.examples === 1 ? ' is' : 's are'} longer
          than max length {formatInt(s.train.maxLen)} and cut to it, so{' '}
          {summary.truncated.examples === 1 ? 'its' : 'their'} end is not trained on (line
          {summary.truncated.lines.length === 1 ? '' : 's'} {summary.truncated.lines.join(', ')}
          {summary.truncated.examples > summary.truncated.lines.length ? ', …' : ''}). Raise max length in Settings, or
          shorten those records.
        </p>
      )}
      <Issues issues={summary.issues} count={summary.issueCount} />
    </section>
  );
}

function Issues({ issues, count, soFar }: { issues: DatasetIssue[]; count: number; soFar?: boolean }) {
  if (count === 0) return null;
  return (
    <details className="issues" open={count <= 8} data-testid="dataset-issues">
      <summary>
        {formatInt(count)} line{count === 1 ? '' : 's'} skipped or cut{soFar ? ' so far' : ''} — these records are not
        trained on
      </summary>
      <ul>
        {issues.slice(0, 200).map((iss, i) => (
          <li key={`${iss.line}-${i}`}>
            <span className="line-no">line {iss.line}</span> {iss.message}
          </li>
        ))}
        {count > 200 && <li>… and {formatInt(count - 200)} more.</li>}
      </ul>
    </details>
  );
}

/** While a large file is still counted: its first records and what the pass found so far. */
function Provisional({ p, fileName }: { p: DatasetProvisional; fileName: string }) {
  return (
    <section className="card" aria-labelledby="provisional-h" data-testid="dataset-provisional">
      <h3 id="provisional-h">{fileName}</h3>
      <div className="stats">
        <Stat label="format" value={p.format} />
        <Stat label="records so far" value={formatInt(p.records)} />
        <Stat label="issues so far" value={formatInt(p.issueCount)} />
      </div>
      <p className="muted small">
        {FORMAT_LABEL[p.format]}. The preview shows the first records; the counts and token totals follow once the whole
        file is read (training can start then).
      </p>
      <Issues issues={p.issues} count={p.issueCount} soFar />
    </section>
  );
}

export function DataView() {
  const s = useAppState();
  const c = useController();
  const fileInput = useRef<HTMLInputElement>(null);
  const [paste, setPaste] = useState('');
  const busy = runBusy(s.run.status);
  const d = s.dataset;
  const early = d.status === 'loading' ? d.progress?.provisional : undefined;
  const te = validateTrain(s.train, s.model.info);

  return (
    <div className="view">
      <h2>2 · Data</h2>
      <p className="lead">
        JSONL, JSON, CSV/TSV, Parquet or plain text, uploaded or from the Hub. Records can be plain text{' '}
        <code>{'{"text"}'}</code>, instructions <code>{'{"instruction","input","output"}'}</code> or chats{' '}
        <code>{'{"messages":[{"role","content"}]}'}</code>; the format is detected, and other column names can be
        mapped.
      </p>
      <div className="two-col">
        <section className="card" aria-labelledby="src-h">
          <h3 id="src-h">Source</h3>
          <div className="actions">
            <input
              ref={fileInput}
              id="dataset-file"
              type="file"
              // the button next to it is the control; the hidden input stays out of the tab order
              tabIndex={-1}
              aria-hidden="true"
              accept=".jsonl,.ndjson,.json,.csv,.tsv,.parquet,.txt,.md,text/*,application/json"
              className="visually-hidden"
              onChange={(e) => {
                const f = e.target.files?.[0];
                if (f) void c.readDatasetFile(f);
                e.target.value = '';
              }}
            />
            <button type="button" disabled={busy} onClick={() => fileInput.current?.click()}>
              Upload file…
            </button>
            <button type="button" className="secondary" disabled={busy} onClick={() => void c.useDemoDataset()}>
              Use the demo Q&amp;A set
            </button>
          </div>
          <HubDatasetSource />
          <div className="field">
            <label htmlFor="paste">Or paste records</label>
            <textarea
              id="paste"
              rows={6}
              placeholder={
                '{"instruction": "Say hi", "output": "Hi!"}\n{"instruction": "Count to three", "output": "1, 2, 3"}'
              }
              value={paste}
              onChange={(e) => setPaste(e.target.value)}
            />
          </div>
          <div className="actions">
            <button
              type="button"
              className="secondary"
              disabled={busy || !paste.trim()}
              onClick={() => void c.setDatasetText(PASTED_NAME, paste)}
            >
              Use pasted text
            </button>
          </div>
          <div className="form-grid">
            <SelectField<DatasetFormat | 'auto'>
              label="Format"
              name="format"
              value={d.format}
              disabled={busy}
              options={[
                { value: 'auto', label: 'Detect' },
                { value: 'text', label: 'Plain text' },
                { value: 'alpaca', label: 'Instruction (Alpaca)' },
                { value: 'chat', label: 'Chat messages' },
              ]}
              onChange={(v) => void c.setDatasetFormat(v)}
            />
            <NumberField
              label="Validation fraction"
              name="valFraction"
              value={s.train.valFraction}
              disabled={busy}
              hint="Held out for the validation loss (0–0.5)."
              error={te.valFraction}
              onChange={(v) => c.setTrain({ valFraction: v })}
            />
            <NumberField
              label="Max sequence length"
              name="maxLen"
              value={s.train.maxLen}
              disabled={busy}
              hint="Tokens per example; longer ones are cut."
              error={te.maxLen}
              onChange={(v) => c.setTrain({ maxLen: v })}
            />
          </div>
          <ColumnMappingFields />
        </section>
        <div className="stack" aria-live="polite">
          {!s.model.info && d.content && <p className="muted">Load a model to tokenize the data with its tokenizer.</p>}
          {!d.content && d.status !== 'error' && <p className="muted">No dataset yet.</p>}
          {d.status === 'loading' && (
            <p className="muted" role="status" data-testid="dataset-progress">
              {early && d.progress?.phase === 'scan'
                ? `Counting… ${formatInt(early.records)} records so far`
                : `${d.progress?.phase === 'scan' ? 'Reading' : 'Tokenizing'} ${d.fileName}…`}
              {d.progress && d.progress.total > 0
                ? early && d.progress.phase === 'scan'
                  ? ` (${Math.floor((100 * d.progress.done) / d.progress.total)}%)`
                  : ` ${Math.floor((100 * d.progress.done) / d.progress.total)}%`
                : ''}
            </p>
          )}
          {d.refused && <MessageCard message={d.refused} />}
          {d.status === 'error' && d.error && <MessageCard message={d.error} />}
          {d.summary && d.status !== 'error' && (te.maxLen || te.valFraction) && (
            <p className="small field-error" data-testid="summary-stale">
              These counts are for the last valid max length and validation fraction; fix the highlighted field to
              update them.
            </p>
          )}
          {early && <Provisional p={early} fileName={d.fileName} />}
          {d.summary && d.status !== 'error' && !early && <Summary s={s} />}
          {d.summary && d.status !== 'error' && !early && (
            <div className="actions">
              <button type="button" className="secondary" onClick={() => c.go('settings')}>
                Next: settings →
              </button>
            </div>
          )}
        </div>
      </div>
      {early ? (
        <Preview s={s} summary={early} />
      ) : (
        d.summary && d.status !== 'error' && <Preview s={s} summary={d.summary} />
      )}
    </div>
  );
}
