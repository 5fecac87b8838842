/**
 * Diagnostics: "Benchmark this device" runs the kernel bench (src/bench/kernels-bench.ts, as
 * `tabtune bench kernels` prints it) in the GPU worker: the device's FMA peak and copy bandwidth,
 * each matmul member's GFLOP/s on the LoRA layer's GEMMs, and the layer forward + backward per
 * member and tuned, and the attention kernel set in use. Lines appear as they are measured; the
 * result can be copied as text.
 *
 * The section carries data-status = idle | running | done | error (the browser test waits on it).
 */
import { useState } from 'react';
import type { KernelBenchSize, KernelsBench } from '../../bench/kernels-bench';
import type { GpuSummary } from '../../engine/types';
import { useController } from '../hooks';

/** The sizes offered: a few seconds, the CLI's --quick, and the issue's LoRA layer. */
export const BENCH_SIZES: Record<'tiny' | 'quick' | 'full', { label: string; size: KernelBenchSize }> = {
  tiny: {
    label: 'tiny: 64x128x128, r 8 (seconds)',
    size: { M: 64, K: 128, N: 128, r: 8, budgetMs: 300, ceilingScale: 0.125 },
  },
  quick: {
    label: 'quick: 128x256x256, r 16',
    size: { M: 128, K: 256, N: 256, r: 16, budgetMs: 1000, ceilingScale: 1 },
  },
  full: {
    label: 'full: 512x1024x1024, r 16 (a minute or more)',
    size: { M: 512, K: 1024, N: 1024, r: 16, budgetMs: 6000, ceilingScale: 1 },
  },
};

type Status = 'idle' | 'running' | 'done' | 'error';

function Summary({ r }: { r: KernelsBench }) {
  return (
    <table className="results" data-testid="bench-summary">
      <thead>
        <tr>
          <th>Problem</th>
          <th>Kernel</th>
          <th className="num">GFLOP/s</th>
          <th className="num">of FMA peak</th>
          <th className="num">vs tile64</th>
        </tr>
      </thead>
      <tbody>
        {[...r.matmul, ...r.lora.map((l) => ({ ...l, shape: `LoRA layer ${l.shape} r=${l.r} fwd+bwd` }))].map((m) => (
          <tr key={`${m.shape} ${m.member}`}>
            <td>{m.shape}</td>
            <td>{m.member}</td>
            <td className="num">{m.gflops.toFixed(2)}</td>
            <td className="num">{((100 * m.gflops) / r.fma_gflops).toFixed(1)}%</td>
            <td className="num">{m.speedup.toFixed(2)}x</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function BenchCard({ info, canRun }: { info: GpuSummary; canRun: boolean }) {
  const c = useController();
  const [size, setSize] = useState<keyof typeof BENCH_SIZES>('quick');
  const [status, setStatus] = useState<Status>('idle');
  const [lines, setLines] = useState<string[]>([]);
  const [result, setResult] = useState<KernelsBench | null>(null);
  const [error, setError] = useState('');
  const [copied, setCopied] = useState(false);
  // The size the shown lines were measured at: a size chosen during or after a run is for the next one.
  const [header, setHeader] = useState('');
  const s = BENCH_SIZES[size].size;
  const text = [header, ...lines].join('\n');

  const run = async () => {
    setHeader(
      `Tabtune kernel bench · ${[info.vendor, info.architecture, info.description].filter(Boolean).join(' · ')} · ${s.M}x${s.K}x${s.N} r=${s.r}`,
    );
    setStatus('running');
    setLines([]);
    setResult(null);
    setCopied(false);
    try {
      const r = await c.benchKernels(s, (line) => setLines((prev) => [...prev, line]));
      setResult(r);
      setStatus('done');
    } catch (e) {
      setError((e as Error).message);
      setStatus('error');
    }
  };
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setCopied(true);
    } catch {
      setError('The browser did not allow copying: select the text below and copy it.');
    }
  };

  return (
    <section className="card" aria-labelledby="bench-h" data-testid="kernel-bench" data-status={status}>
      <h3 id="bench-h">Benchmark this device</h3>
      <p className="muted">
        The matmul kernels side by side on this GPU, in the worker (as <code>tabtune bench kernels</code>): GFLOP/s next
        to the device's measured multiply-add peak and copy bandwidth.
      </p>
      <div className="actions">
        <label className="inline-field">
          Problem size{' '}
          <select name="bench-size" value={size} onChange={(e) => setSize(e.target.value as keyof typeof BENCH_SIZES)}>
            {Object.entries(BENCH_SIZES).map(([k, v]) => (
              <option key={k} value={k}>
                {v.label}
              </option>
            ))}
          </select>
        </label>
        <button type="button" disabled={!canRun || status === 'running'} onClick={() => void run()}>
          {status === 'running' ? 'Benchmarking…' : 'Benchmark this device'}
        </button>
        {lines.length > 0 && status !== 'running' && (
          <button type="button" className="secondary" onClick={() => void copy()}>
            {copied ? 'Copied' : 'Copy result'}
          </button>
        )}
      </div>
      {error && <p className="error-detail">{error}</p>}
      {lines.length > 0 && (
        <pre className="bench-output" data-testid="bench-result" aria-live="polite">
          {text}
        </pre>
      )}
      {result && <Summary r={result} />}
      {result && (
        <p data-testid="bench-attention">
          Attention kernels: <strong>{result.attention.set}</strong> ({result.attention.why}).
        </p>
      )}
    </section>
  );
}
