/** Step 4: train — start/pause/resume/stop, progress, live loss curve, resumable runs. */
import { useEffect, useRef, useState } from 'react';
import { saveFile } from '../download';
import {
  formatBytes,
  formatDate,
  formatDuration,
  formatInt,
  formatLoss,
  formatSci,
  formatSetting,
  methodSettingsLabel,
} from '../format';
import { useAppState, useController } from '../hooks';
import { type AppState, runBusy } from '../state';
import { LossChart } from './LossChart';
import { RunAtScale } from './RunAtScale';
import { MessageCard, ProgressBar, Stat } from './common';
import { exportFiles } from '../actions/library';
import { gpuBlocker } from '../actions/training';

/** Discarding deletes the run's checkpoint (its training so far): asked once more, as deleting an adapter is. */
function DiscardButton({ runId, disabled }: { runId: string; disabled: boolean }) {
  const c = useController();
  const [confirming, setConfirming] = useState(false);
  const discard = useRef<HTMLButtonElement>(null);
  const back = useRef(false);
  useEffect(() => {
    if (!confirming && back.current) discard.current?.focus();
    back.current = false;
  }, [confirming]);
  if (confirming) {
    return (
      <span className="confirm" role="group" aria-label="Confirm discard">
        <button type="button" className="danger" disabled={disabled} onClick={() => void c.discardRun(runId)} autoFocus>
          Discard the checkpoint
        </button>
        <button
          type="button"
          className="secondary"
          onClick={() => {
            back.current = true;
            setConfirming(false);
          }}
        >
          Keep
        </button>
      </span>
    );
  }
  return (
    <button
      type="button"
      ref={discard}
      className="secondary danger"
      disabled={disabled}
      onClick={() => setConfirming(true)}
    >
      Discard…
    </button>
  );
}

function Resumable({ s }: { s: AppState }) {
  const c = useController();
  if (s.resumable.length === 0) return null;
  const busy = runBusy(s.run.status);
  const noGpu = gpuBlocker(s.gpu.status);
  return (
    <section className="card notice-card" aria-labelledby="resume-h">
      <h3 id="resume-h">Unfinished runs</h3>
      <p className="muted small">
        These runs stopped before saving an adapter (the tab was closed or reloaded, or the GPU was lost).
      </p>
      {noGpu && (
        <p className="small" data-testid="resume-blocked">
          {noGpu} They stay here until then.
        </p>
      )}
      <ul className="runs">
        {s.resumable.map((r) => (
          <li key={r.id} data-testid="resumable-run">
            <div>
              <strong>{r.name}</strong>
              <div className="muted small">
                {r.checkpointStep !== null
                  ? `checkpoint at step ${r.checkpointStep}${r.totalSteps ? ` of ${r.totalSteps}` : ''}`
                  : 'no checkpoint yet: restarts from step 0'}{' '}
                · {formatDate(r.updatedAt)} ·{' '}
                {r.status === 'running' || r.status === 'paused' ? 'interrupted' : r.status}
                {r.error ? ` · ${r.error}` : ''}
              </div>
            </div>
            <div className="actions">
              <button type="button" disabled={busy || !!noGpu} onClick={() => void c.resumeRun(r.id)}>
                Resume
              </button>
              <DiscardButton runId={r.id} disabled={busy} />
            </div>
          </li>
        ))}
      </ul>
    </section>
  );
}

/** How often the Train view looks again for runs another tab is training. */
const ELSEWHERE_POLL_MS = 5000;

/** A sign that another tab is training on this GPU (both would run slower, and memory is shared). */
function Elsewhere({ s }: { s: AppState }) {
  const c = useController();
  useEffect(() => {
    const look = () => void c.refreshRuns();
    const timer = setInterval(look, ELSEWHERE_POLL_MS);
    document.addEventListener('visibilitychange', look);
    return () => {
      clearInterval(timer);
      document.removeEventListener('visibilitychange', look);
    };
  }, [c]);
  if (s.elsewhere.length === 0) return null;
  return (
    <div className="message warning" role="status" data-testid="training-elsewhere">
      <strong>Another tab is training on this GPU</strong>
      <ul>
        {s.elsewhere.map((r) => (
          <li key={r.id}>
            {r.name}
            {r.checkpointStep !== null
              ? ` (checkpoint at step ${r.checkpointStep}${r.totalSteps ? ` of ${r.totalSteps}` : ''})`
              : ''}
          </li>
        ))}
      </ul>
      <p className="small">
        A run here too shares the GPU with it: both run slower and may run out of GPU memory. Pause or finish it in that
        tab first (its run is resumable here once that tab closes).
      </p>
    </div>
  );
}

