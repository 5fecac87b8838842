/**
 * Every PEFT method in the app, end to end in headless Chromium (WebGPU on SwiftShader), in one
 * walk kept short (2 steps each on the shipped demo model): DoRA, LoRA with the PiSSA init, (IA)³
 * with modules of the user's choice, prompt tuning and prefix tuning are chosen in Settings,
 * trained, saved to the library (IndexedDB) with their method, still there after a reload (loaded
 * back from their PEFT files), downloaded as PEFT files of their peft_type, evaluated and generated
 * side by side in Compare, and each answers in Chat. Screenshots: test-artifacts/methods-*.png.
 */
import { readFileSync } from 'node:fs';
import { unzipSync } from 'fflate';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { openPage } from '../browser/harness';
import { appHarnessForFile, nav, onPage, screenshotter, shortRunSettings } from './app-page';

const LONG = 300_000;
const harness = appHarnessForFile();
const shot = screenshotter('methods');

interface Run {
  method: string;
  label: string;
  peftType: string;
  /** Sets the method's own options in the Method card. */
  options?: (page: Page) => Promise<void>;
  /** What adapter_config.json says beyond peft_type. */
  config: Record<string, unknown>;
}

const RUNS: Run[] = [
  { method: 'dora', label: 'DoRA', peftType: 'LORA', config: { use_dora: true } },
  {
    method: 'lora',
    label: 'LoRA',
    peftType: 'LORA',
    options: (page) =>
      page
        .locator('select[name="init_lora_weights"]')
        .selectOption('pissa')
        .then(() => undefined),
    // saved converted as PEFT does: twice the rank, a plain init
    config: { init_lora_weights: true, use_dora: false, r: 16 },
  },
  {
    method: 'ia3',
    label: 'IA³',
    peftType: 'IA3',
    options: async (page) => {
      const card = page.getByTestId('ia3-modules');
      await card.getByRole('checkbox', { name: /^PEFT's defaults for llama/ }).uncheck();
      await card.getByRole('checkbox', { name: 'scale up_proj', exact: true }).check();
      await card.getByRole('checkbox', { name: 'scale the input of up_proj' }).check();
    },
    config: {
      target_modules: ['down_proj', 'k_proj', 'up_proj', 'v_proj'],
      feedforward_modules: ['down_proj', 'up_proj'],
    },
  },
  {
    method: 'prompt-tuning',
    label: 'Prompt tuning',
    peftType: 'PROMPT_TUNING',
    options: (page) => page.locator('input[name="num_virtual_tokens"]').fill('4'),
    config: { num_virtual_tokens: 4 },
  },
  {
    method: 'prefix-tuning',
    label: 'Prefix tuning',
    peftType: 'PREFIX_TUNING',
    options: (page) => page.locator('input[name="num_virtual_tokens"]').fill('3'),
    config: { num_virtual_tokens: 3 },
  },
];

async function download(page: Page, button: ReturnType<Page['getByTestId']>): Promise<Uint8Array> {
  const [dl] = await Promise.all([page.waitForEvent('download'), button.click()]);
  return new Uint8Array(readFileSync(await dl.path()));
}

describe('every PEFT method in the app', () => {
  it(
    'trains, saves, reloads, downloads, evaluates, compares and chats with DoRA, PiSSA, (IA)³, prompt and prefix tuning',
    async () => {
      const h = harness();
      const { page, errors } = await openPage(h);
      await onPage({ page, errors }, shot, 'failed', async () => {
        await page.goto(`${h.baseUrl}/`);
        await page.waitForSelector('.app[data-model="ready"]', { timeout: LONG });
        await shortRunSettings(page, { steps: 2, batch: 2, checkpointEvery: 0, evalEvery: 0 });
        for (const [i, run] of RUNS.entries()) {
          await nav(page, /Settings/);
          await page.locator('select[name="method"]').selectOption(run.method);
          await run.options?.(page);
          await expect
            .poll(() => page.getByTestId('method-params').innerText(), { timeout: 60_000 })
            .toMatch(new RegExp(`^${run.label}: [\\d.,KM]+ trainable parameters`));
          expect(await page.getByTestId('ia3-error').count()).toBe(0);
          if (i === 2) await shot(page, '1-settings-ia3');
          await nav(page, /Train/);
          const t0 = Date.now();
          await page.getByTestId('start-training').click();
          await page.waitForSelector('[data-testid="start-training"]', { state: 'detached', timeout: LONG });
          await page.waitForSelector('[data-testid="train-finished"]', { timeout: LONG });
          console.log(
            `[tabtune] e2e methods: ${run.method} trained 2 steps in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
          );
          await nav(page, /Adapters/);
          await expect.poll(() => page.getByTestId('adapter-row').count()).toBe(i + 1);
        }

        // After a reload every adapter is still there, with its method.
        await page.reload();
        await page.waitForSelector('.app[data-model="ready"]', { timeout: LONG });
        await nav(page, /Adapters/);
        const rows = page.getByTestId('adapter-row');
        await expect.poll(() => rows.count(), { timeout: 30_000 }).toBe(RUNS.length);
        const names: string[] = [];
        for (const run of RUNS) {
          const row = rows.filter({ has: page.locator('dt', { hasText: new RegExp(`^${run.label}$`) }) });
          expect(await row.count(), run.label).toBe(1);
          names.push(await row.getByTestId('adapter-name').innerText());
          // The PEFT files of the method
          const files = unzipSync(await download(page, row.getByTestId('download-zip')));
          const cfg = JSON.parse(new TextDecoder().decode(files['adapter_config.json']!)) as Record<string, unknown>;
          expect(cfg, run.label).toMatchObject({ peft_type: run.peftType, ...run.config });
          // Only LoRA and DoRA merge into the base weights
          expect(await row.getByTestId('merge-adapter').isDisabled(), run.label).toBe(run.peftType !== 'LORA');
        }
        await shot(page, '2-library');

        // Compare: base and every adapter side by side, then their losses.
        await nav(page, /Compare/);
        for (const box of await page.getByRole('group', { name: 'Adapters' }).getByRole('checkbox').all())
          if (!(await box.isChecked())) await box.check();
        await page.locator('#prompts').fill('What did Lily see one day?');
        await page.locator('input[name="maxNewTokens"]').fill('6');
        await page.getByTestId('run-compare').click();
        await page.waitForSelector('[data-testid="compare-outputs"][data-status="done"]', { timeout: LONG });
        const cells = page.getByTestId('compare-cell');
        expect(await cells.count()).toBe(1 + RUNS.length);
        expect(await cells.locator('.field-error').count(), (await cells.allInnerTexts()).join('\n')).toBe(0);
        const headers = await cells.locator('h4').allInnerTexts();
        for (const name of names) expect(headers).toContain(name);
        await page.getByTestId('run-eval').click();
        await expect
          .poll(() => page.getByTestId('eval-table').locator('tbody tr td.num').count(), { timeout: LONG })
          .toBe(3 * (1 + RUNS.length));
        const evalText = await page.getByTestId('eval-table').innerText();
        console.log(`[tabtune] e2e methods: ${evalText.replace(/\s+/g, ' ')}`);
        await shot(page, '3-compare');

        // Chat: each adapter writes a reply, labelled with its name.
        await nav(page, /Chat/);
        await page.locator('input[name="maxNewTokens"]').fill('4');
        for (const [i, name] of names.entries()) {
          await page.locator('select[name="chatAdapter"]').selectOption({ label: name });
          await page.locator('#chat-draft').fill(`Question ${i + 1}?`);
          await page.locator('#chat-draft').press('Enter');
          await expect
            .poll(() => page.locator('[data-testid="chat-turn"][data-role="assistant"][data-status="done"]').count(), {
              timeout: LONG,
            })
            .toBe(i + 1);
        }
        const replies = page.locator('[data-testid="chat-turn"][data-role="assistant"]');
        expect(await replies.locator('.chat-who').allInnerTexts()).toEqual(names);
        await shot(page, '4-chat');
        expect(errors, `page console errors:\n${errors.join('\n')}`).toEqual([]);
      });
    },
    20 * 60_000,
  );
});
