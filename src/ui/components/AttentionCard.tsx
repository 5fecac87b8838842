/**
 * Diagnostics: which attention kernels the engine runs: auto (by device class), or the tiled or
 * the direct set pinned (kept in this browser, src/ui/kernels.ts, and given to the GPU worker, as
 * TABTUNE_ATTENTION does for the CLI). Says which set the choice runs on this device and why (the
 * engine's GpuSummary.attention, src/kernels/attention-variants.ts attentionSet): what auto picks
 * here, and that a pinned 'direct' on a device without the subgroups it needs runs the tiled set.
 */
import { useState } from 'react';
import type { AttentionMode, GpuSummary } from '../../engine/types';
import { useController } from '../hooks';
import { parseAttentionMode } from '../kernels';

export function AttentionCard({ info, busy }: { info: GpuSummary; busy: boolean }) {
  const c = useController();
  const [mode, setMode] = useState<AttentionMode>(() => c.attentionMode());
  const [error, setError] = useState('');
  const runs = info.attention[mode];
  const fallback = mode === 'direct' && runs.set !== 'direct';

  const change = (text: string) => {
    const m = parseAttentionMode(text);
    setMode(m);
    c.setAttentionMode(m).catch((e: Error) => setError(e.message));
  };

  return (
    <section className="card" aria-labelledby="attention-h" data-testid="attention-kernels">
      <h3 id="attention-h">Attention kernels</h3>
      <p className="muted">
        Attention runs on one of two kernel sets: tiled (workgroup-memory tiles, fast on GPUs) or direct (subgroup
        kernels without workgroup memory, fast on CPU drivers such as SwiftShader). Both compute the same thing; auto
        picks by the kind of device.
      </p>
      <label className="inline-field">
        Attention kernels{' '}
        <select name="attention-mode" value={mode} onChange={(e) => change(e.target.value)}>
          <option value="auto">auto: {info.attention.auto.set} on this device</option>
          <option value="tiled">tiled: workgroup-memory tiles (GPUs)</option>
          <option value="direct">direct: subgroup kernels (CPU drivers)</option>
        </select>
      </label>
      <p className={fallback ? 'note' : undefined} data-testid="attention-runs" data-set={runs.set}>
        Runs <strong>{runs.set}</strong>: {runs.why}.
        {runs.set === 'direct' && ' A model whose head dim is not a multiple of 4 runs the tiled kernels.'}
      </p>
      {busy && <p className="muted">A training run is using the GPU: a change applies to the next run.</p>}
      {error && <p className="error-detail">{error}</p>}
    </section>
  );
}
