/**
 * The Diagnostics view: which WebGPU adapter the browser gives, what it supports, the engine
 * self-test (kernels on odd shapes against the float64 references) with its results, and the
 * matmul kernels (tuning on/off/pinned, the saved choices: components/KernelsCard.tsx), the
 * attention kernels (auto/tiled/direct: components/AttentionCard.tsx) and a kernel benchmark
 * (components/BenchCard.tsx). The self-test
 * runs in the GPU worker, on the device the app trains with (the page opens no device of its own);
 * while a training run holds the worker it waits for the run to end.
 *
 * The root element carries data-status = starting | waiting | running | passed | failed | unavailable
 * | error, which the browser test waits on.
 */
import { useEffect, useRef, useState } from 'react';
import type { GpuSummary, SelfTestCheck, SelfTestReport } from '../engine/types';
import { AttentionCard } from './components/AttentionCard';
import { BenchCard } from './components/BenchCard';
import { KernelsCard } from './components/KernelsCard';
import { useAppState, useController } from './hooks';
import { runBusy } from './state';

type RunStatus = 'waiting' | 'running' | 'passed' | 'failed' | 'error';

function bytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(n % 2 ** 30 ? 2 : 0)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(n % 2 ** 20 ? 1 : 0)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(n % 2 ** 10 ? 1 : 0)} KiB`;
  return `${n} B`;
}

function YesNo({ value }: { value: boolean }) {
  return <span className={value ? 'pill yes' : 'pill no'}>{value ? 'yes' : 'no'}</span>;
}

function AdapterCard({ info }: { info: GpuSummary }) {
  const rows: [string, React.ReactNode][] = [
    ['Vendor', info.vendor || '—'],
    ['Architecture', info.architecture || '—'],
    ['Device', info.device || '—'],
    ['Description', info.description || '—'],
    ['shader-f16', <YesNo key="f16" value={info.f16} />],
    ['subgroups', <YesNo key="sg" value={info.subgroups} />],
    ['subgroup lanes used by the kernels', info.subgroupLanes ? String(Math.min(32, info.subgroupLanes)) : 'none'],
    ['maxStorageBufferBindingSize', bytes(info.maxStorageBufferBindingSize)],
    ['maxBufferSize', bytes(info.maxBufferSize)],
    ['maxComputeWorkgroupStorageSize', bytes(info.maxComputeWorkgroupStorageSize)],
    ['maxComputeInvocationsPerWorkgroup', String(info.maxComputeInvocationsPerWorkgroup)],
  ];
  return (
    <section className="card">
      <h3>WebGPU adapter</h3>
      <dl className="facts">
        {rows.map(([k, v]) => (
          <div key={k}>
            <dt>{k}</dt>
            <dd>{v}</dd>
          </div>
        ))}
      </dl>
      {!info.f16 && (
        <p className="note">
          No shader-f16: f16 weights are unpacked from 32-bit words in the kernels (the plain path; same results).
        </p>
      )}
      {info.subgroups && !info.subgroupLanes && (
        <p className="note">
          Subgroups are present but not laid out in aligned runs on this device: the kernels use workgroup memory
          instead.
        </p>
      )}
    </section>
  );
}

function ResultsTable({ checks, pending }: { checks: SelfTestCheck[]; pending: boolean }) {
  return (
    <table className="results">
      <thead>
        <tr>
          <th>Check</th>
          <th className="num">Max abs error</th>
          <th className="num">Time</th>
          <th>Result</th>
        </tr>
      </thead>
      <tbody>
        {checks.map((c) => (
          <tr key={c.name} className={c.ok ? '' : 'bad'}>
            <td>
              {c.name}
              {c.error && <div className="error-detail">{c.error}</div>}
            </td>
            <td className="num">{Number.isFinite(c.maxAbsErr) ? c.maxAbsErr.toExponential(2) : '—'}</td>
            <td className="num">{c.ms.toFixed(0)} ms</td>
            <td>
              <span className={c.ok ? 'pill yes' : 'pill no'}>{c.ok ? 'pass' : 'FAIL'}</span>
            </td>
          </tr>
        ))}
        {pending && (
          <tr className="pending">
            <td colSpan={4}>running…</td>
          </tr>
        )}
      </tbody>
    </table>
  );
}

export function SelfTestPage() {
  const s = useAppState();
  const c = useController();
  const [run, setRun] = useState<RunStatus>('waiting');
  const [checks, setChecks] = useState<SelfTestCheck[]>([]);
  const [report, setReport] = useState<SelfTestReport | null>(null);
  const [message, setMessage] = useState<string>('');
  const [attempt, setAttempt] = useState(0);
  // StrictMode runs effects twice on the same instance; refs survive, so this starts one run.
  const started = useRef(-1);
  const gpu = s.gpu;
  const busy = runBusy(s.run.status);
  const canRun = gpu.status === 'ready' && !busy;

  useEffect(() => {
    if (!canRun || started.current === attempt) return;
    started.current = attempt;
    void (async () => {
      setChecks([]);
      setReport(null);
      setRun('running');
      try {
        const r = await c.runSelfTest((check) => setChecks((prev) => [...prev, check]));
        setReport(r);
        setRun(r.ok ? 'passed' : 'failed');
      } catch (e) {
        setRun('error');
        setMessage((e as Error).message);
      }
    })();
  }, [attempt, canRun, c]);

  const status =
    gpu.status === 'starting'
      ? 'starting'
      : gpu.status === 'unavailable'
        ? 'unavailable'
        : gpu.status === 'lost'
          ? 'error'
          : run;

  return (
    <main className="page view" data-status={status}>
      <h2>Diagnostics</h2>
      <p className="lead">The WebGPU adapter this browser gives the app, and the engine's kernels checked on it.</p>

      {status === 'starting' && <p className="muted">Requesting a WebGPU adapter…</p>}

      {gpu.status === 'unavailable' && (
        <section className="card alert">
          <h3>WebGPU is not available</h3>
          <p>{gpu.error?.detail}</p>
          <p className="muted">
            Tabtune runs its training kernels on the GPU through WebGPU. Use a recent Chrome or Edge, open the page over
            https or from http://localhost, and check chrome://gpu if the adapter is blocked.
          </p>
        </section>
      )}

      {gpu.status === 'lost' && (
        <section className="card alert">
          <h3>{gpu.error?.title ?? 'The GPU was lost'}</h3>
          <p>{gpu.error?.detail}</p>
        </section>
      )}

      {run === 'error' && gpu.status === 'ready' && (
        <section className="card alert">
          <h3>The GPU reported an error</h3>
          <p>{message}</p>
        </section>
      )}

      {gpu.info && <AdapterCard info={gpu.info} />}

      {gpu.status === 'ready' && (
        <section className="card">
          <div className="card-head">
            <h3>Engine self-test</h3>
            {status === 'passed' && <span className="pill yes big">all {checks.length} checks passed</span>}
            {status === 'failed' && (
              <span className="pill no big">
                {checks.filter((x) => !x.ok).length} of {checks.length} checks failed
              </span>
            )}
          </div>
          <p className="muted">
            Kernels on odd shapes against a float64 reference in TypeScript, in the GPU worker.
            {report && ` Total ${(report.ms / 1000).toFixed(1)} s.`}
          </p>
          {busy && <p className="muted">A training run is using the GPU: the self-test runs when it ends.</p>}
          <ResultsTable checks={checks} pending={status === 'running'} />
          <button type="button" disabled={status === 'running' || !canRun} onClick={() => setAttempt((a) => a + 1)}>
            Run again
          </button>
        </section>
      )}

      {gpu.status === 'ready' && <KernelsCard ready={status !== 'running'} busy={busy} />}
      {gpu.status === 'ready' && gpu.info && <AttentionCard info={gpu.info} busy={busy} />}
      {gpu.status === 'ready' && gpu.info && <BenchCard info={gpu.info} canRun={canRun && status !== 'running'} />}
    </main>
  );
}
