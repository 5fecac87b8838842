/** Small shared pieces: labelled fields with inline errors, progress bar, message cards. */
import { type ReactNode, useId, useState } from 'react';
import type { UserMessage } from '../errors';

export function MessageCard({
  message,
  level = 'error',
  children,
}: {
  message: UserMessage;
  level?: 'error' | 'warning' | 'info';
  children?: ReactNode;
}) {
  return (
    <div className={`message ${level}`} role={level === 'error' ? 'alert' : 'status'}>
      <strong>{message.title}</strong>
      <p>{message.detail}</p>
      {message.action && <p className="action">{message.action}</p>}
      {children}
    </div>
  );
}

export function ProgressBar({
  value,
  max,
  label,
  indeterminate = false,
}: {
  value: number;
  max: number;
  label: string;
  indeterminate?: boolean;
}) {
  const pct = max > 0 ? Math.max(0, Math.min(100, (100 * value) / max)) : 0;
  return (
    <div
      className={`progress${indeterminate ? ' indeterminate' : ''}`}
      role="progressbar"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={indeterminate ? undefined : max}
      aria-valuenow={indeterminate ? undefined : value}
    >
      <div className="progress-fill" style={{ width: indeterminate ? '30%' : `${pct}%` }} />
    </div>
  );
}

interface FieldShellProps {
  label: string;
  error?: string;
  hint?: ReactNode;
  children: (ids: { id: string; describedBy: string | undefined; invalid: boolean }) => ReactNode;
  className?: string;
}

/** A label, the control, and its hint or error, wired with ids for screen readers. */
export function FieldShell({ label, error, hint, children, className }: FieldShellProps) {
  const id = useId();
  const hintId = `${id}-hint`;
  const errId = `${id}-err`;
  const describedBy = [hint ? hintId : null, error ? errId : null].filter(Boolean).join(' ') || undefined;
  return (
    <div className={`field${error ? ' invalid' : ''}${className ? ` ${className}` : ''}`}>
      <label htmlFor={id}>{label}</label>
      {children({ id, describedBy, invalid: !!error })}
      {hint && !error && (
        <div className="hint" id={hintId}>
          {hint}
        </div>
      )}
      {error && (
        <div className="field-error" id={errId}>
          {error}
        </div>
      )}
    </div>
  );
}

function parseNumber(text: string): number {
  const t = text.trim();
  if (t === '') return NaN;
  return Number(t);
}

/**
 * A number input that keeps what the user typed ("0.", "1e-") while it is incomplete and reports
 * NaN for text that is not a number, so validation can say so.
 */
export function NumberField(props: {
  label: string;
  name: string;
  value: number;
  onChange: (v: number) => void;
  error?: string;
  hint?: ReactNode;
  step?: number | 'any';
  min?: number;
  max?: number;
  disabled?: boolean;
}) {
  const [text, setText] = useState(() => (Number.isFinite(props.value) ? String(props.value) : ''));
  // Only changes of the value from outside (a preset, a reset) rewrite the text; what the user is
  // typing (e.g. "1e-" on the way to "1e-4") stays as typed. Adjusted during render, as React
  // recommends for state derived from a changed prop.
  const [seen, setSeen] = useState(props.value);
  if (!Object.is(seen, props.value)) {
    setSeen(props.value);
    if (parseNumber(text) !== props.value && Number.isFinite(props.value)) setText(String(props.value));
  }
  return (
    <FieldShell label={props.label} error={props.error} hint={props.hint}>
      {({ id, describedBy, invalid }) => (
        <input
          id={id}
          name={props.name}
          type="text"
          inputMode="decimal"
          autoComplete="off"
          spellCheck={false}
          value={text}
          disabled={props.disabled}
          aria-invalid={invalid || undefined}
          aria-describedby={describedBy}
          onChange={(e) => {
            setText(e.target.value);
            props.onChange(parseNumber(e.target.value));
          }}
        />
      )}
    </FieldShell>
  );
}

export function SelectField<T extends string>(props: {
  label: string;
  name: string;
  value: T;
  options: { value: T; label: string }[];
  onChange: (v: T) => void;
  hint?: ReactNode;
  disabled?: boolean;
}) {
  return (
    <FieldShell label={props.label} hint={props.hint}>
      {({ id, describedBy }) => (
        <select
          id={id}
          name={props.name}
          value={props.value}
          disabled={props.disabled}
          aria-describedby={describedBy}
          onChange={(e) => {
            const v = props.options.find((o) => o.value === e.target.value);
            if (v) props.onChange(v.value);
          }}
        >
          {props.options.map((o) => (
            <option key={o.value} value={o.value}>
              {o.label}
            </option>
          ))}
        </select>
      )}
    </FieldShell>
  );
}

export function Stat({ label, value, title }: { label: string; value: ReactNode; title?: string }) {
  return (
    <div className="stat" title={title}>
      <div className="stat-value">{value}</div>
      <div className="stat-label">{label}</div>
    </div>
  );
}
