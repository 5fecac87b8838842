/**
 * What the jsdom tests of the whole app share: each test starts with a fresh IndexedDB and an
 * empty URL hash and ends unmounted (appTestSetup, called once at the top of a test file), and
 * mountApp renders the App around a controller.
 */
import { cleanup, configure, render } from '@testing-library/react';
import { afterEach, beforeEach } from 'vitest';
import { App } from '../../src/ui/App';
import type { AppController } from '../../src/ui/controller';
import { ControllerContext } from '../../src/ui/hooks';
import { freshIndexedDb } from './helpers';

/** Registers the per-test setup and teardown in the calling test file. */
export function appTestSetup(): void {
  // waitFor polls until its condition holds; on a CI machine whose cores are busy with the GPU
  // tests' software driver, the default 1 s is not always enough for a fake training run.
  configure({ asyncUtilTimeout: 20_000 });
  beforeEach(() => {
    freshIndexedDb();
    window.location.hash = '';
  });
  afterEach(() => cleanup());
}

export function mountApp(c: AppController) {
  return render(
    <ControllerContext.Provider value={c}>
      <App />
    </ControllerContext.Provider>,
  );
}
