/** Step 3: LoRA and training hyperparameters, validated inline, with the engine's estimate. */
import type { TrainSettings } from '../../engine/types';
import { formatBytes, formatCount, formatPercent } from '../format';
import { useAppState, useController } from '../hooks';
import { type AppState, runBusy } from '../state';
import { HELP, settingWarnings } from '../help';
import { validateLora, validateTrain } from '../validate';
import { MessageCard, NumberField, SelectField, Stat } from './common';
import { RunAtScale } from './RunAtScale';
import { methodSpec } from '../../lora/methods';
import { MethodPicker } from './MethodPicker';
import { Presets } from './Presets';
import { ShowCommand } from './ShowCommand';

function Targets({ s }: { s: AppState }) {
  const c = useController();
  const modules = s.model.info?.linearModules ?? s.model.check.cost?.linearModules ?? [];
  const defaults = s.model.info?.defaultTargets ?? [];
  const t = s.lora.target_modules;
  const all = t === 'all-linear';
  const chosen = new Set(Array.isArray(t) ? t : []);
  const err = validateLora(s.lora, s.model.info).target_modules;
  return (
    <fieldset
      className={`targets${err ? ' invalid' : ''}`}
      aria-describedby={err ? 'targets-err targets-hint' : 'targets-hint'}
    >
      <legend>Target modules</legend>
      <label className="check">
        <input
          type="checkbox"
          name="all-linear"
          checked={all}
          onChange={(e) =>
            c.setLora({
              target_modules: e.target.checked ? 'all-linear' : defaults.length ? [...defaults] : modules.slice(0, 1),
            })
          }
        />
        all-linear (every linear layer)
      </label>
      <div className="check-grid">
        {modules.map((m) => (
          <label key={m} className="check">
            <input
              type="checkbox"
              name={`target-${m}`}
              disabled={all}
              checked={all || chosen.has(m)}
              onChange={(e) => {
                const next = new Set(chosen);
                if (e.target.checked) next.add(m);
                else next.delete(m);
                c.setLora({ target_modules: modules.filter((x) => next.has(x)) });
              }}
            />
            <code>{m}</code>
            {defaults.includes(m) && <span className="pill">default</span>}
          </label>
        ))}
      </div>
      {err && (
        <div className="field-error" id="targets-err">
          {err}
        </div>
      )}
      <div className="hint" id="targets-hint">
        {defaults.length ? `PEFT's default for ${s.model.info?.modelType}: ${defaults.join(', ')}. ` : ''}
        More modules: more capacity, more memory.{' '}
        {defaults.length > 0 && (
          <button type="button" className="link" onClick={() => c.setLora({ target_modules: [...defaults] })}>
            Use the default
          </button>
        )}
      </div>
    </fieldset>
  );
}

/**
 * Frozen weights: 16-bit as stored, or 4-bit NF4 (QLoRA), each with its memory estimate. Choosing
 * the other loads the model again in that form (from the browser's cache).
 */
function FrozenWeights({ s }: { s: AppState }) {
  const c = useController();
  const info = s.model.info;
  const stored = info?.quantization?.source === 'checkpoint';
  const nf4 = stored || s.frozen.quantize === 'nf4';
  const busy = runBusy(s.run.status) || s.model.load.status === 'loading';
  const total = (q: 'nf4' | null) => {
    const choice = s.estimate.value?.frozenChoices.find((x) => x.quantize === q);
    return choice ? ` · about ${formatBytes(choice.totalBytes)} to train` : '';
  };
  const hintId = 'frozen-hint';
  return (
    <fieldset className="field frozen" aria-describedby={hintId}>
      <legend>Frozen weights</legend>
      <div className="radio-row">
        <label className="check">
          <input
            type="radio"
            name="frozen"
            value="16-bit"
            checked={!nf4}
            disabled={busy || stored}
            onChange={() => void c.setFrozen({ quantize: null })}
          />
          16-bit{total(null)}
        </label>
        <label className="check">
          <input
            type="radio"
            name="frozen"
            value="nf4"
            checked={nf4}
            disabled={busy}
            onChange={() => void c.setFrozen({ quantize: 'nf4' })}
          />
          4-bit NF4{total('nf4')}
        </label>
      </div>
      <label className="check">
        <input
          type="checkbox"
          name="doubleQuant"
          checked={stored ? !!info?.quantization?.doubleQuant : s.frozen.doubleQuant !== false}
          disabled={busy || stored || !nf4}
          onChange={(e) => void c.setFrozen({ doubleQuant: e.target.checked })}
        />
        double quantization (the absmax values in 8 bits)
      </label>
      <div className="hint" id={hintId}>
        {stored
          ? 'This checkpoint is stored in 4 bits (bitsandbytes NF4) and is used as it is.'
          : 'QLoRA: the base model in 4 bits, quantized as bitsandbytes does while it loads; the adapter still trains in full precision. Changing this loads the model again.'}
      </div>
    </fieldset>
  );
}

