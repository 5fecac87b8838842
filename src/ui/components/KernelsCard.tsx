/**
 * Diagnostics: which matmul kernels the engine runs (auto-tuned per GPU, off, or one member
 * pinned; kept in this browser, src/ui/kernels.ts) and the choices tuning saved per device (the
 * GPU worker's IndexedDB), each with a Forget button (that device's next run tunes again).
 */
import { useEffect, useState } from 'react';
import type { SavedKernelChoices } from '../../engine/types';
import { useController } from '../hooks';
import { PINNABLE, kernelModeText, parseKernelMode } from '../kernels';

/** A device key (vendor|architecture|device|description|runtime|f16|lanes) as a short name. */
function deviceName(key: string): string {
  const parts = key.split('|');
  const name = parts.slice(0, 4).filter(Boolean).join(' · ') || 'unnamed adapter';
  return parts[5] ? `${name} (shader-f16)` : name;
}

function SavedTable({ saved, onForget }: { saved: SavedKernelChoices[]; onForget: (key: string) => void }) {
  if (saved.length === 0)
    return <p className="muted">No choices saved yet: the first run with tuning on makes them.</p>;
  return (
    <ul className="kernel-choices" data-testid="kernel-choices">
      {saved.map((d) => {
        const name = deviceName(d.deviceKey);
        return (
          <li key={d.deviceKey} data-current={d.current ? 'true' : 'false'}>
            <div className="card-head">
              <strong>
                {d.current ? 'This GPU: ' : ''}
                {name}
              </strong>
              <button
                type="button"
                className="secondary"
                aria-label={`Forget ${name}`}
                onClick={() => onForget(d.deviceKey)}
              >
                Forget
              </button>
            </div>
            <p className="muted">{d.savedAt ? `Tuned ${new Date(d.savedAt).toLocaleString()}.` : ''}</p>
            <table className="results">
              <thead>
                <tr>
                  <th>Shape class</th>
                  <th>Kernel</th>
                </tr>
              </thead>
              <tbody>
                {Object.entries(d.choices).map(([cls, member]) => (
                  <tr key={cls}>
                    <td>
                      <code>{cls}</code>
                    </td>
                    <td>{member}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </li>
        );
      })}
    </ul>
  );
}

export function KernelsCard({ ready, busy }: { ready: boolean; busy: boolean }) {
  const c = useController();
  const [mode, setMode] = useState(() => kernelModeText(c.kernelMode()));
  const [saved, setSaved] = useState<SavedKernelChoices[] | null>(null);
  const [error, setError] = useState('');
  const [reload, setReload] = useState(0);

  // Read when the GPU is ready and no run holds the worker (after a run: its new choices).
  useEffect(() => {
    if (!ready || busy) return;
    let live = true;
    c.kernelChoices().then(
      (x) => live && setSaved(x),
      (e: Error) => live && setError(e.message),
    );
    return () => {
      live = false;
    };
  }, [c, ready, busy, reload]);

  const change = (text: string) => {
    setMode(text);
    c.setKernelMode(parseKernelMode(text)).catch((e: Error) => setError(e.message));
  };
  const forget = (key: string) => {
    c.forgetKernelChoices(key).then(
      () => setReload((n) => n + 1),
      (e: Error) => setError(e.message),
    );
  };

  return (
    <section className="card" aria-labelledby="kernels-h" data-testid="kernel-tuning">
      <h3 id="kernels-h">Matmul kernels</h3>
      <p className="muted">
        The matrix products run on one of several kernels; which is fastest depends on the GPU. With tuning on, the
        first run on a GPU times the candidates for each shape it meets (a few seconds, shown in the Train view) and
        keeps the fastest for later runs.
      </p>
      <label className="inline-field">
        Kernel tuning{' '}
        <select name="kernel-mode" value={mode} onChange={(e) => change(e.target.value)}>
          <option value="auto">auto: tuned for this GPU on its first run</option>
          <option value="off">off: the baseline kernels, no tuning</option>
          {PINNABLE.map((m) => (
            <option key={m.name} value={`pin:${m.name}`}>
              pin {m.name}: {m.about}
            </option>
          ))}
        </select>
      </label>
      {busy && <p className="muted">A training run is using the GPU: a change applies to the next run.</p>}
      {error && <p className="error-detail">{error}</p>}
      <h4>Saved choices</h4>
      {saved ? <SavedTable saved={saved} onForget={forget} /> : <p className="muted">Reading…</p>}
    </section>
  );
}
