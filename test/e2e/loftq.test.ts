/**
 * LoftQ in the app, end to end in headless Chromium (WebGPU on SwiftShader), on the shipped demo
 * model with 16-bit weights: LoftQ chosen in Settings' Method card (2 iterations), trained 2 steps,
 * saved to the library marked LoftQ (kept after a reload), exported as the PEFT files plus
 * loftq-base/ (every adapted weight replaced by its NF4 backbone Q: at most 16 values per 64-block,
 * every other tensor as the demo model's), then Compare's evaluation of the adapter equals the
 * same adapter evaluated in Node on the exported backbone (and not on the original weights), and
 * it answers in Chat. Screenshots: test-artifacts/loftq-*.png.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { unzipSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import { DEFAULT_TRAIN } from '../../src/engine/defaults';
import { Engine } from '../../src/engine/engine';
import type { PeftFiles } from '../../src/engine/types';
import { parseSafetensors, tensorToF32 } from '../../src/model/safetensors';
import { ROOT, openPage } from '../browser/harness';
import { getGpu } from '../helpers/gpu';
import { appHarnessForFile, nav, onPage, screenshotter, shortRunSettings } from './app-page';

const LONG = 300_000;
const harness = appHarnessForFile();
const shot = screenshotter('loftq');
const DEMO = join(ROOT, 'public', 'models', 'stories260K');

/** Loss of `files` on the demo data's validation split (the app's defaults) in Node, on the model in `dir`. */
async function nodeLoss(dir: string, files: PeftFiles): Promise<{ loss: number; tokens: number }> {
  const engine = new Engine(await getGpu());
  try {
    await engine.loadModel({ kind: 'dir', id: 'stories260K', path: dir });
    const data = await readFile(join(ROOT, 'public', 'data', 'demo-qa.jsonl'), 'utf8');
    const t = DEFAULT_TRAIN;
    await engine.loadDataset('demo-qa.jsonl', data, { maxLen: t.maxLen, valFraction: t.valFraction, seed: t.seed });
    return await engine.evaluate({ key: 'x', files }, 'validation');
  } finally {
    engine.unload();
  }
}