function Controls({ s }: { s: AppState }) {
  const c = useController();
  const st = s.run.status;
  const blockers = st === 'idle' || st === 'done' || st === 'failed' ? c.startBlockers() : [];
  // Keyboard users keep their place: Start gives way to Pause, Pause to Resume, Stop to a status
  // line. When the focused control unmounts (no blur event then), focus goes to the control that
  // replaced it instead of falling back to the page.
  const box = useRef<HTMLDivElement>(null);
  const hadFocus = useRef(false);
  useEffect(() => {
    const el = box.current;
    if (!el || !hadFocus.current || el.contains(document.activeElement)) return;
    if (document.activeElement && document.activeElement !== document.body) return;
    const next =
      el.querySelector<HTMLElement>('button:not(:disabled)') ?? el.querySelector<HTMLElement>('[data-focus-fallback]');
    next?.focus();
  }, [st]);
  const pausable = st === 'running' || st === 'paused';
  return (
    <div
      className="actions train-controls"
      ref={box}
      onFocus={() => {
        hadFocus.current = true;
      }}
      onBlur={(e) => {
        if (!e.currentTarget.contains(e.relatedTarget as Node | null)) hadFocus.current = false;
      }}
    >
      {(st === 'idle' || st === 'done' || st === 'failed') && (
        <button
          type="button"
          className="primary big"
          disabled={blockers.length > 0}
          onClick={() => void c.startTraining()}
          data-testid="start-training"
        >
          {st === 'idle' ? 'Start training' : 'Train again'}
        </button>
      )}
      {(st === 'idle' || st === 'done' || st === 'failed') && <RunAtScale />}
      {pausable && (
        // one element for both, so the focus stays on it when it turns from Pause into Resume
        <button
          type="button"
          className={st === 'running' ? 'secondary' : undefined}
          onClick={() => (st === 'running' ? c.pause() : c.resume())}
        >
          {st === 'running' ? 'Pause' : 'Resume'}
        </button>
      )}
      {pausable && (
        <button
          type="button"
          className="secondary danger"
          onClick={() => c.stop()}
          title="Stops after the current step and saves the adapter so far"
        >
          Stop and save
        </button>
      )}
      {(st === 'preparing' || st === 'stopping' || st === 'saving') && (
        <span className="muted" role="status" tabIndex={-1} data-focus-fallback>
          {st === 'preparing' ? 'Preparing…' : st === 'stopping' ? 'Stopping after this step…' : 'Saving the adapter…'}
        </span>
      )}
      {blockers.length > 0 && (
        <ul className="blockers" aria-label="Why training cannot start">
          {blockers.map((b) => (
            <li key={b}>{b}</li>
          ))}
        </ul>
      )}
    </div>
  );
}

function Progress({ s }: { s: AppState }) {
  const p = s.run.progress;
  const total = s.run.totalSteps ?? p?.totalSteps ?? 0;
  const step = p?.step ?? s.run.history[s.run.history.length - 1]?.step ?? 0;
  const lastLoss = [...s.run.history].reverse().find((h) => h.loss !== null)?.loss ?? null;
  const lastVal = [...s.run.history].reverse().find((h) => h.valLoss !== null)?.valLoss ?? null;
  const running = s.run.status === 'running' || s.run.status === 'paused' || s.run.status === 'stopping';
  return (
    <section className="card" aria-labelledby="progress-h" data-status={s.run.status} data-testid="train-progress">
      <div className="card-head">
        <h3 id="progress-h">
          {s.run.status === 'paused'
            ? 'Paused'
            : s.run.status === 'done'
              ? s.run.stoppedEarly
                ? 'Stopped early'
                : 'Finished'
              : running
                ? 'Training'
                : 'Progress'}
        </h3>
        <span className="muted small" aria-live="polite">
          step <span data-testid="step">{step}</span> of {total || '—'}
        </span>
      </div>
      {s.run.startup && (
        <p className="muted" role="status" data-testid="train-startup">
          {s.run.startup}
        </p>
      )}
      {s.run.tuning && (
        <p className="muted" role="status" data-testid="train-tuning">
          {s.run.tuning}
        </p>
      )}
      <ProgressBar label="Training progress" value={step} max={total} indeterminate={!total && !!s.run.startup} />
      <div className="stats">
        <Stat label="loss" value={formatLoss(lastLoss)} />
        <Stat label="validation loss" value={formatLoss(lastVal)} />
        <Stat label="tokens / s" value={p ? formatInt(p.tokensPerSecond) : '—'} />
        <Stat label="time left" value={running && p ? formatDuration(p.etaSeconds) : '—'} />
        <Stat label="elapsed" value={p ? formatDuration(p.elapsedSeconds) : '—'} />
        <Stat label="GPU memory" value={p ? formatBytes(p.gpuBytes) : '—'} />
        <Stat label="learning rate" value={p ? formatSci(p.lr) : '—'} />
        <Stat label="epoch" value={p ? String(p.epoch + 1) : '—'} />
      </div>
      {s.run.history.length > 0 ? (
        <LossChart history={s.run.history} totalSteps={total || null} />
      ) : (
        <div className="chart-empty">The loss curve appears here once training starts.</div>
      )}
      {s.run.checkpoint && !(s.run.status === 'done' && s.run.adapterId) && (
        <p className="muted small" data-testid="last-checkpoint">
          Last checkpoint: step {s.run.checkpoint.step}, saved {new Date(s.run.checkpoint.at).toLocaleTimeString()} — a
          reload or crash resumes from here.
        </p>
      )}
    </section>
  );
}

