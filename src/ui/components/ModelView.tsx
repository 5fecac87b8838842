/** Step 1: pick a model (list, Hub id, local folder), see its cost, load it. */
import { type DragEvent, useRef, useState } from 'react';
import { isChoiceLoaded } from '../actions/model';
import { CATALOG, type ModelChoice, catalogEntry, isHubId } from '../catalog';
import { hubIdProblem } from '../../model/source';
import { formatBytes, formatCount, formatPercent } from '../format';
import { useAppState, useController } from '../hooks';
import { type AppState, runBusy } from '../state';
import { MessageCard, ProgressBar } from './common';
import { AccessToken } from './AccessToken';

/** Files of a dropped folder, with paths relative to it (the File System entries API). */
async function filesFromDrop(ev: DragEvent): Promise<File[]> {
  const items = Array.from(ev.dataTransfer.items ?? []);
  const entries = items.map((i) => i.webkitGetAsEntry?.()).filter((e): e is FileSystemEntry => !!e);
  if (entries.length === 0) return Array.from(ev.dataTransfer.files ?? []);
  const out: File[] = [];
  const walk = async (entry: FileSystemEntry, prefix: string): Promise<void> => {
    if (entry.isFile) {
      const file = await new Promise<File>((res, rej) => (entry as FileSystemFileEntry).file(res, rej));
      Object.defineProperty(file, 'webkitRelativePath', { value: `${prefix}${file.name}` });
      out.push(file);
    } else if (entry.isDirectory) {
      const reader = (entry as FileSystemDirectoryEntry).createReader();
      for (;;) {
        const batch = await new Promise<FileSystemEntry[]>((res, rej) => reader.readEntries(res, rej));
        if (batch.length === 0) break;
        for (const e of batch) await walk(e, `${prefix}${entry.name}/`);
      }
    }
  };
  for (const e of entries) await walk(e, '');
  return out;
}

function folderChoice(files: File[]): ModelChoice | null {
  if (files.length === 0) return null;
  const first = files[0]!;
  const rel = first.webkitRelativePath || first.name;
  const id = rel.includes('/') ? rel.split('/')[0]! : 'local-model';
  return { kind: 'files', id, files };
}

function CostCard({ s }: { s: AppState }) {
  const c = useController();
  const { check, choice } = s.model;
  if (!choice) return null;
  if (check.status === 'checking')
    return (
      <p className="muted" role="status">
        Reading config.json of {choice.id}…
      </p>
    );
  if (check.status === 'error' && check.error) {
    return (
      <MessageCard message={check.error}>
        <div className="actions">
          <button type="button" className="secondary" onClick={() => void c.chooseModel(choice)}>
            Try again
          </button>
        </div>
      </MessageCard>
    );
  }
  const cost = check.cost;
  if (!cost) return null;
  const where =
    choice.kind === 'files'
      ? 'Read from disk'
      : choice.kind === 'demo'
        ? 'Bundled with the app'
        : check.cached
          ? 'Cached in this browser'
          : 'Download';
  return (
    <section className="cost" aria-label="Cost of this model">
      <dl className="facts compact">
        <div>
          <dt>Parameters</dt>
          <dd>{formatCount(cost.parameters)}</dd>
        </div>
        <div>
          <dt>{where}</dt>
          <dd>
            {check.cached && choice.kind === 'hub'
              ? `${formatBytes(cost.downloadBytes)} (no download)`
              : formatBytes(cost.downloadBytes)}
          </dd>
        </div>
        <div>
          <dt>GPU memory to train (est.)</dt>
          <dd>
            {formatBytes(cost.totalBytes)}
            {cost.quantize === 'nf4' ? ` (4-bit NF4 frozen weights${cost.prequantized ? ', as stored' : ''})` : ''}
          </dd>
        </div>
        <div>
          <dt>Trainable LoRA parameters</dt>
          <dd>
            {cost.trainableParams === null
              ? '—'
              : `${formatCount(cost.trainableParams)} (${formatPercent(cost.trainablePercent ?? 0)})`}
          </dd>
        </div>
        <div>
          <dt>Largest tensor</dt>
          <dd>{formatBytes(cost.largestTensorBytes)}</dd>
        </div>
        <div>
          <dt>Linear modules</dt>
          <dd>{cost.linearModules.join(', ')}</dd>
        </div>
      </dl>
      <p className="note">
        Memory estimate at batch {s.train.batch} × max length {s.train.maxLen}; it follows the settings.
      </p>
      {cost.blockers.map((b) => (
        <MessageCard key={b} message={{ title: 'This model cannot be trained on this GPU', detail: b }} />
      ))}
      {cost.nf4Offer && (
        <MessageCard
          level="info"
          message={{
            title: 'Fits in 4 bits',
            detail:
              `With 4-bit NF4 frozen weights (QLoRA, as bitsandbytes quantizes them) training needs about ` +
              `${formatBytes(cost.nf4Offer.totalBytes)} instead of ${formatBytes(cost.totalBytes)}: the base model is ` +
              `quantized while it loads and the LoRA adapter still trains in full precision.`,
          }}
        >
          <div className="actions">
            <button type="button" className="secondary" onClick={() => void c.setFrozen({ quantize: 'nf4' })}>
              Use 4-bit NF4
            </button>
          </div>
        </MessageCard>
      )}
      {cost.warnings.map((w) => (
        <MessageCard key={w} level="warning" message={{ title: 'Note', detail: w }} />
      ))}
    </section>
  );
}

