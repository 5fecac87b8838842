/** Step 5: the adapter library — rename, delete, download (zip or the two PEFT files), import; cached models. */
import { methodSpec } from '../../lora/methods';
import { useEffect, useRef, useState } from 'react';
import type { AdapterRecord } from '../../store/types';
import { saveBlob, saveFile } from '../download';
import { formatBytes, formatDate, formatLoss, targetsLabel } from '../format';
import { useAppState, useController } from '../hooks';
import { PushToHub } from './PushToHub';
import { MessageCard } from './common';
import { CompareRuns, RunDetails } from './RunHistory';

/** A second click on the same download within this many milliseconds is a double click. */
const DOWNLOAD_REPEAT_MS = 1500;

function AdapterRow({ a, loadedModel }: { a: AdapterRecord; loadedModel: string | null }) {
  const c = useController();
  const [editing, setEditing] = useState(false);
  const [name, setName] = useState(a.name);
  const [confirming, setConfirming] = useState(false);
  // Keyboard users keep their place: closing the rename form or the delete confirmation puts focus
  // back on the button that opened it (the form and the confirmation unmount).
  const renameButton = useRef<HTMLButtonElement>(null);
  const deleteButton = useRef<HTMLButtonElement>(null);
  const refocus = useRef<'rename' | 'delete' | null>(null);
  useEffect(() => {
    if (!editing && refocus.current === 'rename') renameButton.current?.focus();
    if (!confirming && refocus.current === 'delete') deleteButton.current?.focus();
    refocus.current = null;
  }, [editing, confirming]);
  const closeRename = () => {
    refocus.current = 'rename';
    setEditing(false);
  };
  // A double click must not download twice: repeats of one download within a moment are ignored.
  const lastDownload = useRef<Record<string, number>>({});
  const download = async (what: 'zip' | 'config' | 'model') => {
    const now = Date.now();
    if (now - (lastDownload.current[what] ?? -Infinity) < DOWNLOAD_REPEAT_MS) return;
    lastDownload.current[what] = now;
    const f = await c.adapterDownload(a.id, what);
    if (f) saveFile(f.name, f.bytes, f.type);
  };
  const [merging, setMerging] = useState<string | null>(null);
  const [merged, setMerged] = useState<{ name: string; size: number; files: string[] } | null>(null);
  const merge = async () => {
    setMerging('starting…');
    setMerged(null);
    try {
      const f = await c.mergedDownload(a.id, (done, total) => setMerging(`${done}/${total} tensors`));
      if (f) {
        saveBlob(f.name, f.blob);
        setMerged({ name: f.name, size: f.blob.size, files: f.files });
      }
    } finally {
      setMerging(null);
    }
  };
  const targets = targetsLabel(a.config.target_modules);
  const mismatch = loadedModel !== null && a.baseModel !== loadedModel;
  const lowRank = methodSpec(a.config.method ?? 'lora').lowRank;
  // A LoftQ adapter exports with its quantized backbone instead of merging (PEFT's LoftQ workflow).
  const loftqBackbone = a.config.loftq?.backbone ?? false;
  return (
    <li className="adapter" data-testid="adapter-row">
      <div className="adapter-main">
        {editing ? (
          <form
            className="inline-form"
            onSubmit={(e) => {
              e.preventDefault();
              void c.renameAdapter(a.id, name).then((ok) => ok && closeRename());
            }}
            onKeyDown={(e) => {
              if (e.key === 'Escape') {
                setName(a.name);
                closeRename();
              }
            }}
          >
            <label htmlFor={`rename-${a.id}`} className="visually-hidden">
              New name
            </label>
            <input id={`rename-${a.id}`} value={name} onChange={(e) => setName(e.target.value)} autoFocus />
            <button type="submit" disabled={!name.trim()}>
              Save
            </button>
            <button
              type="button"
              className="secondary"
              onClick={() => {
                setName(a.name);
                closeRename();
              }}
            >
              Cancel
            </button>
          </form>
        ) : (
          <h4 className="adapter-name" data-testid="adapter-name">
            {a.name}
          </h4>
        )}
        <div className="adapter-meta">
          <span title="Base model">{a.baseModel}</span>
          {mismatch && <span className="pill warn">other base model</span>}
          <span className="pill">{a.origin}</span>
          {a.stoppedEarly && <span className="pill warn">stopped early</span>}
        </div>
        <dl className="facts compact">
          <div>
            <dt>{methodSpec(a.config.method ?? 'lora').label}</dt>
            <dd>
              {lowRank ? (
                <>
                  r {a.config.r} · alpha {a.config.lora_alpha}
                  {a.config.use_rslora ? ' · rsLoRA' : ''} · {targets}
                  {a.config.loftq && (
                    <span
                      className="pill"
                      data-testid="loftq-pill"
                      title={
                        a.config.loftq.backbone
                          ? 'Trained on the base model’s 4-bit NF4 backbone (LoftQ), which Compare, Chat and evaluation put in place for it'
                          : 'A LoftQ adapter from PEFT files: it belongs on its quantized backbone, which these files do not include'
                      }
                    >
                      LoftQ · {a.config.loftq.loftq_iter} iter{a.config.loftq.loftq_iter === 1 ? '' : 's'}
                    </span>
                  )}
                </>
              ) : a.config.num_virtual_tokens !== undefined ? (
                `${a.config.num_virtual_tokens} virtual tokens`
              ) : (
                targets
              )}
            </dd>
          </div>
          <div>
            <dt>Final loss</dt>
            <dd>
              {formatLoss(a.finalLoss)}
              {a.finalValLoss !== null ? ` (validation ${formatLoss(a.finalValLoss)})` : ''}
              {a.steps !== null ? ` after ${a.steps} steps` : ''}
            </dd>
          </div>
          <div>
            <dt>Made</dt>
            <dd>
              {formatDate(a.createdAt)}
              {a.datasetName ? ` on ${a.datasetName}` : ''}
            </dd>
          </div>
          <div>
            <dt>Size</dt>
            <dd>{formatBytes(a.sizeBytes)}</dd>
          </div>
        </dl>
        <RunDetails a={a} />
        {merged && (
          <p className="hint" role="status" data-testid="merge-done">
            {loftqBackbone ? 'Exported with its LoftQ backbone' : 'Merged into the loaded model'} and saved as{' '}
            <strong>{merged.name}</strong> ({formatBytes(merged.size)}):{' '}
            {loftqBackbone
              ? `the PEFT files and loftq-base/, a Hugging Face model folder (${merged.files.join(', ')})`
              : `a Hugging Face model folder (${merged.files.join(', ')}) that transformers loads as it is.`}
          </p>
        )}
      </div>
      <div className="adapter-actions">
        <button type="button" onClick={() => void download('zip')} data-testid="download-zip">
          Download .zip
        </button>
        <button type="button" className="secondary" onClick={() => void download('config')}>
          adapter_config.json
        </button>
        <button type="button" className="secondary" onClick={() => void download('model')}>
          adapter_model.safetensors
        </button>
        <button
          type="button"
          className="secondary"
          data-testid="merge-adapter"
          disabled={merging !== null || loadedModel === null || mismatch || !lowRank}
          title={
            !lowRank
              ? `${methodSpec(a.config.method ?? 'lora').label} adapters do not merge into the weights here; LoRA and DoRA do`
              : mismatch || loadedModel === null
                ? 'Load this adapter’s base model first (Model)'
                : loftqBackbone
                  ? 'The PEFT adapter and, in loftq-base/, its 4-bit NF4 backbone as a Hugging Face model folder (.zip): PEFT’s LoftQ workflow loads the adapter on that folder'
                  : 'The loaded model with this adapter folded in: a Hugging Face model folder (.zip)'
          }
          onClick={() => void merge()}
        >
          {merging !== null
            ? `${loftqBackbone ? 'Exporting' : 'Merging'}… ${merging}`
            : loftqBackbone
              ? 'Adapter + LoftQ backbone (.zip)'
              : 'Merge into model (.zip)'}
        </button>
        <PushToHub id={a.id} name={a.name} />
        <button
          type="button"
          className="secondary"
          onClick={() => {
            c.toggleCompareAdapter(a.id, true);
            c.go('compare');
            window.location.hash = '/compare';
          }}
        >
          Compare →
        </button>
        <button
          type="button"
          className="secondary"
          ref={renameButton}
          onClick={() => setEditing(true)}
          disabled={editing}
        >
          Rename
        </button>
        {confirming ? (
          <span className="confirm" role="group" aria-label="Confirm delete">
            <button type="button" className="danger" onClick={() => void c.deleteAdapter(a.id)} autoFocus>
              Delete for good
            </button>
            <button
              type="button"
              className="secondary"
              onClick={() => {
                refocus.current = 'delete';
                setConfirming(false);
              }}
            >
              Keep
            </button>
          </span>
        ) : (
          <button type="button" className="secondary danger" ref={deleteButton} onClick={() => setConfirming(true)}>
            Delete…
          </button>
        )}
      </div>
    </li>
  );
}