function Finished({ s }: { s: AppState }) {
  const c = useController();
  if (s.run.status !== 'done') return null;
  const rec = s.library.adapters.find((a) => a.id === s.run.adapterId);
  if (s.run.unsaved) {
    const u = s.run.unsaved;
    return (
      <MessageCard
        level="error"
        message={{ title: 'The adapter is not saved', detail: 'Download it now; it is lost when this tab closes.' }}
      >
        <div className="actions">
          <button
            type="button"
            onClick={() => {
              const f = exportFiles(
                {
                  name: u.name,
                  baseModel: s.model.info?.id ?? 'model',
                  config: {
                    method: s.lora.method ?? 'lora',
                    r: s.lora.r,
                    lora_alpha: s.lora.lora_alpha,
                    lora_dropout: s.lora.lora_dropout,
                    target_modules: s.lora.target_modules,
                    use_rslora: s.lora.use_rslora,
                  },
                  finalLoss: null,
                  steps: null,
                  datasetName: null,
                },
                { adapterConfig: u.adapterConfig, adapterModel: u.adapterModel },
                'zip',
              );
              saveFile(f.name, f.bytes, f.type);
            }}
          >
            Download adapter (.zip)
          </button>
        </div>
      </MessageCard>
    );
  }
  if (!rec) return null;
  return (
    <div className="message info" role="status" data-testid="train-finished">
      <strong>Adapter saved: {rec.name}</strong>
      <p>
        {rec.stoppedEarly ? 'Stopped early' : 'Finished'} after {rec.steps} steps · final loss{' '}
        {formatLoss(rec.finalLoss)}
        {rec.finalValLoss !== null ? ` · validation ${formatLoss(rec.finalValLoss)}` : ''} ·{' '}
        {formatBytes(rec.sizeBytes)}
      </p>
      <div className="actions">
        <button type="button" onClick={() => c.go('compare')}>
          Compare with the base model →
        </button>
        <button type="button" className="secondary" onClick={() => c.go('library')}>
          Open the library
        </button>
      </div>
    </div>
  );
}

export function TrainView() {
  const s = useAppState();
  const summary = s.dataset.summary;
  return (
    <div className="view">
      <h2>4 · Train</h2>
      <p className="lead">
        {s.model.info ? <strong>{s.model.info.id}</strong> : 'No model'} on{' '}
        {summary ? <strong>{summary.fileName}</strong> : 'no dataset'} · {methodSettingsLabel(s.lora)} · lr{' '}
        {formatSci(s.train.lr)},{' '}
        {s.train.steps > 0
          ? `${formatSetting(s.train.steps)} steps`
          : `${formatSetting(s.train.epochs)} epoch${s.train.epochs === 1 ? '' : 's'}`}
        , batch {formatSetting(s.train.batch)}
        {s.train.gradAccum > 1 ? ` × ${s.train.gradAccum}` : ''}. Training runs in a background worker: this page stays
        usable.
      </p>
      <Elsewhere s={s} />
      <Resumable s={s} />
      <Controls s={s} />
      {s.run.error && s.run.status === 'failed' && <MessageCard message={s.run.error} />}
      <Finished s={s} />
      <Progress s={s} />
    </div>
  );
}
