/**
 * What the app's end-to-end tests share: the harness serving the app with its demo assets, named
 * screenshots, the step navigation, a short run's settings through the form, and running a test's
 * steps on a page so that a failure comes with a screenshot and the page's own errors.
 */
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';
import { main as demoAssets } from '../../scripts/make-demo-assets';
import { ARTIFACTS, type Harness, ROOT, startHarness } from '../browser/harness';

/** Starts the app's harness, writing the shipped demo dataset first if it is missing (the model is committed). */
export async function startAppHarness(): Promise<Harness> {
  if (demoAssets(['--if-missing']) !== 0)
    throw new Error('The demo assets in public/ are incomplete (see the message above).');
  return startHarness();
}

/**
 * Starts the app's harness before a test file's tests and closes it after them; the returned
 * function gives the harness inside the tests.
 */
export function appHarnessForFile(): () => Harness {
  let h: Harness | undefined;
  beforeAll(async () => {
    h = await startAppHarness();
  }, 300_000);
  afterAll(async () => {
    await h?.close();
  });
  return () => h!;
}

export type Shot = (page: Page, name: string) => Promise<unknown>;

/**
 * The README's screenshots (docs/screenshots/<name>.png), written only when TABTUNE_DOCS_SCREENSHOTS=1
 * so that a test run leaves the repository as it was.
 */
export async function docShot(page: Page, name: string): Promise<void> {
  if (process.env.TABTUNE_DOCS_SCREENSHOTS !== '1') return;
  await page.screenshot({ path: join(ROOT, 'docs', 'screenshots', `${name}.png`), fullPage: true });
}

/** Full-page screenshots into the artifacts folder, as `<prefix>-<name>.png`. */
export function screenshotter(prefix: string): Shot {
  return (page, name) => page.screenshot({ path: join(ARTIFACTS, `${prefix}-${name}.png`), fullPage: true });
}

/** Opens a view from the step navigation. */
export async function nav(page: Page, label: RegExp): Promise<void> {
  await page.getByRole('navigation', { name: 'Steps' }).getByRole('button', { name: label }).click();
}

/** Sets the settings for a short run through the form, as a user would, and waits for the estimate. */
export async function shortRunSettings(
  page: Page,
  opts: { steps: number; batch: number; checkpointEvery: number; evalEvery: number },
  estimateTimeoutMs = 60_000,
): Promise<void> {
  await nav(page, /Settings/);
  await page.locator('input[name="steps"]').fill(String(opts.steps));
  await page.locator('input[name="batch"]').fill(String(opts.batch));
  await page.getByText('Evaluation and checkpoints').click();
  await page.locator('input[name="evalEvery"]').fill(String(opts.evalEvery));
  await page.locator('input[name="checkpointEvery"]').fill(String(opts.checkpointEvery));
  await page.locator('input[name="lr"]').fill('0.02');
  await page.waitForSelector('[data-testid="estimate"]', { timeout: estimateTimeoutMs });
}

/**
 * Runs a test's steps on an opened page. When a step fails, a screenshot named `failedShot` is
 * saved and the page's errors are added to the failure message; the page is closed either way.
 */
export async function onPage(
  opened: { page: Page; errors: string[] },
  shot: Shot,
  failedShot: string,
  steps: () => Promise<void>,
): Promise<void> {
  try {
    await steps();
  } catch (e) {
    await shot(opened.page, failedShot).catch(() => undefined);
    throw new Error(`${(e as Error).message}\npage errors: ${opened.errors.join('\n') || 'none'}`, { cause: e });
  } finally {
    await opened.page.close();
  }
}