function Estimate({ s }: { s: AppState }) {
  const e = s.estimate;
  if (!s.model.info) return <p className="muted">Load a model to see the trainable parameters and memory.</p>;
  if (e.status === 'error' && e.error) return <MessageCard message={e.error} />;
  if (!e.value)
    return <p className="muted">{e.status === 'working' ? 'Estimating…' : 'Fix the settings to see the estimate.'}</p>;
  const v = e.value;
  const parts = [
    { label: 'weights', bytes: v.weightsBytes, cls: 'w' },
    { label: 'LoRA + optimizer', bytes: v.loraBytes, cls: 'l' },
    { label: 'activations', bytes: v.activationBytes, cls: 'a' },
  ];
  const total = Math.max(1, v.totalBytes);
  return (
    <div data-testid="estimate">
      <div className="stats">
        <Stat label="trainable parameters" value={formatCount(v.trainableParams)} title={String(v.trainableParams)} />
        <Stat label="of all parameters" value={formatPercent(v.trainablePercent)} />
        <Stat label="GPU memory (est.)" value={formatBytes(v.totalBytes)} />
      </div>
      <div className="membar" role="img" aria-label={parts.map((p) => `${p.label} ${formatBytes(p.bytes)}`).join(', ')}>
        {parts.map((p) => (
          <div key={p.label} className={`membar-${p.cls}`} style={{ width: `${(100 * p.bytes) / total}%` }} />
        ))}
      </div>
      <ul className="membar-legend">
        {parts.map((p) => (
          <li key={p.label}>
            <span className={`swatch membar-${p.cls}`} aria-hidden="true" /> {p.label} {formatBytes(p.bytes)}
          </li>
        ))}
      </ul>
      {v.blocker && <MessageCard message={{ title: 'Cannot train with these settings', detail: v.blocker }} />}
    </div>
  );
}

