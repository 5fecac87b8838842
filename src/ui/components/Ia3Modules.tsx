/**
 * (IA)³'s modules in the Settings step's Method card: PEFT's defaults for the model type, or the
 * user's own `target_modules` (the linear modules that get a learned vector) and
 * `feedforward_modules` (the targets whose input, not output, is scaled; PEFT requires them to be
 * a subset of the targets). Empty lists in the settings mean PEFT's defaults, as `tabtune train
 * --method ia3` without --targets / --feedforward-modules.
 */
import { DEFAULT_IA3_MODULES } from '../../lora/ia3';
import { useAppState, useController } from '../hooks';
import { validateLora } from '../validate';

export function Ia3Modules() {
  const s = useAppState();
  const c = useController();
  const modelType = s.model.info?.modelType;
  const d = modelType && Object.hasOwn(DEFAULT_IA3_MODULES, modelType) ? DEFAULT_IA3_MODULES[modelType] : undefined;
  // the model's linear module names, and PEFT's default names that are paths (GPT-2's mlp.c_proj, not attn.c_proj)
  const modules = [...new Set([...(s.model.info?.linearModules ?? []), ...(d?.target ?? [])])];
  const t = s.lora.target_modules;
  const ff = s.lora.feedforward_modules ?? [];
  const usingDefaults = t !== 'all-linear' && t.length === 0 && ff.length === 0;
  const targets = new Set(usingDefaults ? (d?.target ?? []) : t === 'all-linear' ? modules : t);
  const inputs = new Set(usingDefaults ? (d?.feedforward ?? []) : ff);
  const errors = validateLora(s.lora, s.model.info);
  const set = (nextTargets: Set<string>, nextInputs: Set<string>) =>
    c.setLora({
      target_modules: modules.filter((m) => nextTargets.has(m)),
      feedforward_modules: modules.filter((m) => nextInputs.has(m)),
    });
  const toggle = (from: Set<string>, m: string, on: boolean) => {
    const next = new Set(from);
    if (on) next.add(m);
    else next.delete(m);
    return next;
  };
  const err = errors.target_modules ?? errors.feedforward_modules;
  return (
    <fieldset
      className={`targets${err ? ' invalid' : ''}`}
      data-testid="ia3-modules"
      aria-describedby={err ? 'ia3-err ia3-hint' : 'ia3-hint'}
    >
      <legend>(IA)³ modules</legend>
      <label className="check">
        <input
          type="checkbox"
          name="ia3-defaults"
          checked={usingDefaults}
          onChange={(e) =>
            e.target.checked
              ? c.setLora({ target_modules: [], feedforward_modules: [] })
              : // start the own choice from the defaults this model has (or its first module)
                set(new Set(d ? d.target : modules.slice(0, 1)), new Set(d ? d.feedforward : []))
          }
        />
        {d
          ? `PEFT's defaults for ${modelType}: ${d.target.map((m) => (d.feedforward.includes(m) ? `${m} (its input)` : m)).join(', ')}`
          : `PEFT has no default (IA)³ modules for ${modelType ?? 'this model type'}: choose them below`}
      </label>
      <table className="ia3-modules">
        <thead>
          <tr>
            <th scope="col">module</th>
            <th scope="col">scaled (target_modules)</th>
            <th scope="col">its input (feedforward_modules)</th>
          </tr>
        </thead>
        <tbody>
          {modules.map((m) => (
            <tr key={m}>
              <th scope="row">
                <code>{m}</code>
              </th>
              <td>
                <input
                  type="checkbox"
                  name={`ia3-target-${m}`}
                  aria-label={`scale ${m}`}
                  disabled={usingDefaults}
                  checked={targets.has(m)}
                  onChange={(e) => set(toggle(targets, m, e.target.checked), inputs)}
                />
              </td>
              <td>
                <input
                  type="checkbox"
                  name={`ia3-ff-${m}`}
                  aria-label={`scale the input of ${m}`}
                  disabled={usingDefaults}
                  checked={inputs.has(m)}
                  onChange={(e) => set(targets, toggle(inputs, m, e.target.checked))}
                />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {err && (
        <div className="field-error" id="ia3-err" role="alert" data-testid="ia3-error">
          {err}
        </div>
      )}
      <div className="hint" id="ia3-hint">
        Each scaled module learns one vector: over its outputs, or over its inputs for a feed-forward module (PEFT puts
        the MLP's output projection there). Feed-forward modules must also be scaled.
      </div>
    </fieldset>
  );
}