describe('LoftQ in the app', () => {
  it(
    'trains, marks, exports adapter + backbone, and evaluates and chats on the backbone',
    async () => {
      const h = harness();
      const { page, errors } = await openPage(h);
      const tmp = await mkdtemp(join(tmpdir(), 'tabtune-e2e-loftq-'));
      try {
        await onPage({ page, errors }, shot, 'failed', async () => {
          await page.goto(`${h.baseUrl}/`);
          await page.waitForSelector('.app[data-model="ready"]', { timeout: LONG });
          await shortRunSettings(page, { steps: 2, batch: 2, checkpointEvery: 0, evalEvery: 0 });
          await page.locator('select[name="init_lora_weights"]').selectOption('loftq');
          await page.locator('input[name="loftq_iter"]').fill('2');
          await expect
            .poll(() => page.getByTestId('method-params').innerText(), { timeout: 60_000 })
            .toMatch(/^LoRA: [\d.,KM]+ trainable parameters/);
          expect(await page.getByTestId('init-error').count()).toBe(0);
          await shot(page, '1-settings');
          await nav(page, /Train/);
          await page.getByTestId('start-training').click();
          await page.waitForSelector('[data-testid="train-finished"]', { timeout: LONG });

          await page.reload();
          await page.waitForSelector('.app[data-model="ready"]', { timeout: LONG });
          await nav(page, /Adapters/);
          const row = page.getByTestId('adapter-row');
          await expect.poll(() => row.count(), { timeout: 30_000 }).toBe(1);
          expect(await row.getByTestId('loftq-pill').innerText()).toBe('LoftQ · 2 iters');
          const name = await row.getByTestId('adapter-name').innerText();
          const exportButton = row.getByTestId('merge-adapter');
          expect(await exportButton.innerText()).toBe('Adapter + LoftQ backbone (.zip)');
          const [dl] = await Promise.all([page.waitForEvent('download'), exportButton.click()]);
          const zip = unzipSync(new Uint8Array(await readFile(await dl.path())));
          await shot(page, '2-library');

          // The export: PEFT files naming loftq-base, and the backbone folder
          const top = Object.keys(zip)[0]!.split('/')[0]!;
          const out = join(tmp, 'export');
          for (const [p, bytes] of Object.entries(zip)) {
            const file = join(out, p.slice(top.length + 1));
            await mkdir(dirname(file), { recursive: true });
            await writeFile(file, bytes);
          }
          const cfg = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
          expect(cfg).toMatchObject({
            peft_type: 'LORA',
            init_lora_weights: true,
            loftq_config: { loftq_bits: 4, loftq_iter: 2 },
            base_model_name_or_path: 'loftq-base',
          });
          const original = parseSafetensors(new Uint8Array(await readFile(join(DEMO, 'model.safetensors'))));
          const backbone = parseSafetensors(
            new Uint8Array(await readFile(join(out, 'loftq-base', 'model.safetensors'))),
          );
          // the adapted weights, from the adapter's own keys (base_model.model.PATH.lora_A.weight)
          const adapter = parseSafetensors(new Uint8Array(await readFile(join(out, 'adapter_model.safetensors'))));
          const adaptedKeys = new Set(
            [...adapter.tensors.keys()]
              .filter((k) => k.endsWith('.lora_A.weight'))
              .map((k) => `${k.slice('base_model.model.'.length, -'.lora_A.weight'.length)}.weight`),
          );
          let adapted = 0;
          for (const [key, t] of original.tensors) {
            const q = backbone.tensors.get(key)!;
            if (!adaptedKeys.has(key)) {
              expect(Buffer.from(q.data).equals(Buffer.from(t.data)), key).toBe(true);
              continue;
            }
            adapted++;
            const v = tensorToF32(q);
            expect(Buffer.from(q.data).equals(Buffer.from(t.data)), `${key} is quantized`).toBe(false);
            for (let b = 0; b < v.length; b += 64) {
              expect(new Set(v.subarray(b, b + 64)).size, `${key} block ${b / 64}`).toBeLessThanOrEqual(16);
            }
          }
          expect(adapted).toBe(adaptedKeys.size);
          expect(adapted).toBeGreaterThan(0);

          // Compare: the adapter's loss is the one it has on the exported backbone
          await nav(page, /Compare/);
          for (const box of await page.getByRole('group', { name: 'Adapters' }).getByRole('checkbox').all())
            if (!(await box.isChecked())) await box.check();
          await page.locator('#prompts').fill('What did Lily see one day?');
          await page.locator('input[name="maxNewTokens"]').fill('6');
          await page.getByTestId('run-compare').click();
          await page.waitForSelector('[data-testid="compare-outputs"][data-status="done"]', { timeout: LONG });
          expect(await page.getByTestId('compare-cell').locator('.field-error').count()).toBe(0);
          await page.getByTestId('run-eval').click();
          const rows = page.getByTestId('eval-table').locator('tbody tr');
          await expect.poll(() => rows.locator('td.num').count(), { timeout: LONG }).toBe(6);
          const cellsOf = async (i: number) => (await rows.nth(i).locator('td').allInnerTexts()).map((x) => x.trim());
          const adapterRow = (await cellsOf(0))[0] === name ? await cellsOf(0) : await cellsOf(1);
          expect(adapterRow[0]).toBe(name);
          const shown = Number(adapterRow[1]);
          const files: PeftFiles = {
            adapterConfig: await readFile(join(out, 'adapter_config.json'), 'utf8'),
            adapterModel: new Uint8Array(await readFile(join(out, 'adapter_model.safetensors'))),
          };
          const onBackbone = await nodeLoss(join(out, 'loftq-base'), files);
          const onOriginal = await nodeLoss(DEMO, files);
          console.log(
            `[tabtune] e2e loftq: Compare ${shown} | Node on the exported backbone ${onBackbone.loss.toFixed(6)} | ` +
              `on the original weights ${onOriginal.loss.toFixed(6)}`,
          );
          expect(Number(adapterRow[3])).toBe(onBackbone.tokens);
          expect(Math.abs(shown - onBackbone.loss)).toBeLessThan(2e-3);
          expect(Math.abs(shown - onOriginal.loss)).toBeGreaterThan(5e-3);
          await shot(page, '3-compare');

          // Chat with the LoftQ adapter
          await nav(page, /Chat/);
          await page.locator('input[name="maxNewTokens"]').fill('4');
          await page.locator('select[name="chatAdapter"]').selectOption({ label: name });
          await page.locator('#chat-draft').fill('Who is Lily?');
          await page.locator('#chat-draft').press('Enter');
          const reply = page.locator('[data-testid="chat-turn"][data-role="assistant"][data-status="done"]');
          await expect.poll(() => reply.count(), { timeout: LONG }).toBe(1);
          expect(await reply.locator('.chat-who').innerText()).toBe(name);
          await shot(page, '4-chat');
          expect(errors, `page console errors:\n${errors.join('\n')}`).toEqual([]);
        });
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
    },
    20 * 60_000,
  );
});
