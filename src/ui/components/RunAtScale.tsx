/**
 * "Run at scale" (Settings and Train): downloads the run as a zip of a transformers + PEFT + TRL
 * project (train.py, the tokenized data as split here, accelerate configs for one or many GPUs,
 * a SLURM script, a README), for models and datasets that outgrow the tab.
 */
import { useState } from 'react';
import { saveFile } from '../download';
import { useController } from '../hooks';

export function RunAtScale({ disabled }: { disabled?: boolean }) {
  const c = useController();
  const [busy, setBusy] = useState(false);
  return (
    <button
      type="button"
      className="secondary"
      disabled={disabled || busy}
      data-testid="run-at-scale"
      title="Download this run as a Python project (transformers + PEFT + TRL) for one GPU, several or a cluster"
      onClick={async () => {
        setBusy(true);
        try {
          const f = await c.recipeDownload();
          if (f) saveFile(f.name, f.bytes, f.type);
        } finally {
          setBusy(false);
        }
      }}
    >
      {busy ? 'Exporting…' : 'Run at scale (zip)'}
    </button>
  );
}
