/** Settings presets: apply a built-in or saved one, save the current settings, share as a JSON file, import one. */
import { useRef, useState } from 'react';
import { safeFileName } from '../../store/peft-files';
import { saveFile } from '../download';
import { useController } from '../hooks';
import { presetJson } from '../presets';

export function Presets() {
  const c = useController();
  const [list, setList] = useState(() => c.presets());
  const [picked, setPicked] = useState(list[0]?.name ?? '');
  const [name, setName] = useState('');
  const input = useRef<HTMLInputElement>(null);
  const preset = list.find((p) => p.name === picked) ?? null;
  const refresh = (select?: string) => {
    const next = c.presets();
    setList(next);
    setPicked(select && next.some((p) => p.name === select) ? select : (next[0]?.name ?? ''));
  };
  return (
    <section className="card" aria-labelledby="presets-h" data-testid="presets">
      <h3 id="presets-h">Presets</h3>
      <div className="preset-row">
        <label htmlFor="preset-pick">Preset</label>
        <select id="preset-pick" value={picked} onChange={(e) => setPicked(e.target.value)}>
          {list.map((p) => (
            <option key={`${p.builtIn ? 'b' : 'u'}:${p.name}`} value={p.name}>
              {p.name}
              {p.builtIn ? '' : ' (saved)'}
            </option>
          ))}
        </select>
        <button type="button" disabled={!preset} onClick={() => preset && c.applyPreset(preset)}>
          Apply
        </button>
        <button
          type="button"
          className="secondary"
          disabled={!preset}
          onClick={() =>
            preset &&
            saveFile(
              `${safeFileName(preset.name)}.tabtune-preset.json`,
              new TextEncoder().encode(presetJson(preset)),
              'application/json',
            )
          }
        >
          Share (.json)
        </button>
        {preset && !preset.builtIn && (
          <button
            type="button"
            className="secondary danger"
            onClick={() => {
              c.deletePreset(preset.name);
              refresh();
            }}
          >
            Delete
          </button>
        )}
      </div>
      <form
        className="preset-row"
        onSubmit={(e) => {
          e.preventDefault();
          if (!name.trim()) return;
          c.saveCurrentPreset(name);
          refresh(name.trim());
          setName('');
        }}
      >
        <label htmlFor="preset-name">Save these settings as</label>
        <input id="preset-name" value={name} onChange={(e) => setName(e.target.value)} placeholder="name" />
        <button type="submit" className="secondary" disabled={!name.trim()}>
          Save preset
        </button>
        <button type="button" className="secondary" onClick={() => input.current?.click()}>
          Import preset…
        </button>
        <input
          ref={input}
          id="import-preset"
          type="file"
          tabIndex={-1}
          aria-hidden="true"
          accept=".json"
          className="visually-hidden"
          onChange={(e) => {
            const f = e.target.files?.[0];
            e.target.value = '';
            if (f)
              void f.text().then((text) => {
                const p = c.importPreset(text, f.name);
                if (p) refresh(p.name);
              });
          }}
        />
      </form>
      <p className="hint">
        A preset sets only the settings it names. Saved presets stay in this browser; share one as a file.
      </p>
    </section>
  );
}
