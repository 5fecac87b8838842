/**
 * Accessibility of every view in headless Chromium (WebGPU on SwiftShader):
 * - axe-core's WCAG 2.0/2.1/2.2 A and AA rules on Model, Data, Settings, Train (idle, running,
 *   paused, finished), Adapters (with an adapter), Compare (with outputs), Chat (with a reply), Diagnostics, and the
 *   no-WebGPU message; no violations allowed;
 * - the keyboard: Tab from the top of the page reaches the skip link, the step navigation and each
 *   view's primary buttons, every stop shows a focus ring (its computed outline or box-shadow differs
 *   from the unfocused one), and Pause / Resume work by keyboard without losing focus;
 * - the loss chart has a text alternative and legible tick labels;
 * - every view reflows at 320 CSS px wide (WCAG 1.4.10) without a horizontal scrollbar.
 * Screenshots go to test-artifacts/a11y-*.png.
 *
 * Kept short for CI (2 cores, no GPU): one page, the shipped demo model, a 3-step run, 4 new tokens.
 */
import AxeBuilder from '@axe-core/playwright';
import type { Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, appErrors, openPage, prependToWorker } from '../browser/harness';
import { nav, onPage, screenshotter, shortRunSettings, startAppHarness } from './app-page';

const LONG = 120_000;
/** WCAG 2.0, 2.1 and 2.2, levels A and AA (axe's tags for them). */
const WCAG = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'];
const NAV = [
  '1 · Model',
  '2 · Data',
  '3 · Settings',
  '4 · Train',
  '5 · Adapters',
  '6 · Compare',
  '7 · Chat',
  'Diagnostics',
];

let h: Harness;

beforeAll(async () => {
  h = await startAppHarness();
}, 300_000);

afterAll(async () => {
  await h?.close();
});

const shot = screenshotter('a11y');

interface Finding {
  state: string;
  rule: string;
  impact: string;
  targets: string[];
  help: string;
}

/** Runs axe's WCAG A/AA rules on the whole page; what it finds is labelled with `state`. */
async function audit(page: Page, state: string): Promise<Finding[]> {
  const res = await new AxeBuilder({ page }).withTags(WCAG).analyze();
  return res.violations.map((v) => ({
    state,
    rule: v.id,
    impact: v.impact ?? 'unknown',
    targets: v.nodes.map((n) => n.target.map(String).join(' >> ')),
    help: v.help,
  }));
}

function report(findings: Finding[]): string {
  return findings
    .map((f) => `[${f.state}] ${f.rule} (${f.impact}): ${f.help}\n    ${f.targets.join('\n    ')}`)
    .join('\n');
}

interface Stop {
  /** "button: Start training", "input: Rank r", ... */
  name: string;
  inNav: boolean;
  ring: boolean;
}

/**
 * Presses Tab from the top of the page until focus leaves the page or comes round again, and
 * returns every stop with whether it showed a focus indicator: a focused element's computed
 * outline or box-shadow must differ from its unfocused one (and not be none/transparent/0 wide).
 */
