/**
 * The Data step's Hub source (a dataset repo id -> its data files by split -> download) and the
 * column mapping of the loaded file (which columns hold the instruction/output, the chat turns or
 * the text), for Hub datasets and any upload whose fields are named otherwise.
 */
import { useState } from 'react';
import type { ColumnMapping } from '../../engine/types';
import { splitsOf } from '../../train/data/hub';
import { formatBytes } from '../format';
import { useAppState, useController } from '../hooks';
import { ALL_SPLIT_FILES, runBusy } from '../state';
import { MessageCard, ProgressBar, SelectField } from './common';

export function HubDatasetSource() {
  const s = useAppState();
  const c = useController();
  const hub = s.dataset.hub;
  const [repo, setRepo] = useState(hub.repo);
  const busy = runBusy(s.run.status) || hub.status === 'listing' || hub.status === 'downloading';
  const splits = splitsOf(hub.files);
  const files = hub.files.filter((f) => f.split === hub.split);
  return (
    <details className="advanced" data-testid="hub-dataset" open={hub.status !== 'idle' || undefined}>
      <summary>From the Hugging Face Hub</summary>
      <form
        className="inline-form"
        onSubmit={(e) => {
          e.preventDefault();
          void c.listHubDataset(repo);
        }}
      >
        <label htmlFor="hub-dataset-id">Dataset repo id</label>
        <input
          id="hub-dataset-id"
          type="text"
          spellCheck={false}
          placeholder="owner/name"
          value={repo}
          onChange={(e) => setRepo(e.target.value)}
        />
        <button type="submit" className="secondary" disabled={busy || !repo.trim()}>
          {hub.status === 'listing' ? 'Listing…' : 'List files'}
        </button>
      </form>
      {hub.files.length > 0 && (
        <div className="form-grid">
          <SelectField
            label="Split"
            name="hubSplit"
            value={hub.split}
            disabled={busy}
            options={splits.map((x) => ({ value: x, label: x }))}
            onChange={(v) => c.chooseHubSplit(v)}
          />
          <SelectField
            label="File"
            name="hubFile"
            value={hub.path}
            disabled={busy}
            hint={
              files.length > 1
                ? `${files.length} files in this split: all are read, in order, as one dataset (as the datasets library does), or pick one.`
                : undefined
            }
            options={[
              ...(files.length > 1
                ? [
                    {
                      value: ALL_SPLIT_FILES,
                      label: `All ${files.length} files (${formatBytes(files.reduce((n, f) => n + f.size, 0))})`,
                    },
                  ]
                : []),
              ...files.map((f) => ({ value: f.path, label: `${f.path} (${formatBytes(f.size)})` })),
            ]}
            onChange={(v) => c.chooseHubFile(v)}
          />
        </div>
      )}
      {hub.files.length > 0 && (
        <div className="actions">
          <button type="button" disabled={busy || !hub.path} onClick={() => void c.downloadHubDataset()}>
            {hub.status === 'downloading' ? 'Downloading…' : 'Download and read'}
          </button>
        </div>
      )}
      {hub.status === 'downloading' && hub.progress && (
        <div data-testid="hub-dataset-progress">
          <ProgressBar
            value={hub.progress.loaded}
            max={hub.progress.total ?? 0}
            indeterminate={!hub.progress.total}
            label={`Downloading ${hub.progress.file ?? hub.path}`}
          />
          <p className="hint" role="status">
            {hub.path === ALL_SPLIT_FILES ? `The split's ${files.length} files (now ${hub.progress.file})` : hub.path}:{' '}
            {formatBytes(hub.progress.loaded)}
            {hub.progress.total ? ` of ${formatBytes(hub.progress.total)}` : ''}
          </p>
        </div>
      )}
      {hub.error && <MessageCard message={hub.error} />}
      <p className="hint">
        JSONL, JSON, CSV or Parquet files of a dataset repo. Gated and private datasets use the access token kept in the
        Model step. Downloads are kept in this browser.
      </p>
    </details>
  );
}

type Kind = 'auto' | ColumnMapping['kind'];

/** Column pickers for the mapping; changing any reads the dataset again. */
export function ColumnMappingFields() {
  const s = useAppState();
  const c = useController();
  const { columns, mapping } = s.dataset;
  if (!columns || columns.length === 0) return null;
  const busy = runBusy(s.run.status) || s.dataset.status === 'loading';
  const col = (v: string | undefined) => v ?? columns[0]!;
  const pick = (label: string, name: string, value: string, set: (v: string) => ColumnMapping, optional = false) => (
    <SelectField
      label={label}
      name={name}
      value={value}
      disabled={busy}
      options={[...(optional ? [{ value: '', label: '(none)' }] : []), ...columns.map((x) => ({ value: x, label: x }))]}
      onChange={(v) => void c.setDatasetMapping(set(v))}
    />
  );
  const kindOf = (k: Kind): ColumnMapping | null => {
    if (k === 'auto') return null;
    if (k === 'text') return { kind: 'text', text: col(undefined) };
    if (k === 'chat') return { kind: 'chat', messages: col(undefined) };
    return { kind: 'instruction', instruction: columns[0]!, output: columns[1] ?? columns[0]! };
  };
  return (
    <fieldset className="form-grid" data-testid="column-mapping">
      <legend>Columns</legend>
      <SelectField<Kind>
        label="Records are"
        name="mappingKind"
        value={mapping?.kind ?? 'auto'}
        disabled={busy}
        hint={`Columns of this file: ${columns.join(', ')}.`}
        options={[
          { value: 'auto', label: 'Named as Tabtune reads them' },
          { value: 'instruction', label: 'Instruction / output columns' },
          { value: 'chat', label: 'A chat column (messages or ShareGPT)' },
          { value: 'text', label: 'A text column' },
        ]}
        onChange={(k) => void c.setDatasetMapping(kindOf(k))}
      />
      {mapping?.kind === 'instruction' && (
        <>
          {pick('Instruction column', 'mapInstruction', mapping.instruction, (v) => ({ ...mapping, instruction: v }))}
          {pick('Input column', 'mapInput', mapping.input ?? '', (v) => ({ ...mapping, input: v || undefined }), true)}
          {pick('Output column', 'mapOutput', mapping.output, (v) => ({ ...mapping, output: v }))}
        </>
      )}
      {mapping?.kind === 'chat' &&
        pick('Chat column', 'mapMessages', mapping.messages, (v) => ({ kind: 'chat', messages: v }))}
      {mapping?.kind === 'text' && pick('Text column', 'mapText', mapping.text, (v) => ({ kind: 'text', text: v }))}
    </fieldset>
  );
}
