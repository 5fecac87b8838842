/**
 * The browser app's entry (index.html loads it; `npm start` serves it with Vite).
 * Starts the GPU worker client and the controller, then mounts the app. The engine self-test
 * (SelfTestPage) is the app's Diagnostics view, at #/diagnostics.
 */
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { newId } from '../store/db';
import { requestPersistentStorage, storageEstimate } from '../store/model-cache';
import { heldRunLocks, tryRunLock } from '../store/runs';
import { WorkerEngine } from '../worker/client';
import { App } from './App';
import { AppController } from './controller';
import { ControllerContext } from './hooks';
import './app.css';

/** One id per tab, kept across reloads of the tab, so a reload still owns its run's lease. */
function tabId(): string {
  try {
    const old = sessionStorage.getItem('tabtune-tab');
    if (old) return old;
    const id = newId();
    sessionStorage.setItem('tabtune-tab', id);
    return id;
  } catch {
    return newId();
  }
}

const controller = new AppController({
  engine: new WorkerEngine(),
  tabId: tabId(),
  platform: {
    fetch: (input, init) => fetch(input, init),
    pageUrl: window.location.href,
    lockRun: tryRunLock,
    heldRunLocks,
    persistStorage: requestPersistentStorage,
    storageEstimate,
    settingsStorage: (() => {
      try {
        return window.localStorage;
      } catch {
        return undefined; // blocked (e.g. storage disabled): settings are not kept
      }
    })(),
    isPersisted: async () => {
      try {
        return (await navigator.storage?.persisted?.()) ?? false;
      } catch {
        return false;
      }
    },
  },
});

const el = document.getElementById('root');
if (!el) throw new Error('index.html has no #root element');
createRoot(el).render(
  <StrictMode>
    <ControllerContext.Provider value={controller}>
      <App />
    </ControllerContext.Provider>
  </StrictMode>,
);
void controller.start();
