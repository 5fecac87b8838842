/**
 * The app's frame: header with the GPU status, the step navigation, notices, and the current view.
 * Views are addressed by the URL hash (#/model, #/data, ..., #/diagnostics) so every view can be
 * linked and the browser's back button works.
 */
import { Suspense, lazy, useEffect } from 'react';
import { methodSpec } from '../lora/methods';
import { formatCount, formatSci, formatSetting } from './format';
import { useAppState, useController } from './hooks';
import type { AppState, View } from './state';
import { ChatView } from './components/ChatView';
import { CompareView } from './components/CompareView';
import { DataView } from './components/DataView';
import { LibraryView } from './components/LibraryView';
import { ModelView } from './components/ModelView';
import { SettingsView } from './components/SettingsView';
import { TrainView } from './components/TrainView';
import { MessageCard } from './components/common';

// The self-test pulls in every kernel and its reference: loaded only when Diagnostics is opened.
const SelfTestPage = lazy(() => import('./SelfTestPage').then((m) => ({ default: m.SelfTestPage })));

const VIEWS: View[] = ['model', 'data', 'settings', 'train', 'library', 'compare', 'chat', 'diagnostics'];

export function viewFromHash(hash: string): View | null {
  const v = hash.replace(/^#\/?/, '');
  return (VIEWS as string[]).includes(v) ? (v as View) : null;
}

function navItems(s: AppState): { view: View; label: string; sub: string }[] {
  const run = s.run;
  const step = run.progress ? `${run.progress.step}/${run.progress.totalSteps}` : '';
  return [
    {
      view: 'model',
      label: '1 · Model',
      sub: s.model.info
        ? s.model.info.id.split('/').pop()!
        : s.model.load.status === 'loading'
          ? 'loading…'
          : 'not loaded',
    },
    {
      view: 'data',
      label: '2 · Data',
      sub: s.dataset.summary
        ? `${s.dataset.summary.records} records`
        : s.dataset.status === 'loading'
          ? 'reading…'
          : s.dataset.status === 'error'
            ? 'problem'
            : 'none',
    },
    {
      view: 'settings',
      label: '3 · Settings',
      sub: `${methodSpec(s.lora.method ?? 'lora').lowRank ? `r ${formatSetting(s.lora.r)}` : methodSpec(s.lora.method!).label} · lr ${formatSci(s.train.lr)}`,
    },
    {
      view: 'train',
      label: '4 · Train',
      sub:
        run.status === 'running'
          ? `training ${step}`
          : run.status === 'paused'
            ? `paused ${step}`
            : run.status === 'done'
              ? 'done'
              : run.status === 'failed'
                ? 'failed'
                : s.resumable.length
                  ? `${s.resumable.length} to resume`
                  : 'ready',
    },
    { view: 'library', label: '5 · Adapters', sub: `${s.library.adapters.length} saved` },
    { view: 'compare', label: '6 · Compare', sub: s.compare.status === 'running' ? 'generating…' : 'base vs adapters' },
    {
      view: 'chat',
      label: '7 · Chat',
      sub:
        s.chat.status !== 'idle'
          ? 'writing…'
          : s.chat.turns.length
            ? `${s.chat.turns.length} messages`
            : 'try an adapter',
    },
    { view: 'diagnostics', label: 'Diagnostics', sub: 'WebGPU self-test' },
  ];
}

function GpuBadge({ s }: { s: AppState }) {
  const g = s.gpu;
  if (g.status === 'starting') return <span className="pill">starting GPU…</span>;
  if (g.status === 'unavailable') return <span className="pill no">no WebGPU</span>;
  if (g.status === 'lost') return <span className="pill no">GPU lost — reload</span>;
  const i = g.info!;
  return (
    <span
      className="pill yes"
      title={`${i.vendor} ${i.architecture} ${i.description}; shader-f16 ${i.f16 ? 'yes' : 'no'}`}
    >
      GPU: {i.architecture || i.vendor || 'WebGPU'}
    </span>
  );
}

function Notices({ s }: { s: AppState }) {
  const c = useController();
  if (s.notices.length === 0) return null;
  return (
    <div className="notices">
      {s.notices.map((n) => (
        <MessageCard key={n.id} level={n.level} message={n}>
          <button
            type="button"
            className="link dismiss"
            onClick={() => c.dismiss(n.id)}
            aria-label={`Dismiss: ${n.title}`}
          >
            Dismiss
          </button>
        </MessageCard>
      ))}
    </div>
  );
}

function NoWebGpu({ s }: { s: AppState }) {
  if (s.gpu.status !== 'unavailable' || !s.gpu.error) return null;
  return (
    <MessageCard message={s.gpu.error}>
      <p className="small">
        Chrome and Edge (version 113 and later, desktop; 121+ on Android) have WebGPU on by default. Firefox has it on
        Windows from version 141; on other systems set <code>dom.webgpu.enabled</code> in about:config. Safari has it
        from version 26 (earlier: Develop → Feature Flags → WebGPU). Adapters already saved stay in the Adapters view.
      </p>
    </MessageCard>
  );
}

function CurrentView({ view }: { view: View }) {
  switch (view) {
    case 'model':
      return <ModelView />;
    case 'data':
      return <DataView />;
    case 'settings':
      return <SettingsView />;
    case 'train':
      return <TrainView />;
    case 'library':
      return <LibraryView />;
    case 'compare':
      return <CompareView />;
    case 'chat':
      return <ChatView />;
    case 'diagnostics':
      return (
        <Suspense fallback={<p className="muted">Loading the self-test…</p>}>
          <SelfTestPage />
        </Suspense>
      );
  }
}

export function App() {
  const s = useAppState();
  const c = useController();

  useEffect(() => {
    const sync = () => {
      const v = viewFromHash(window.location.hash);
      if (v && v !== c.state.view) c.go(v);
    };
    sync();
    window.addEventListener('hashchange', sync);
    return () => window.removeEventListener('hashchange', sync);
  }, [c]);

  const go = (v: View) => {
    if (window.location.hash !== `#/${v}`) window.location.assign(`#/${v}`);
    c.go(v);
    document.getElementById('view-top')?.focus();
  };

  return (
    <div className="app" data-view={s.view} data-model={s.model.load.status} data-gpu={s.gpu.status}>
      <a href="#view-top" className="skip-link">
        Skip to content
      </a>
      <header className="topbar">
        <div className="brand">
          <span className="logo" aria-hidden="true">
            ◢
          </span>
          <div>
            <h1>Tabtune</h1>
            <p className="tagline">LoRA fine-tuning in this browser tab, on WebGPU. Nothing leaves your machine.</p>
          </div>
        </div>
        <div className="topbar-status">
          <GpuBadge s={s} />
          {s.model.info && <span className="pill">{formatCount(s.model.info.parameters)} params</span>}
        </div>
      </header>
      <div className="layout">
        <nav className="steps" aria-label="Steps">
          <ul>
            {navItems(s).map((it) => (
              <li key={it.view}>
                <button
                  type="button"
                  className={`step${s.view === it.view ? ' current' : ''}`}
                  aria-current={s.view === it.view ? 'page' : undefined}
                  onClick={() => go(it.view)}
                >
                  <span className="step-label">{it.label}</span>
                  <span className="step-sub">{it.sub}</span>
                </button>
              </li>
            ))}
          </ul>
        </nav>
        <div className="content" id="view-top" tabIndex={-1}>
          <NoWebGpu s={s} />
          <Notices s={s} />
          {s.view === 'diagnostics' ? (
            <CurrentView view={s.view} />
          ) : (
            <main>
              <CurrentView view={s.view} />
            </main>
          )}
        </div>
      </div>
    </div>
  );
}