async function tabWalk(page: Page, max = 150): Promise<Stop[]> {
  await page.evaluate(() => {
    const start = document.createElement('span');
    start.id = 'a11y-start';
    start.tabIndex = -1;
    document.body.prepend(start);
    start.focus();
  });
  const stops: { name: string; inNav: boolean; style: string }[] = [];
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    const at = await page.evaluate((i) => {
      const el = document.activeElement as HTMLElement | null;
      if (!el || el === document.body || el.id === 'a11y-start' || el.dataset.a11yStop !== undefined) return null;
      el.dataset.a11yStop = String(i);
      const cs = getComputedStyle(el);
      const label =
        el.getAttribute('aria-label') ||
        (el.id && document.querySelector<HTMLLabelElement>(`label[for="${el.id}"]`)?.innerText) ||
        el.closest('label')?.innerText ||
        el.innerText ||
        el.getAttribute('name') ||
        '';
      return {
        name: `${el.tagName.toLowerCase()}: ${label.replace(/\s+/g, ' ').trim().slice(0, 60)}`,
        inNav: !!el.closest('nav[aria-label="Steps"]'),
        style: JSON.stringify([cs.outlineStyle, cs.outlineWidth, cs.outlineColor, cs.boxShadow]),
      };
    }, i);
    if (!at) break;
    stops.push(at);
  }
  const unfocused = await page.evaluate(() => {
    const start = document.getElementById('a11y-start')!;
    start.focus();
    const out: Record<string, string> = {};
    for (const el of document.querySelectorAll<HTMLElement>('[data-a11y-stop]')) {
      const cs = getComputedStyle(el);
      out[el.dataset.a11yStop!] = JSON.stringify([cs.outlineStyle, cs.outlineWidth, cs.outlineColor, cs.boxShadow]);
      delete el.dataset.a11yStop;
    }
    start.remove();
    return out;
  });
  return stops.map((s, i) => {
    const [style, width, color, shadow] = JSON.parse(s.style) as string[];
    const outline = style !== 'none' && parseFloat(width!) > 0 && !/rgba\(.*, 0\)|transparent/.test(color!);
    const ring = s.style !== unfocused[String(i)] && (outline || shadow !== 'none');
    return { name: s.name, inNav: s.inNav, ring };
  });
}

/** The keyboard check of one view: `buttons` must be reached by Tab, and every stop shows focus. */
async function keyboard(page: Page, state: string, buttons: string[], problems: string[]): Promise<Stop[]> {
  const stops = await tabWalk(page);
  const names = stops.map((s) => s.name);
  if (!names.includes('a: Skip to content'))
    problems.push(`[${state}] Tab does not reach the skip link first (stops: ${names.join(' | ')})`);
  const nav = stops.filter((s) => s.inNav).map((s) => s.name);
  for (const n of NAV)
    if (!nav.some((x) => x.startsWith(`button: ${n}`))) problems.push(`[${state}] Tab does not reach the step "${n}"`);
  for (const b of buttons)
    if (!names.includes(`button: ${b}`))
      problems.push(`[${state}] Tab does not reach the button "${b}" (stops: ${names.join(' | ')})`);
  for (const s of stops) if (!s.ring) problems.push(`[${state}] no visible focus indicator on ${s.name}`);
  return stops;
}

const focused = (l: Locator) => l.evaluate((el) => el === document.activeElement);
const activeName = (page: Page) =>
  page.evaluate(
    () =>
      `${document.activeElement?.tagName.toLowerCase()} ${(document.activeElement as HTMLElement | null)?.innerText?.slice(0, 40) ?? ''}`,
  );

