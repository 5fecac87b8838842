/**
 * The first choice of the Settings step: the PEFT method (src/lora/methods.ts, the same table the
 * CLI's --method reads), its own options, and the trainable parameters it would train. A method
 * Tabtune does not run yet is listed, marked, and refused by validation (never trained as LoRA).
 */
import { type LoraInit, PEFT_METHODS, type PeftMethod, initName, methodSpec } from '../../lora/methods';
import { formatCount } from '../format';
import { HELP } from '../help';
import { useAppState, useController } from '../hooks';
import { validateLora } from '../validate';
import { NumberField, SelectField } from './common';
import { Ia3Modules } from './Ia3Modules';

type InitChoice = 'default' | 'gaussian' | 'pissa' | 'olora' | 'loftq';
const INIT_OPTIONS: { value: InitChoice; label: string }[] = [
  { value: 'default', label: 'default (kaiming-uniform A, B = 0)' },
  { value: 'gaussian', label: 'gaussian (A ~ N(0, 1/r), B = 0)' },
  { value: 'pissa', label: 'PiSSA (top-r singular vectors of W)' },
  { value: 'olora', label: 'OLoRA (QR of W)' },
  { value: 'loftq', label: 'LoftQ (4-bit NF4 backbone, A·B fit its error)' },
];

export function MethodPicker() {
  const s = useAppState();
  const c = useController();
  const method = methodSpec(s.lora.method ?? 'lora');
  const errors = validateLora(s.lora, s.model.info);
  const params = s.estimate.value?.trainableParams;
  const init = initName(s.lora.init_lora_weights ?? true);
  return (
    <section className="card" aria-labelledby="method-h">
      <h3 id="method-h">Method</h3>
      <div className="form-grid">
        <SelectField<PeftMethod>
          label="PEFT method"
          name="method"
          value={method.id}
          options={PEFT_METHODS.map((m) => ({
            value: m.id,
            label: `${m.label}${m.implemented ? '' : ' (not yet implemented)'}`,
          }))}
          hint={`${method.summary}. ${HELP.method}`}
          onChange={(v) =>
            // (IA)³ starts from PEFT's own targets and feed-forward modules for the model type
            c.setLora(v === 'ia3' ? { method: v, target_modules: [], feedforward_modules: [] } : { method: v })
          }
        />
        {method.lowRank && (
          <SelectField<InitChoice>
            label="Initialisation"
            name="init_lora_weights"
            value={INIT_OPTIONS.some((o) => o.value === init) ? (init as InitChoice) : 'default'}
            options={INIT_OPTIONS}
            hint={HELP.init_lora_weights}
            onChange={(v) => c.setLora({ init_lora_weights: (v === 'default' ? true : v) as LoraInit })}
          />
        )}
        {method.lowRank && init === 'loftq' && (
          <NumberField
            label="LoftQ iterations"
            name="loftq_iter"
            value={s.lora.loftq_config?.loftq_iter ?? 1}
            min={1}
            max={100}
            step={1}
            hint={HELP.loftq_iter}
            onChange={(v) => c.setLora({ loftq_config: { loftq_bits: 4, loftq_iter: v } })}
          />
        )}
        {(method.id === 'prompt-tuning' || method.id === 'prefix-tuning') && (
          <NumberField
            label="Virtual tokens"
            name="num_virtual_tokens"
            value={s.lora.num_virtual_tokens ?? 20}
            min={1}
            max={4096}
            step={1}
            error={errors.num_virtual_tokens}
            hint={HELP.num_virtual_tokens}
            onChange={(v) => c.setLora({ num_virtual_tokens: v })}
          />
        )}
        {method.id === 'prompt-tuning' && (
          <label className="field">
            <span>Initial text (empty: random)</span>
            <input
              type="text"
              name="prompt_tuning_init_text"
              value={s.lora.prompt_tuning_init_text ?? ''}
              onChange={(e) => c.setLora({ prompt_tuning_init_text: e.target.value })}
            />
            <span className="muted small">{HELP.prompt_tuning_init_text}</span>
          </label>
        )}
        {method.id === 'prefix-tuning' && (
          <div className="field">
            <span className="label-like">Projection MLP</span>
            <label className="check">
              <input
                type="checkbox"
                name="prefix_projection"
                checked={s.lora.prefix_projection ?? false}
                onChange={(e) => c.setLora({ prefix_projection: e.target.checked })}
              />
              train through PEFT’s prefix encoder MLP
            </label>
            <div className="hint">{HELP.prefix_projection}</div>
          </div>
        )}
        {method.id === 'prefix-tuning' && s.lora.prefix_projection && (
          <NumberField
            label="Encoder hidden size"
            name="encoder_hidden_size"
            value={s.lora.encoder_hidden_size ?? s.model.info?.hiddenSize ?? NaN}
            min={1}
            step={1}
            hint={HELP.encoder_hidden_size}
            onChange={(v) => c.setLora({ encoder_hidden_size: v })}
          />
        )}
      </div>
      {method.id === 'ia3' && <Ia3Modules />}
      {errors.method && (
        <div className="field-error" role="alert" data-testid="method-error">
          {errors.method}
        </div>
      )}
      {errors.init_lora_weights && (
        <div className="field-error" role="alert" data-testid="init-error">
          {errors.init_lora_weights}
        </div>
      )}
      <p className="muted small" data-testid="method-params">
        {method.implemented && params !== undefined
          ? `${method.label}: ${formatCount(params)} trainable parameters with these settings.`
          : `${method.label}: the trainable parameters are shown once the method can run.`}
      </p>
    </section>
  );
}