/** Origin and licence of a suggested model, with a link to its model card. */
function ModelCard({ id }: { id: string }) {
  const card = catalogEntry(id)?.card;
  if (!card) return null;
  return (
    <p className="note" data-testid="model-card">
      {card.origin} Licence: {card.licence}. <a href={card.href}>Model card</a>
    </p>
  );
}

function LoadStatus({ s }: { s: AppState }) {
  const { load, info } = s.model;
  if (load.status === 'loading' && load.progress) {
    const p = load.progress;
    const label =
      p.phase === 'download'
        ? `Reading ${p.file}: ${formatBytes(p.fileLoaded)}${p.fileTotal ? ` of ${formatBytes(p.fileTotal)}` : ''}`
        : p.phase === 'tokenizer'
          ? 'Preparing the tokenizer…'
          : `Uploading weights to the GPU (${p.fileLoaded} of ${p.fileTotal ?? '?'} tensors)`;
    const max = p.phase === 'upload' ? (p.fileTotal ?? 1) : (p.expectedBytes ?? p.fileTotal ?? 0);
    const value = p.phase === 'upload' ? p.fileLoaded : p.expectedBytes ? p.bytes : p.fileLoaded;
    return (
      <div className="load-status" role="status">
        <p>{label}</p>
        <ProgressBar
          label="Model loading progress"
          value={value}
          max={max}
          indeterminate={max === 0 || p.phase === 'tokenizer'}
        />
        {p.phase === 'download' && p.expectedBytes ? (
          <p className="muted small">
            {formatBytes(p.bytes)} of about {formatBytes(p.expectedBytes)} in all
          </p>
        ) : null}
      </div>
    );
  }
  if (load.status === 'error' && load.error) return <MessageCard message={load.error} />;
  if (info) {
    return (
      <div className="loaded" role="status" data-testid="model-loaded">
        <span className="pill yes">Loaded</span> <strong>{info.id}</strong> · {info.modelType} ·{' '}
        {formatCount(info.parameters)} parameters · {info.quantization ? `4-bit NF4 (${info.dtype})` : info.dtype} ·{' '}
        {info.numLayers} layers · hidden {info.hiddenSize} ·{' '}
        {info.hasChatTemplate ? 'chat template' : 'no chat template'}
      </div>
    );
  }
  return null;
}

