/**
 * An adapter's "Push to Hub…" (Adapters step): a model repo name and private/public, then the push
 * with the access token kept in this browser (Model step); the phases as it goes and a link to the
 * repo when done. Errors (no token, no write access, an invalid name) come as notices.
 */
import { useState } from 'react';
import { useController } from '../hooks';

export function PushToHub({ id, name }: { id: string; name: string }) {
  const c = useController();
  const [open, setOpen] = useState(false);
  const [repo, setRepo] = useState('');
  const [isPrivate, setPrivate] = useState(true);
  const [phase, setPhase] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const field = `push-repo-${id}`;
  if (!open)
    return (
      <button type="button" className="secondary" data-testid="push-adapter" onClick={() => setOpen(true)}>
        Push to Hub…
      </button>
    );
  return (
    <form
      className="inline-form push-form"
      aria-label={`Push ${name} to the Hugging Face Hub`}
      onSubmit={(e) => {
        e.preventDefault();
        setDone(null);
        setPhase('starting');
        void c
          .pushAdapterToHub(id, repo, isPrivate, (p) => setPhase(p))
          .then((r) => setDone(r ? r.url : null))
          .finally(() => setPhase(null));
      }}
    >
      <label htmlFor={field}>Model repo</label>
      <input
        id={field}
        type="text"
        spellCheck={false}
        placeholder="your-name/adapter-name"
        value={repo}
        onChange={(e) => setRepo(e.target.value)}
      />
      <label className="check">
        <input type="checkbox" checked={isPrivate} onChange={(e) => setPrivate(e.target.checked)} /> Private
      </label>
      <button type="submit" disabled={phase !== null || !repo.trim()}>
        {phase === null ? 'Push' : `Pushing… ${phase}`}
      </button>
      <button type="button" className="secondary" disabled={phase !== null} onClick={() => setOpen(false)}>
        Cancel
      </button>
      {done && (
        <p className="hint" role="status" data-testid="push-done">
          Pushed: <a href={done}>{done}</a>
        </p>
      )}
      <p className="hint">
        The PEFT files, a model card (settings, dataset, losses) and the loss plot, with the access token kept in this
        browser (Model step); it needs write access.
      </p>
    </form>
  );
}
