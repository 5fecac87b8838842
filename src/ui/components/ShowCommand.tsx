/** "Show as command" (Settings): the `tabtune train` and `tabtune export-recipe` lines of these settings. */
import { useState } from 'react';
import { runCommands } from '../command';
import { useAppState } from '../hooks';

function CommandBlock({ label, text, testId }: { label: string; text: string; testId: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <div className="command">
      <div className="command-head">
        <span className="label-like">{label}</span>
        <button
          type="button"
          className="secondary"
          onClick={() =>
            void navigator.clipboard
              ?.writeText(text)
              .then(() => setCopied(true))
              .catch(() => setCopied(false))
          }
        >
          {copied ? 'Copied' : 'Copy'}
        </button>
      </div>
      <pre data-testid={testId} tabIndex={0}>
        {text}
      </pre>
    </div>
  );
}

export function ShowCommand() {
  const s = useAppState();
  const cmds = runCommands(s);
  return (
    <details className="advanced" data-testid="show-command">
      <summary>Show as command</summary>
      {cmds ? (
        <>
          <p className="hint">
            The same run from a clone of this repository: every setting is written out, so the line means the same
            whatever the defaults.{cmds.note ? ` ${cmds.note}` : ''}
          </p>
          <CommandBlock label="Train here, from the command line" text={cmds.train} testId="train-command" />
          <CommandBlock label="Or as a transformers + PEFT + TRL project" text={cmds.recipe} testId="recipe-command" />
        </>
      ) : (
        <p className="muted">Load a model first.</p>
      )}
    </details>
  );
}