export function SettingsView() {
  const s = useAppState();
  const c = useController();
  const le = validateLora(s.lora, s.model.info);
  const te = validateTrain(s.train, s.model.info);
  const t = s.train;
  const busy = runBusy(s.run.status);
  // steps <= 0 means training by epochs. The Steps field never sets that: what it cannot use (0, a
  // negative number, nothing) becomes NaN, so the field stays and says what is allowed.
  const byEpochs = t.steps <= 0;
  const setT = (p: Partial<TrainSettings>) => c.setTrain(p);
  const warn = settingWarnings(s.lora, t, { ...le, ...te });
  /** A field's help, anything computed from the settings, and its warning when far from typical. */
  const help = (field: string, extra?: string) => (
    <>
      {HELP[field]}
      {extra ? ` ${extra}` : ''}
      {warn[field] && (
        <span className="field-warn" data-testid={`warn-${field}`}>
          ⚠ {warn[field]}
        </span>
      )}
    </>
  );
  return (
    <div className="view">
      <h2>3 · Settings</h2>
      <p className="lead">
        Defaults suit a first run. Names follow PEFT and transformers, so they match adapter_config.json.
      </p>
      {busy && <p className="muted">A run is in progress; changes apply to the next run.</p>}
      <Presets />
      <MethodPicker />
      <div className="two-col">
        {methodSpec(s.lora.method ?? 'lora').lowRank && (
          <section className="card" aria-labelledby="lora-h">
            <h3 id="lora-h">{s.lora.method === 'dora' ? 'DoRA (LoRA + magnitude)' : 'LoRA'}</h3>
            <div className="form-grid">
              <NumberField
                label="Rank r"
                name="r"
                hint={help('r')}
                value={s.lora.r}
                error={le.r}
                onChange={(v) => c.setLora({ r: v })}
              />
              <NumberField
                label="lora_alpha"
                name="lora_alpha"
                hint={help(
                  'lora_alpha',
                  `Scale = alpha / ${s.lora.use_rslora ? '√r' : 'r'} = ${Number.isFinite(s.lora.lora_alpha / s.lora.r) ? (s.lora.lora_alpha / (s.lora.use_rslora ? Math.sqrt(s.lora.r) : s.lora.r)).toFixed(3) : '—'}.`,
                )}
                value={s.lora.lora_alpha}
                error={le.lora_alpha}
                onChange={(v) => c.setLora({ lora_alpha: v })}
              />
              <NumberField
                label="Dropout"
                name="lora_dropout"
                hint={help('lora_dropout')}
                value={s.lora.lora_dropout}
                error={le.lora_dropout}
                onChange={(v) => c.setLora({ lora_dropout: v })}
              />
              <div className="field">
                <span className="label-like">rsLoRA</span>
                <label className="check">
                  <input
                    type="checkbox"
                    name="use_rslora"
                    checked={s.lora.use_rslora}
                    onChange={(e) => c.setLora({ use_rslora: e.target.checked })}
                  />
                  scale by alpha / √r
                </label>
                <div className="hint">{HELP.use_rslora}</div>
              </div>
            </div>
            <Targets s={s} />
          </section>
        )}
        <section className="card" aria-labelledby="train-h">
          <h3 id="train-h">Training</h3>
          <div className="form-grid">
            <NumberField
              label="Learning rate"
              name="lr"
              hint={help('lr')}
              value={t.lr}
              error={te.lr}
              onChange={(v) => setT({ lr: v })}
            />
            <fieldset className="field length">
              <legend>Length</legend>
              <div className="radio-row">
                <label className="check">
                  <input
                    type="radio"
                    name="length"
                    checked={byEpochs}
                    onChange={() => setT({ steps: 0, epochs: t.epochs > 0 ? t.epochs : 1 })}
                  />
                  epochs
                </label>
                <label className="check">
                  <input type="radio" name="length" checked={!byEpochs} onChange={() => setT({ steps: 100 })} />
                  steps
                </label>
              </div>
            </fieldset>
            {byEpochs ? (
              <NumberField
                label="Epochs"
                name="epochs"
                hint={help('epochs')}
                value={t.epochs}
                error={te.epochs}
                onChange={(v) => setT({ epochs: v })}
              />
            ) : (
              <NumberField
                label="Steps"
                name="steps"
                hint={help('steps')}
                value={t.steps}
                error={te.steps}
                onChange={(v) => setT({ steps: v > 0 ? v : NaN })}
              />
            )}
            <NumberField
              label="Batch size"
              name="batch"
              hint={help('batch')}
              value={t.batch}
              error={te.batch}
              onChange={(v) => setT({ batch: v })}
            />
            <NumberField
              label="Gradient accumulation"
              name="gradAccum"
              hint={help(
                'gradAccum',
                `Effective batch ${Number.isFinite(t.batch * t.gradAccum) ? t.batch * t.gradAccum : '—'}.`,
              )}
              value={t.gradAccum}
              error={te.gradAccum}
              onChange={(v) => setT({ gradAccum: v })}
            />
            <NumberField
              label="Max sequence length"
              name="maxLen"
              hint={help('maxLen')}
              value={t.maxLen}
              error={te.maxLen}
              onChange={(v) => setT({ maxLen: v })}
            />
            <SelectField
              label="Scheduler"
              name="scheduler"
              hint={help('scheduler')}
              value={t.scheduler}
              options={[
                { value: 'linear', label: 'linear decay' },
                { value: 'cosine', label: 'cosine' },
                { value: 'constant', label: 'constant' },
              ]}
              onChange={(v) => setT({ scheduler: v })}
            />
            <NumberField
              label="Warmup steps"
              name="warmup"
              hint={help('warmup')}
              value={t.warmup}
              error={te.warmup}
              onChange={(v) => setT({ warmup: v })}
            />
            <NumberField
              label="Weight decay"
              name="weightDecay"
              hint={help('weightDecay')}
              value={t.weightDecay}
              error={te.weightDecay}
              onChange={(v) => setT({ weightDecay: v })}
            />
            <NumberField
              label="Max grad norm"
              name="maxGradNorm"
              hint={help('maxGradNorm')}
              value={t.maxGradNorm}
              error={te.maxGradNorm}
              onChange={(v) => setT({ maxGradNorm: v })}
            />
            <NumberField
              label="Seed"
              name="seed"
              hint={help('seed')}
              value={t.seed}
              error={te.seed}
              onChange={(v) => setT({ seed: v })}
            />
            <div className="field">
              <span className="label-like">Memory</span>
              <label className="check">
                <input
                  type="checkbox"
                  name="activationCheckpointing"
                  aria-describedby="ckpt-hint"
                  checked={t.activationCheckpointing}
                  onChange={(e) => setT({ activationCheckpointing: e.target.checked })}
                />
                activation checkpointing
              </label>
              <div className="hint" id="ckpt-hint">
                Recompute each layer in backward: far less memory for long sequences, about a third slower.
              </div>
            </div>
            <div className="field">
              <span className="label-like">Batching</span>
              <label className="check">
                <input
                  type="checkbox"
                  name="packing"
                  aria-describedby="packing-hint"
                  checked={t.packing === true}
                  onChange={(e) => setT({ packing: e.target.checked })}
                />
                pack examples
              </label>
              <div className="hint" id="packing-hint">
                Each micro-batch&apos;s examples end to end in one sequence, none seeing another (TRL&apos;s
                padding-free packing): no padding is computed, the loss is the same. Helps when lengths vary.
              </div>
            </div>
          </div>
          <details className="advanced">
            <summary>Evaluation and checkpoints</summary>
            <div className="form-grid">
              <NumberField
                label="Validate every (steps)"
                name="evalEvery"
                hint={help('evalEvery')}
                value={t.evalEvery}
                error={te.evalEvery}
                onChange={(v) => setT({ evalEvery: v })}
              />
              <NumberField
                label="Checkpoint every (steps)"
                name="checkpointEvery"
                hint={help('checkpointEvery')}
                value={t.checkpointEvery}
                error={te.checkpointEvery}
                onChange={(v) => setT({ checkpointEvery: v })}
              />
              <NumberField
                label="Read the loss every (steps)"
                name="lossEvery"
                hint={help('lossEvery')}
                value={t.lossEvery}
                error={te.lossEvery}
                onChange={(v) => setT({ lossEvery: v })}
              />
              <NumberField
                label="Validation fraction"
                name="valFraction"
                hint={help('valFraction')}
                value={t.valFraction}
                error={te.valFraction}
                onChange={(v) => setT({ valFraction: v })}
              />
              <SelectField
                label="Optimizer"
                name="optimizer"
                hint={help('optimizer')}
                value={t.optimizer}
                options={[
                  { value: 'adamw', label: 'AdamW' },
                  { value: 'sgd', label: 'SGD' },
                ]}
                onChange={(v) => setT({ optimizer: v })}
              />
            </div>
          </details>
        </section>
      </div>
      <section className="card" aria-labelledby="est-h" aria-live="polite">
        <h3 id="est-h">Cost at these settings</h3>
        <FrozenWeights s={s} />
        <Estimate s={s} />
        <div className="actions">
          <button type="button" onClick={() => c.go('train')}>
            Next: train →
          </button>
          <RunAtScale disabled={busy} />
        </div>
        <ShowCommand />
      </section>
    </div>
  );
}
