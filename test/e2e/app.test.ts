/**
 * The app end to end in headless Chromium (WebGPU on SwiftShader), served by Vite from 127.0.0.1:
 * keep the shipped demo model (stories260K) and dataset, run the default demo training as a user
 * would (the settings untouched) and see the loss fall, find the adapter in the library, reload and
 * find it still there, download it and check the PEFT files, and see Compare show the base model
 * telling a story where the adapter answers the demo questions, and Chat with the adapter, then the base
 * model, answering in turn. A second test interrupts a short
 * run on 4-bit NF4 frozen weights (QLoRA) with packed batches by reloading the page and resumes it from its checkpoint
 * on the same 4-bit weights. Screenshots of each stage go to
 * test-artifacts/app-*.png; with TABTUNE_DOCS_SCREENSHOTS=1 the README's go to docs/screenshots/.
 *
 * SwiftShader is slow (~10x lavapipe): the default demo run takes a few minutes here.
 */
import { readFileSync } from 'node:fs';
import { unzipSync } from 'fflate';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportPeft } from '../../src/lora/peft';
import { parseSafetensors, tensorToF32 } from '../../src/model/safetensors';
import { type Harness, openPage } from '../browser/harness';
import { CATALOG, DEMO_PROMPTS } from '../../src/ui/catalog';
import { docShot, nav, onPage, screenshotter, shortRunSettings, startAppHarness } from './app-page';

/** The default demo run's steps (the catalog's preset for the shipped model). */
const STEPS = CATALOG.find((e) => e.demo)!.train!.steps!;
const LONG = 480_000;

let h: Harness;

beforeAll(async () => {
  h = await startAppHarness();
}, 300_000);

afterAll(async () => {
  await h?.close();
});

const shot = screenshotter('app');

async function waitForDemo(page: Page) {
  await page.waitForSelector('.app[data-model="ready"]', { timeout: LONG });
}

async function download(
  page: Page,
  button: ReturnType<Page['getByRole']>,
): Promise<{ name: string; bytes: Uint8Array }> {
  const [dl] = await Promise.all([page.waitForEvent('download'), button.click()]);
  const path = await dl.path();
  return { name: dl.suggestedFilename(), bytes: new Uint8Array(readFileSync(path)) };
}

/** A LoRA adapter (q_proj, v_proj; r 4) for a llama with hidden size 32, not the demo model's 64. */
function otherModelAdapter(): { adapterConfig: string; adapterModel: Uint8Array } {
  const hidden = 32;
  const r = 4;
  return exportPeft({
    config: {
      r,
      lora_alpha: 8,
      lora_dropout: 0,
      target_modules: ['q_proj', 'v_proj'],
      use_rslora: false,
      bias: 'none',
      fan_in_fan_out: false,
      init_lora_weights: true,
    },
    baseModel: 'someone/other-tiny-llama',
    modules: [0, 1].flatMap((layer) =>
      ['q_proj', 'v_proj'].map((name) => ({
        path: `model.layers.${layer}.self_attn.${name}`,
        r,
        inF: hidden,
        outF: hidden,
        a: new Float32Array(r * hidden).fill(0.01),
        b: new Float32Array(r * hidden).fill(0.001),
      })),
    ),
    fanInFanOut: false,
  });
}

function checkPeft(config: string, model: Uint8Array) {
  const cfg = JSON.parse(config) as Record<string, unknown>;
  expect(cfg.peft_type).toBe('LORA');
  expect(cfg.task_type).toBe('CAUSAL_LM');
  expect(cfg.base_model_name_or_path).toBe('tabtune/stories260K');
  expect(cfg.r).toBe(8);
  expect(cfg.lora_alpha).toBe(16);
  const st = parseSafetensors(model, 'adapter_model.safetensors');
  expect(st.metadata).toEqual({ format: 'pt' });
  const keys = [...st.tensors.keys()];
  // 5 layers x 7 linear modules (all-linear) x A/B
  expect(keys.length).toBe(5 * 7 * 2);
  for (const k of keys) {
    expect(k).toMatch(
      /^base_model\.model\.model\.layers\.[0-4]\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.lora_[AB]\.weight$/,
    );
    const t = st.tensors.get(k)!;
    expect(t.dtype).toBe('F32');
    if (k.endsWith('lora_A.weight')) expect(t.shape[0]).toBe(8);
    else expect(t.shape[1]).toBe(8);
  }
  const q = st.tensors.get('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')!;
  expect(q.shape).toEqual([8, 64]);
  const b = tensorToF32(st.tensors.get('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight')!);
  expect(
    b.some((v) => v !== 0),
    'lora_B moved away from its zero init',
  ).toBe(true);
}