export function ModelView() {
  const s = useAppState();
  const c = useController();
  const [hubId, setHubId] = useState('');
  const [dragging, setDragging] = useState(false);
  const folderInput = useRef<HTMLInputElement>(null);
  const { choice, check, load, info } = s.model;
  const loading = load.status === 'loading';
  const busy = loading || runBusy(s.run.status);
  const isLoaded = isChoiceLoaded(c.store, s);
  const canLoad =
    !!choice &&
    check.status === 'ready' &&
    !check.cost?.blockers.length &&
    !busy &&
    s.gpu.status === 'ready' &&
    !isLoaded;
  const hubValid = isHubId(hubId);

  const pick = (ch: ModelChoice) => void c.chooseModel(ch);
  const loadLabel = isLoaded
    ? 'Loaded'
    : !choice
      ? 'Load model'
      : choice.kind === 'hub' && !check.cached && check.status === 'ready'
        ? `Download${check.cost?.downloadBytes ? ` ${formatBytes(check.cost.downloadBytes)}` : ''} and load`
        : 'Load model';

  return (
    <div className="view">
      <h2>1 · Model</h2>
      <p className="lead">
        Pick a small model from the list, type any Hugging Face model id, or drop a model folder. Its size and the GPU
        memory training needs are shown before anything big is downloaded; downloads are kept in this browser.
      </p>
      <div className="two-col">
        <section className="card" aria-labelledby="catalog-h">
          <h3 id="catalog-h">Suggested models</h3>
          <ul className="catalog">
            {CATALOG.map((e) => {
              const selected = choice?.id === e.id;
              const cached = s.library.models.some((m) => m.id === e.id);
              return (
                <li key={e.id}>
                  <button
                    type="button"
                    className={`catalog-item${selected ? ' selected' : ''}`}
                    aria-pressed={selected}
                    disabled={busy}
                    onClick={() => pick(e.demo ? { kind: 'demo', id: e.id } : { kind: 'hub', id: e.id })}
                  >
                    <span className="catalog-title">
                      {e.label}
                      {e.demo && <span className="pill accent">offline</span>}
                      {cached && <span className="pill yes">cached</span>}
                      {info?.id === e.id && <span className="pill yes">loaded</span>}
                    </span>
                    <span className="catalog-meta">
                      {e.approxParams} params · {e.approxDownload}
                      {e.demo ? '' : ` · ${e.id}`}
                    </span>
                    <span className="catalog-note">{e.note}</span>
                  </button>
                </li>
              );
            })}
          </ul>
        </section>
        <div className="stack">
          <section className="card" aria-labelledby="hub-h">
            <h3 id="hub-h">Any Hugging Face model</h3>
            <form
              className="inline-form"
              onSubmit={(ev) => {
                ev.preventDefault();
                if (hubValid) pick({ kind: 'hub', id: hubId.trim() });
              }}
            >
              <label htmlFor="hub-id" className="visually-hidden">
                Model id
              </label>
              <input
                id="hub-id"
                type="text"
                placeholder="owner/name, e.g. HuggingFaceTB/SmolLM2-135M"
                value={hubId}
                autoComplete="off"
                spellCheck={false}
                aria-invalid={hubId !== '' && !hubValid ? true : undefined}
                aria-describedby="hub-hint"
                onChange={(e) => setHubId(e.target.value)}
              />
              <button type="submit" disabled={!hubValid || busy}>
                Check
              </button>
            </form>
            <p id="hub-hint" className="hint">
              {hubId !== '' && !hubValid
                ? `A model id looks like owner/name: ${hubIdProblem(hubId.trim()) ?? ''}`
                : 'Llama, Mistral, Qwen2/2.5/3 and GPT-2 architectures with safetensors weights (F32, F16, BF16).'}
            </p>
            <AccessToken />
          </section>
          <section
            className={`card drop${dragging ? ' dragging' : ''}`}
            aria-labelledby="folder-h"
            onDragOver={(e) => {
              e.preventDefault();
              setDragging(true);
            }}
            onDragLeave={() => setDragging(false)}
            onDrop={(e) => {
              e.preventDefault();
              setDragging(false);
              void filesFromDrop(e).then((files) => {
                const ch = folderChoice(files);
                if (ch) pick(ch);
              });
            }}
          >
            <h3 id="folder-h">A model folder on this computer</h3>
            <p className="muted">Drop a folder with config.json, tokenizer.json and *.safetensors here, or</p>
            <input
              ref={folderInput}
              id="folder-input"
              type="file"
              // the button next to it is the control; the hidden input stays out of the tab order
              tabIndex={-1}
              aria-hidden="true"
              className="visually-hidden"
              multiple
              {...{ webkitdirectory: '', directory: '' }}
              onChange={(e) => {
                const ch = folderChoice(Array.from(e.target.files ?? []));
                if (ch) pick(ch);
                e.target.value = '';
              }}
            />
            <button type="button" className="secondary" disabled={busy} onClick={() => folderInput.current?.click()}>
              Choose folder…
            </button>
          </section>
          <section className="card" aria-labelledby="sel-h" aria-live="polite">
            <h3 id="sel-h">{choice ? choice.id : 'No model selected'}</h3>
            {choice && <ModelCard id={choice.id} />}
            <CostCard s={s} />
            <div className="actions">
              <button type="button" disabled={!canLoad} onClick={() => void c.loadModel()} data-testid="load-model">
                {loadLabel}
              </button>
              {isLoaded && (
                <button type="button" className="secondary" onClick={() => c.go('data')}>
                  Next: data →
                </button>
              )}
            </div>
            <LoadStatus s={s} />
          </section>
        </div>
      </div>
    </div>
  );
}
