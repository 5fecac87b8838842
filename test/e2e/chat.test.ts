/**
 * The Chat view end to end in headless Chromium (WebGPU on SwiftShader) with the shipped demo model
 * (stories260K, whose tokenizer_config.json carries the demo's "Q: ... A:" chat template, rendered
 * in the worker) and an adapter imported into the library: a reply streams in and Stop ends it; a
 * greedy reply is the text Compare makes for the same prompt; switching to the adapter and
 * Regenerate give a reply labelled with the adapter; every reply keeps its label; plain completion
 * continues a text. Screenshots go to test-artifacts/chat-*.png (the README's is taken by
 * test/e2e/app.test.ts, with the demo run's adapter).
 */
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { exportPeft } from '../../src/lora/peft';
import { openPage } from '../browser/harness';
import { appHarnessForFile, nav, onPage, screenshotter } from './app-page';

const LONG = 300_000;
const harness = appHarnessForFile();
const shot = screenshotter('chat');

/** A LoRA adapter on every q_proj of the demo model (hidden size 64, 5 layers), strong enough to change its text. */
function demoAdapter(): { adapterConfig: string; adapterModel: Uint8Array } {
  const hidden = 64;
  const r = 4;
  const wave = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => 0.4 * Math.sin(i * 0.37 + k));
  return exportPeft({
    config: {
      r,
      lora_alpha: 8,
      lora_dropout: 0,
      target_modules: ['q_proj'],
      use_rslora: false,
      bias: 'none',
      fan_in_fan_out: false,
      init_lora_weights: true,
    },
    baseModel: 'tabtune/stories260K',
    modules: [0, 1, 2, 3, 4].map((layer) => ({
      path: `model.layers.${layer}.self_attn.q_proj`,
      r,
      inF: hidden,
      outF: hidden,
      a: wave(r * hidden, layer),
      b: wave(r * hidden, layer + 10),
    })),
    fanInFanOut: false,
  });
}

const turns = (page: Page) => page.getByTestId('chat-turn');
const idle = (page: Page) => page.waitForSelector('[data-testid="chat"][data-status="idle"]', { timeout: LONG });

async function send(page: Page, text: string) {
  await page.locator('#chat-draft').fill(text);
  await page.locator('#chat-draft').press('Enter');
}

describe('Chat in Chromium', () => {
  it(
    'streams, stops, matches Compare when greedy, and switches adapters between replies',
    async () => {
      const h = harness();
      const { page, errors } = await openPage(h);
      await onPage({ page, errors }, shot, 'failed', async () => {
        await page.goto(`${h.baseUrl}/`);
        await page.waitForSelector('.app[data-model="ready"]', { timeout: LONG });
        const adapter = demoAdapter();
        await nav(page, /Adapters/);
        await page.locator('#import-files').setInputFiles([
          { name: 'adapter_config.json', mimeType: 'application/json', buffer: Buffer.from(adapter.adapterConfig) },
          {
            name: 'adapter_model.safetensors',
            mimeType: 'application/octet-stream',
            buffer: Buffer.from(adapter.adapterModel),
          },
        ]);
        await expect.poll(() => page.getByTestId('adapter-row').count()).toBe(1);
        const adapterName = await page.getByTestId('adapter-name').innerText();

        await nav(page, /Chat/);
        // The model has a chat template: chat mode; generation_config.json has no do_sample: greedy.
        expect(await page.locator('select[name="chatMode"]').inputValue()).toBe('chat');
        expect(await page.locator('input[name="temperature"]').inputValue()).toBe('0');

        // Streaming and Stop: a long reply shows text while it is written, and Stop ends it there.
        await page.locator('input[name="maxNewTokens"]').fill('400');
        await send(page, 'Tell me a long story.');
        const reply = turns(page).nth(1);
        await expect.poll(() => reply.getAttribute('data-status'), { timeout: LONG }).toBe('streaming');
        await expect
          .poll(async () => (await reply.locator('pre').innerText()).length, { timeout: LONG })
          .toBeGreaterThan(20);
        await page.getByTestId('chat-stop').click();
        await idle(page);
        expect(await reply.getAttribute('data-status')).toBe('done');
        expect(await reply.innerText()).toContain('(stopped)');
        const stoppedAt = (await reply.locator('pre').innerText()).length;
        console.log(`[tabtune] e2e chat: stopped after ${stoppedAt} characters`);
        await shot(page, '1-stopped');

        // A greedy reply is what Compare writes for the same prompt.
        await page.getByTestId('chat-clear').click();
        await page.locator('input[name="maxNewTokens"]').fill('24');
        await send(page, 'What did Lily see one day?');
        await idle(page);
        const chatText = await turns(page).nth(1).locator('pre').innerText();
        expect(await turns(page).nth(1).locator('.chat-who').innerText()).toBe('Base · stories260K');
        expect(chatText.length).toBeGreaterThan(0);
        await nav(page, /Compare/);
        for (const box of await page.getByRole('group', { name: 'Adapters' }).getByRole('checkbox').all())
          if (await box.isChecked()) await box.uncheck();
        await page.locator('#prompts').fill('What did Lily see one day?');
        await page.locator('input[name="maxNewTokens"]').fill('24');
        await page.getByRole('checkbox', { name: 'chat template' }).check();
        await page.getByTestId('run-compare').click();
        await page.waitForSelector('[data-testid="compare-outputs"][data-status="done"]', { timeout: LONG });
        expect(await page.getByTestId('compare-cell').locator('pre').innerText()).toBe(chatText);

        // Another adapter for the next reply: Regenerate writes it again with the adapter, labelled so.
        await nav(page, /Chat/);
        expect(await turns(page).count()).toBe(2);
        await page.locator('select[name="chatAdapter"]').selectOption({ label: adapterName });
        await page.getByTestId('chat-regenerate').click();
        await idle(page);
        expect(await turns(page).count()).toBe(2);
        expect(await turns(page).nth(1).locator('.chat-who').innerText()).toBe(adapterName);
        const tuned = await turns(page).nth(1).locator('pre').innerText();
        expect(tuned, 'the adapter changes the text').not.toBe(chatText);

        // The conversation goes on with the adapter; back to the base model for the last reply.
        await send(page, 'What did she do next?');
        await idle(page);
        await page.locator('select[name="chatAdapter"]').selectOption('base');
        await send(page, 'And then?');
        await idle(page);
        const labels = await turns(page).locator('.chat-who').allInnerTexts();
        expect(labels).toEqual(['You', adapterName, 'You', adapterName, 'You', 'Base · stories260K']);
        expect(await turns(page).nth(5).getAttribute('data-status')).toBe('done');
        await shot(page, '2-conversation');

        // Plain completion: the text is continued as written.
        await page.getByTestId('chat-clear').click();
        await page.locator('select[name="chatMode"]').selectOption('completion');
        await page.locator('input[name="maxNewTokens"]').fill('8');
        await send(page, 'Once upon a time');
        await idle(page);
        expect(await turns(page).nth(1).getAttribute('data-status')).toBe('done');
        expect((await turns(page).nth(1).locator('pre').innerText()).length).toBeGreaterThan(0);
      });
    },
    LONG * 3,
  );
});