export function LibraryView() {
  const s = useAppState();
  const c = useController();
  const input = useRef<HTMLInputElement>(null);
  const lib = s.library;
  return (
    <div className="view">
      <h2>5 · Adapters</h2>
      <p className="lead">
        Adapters stay in this browser (IndexedDB) until deleted. Downloads are standard PEFT files: load them in Python
        with <code>PeftModel.from_pretrained</code>.
      </p>
      {!s.storageOk && (
        <MessageCard
          level="warning"
          message={{
            title: 'No browser storage',
            detail: 'This browser gives the page no IndexedDB; adapters are not kept.',
          }}
        />
      )}
      <section className="card" aria-labelledby="import-h">
        <div className="card-head">
          <h3 id="import-h">Import a PEFT adapter</h3>
          <div className="actions">
            <input
              ref={input}
              id="import-files"
              type="file"
              // the button next to it is the control; the hidden input stays out of the tab order
              tabIndex={-1}
              aria-hidden="true"
              multiple
              accept=".json,.safetensors,.zip"
              className="visually-hidden"
              onChange={(e) => {
                const files = Array.from(e.target.files ?? []);
                e.target.value = '';
                if (files.length)
                  void c.importAdapter(
                    files.map((f) => ({ name: f.name, bytes: async () => new Uint8Array(await f.arrayBuffer()) })),
                  );
              }}
            />
            <button
              type="button"
              className="secondary"
              disabled={lib.importing || !s.storageOk}
              onClick={() => input.current?.click()}
            >
              {lib.importing ? 'Importing…' : 'Choose files…'}
            </button>
          </div>
        </div>
        <p className="muted small">
          Select adapter_config.json and adapter_model.safetensors together (e.g. trained with Python's peft), or a .zip
          of them.
        </p>
        {lib.importError && <MessageCard message={lib.importError} />}
      </section>
      {lib.adapters.length === 0 ? (
        <p className="muted">No adapters yet. Train one, or import one.</p>
      ) : (
        <>
          <CompareRuns adapters={lib.adapters} />
          {/* the adapters' names are h4: this heading puts them under "Saved adapters", not under "Import" */}
          <h3 id="saved-h" className="visually-hidden">
            Saved adapters
          </h3>
          <ul className="adapters" aria-label="Adapters">
            {lib.adapters.map((a) => (
              <AdapterRow key={a.id} a={a} loadedModel={s.model.info?.id ?? null} />
            ))}
          </ul>
        </>
      )}
      <section className="card" aria-labelledby="models-h">
        <h3 id="models-h">Cached models</h3>
        {lib.storage && (
          <p className="muted small">
            This site uses {formatBytes(lib.storage.usage)} of {formatBytes(lib.storage.quota)} the browser allows.{' '}
            {lib.storage.persisted
              ? 'Storage is persistent (the browser will not clear it on its own).'
              : 'The browser may clear it when the disk is short of space.'}
          </p>
        )}
        {lib.models.length === 0 ? (
          <p className="muted">No downloaded models. The demo model ships with the app and needs no cache.</p>
        ) : (
          <table className="results">
            <thead>
              <tr>
                <th>Model</th>
                <th className="num">Size</th>
                <th>Cached</th>
                <th>
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {lib.models.map((m) => (
                <tr key={m.id}>
                  <td>{m.id}</td>
                  <td className="num">{formatBytes(m.bytes)}</td>
                  <td>{formatDate(m.cachedAt)}</td>
                  <td>
                    <button
                      type="button"
                      className="secondary danger small"
                      onClick={() => void c.deleteCachedModel(m.id)}
                    >
                      Delete files
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </div>
  );
}