/**
 * Records in sessionStorage (which outlives a reload) every text the Train view's start-up line
 * shows ("Resuming at step 4 of 6: compiling…"), as it changes.
 */
async function watchStartup(page: Page, testId = 'train-startup', key = 'startup-seen'): Promise<void> {
  await page.evaluate(
    ({ testId, key }) => {
      sessionStorage.setItem(key, '[]');
      new MutationObserver(() => {
        const t = document.querySelector(`[data-testid="${testId}"]`)?.textContent;
        const seen = JSON.parse(sessionStorage.getItem(key) ?? '[]') as string[];
        if (t && seen.at(-1) !== t) sessionStorage.setItem(key, JSON.stringify([...seen, t]));
      }).observe(document.body, { subtree: true, childList: true, characterData: true });
    },
    { testId, key },
  );
}

/** The merged folder's files, and q_proj of layer 0 = the demo model's + scale·B·A of the adapter. */
function checkMerged(entries: Record<string, Uint8Array>, adapterConfig: Uint8Array, adapterModel: Uint8Array) {
  const folder = 'stories260K-merged';
  expect(Object.keys(entries).sort()).toEqual(
    ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'].map(
      (f) => `${folder}/${f}`,
    ),
  );
  const demo = 'public/models/stories260K';
  expect(Buffer.from(entries[`${folder}/tokenizer.json`]!).equals(readFileSync(`${demo}/tokenizer.json`))).toBe(true);
  const key = 'model.layers.0.self_attn.q_proj.weight';
  const base = tensorToF32(
    parseSafetensors(new Uint8Array(readFileSync(`${demo}/model.safetensors`))).tensors.get(key)!,
  );
  const merged = tensorToF32(parseSafetensors(entries[`${folder}/model.safetensors`]!).tensors.get(key)!);
  const cfg = JSON.parse(new TextDecoder().decode(adapterConfig)) as { r: number; lora_alpha: number };
  const st = parseSafetensors(adapterModel);
  const a = tensorToF32(st.tensors.get('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')!);
  const b = tensorToF32(st.tensors.get('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight')!);
  const r = cfg.r;
  const inF = a.length / r;
  const outF = b.length / r;
  let worst = 0;
  for (let o = 0; o < outF; o++)
    for (let i = 0; i < inF; i++) {
      let d = 0;
      for (let k = 0; k < r; k++) d += b[o * r + k]! * a[k * inF + i]!;
      worst = Math.max(worst, Math.abs(merged[o * inF + i]! - (base[o * inF + i]! + (cfg.lora_alpha / r) * d)));
    }
  expect(worst, 'merged q_proj = W + scale·B·A').toBeLessThan(1e-5);
  expect(merged.some((v, i) => v !== base[i])).toBe(true);
}

