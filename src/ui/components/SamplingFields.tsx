/**
 * The sampling settings (transformers' generate arguments: max_new_tokens, temperature, top_k,
 * top_p, repetition_penalty, and the seed), shared by Compare and Chat.
 */
import type { ReactNode } from 'react';
import type { SamplingSettings } from '../../engine/types';
import { validateSampling } from '../validate';
import { NumberField } from './common';

export function SamplingFields(props: {
  sampling: SamplingSettings;
  onChange: (p: Partial<SamplingSettings>) => void;
  seedHint: string;
  /** More fields after the standard ones (Compare's prompt format). */
  children?: ReactNode;
}) {
  const { sampling: s, onChange } = props;
  const se = validateSampling(s);
  return (
    <div className="form-grid">
      <NumberField
        label="Max new tokens"
        name="maxNewTokens"
        value={s.maxNewTokens}
        error={se.maxNewTokens}
        onChange={(v) => onChange({ maxNewTokens: v })}
      />
      <NumberField
        label="Temperature"
        name="temperature"
        value={s.temperature}
        error={se.temperature}
        hint="0 = greedy (the same every time)."
        onChange={(v) => onChange({ temperature: v })}
      />
      <NumberField
        label="Top-k"
        name="topK"
        value={s.topK}
        error={se.topK}
        hint="0 = off."
        onChange={(v) => onChange({ topK: v })}
      />
      <NumberField label="Top-p" name="topP" value={s.topP} error={se.topP} onChange={(v) => onChange({ topP: v })} />
      <NumberField
        label="Repetition penalty"
        name="repetitionPenalty"
        value={s.repetitionPenalty}
        error={se.repetitionPenalty}
        hint="1 = off; 1.05-1.2 discourages repeating the text so far."
        onChange={(v) => onChange({ repetitionPenalty: v })}
      />
      <NumberField
        label="Seed"
        name="sampleSeed"
        value={s.seed}
        error={se.seed}
        hint={props.seedHint}
        onChange={(v) => onChange({ seed: v })}
      />
      {props.children}
    </div>
  );
}