describe('accessibility', () => {
  it(
    'every view passes axe (WCAG A/AA), works by keyboard with visible focus, reflows at 320 px, and the chart has a text alternative',
    async () => {
      const { page, errors } = await openPage(h);
      const findings: Finding[] = [];
      const keys: string[] = [];
      const t0 = Date.now();
      const lap = (what: string) =>
        console.log(`[tabtune] a11y: ${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      await onPage({ page, errors }, shot, 'failed', async () => {
        await page.goto(`${h.baseUrl}/`);
        await page.waitForSelector('.app[data-model="ready"]', { timeout: LONG });
        lap('model ready');
        findings.push(...(await audit(page, 'model')));
        await keyboard(page, 'model', [], keys);
        await shot(page, 'model');

        await nav(page, /Data/);
        await page.waitForSelector('[data-testid="dataset-summary"]', { timeout: LONG });
        findings.push(...(await audit(page, 'data')));
        await keyboard(page, 'data', ['Upload file…', 'Use the demo Q&A set', 'Next: settings →'], keys);
        await shot(page, 'data');

        await shortRunSettings(page, { steps: 3, batch: 2, checkpointEvery: 0, evalEvery: 0 }, LONG);
        findings.push(...(await audit(page, 'settings')));
        await keyboard(page, 'settings', ['Next: train →'], keys);
        await shot(page, 'settings');

        await nav(page, /Train/);
        findings.push(...(await audit(page, 'train-idle')));
        await keyboard(page, 'train-idle', ['Start training'], keys);
        await shot(page, 'train-idle');
        lap('train start');
        // Start by keyboard; when the button gives way to Pause, focus goes with it.
        await page.getByTestId('start-training').focus();
        await page.keyboard.press('Enter');
        await page.waitForSelector('[data-testid="train-progress"][data-status="running"]', { timeout: LONG });
        const pause = page.getByRole('button', { name: 'Pause' });
        if (!(await focused(pause)))
          keys.push(`[train] focus is lost when Start training gives way to Pause (on ${await activeName(page)})`);
        findings.push(...(await audit(page, 'train-running')));
        await shot(page, 'train-running');
        await pause.focus();
        await page.keyboard.press('Enter');
        await page.waitForSelector('[data-testid="train-progress"][data-status="paused"]', { timeout: LONG });
        const resume = page.getByRole('button', { name: 'Resume' });
        if (!(await focused(resume)))
          keys.push(`[train] focus is lost when Pause gives way to Resume (on ${await activeName(page)})`);
        findings.push(...(await audit(page, 'train-paused')));
        await keyboard(page, 'train-paused', ['Resume', 'Stop and save'], keys);
        await resume.focus();
        await page.keyboard.press('Enter');
        await page.waitForSelector('[data-testid="train-finished"]', { timeout: LONG });
        lap('train done');
        findings.push(...(await audit(page, 'train-finished')));
        await keyboard(
          page,
          'train-finished',
          ['Train again', 'Compare with the base model →', 'Open the library'],
          keys,
        );
        await shot(page, 'train-finished');

        // The chart: a named image with a description of the curve, and tick labels of a legible size.
        const chart = page.getByRole('img', { name: /Loss per step/ });
        expect(await chart.count()).toBe(1);
        const alt = await chart.evaluate((svg) =>
          (svg.getAttribute('aria-labelledby') ?? '')
            .split(/\s+/)
            .map((id) => document.getElementById(id)?.textContent ?? '')
            .join(' '),
        );
        expect(alt).toMatch(
          /Training loss from \d+\.\d+ to \d+\.\d+ \(smoothed\) over 3 of 3 steps; validation loss \d+\.\d+ at step 3\./,
        );
        const tickPx = await chart.evaluate((svg) =>
          Math.min(...[...svg.querySelectorAll('text')].map((t) => t.getBoundingClientRect().height)),
        );
        expect(tickPx, 'chart text is at least 11 px tall on screen').toBeGreaterThanOrEqual(11);

        await nav(page, /Adapters/);
        await page.waitForSelector('[data-testid="adapter-row"]', { timeout: LONG });
        findings.push(...(await audit(page, 'adapters')));
        await keyboard(page, 'adapters', ['Choose files…', 'Download .zip', 'Rename', 'Delete…'], keys);
        await shot(page, 'adapters');

        await nav(page, /Compare/);
        const pick = page.getByRole('group', { name: 'Adapters' }).getByRole('checkbox');
        if (!(await pick.isChecked())) await pick.check();
        await page.locator('#prompts').fill('The cat');
        await page.locator('input[name="maxNewTokens"]').fill('4');
        // Generate by keyboard; focus stays on the button while it runs and after.
        const gen = page.getByTestId('run-compare');
        await gen.focus();
        await page.keyboard.press('Enter');
        await page.waitForSelector('[data-testid="compare-outputs"][data-status="done"]', { timeout: LONG });
        if (!(await focused(gen)))
          keys.push(`[compare] Generate loses the focus while it runs (on ${await activeName(page)})`);
        lap('compare done');
        findings.push(...(await audit(page, 'compare')));
        await keyboard(page, 'compare', ['Generate side by side', 'Validation loss and perplexity'], keys);
        await shot(page, 'compare');

        // Chat: a message sent by keyboard (Enter in the message box), the reply, then the buttons by Tab.
        await nav(page, /Chat/);
        await page.locator('input[name="maxNewTokens"]').fill('4');
        await page.locator('#chat-draft').focus();
        await page.keyboard.type('The cat');
        await page.keyboard.press('Enter');
        await page.waitForSelector('[data-testid="chat-turn"][data-role="assistant"][data-status="done"]', {
          timeout: LONG,
        });
        await page.waitForSelector('[data-testid="chat"][data-status="idle"]', { timeout: LONG });
        lap('chat done');
        findings.push(...(await audit(page, 'chat')));
        await keyboard(page, 'chat', ['Regenerate', 'New conversation'], keys);
        await shot(page, 'chat');

        // Reflow (WCAG 1.4.10): 320 CSS px wide, as 400 % zoom of a 1280 px window; nothing scrolls sideways.
        await page.setViewportSize({ width: 320, height: 720 });
        const wide: string[] = [];
        for (const [view, label] of [
          ['model', /Model/],
          ['data', /Data/],
          ['settings', /Settings/],
          ['train', /Train/],
          ['adapters', /Adapters/],
          ['compare', /Compare/],
          ['chat', /Chat/],
        ] as const) {
          await nav(page, label);
          const over = await page.evaluate(() => {
            const root = document.documentElement;
            if (root.scrollWidth <= root.clientWidth) return null;
            const wider = [...document.querySelectorAll<HTMLElement>('.content *')].filter(
              (e) => e.getBoundingClientRect().right > root.clientWidth + 1,
            );
            return `${root.scrollWidth} px: ${wider
              .slice(0, 4)
              .map((e) => `${e.tagName.toLowerCase()}.${[...e.classList].join('.')}`)
              .join(', ')}`;
          });
          if (over) wide.push(`${view} is ${over}`);
          if (view === 'train') {
            const px = await page.evaluate(() =>
              Math.min(
                ...[...document.querySelectorAll('[data-testid="loss-chart"] text')].map(
                  (t) => t.getBoundingClientRect().height,
                ),
              ),
            );
            if (px < 11) wide.push(`the loss chart's text is ${px.toFixed(1)} px tall at 320 px`);
          }
          await shot(page, `320-${view}`);
        }
        await page.setViewportSize({ width: 1100, height: 900 });

        // Diagnostics last: its self-test keeps the (software) GPU busy once started.
        await nav(page, /Diagnostics/);
        await page.waitForSelector('main.page[data-status]', { timeout: LONG });
        findings.push(...(await audit(page, 'diagnostics')));
        await shot(page, 'diagnostics');

        await page.setViewportSize({ width: 320, height: 720 });
        if (await page.evaluate(() => document.documentElement.scrollWidth > document.documentElement.clientWidth))
          wide.push('diagnostics is wider than 320 px');
        await shot(page, '320-diagnostics');
        lap('diagnostics');
        keys.push(...wide.map((w) => `[reflow] ${w}`));
        expect(errors, `page console errors:\n${errors.join('\n')}`).toEqual([]);
      });

      // No WebGPU: the worker that owns the GPU sees no navigator.gpu (as in a browser without it).
      const noGpu = await openPage(h);
      try {
        await prependToWorker(
          noGpu.page,
          "Object.defineProperty(WorkerNavigator.prototype, 'gpu', { get: () => undefined });",
        );
        await noGpu.page.goto(`${h.baseUrl}/`);
        await noGpu.page.waitForSelector('.app[data-gpu="unavailable"]', { timeout: LONG });
        expect(await noGpu.page.getByRole('alert').first().innerText()).toMatch(/WebGPU/);
        findings.push(...(await audit(noGpu.page, 'no-webgpu')));
        await keyboard(noGpu.page, 'no-webgpu', [], keys);
        await shot(noGpu.page, 'no-webgpu');
        const left = appErrors(noGpu.errors);
        expect(left, `page console errors without WebGPU:\n${left.join('\n')}`).toEqual([]);
      } finally {
        await noGpu.page.close();
      }
      lap('no webgpu');

      expect(findings, `axe found WCAG A/AA violations:\n${report(findings)}`).toEqual([]);
      expect(keys, `keyboard problems:\n${keys.join('\n')}`).toEqual([]);
    },
    5 * 60_000,
  );
});