describe('the app in Chromium', () => {
  it(
    'trains the shipped model, keeps the adapter across a reload, exports valid PEFT files and compares outputs',
    async () => {
      const { page, errors } = await openPage(h);
      await onPage({ page, errors }, shot, 'failed-1', async () => {
        await page.goto(`${h.baseUrl}/`);
        await waitForDemo(page);
        await shot(page, '1-model');
        await docShot(page, 'model');
        await nav(page, /Data/);
        await page.waitForSelector('[data-testid="dataset-summary"]', { timeout: LONG });
        await expect.poll(() => page.getByTestId('dataset-summary').innerText()).toContain('alpaca');
        await shot(page, '2-data');

        // The default demo run: the settings as the app presets them for the shipped model.
        await nav(page, /Settings/);
        await page.waitForSelector('[data-testid="estimate"]', { timeout: 60_000 });
        expect(await page.locator('input[name="steps"]').inputValue()).toBe(String(STEPS));
        await shot(page, '3-settings');

        await nav(page, /Train/);
        const t0 = Date.now();
        await page.getByTestId('start-training').click();
        await page.waitForSelector('[data-testid="train-finished"]', { timeout: LONG });
        console.log(`[tabtune] e2e: ${STEPS} steps on SwiftShader in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
        const losses = JSON.parse(
          (await page.getByTestId('loss-chart').getAttribute('data-losses')) ?? '[]',
        ) as number[];
        console.log(`[tabtune] e2e: losses ${losses.map((l) => l.toFixed(3)).join(' ')}`);
        expect(losses.length).toBe(STEPS);
        const head = (losses[0]! + losses[1]!) / 2;
        const tail = (losses[STEPS - 1]! + losses[STEPS - 2]!) / 2;
        expect(tail, 'the training loss falls').toBeLessThan(head);
        await shot(page, '4-train');
        await docShot(page, 'train');

        await nav(page, /Adapters/);
        await expect.poll(() => page.getByTestId('adapter-row').count()).toBe(1);
        const name = await page.getByTestId('adapter-name').innerText();
        expect(name).toContain('stories260K');
        await shot(page, '5-library');

        // After a reload the adapter is still there (IndexedDB).
        await page.reload();
        await waitForDemo(page);
        await nav(page, /Adapters/);
        await expect.poll(() => page.getByTestId('adapter-row').count(), { timeout: 30_000 }).toBe(1);
        expect(await page.getByTestId('adapter-name').innerText()).toBe(name);
        await shot(page, '6-library-after-reload');

        // Download: the zip, and the two files on their own.
        const zip = await download(page, page.getByTestId('download-zip'));
        expect(zip.name).toMatch(/\.zip$/);
        const entries = unzipSync(zip.bytes);
        expect(Object.keys(entries).sort()).toEqual(['README.md', 'adapter_config.json', 'adapter_model.safetensors']);
        checkPeft(new TextDecoder().decode(entries['adapter_config.json']!), entries['adapter_model.safetensors']!);
        const cfgFile = await download(page, page.getByRole('button', { name: 'adapter_config.json' }));
        const modelFile = await download(page, page.getByRole('button', { name: 'adapter_model.safetensors' }));
        expect(cfgFile.name).toBe('adapter_config.json');
        expect(modelFile.name).toBe('adapter_model.safetensors');
        checkPeft(new TextDecoder().decode(cfgFile.bytes), modelFile.bytes);
        expect(Buffer.from(modelFile.bytes).equals(Buffer.from(entries['adapter_model.safetensors']!))).toBe(true);

        // Merge: the demo model with the adapter folded in, as a Hugging Face model folder.
        const mergedZip = await download(page, page.getByTestId('merge-adapter'));
        expect(mergedZip.name).toMatch(/-merged\.zip$/);
        checkMerged(unzipSync(mergedZip.bytes), cfgFile.bytes, modelFile.bytes);

        // Compare: base and adapter, side by side, greedy.
        await nav(page, /Compare/);
        const pick = page.getByRole('group', { name: 'Adapters' }).getByRole('checkbox');
        await expect.poll(() => pick.count()).toBe(1);
        if (!(await pick.isChecked())) await pick.check();
        expect(await page.locator('#prompts').inputValue()).toBe(DEMO_PROMPTS.join('\n'));
        await page.locator('input[name="maxNewTokens"]').fill('32');
        await page.getByTestId('run-compare').click();
        await page.waitForSelector('[data-testid="compare-outputs"][data-status="done"]', { timeout: LONG });
        const cells = page.getByTestId('compare-cell');
        expect(await cells.count()).toBe(4); // 2 prompts x (base + adapter)
        const texts = await cells.locator('pre').allInnerTexts();
        console.log(`[tabtune] e2e: compare outputs ${JSON.stringify(texts)}`);
        // The base model tells a story; the adapter answers, and stops.
        expect([texts[1], texts[3]]).toEqual(['Her name was Lily.', 'She saw a big, red ball.']);
        expect(texts[0]!.length, 'the base model rambles on').toBeGreaterThan(texts[1]!.length);
        expect(texts[2]).not.toBe(texts[3]);
        await page.getByTestId('run-eval').click();
        await expect
          .poll(() => page.getByTestId('eval-table').locator('tbody tr td.num').count(), { timeout: LONG })
          .toBe(6);
        const evalText = await page.getByTestId('eval-table').innerText();
        console.log(`[tabtune] e2e: ${evalText.replace(/\s+/g, ' ')}`);
        await shot(page, '7-compare');
        await docShot(page, 'compare');

        // Chat: the adapter answers the demo question with the chat template, as in Compare; the
        // base model, chosen for the next reply, tells a story. Each reply names who wrote it.
        await nav(page, /Chat/);
        await page.locator('select[name="chatAdapter"]').selectOption({ label: name });
        await page.locator('input[name="maxNewTokens"]').fill('32');
        await page.locator('#chat-draft').fill(DEMO_PROMPTS[0]!);
        await page.locator('#chat-draft').press('Enter');
        await page.waitForSelector('[data-testid="chat-turn"][data-role="assistant"][data-status="done"]', {
          timeout: LONG,
        });
        await page.locator('select[name="chatAdapter"]').selectOption('base');
        await page.locator('#chat-draft').fill(DEMO_PROMPTS[1]!);
        await page.locator('#chat-draft').press('Enter');
        await expect
          .poll(() => page.locator('[data-testid="chat-turn"][data-status="done"][data-role="assistant"]').count(), {
            timeout: LONG,
          })
          .toBe(2);
        const replies = page.locator('[data-testid="chat-turn"][data-role="assistant"]');
        expect(await replies.locator('.chat-who').allInnerTexts()).toEqual([name, 'Base · stories260K']);
        expect(await replies.first().locator('pre').innerText()).toBe('Her name was Lily.');
        await shot(page, '7c-chat');
        await docShot(page, 'chat');

        // A wrong file to import says what is missing.
        await nav(page, /Adapters/);
        await page
          .locator('#import-files')
          .setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello') });
        await expect
          .poll(() => page.getByRole('alert').first().innerText())
          .toMatch(
            /missing adapter_config\.json \(or a \.json file holding a PEFT config\) and adapter_model\.safetensors/,
          );

        // An adapter for another base model (hidden size 32, not 64) imports with a warning; in Compare
        // its column says why it does not fit, and that long message (tensor names) wraps in its cell
        // instead of running over the next column and widening the page.
        const other = otherModelAdapter();
        await page.locator('#import-files').setInputFiles([
          { name: 'adapter_config.json', mimeType: 'application/json', buffer: Buffer.from(other.adapterConfig) },
          {
            name: 'adapter_model.safetensors',
            mimeType: 'application/octet-stream',
            buffer: Buffer.from(other.adapterModel),
          },
        ]);
        await expect.poll(() => page.getByTestId('adapter-row').count()).toBe(2);
        await nav(page, /Compare/);
        for (const box of await page.getByRole('group', { name: 'Adapters' }).getByRole('checkbox').all())
          if (!(await box.isChecked())) await box.check();
        await page.locator('#prompts').fill('The cat');
        await page.locator('input[name="maxNewTokens"]').fill('2');
        await page.getByTestId('run-compare').click();
        // The previous comparison's 'done' may still be showing right after the click: wait for this
        // run's error cell first, then for the run to end.
        const bad = page.getByTestId('compare-cell').filter({ has: page.locator('.field-error') });
        await expect.poll(() => bad.count(), { timeout: LONG }).toBe(1);
        await page.waitForSelector('[data-testid="compare-outputs"][data-status="done"]', { timeout: LONG });
        expect(await bad.innerText()).toMatch(/lora_A\.weight/);
        const fits = await page.evaluate(() => ({
          page: document.documentElement.scrollWidth <= document.documentElement.clientWidth,
          cells: [...document.querySelectorAll<HTMLElement>('[data-testid="compare-cell"]')].every(
            (c) => c.scrollWidth <= c.clientWidth,
          ),
        }));
        await shot(page, '7b-compare-other-model');
        expect(fits, 'no text runs out of its compare cell or widens the page').toEqual({ page: true, cells: true });

        // No network: picking a Hub model fails with a message, and the loaded demo model stays usable.
        const before = errors.length;
        await page.route('https://huggingface.co/**', (r) => r.abort('internetdisconnected'));
        await nav(page, /Model/);
        await page.getByRole('button', { name: /SmolLM2 135M Instruct/ }).click();
        await expect
          .poll(() => page.getByRole('alert').first().innerText(), { timeout: 30_000 })
          .toMatch(/Download failed|Could not reach/);
        expect(await page.getByRole('alert').first().innerText()).toMatch(/demo model works offline/);
        await shot(page, '8-offline');
        // the browser logs the refused requests; nothing else may appear
        errors.splice(
          before,
          errors.length - before,
          ...errors.slice(before).filter((e) => !/Failed to load resource/.test(e)),
        );

        await page.goto(`${h.baseUrl}/#/diagnostics`);
        await page.waitForSelector('main.page[data-status]', { timeout: 60_000 });
        await shot(page, '9-diagnostics');
        expect(errors, `page console errors:\n${errors.join('\n')}`).toEqual([]);
      });
    },
    15 * 60_000,
  );

  it(
    'QLoRA: trains on 4-bit NF4 frozen weights and resumes the interrupted run on them after a reload',
    async () => {
      const { page, errors } = await openPage(h);
      await onPage({ page, errors }, shot, 'failed-2', async () => {
        await page.goto(`${h.baseUrl}/`);
        await waitForDemo(page);
        await shortRunSettings(page, { steps: 6, batch: 2, checkpointEvery: 2, evalEvery: 0 });
        // Frozen weights: 4-bit NF4 loads the demo model again, quantized in the worker.
        const frozen = page.getByRole('group', { name: 'Frozen weights' });
        await frozen.getByRole('radio', { name: /^4-bit NF4/ }).check();
        await waitForDemo(page);
        await page.waitForSelector('[data-testid="estimate"]', { timeout: LONG });
        await expect.poll(() => frozen.getByRole('radio', { name: /^4-bit NF4/ }).isChecked()).toBe(true);
        await shot(page, '10a-settings-nf4');
        // Packed batches (the attention kernels' packed-sequence variants on SwiftShader), resumed too.
        await page.locator('input[name="packing"]').check();
        // The command line of these settings, and a preset saved from them.
        await page.getByText('Show as command').click();
        await expect
          .poll(() => page.getByTestId('train-command').innerText())
          .toMatch(
            /^node bin\/tabtune\.mjs train --model public\/models\/stories260K .* --steps 6 .* --packing --quantize nf4$/,
          );
        await page.getByLabel('Save these settings as').fill('resume e2e');
        await page.getByRole('button', { name: 'Save preset' }).click();
        await expect.poll(() => page.locator('#preset-pick').inputValue()).toBe('resume e2e');
        await shot(page, '10a-settings-command');
        await nav(page, /Train/);
        await watchStartup(page);
        await page.getByTestId('start-training').click();
        // Wait for the first checkpoint, then pull the plug.
        await page.waitForFunction(() => /Last checkpoint: step [2-9]/.test(document.body.innerText), undefined, {
          timeout: LONG,
          polling: 200,
        });
        // A second tab shows that this one is training on the GPU (the run paused meanwhile, so it
        // is still this tab's when the other one looks).
        await page.getByRole('button', { name: 'Pause' }).click();
        const other = await openPage(h);
        try {
          await other.page.goto(`${h.baseUrl}/`);
          await waitForDemo(other.page);
          await nav(other.page, /Train/);
          const sign = other.page.getByTestId('training-elsewhere');
          await expect.poll(() => sign.count(), { timeout: 30_000 }).toBe(1);
          expect(await sign.innerText()).toMatch(
            /Another tab is training on this GPU[\s\S]*checkpoint at step [2-5] of 6/,
          );
          expect(await other.page.getByTestId('resumable-run').count()).toBe(0);
          await shot(other.page, '10-other-tab');
        } finally {
          await other.page.close();
        }
        await page.reload();
        await waitForDemo(page);
        await nav(page, /Train/);
        const run = page.getByTestId('resumable-run');
        await expect.poll(() => run.count(), { timeout: 30_000 }).toBe(1);
        expect(await run.innerText()).toMatch(/checkpoint at step [2-5] of 6/);
        await shot(page, '10-resume');
        // What the first start said before its first step (instead of "step 0 of —" and blank stats).
        const first = await page.evaluate(() => sessionStorage.getItem('startup-seen'));
        expect(JSON.parse(first ?? '[]')).toContainEqual(expect.stringMatching(/^(Measuring|Compiling)/));
        await watchStartup(page);
        await run.getByRole('button', { name: 'Resume' }).click();
        await page.waitForSelector('[data-testid="train-finished"]', { timeout: LONG });
        expect(await page.getByTestId('step').innerText()).toBe('6');
        const resumed = JSON.parse((await page.evaluate(() => sessionStorage.getItem('startup-seen'))) ?? '[]');
        expect(resumed).toContainEqual(expect.stringMatching(/^Resuming at step [2-5] of 6: /));
        await expect.poll(() => page.getByTestId('resumable-run').count()).toBe(0);
        // The run went on with the 4-bit weights it started on (the page had reloaded in 16-bit).
        await nav(page, /Model/);
        expect(await page.getByTestId('model-loaded').innerText()).toMatch(/4-bit NF4/);
        await nav(page, /Adapters/);
        await expect.poll(() => page.getByTestId('adapter-row').count()).toBeGreaterThanOrEqual(1);
        expect(errors, `page console errors:\n${errors.join('\n')}`).toEqual([]);
      });
    },
    10 * 60_000,
  );

  it(
    "kernel tuning on (Diagnostics): the first run tunes the demo model's shapes and saves the choices; the second reuses them; attention pinned tiled; Benchmark this device",
    async () => {
      const { page, errors } = await openPage(h);
      await onPage({ page, errors }, shot, 'failed-tuning', async () => {
        await page.goto(`${h.baseUrl}/`);
        await waitForDemo(page);
        // The browser tests keep tuning off (test/browser/harness.ts); this one turns it on, as a user would.
        await nav(page, /Diagnostics/);
        const card = page.getByTestId('kernel-tuning');
        const mode = card.getByRole('combobox', { name: /Kernel tuning/ });
        expect(await mode.inputValue()).toBe('off');
        await mode.selectOption('auto');
        await expect.poll(() => card.innerText(), { timeout: 60_000 }).toMatch(/No choices saved yet/);
        await shortRunSettings(page, { steps: 2, batch: 2, checkpointEvery: 0, evalEvery: 0 });
        const run = async () => {
          await nav(page, /Train/);
          await watchStartup(page, 'train-tuning', 'tuning-seen');
          await page.getByTestId('start-training').click();
          await page.waitForSelector('[data-testid="start-training"]', { state: 'detached', timeout: LONG });
          await page.waitForSelector('[data-testid="train-finished"]', { timeout: LONG });
          return JSON.parse((await page.evaluate(() => sessionStorage.getItem('tuning-seen'))) ?? '[]') as string[];
        };
        const first = await run();
        const tuned = first.filter((t) => t.startsWith('Tuning kernels for this GPU'));
        expect(tuned[0]).toMatch(/^Tuning kernels for this GPU \(first run only\): shape class 1 of [1-9]\d*…$/);
        await nav(page, /Diagnostics/);
        const saved = card.getByTestId('kernel-choices');
        await expect.poll(() => saved.getByRole('listitem').count(), { timeout: 60_000 }).toBe(1);
        const text = await saved.innerText();
        expect(text).toMatch(/^This GPU: /);
        const classes = (text.match(/\b[nt][nt]_(f32|bf16|f16|nf4)\w*/g) ?? []).length;
        expect(classes).toBe(Number(/of (\d+)/.exec(tuned[0]!)![1]));
        await shot(page, '11-kernels');

        const second = await run();
        expect(
          second.filter((t) => /Tuning kernels/i.test(t)),
          'the saved choices are used',
        ).toEqual([]);
        await nav(page, /Diagnostics/);
        await mode.selectOption('off');
        // Attention kernels: auto runs the direct set on SwiftShader (a CPU driver with subgroups);
        // pinned tiled for the bench below, which names the set the worker's engine runs.
        const attention = page.getByTestId('attention-kernels');
        const runs = attention.getByTestId('attention-runs');
        expect(await runs.innerText()).toMatch(/^Runs direct: this device is a CPU driver with subgroups/);
        await attention.getByRole('combobox', { name: /Attention kernels/ }).selectOption('tiled');
        expect(await runs.innerText()).toBe('Runs tiled: pinned.');

        // Benchmark this device, at the smallest size: every member's GFLOP/s next to the ceilings.
        const bench = page.getByTestId('kernel-bench');
        await bench.getByRole('combobox', { name: /Problem size/ }).selectOption('tiny');
        await bench.getByRole('button', { name: 'Benchmark this device' }).click();
        await page.waitForSelector('[data-testid="kernel-bench"][data-status="done"]', { timeout: LONG });
        const result = await bench.getByTestId('bench-result').innerText();
        expect(result).toMatch(/^Tabtune kernel bench · google · swiftshader · 64x128x128 r=8\n/);
        expect(result).toMatch(/device ceilings: FMA [\d.]+ GFLOP\/s, copy [\d.]+ GB\/s/);
        for (const m of ['tile64', 'direct8x4', 'direct4x4'])
          expect(result).toMatch(new RegExp(`matmul 64x128x128 X·Wᵀ ${m}: [\\d.]+ GFLOP/s`));
        expect(result).toMatch(/lora-linear fwd\+bwd 64x128x128 r=8 tuned: /);
        expect(result).toMatch(/\nattention kernels: tiled \(pinned\)\n/);
        await shot(page, '12-bench');
        await attention.getByRole('combobox', { name: /Attention kernels/ }).selectOption('auto');
        expect(errors, `page console errors:\n${errors.join('\n')}`).toEqual([]);
      });
    },
    10 * 60_000,
  );
});
