/**
 * PEFT interop of the methods beyond plain LoRA (src/lora/methods.ts) with Python transformers +
 * peft 0.21, on tiny random models transformers itself builds (as test/python/peft-interop):
 *   DoRA, both ways: an adapter `tabtune train --method dora` writes loads in PeftModel.from_pretrained
 *     with the loss `tabtune eval` reports; an adapter PEFT makes (use_dora=True, magnitudes moved
 *     off their initial norms) loads in `tabtune eval` with Python's loss;
 *   PiSSA, pissa_niter_N and OLoRA: the adapter Tabtune trains is saved converted as PEFT's
 *     path_initial_model_for_weight_conversion does (rank doubled), so PeftModel applies it to the
 *     untouched base with Tabtune's loss.
 * llama (nn.Linear) and gpt2 (Conv1D, fan_in_fan_out). All losses to 1e-4 relative.
 * One case: `npm run test:peft -- -t dora`. (IA3, prompt and prefix tuning: test/python/peft-methods.py-test.ts.)
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensors } from '../../src/model/safetensors';
import { writeTinyModel } from '../fixtures/tiny-model';
import { expectSameLoss, python, tabtune, corpusDir } from '../helpers/interop';

let dir = '';
const models = new Map<string, string>();

beforeAll(async () => {
  dir = await corpusDir('tabtune-peft-methods-');
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A tiny model of `modelType` made and saved by transformers (once per file). */
async function model(modelType: 'llama' | 'gpt2'): Promise<string> {
  let m = models.get(modelType);
  if (!m) {
    m = join(dir, modelType);
    await writeTinyModel(m, { modelType, addBos: modelType === 'llama' });
    await python(['make-model', '--model', m, '--seed', modelType === 'llama' ? '1' : '2']);
    models.set(modelType, m);
  }
  return m;
}

const TARGETS = { llama: 'q_proj,v_proj,down_proj', gpt2: 'c_attn,c_proj,c_fc' };

async function trainHere(m: string, out: string, extra: string[], targets: string): Promise<void> {
  await tabtune([
    'train',
    ...['--model', m, '--data', join(dir, 'train.jsonl'), '--out', out, '--targets', targets],
    ...['--r', '4', '--alpha', '8', '--dropout', '0', '--steps', '6', '--lr', '0.02', '--seed', '3', '--json'],
    ...extra,
  ]);
}

async function bothLosses(m: string, adapter: string | null) {
  const data = join(dir, 'eval.jsonl');
  const a = adapter ? ['--adapter', adapter] : [];
  const here = await tabtune(['eval', '--model', m, ...a, '--data', data, '--json']);
  const there = await python(['eval', '--model', m, ...a, '--data', data]);
  return { here, there };
}

describe('PEFT methods with Python transformers + peft', () => {
  for (const family of ['llama', 'gpt2'] as const) {
    it(`dora, ${family}: Tabtune's DoRA adapter in PEFT, PEFT's DoRA adapter in Tabtune`, async () => {
      const m = await model(family);
      const base = await bothLosses(m, null);
      const ours = join(dir, `${family}-dora-ours`);
      await trainHere(m, ours, ['--method', 'dora'], TARGETS[family]);
      const cfg = JSON.parse(await readFile(join(ours, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
      expect(cfg.use_dora).toBe(true);
      expect(cfg.peft_type).toBe('LORA');
      const keys = [...parseSafetensors(await readFile(join(ours, 'adapter_model.safetensors'))).tensors.keys()];
      expect(keys.filter((k) => k.endsWith('.lora_magnitude_vector')).length).toBe(keys.length / 3);
      const o = await bothLosses(m, ours);
      expectSameLoss(o.here, o.there, `${family} Tabtune DoRA adapter`);
      expect(Math.abs(o.here.loss! - base.here.loss!), 'training changed the model').toBeGreaterThan(1e-3);

      const theirs = join(dir, `${family}-dora-theirs`);
      await python([
        ...['make-adapter', '--model', m, '--out', theirs, '--r', '3', '--alpha', '6'],
        ...['--targets', 'all-linear', '--seed', '7', '--dora'],
      ]);
      const t = await bothLosses(m, theirs);
      expectSameLoss(t.here, t.there, `${family} PEFT DoRA adapter`);
      expect(Math.abs(t.here.loss! - base.here.loss!), 'the adapter changes the model').toBeGreaterThan(1e-3);
      console.log(
        `[tabtune] dora ${family}, loss (Tabtune | Python): base ${base.here.loss!.toFixed(6)} | ${base.there.loss!.toFixed(6)}; ` +
          `Tabtune-trained ${o.here.loss!.toFixed(6)} | ${o.there.loss!.toFixed(6)}; PEFT-made ${t.here.loss!.toFixed(6)} | ${t.there.loss!.toFixed(6)}`,
      );
    }, 900_000);
  }

  const inits: [family: 'llama' | 'gpt2', init: string][] = [
    ['llama', 'pissa'],
    ['gpt2', 'pissa_niter_4'],
    ['llama', 'olora'],
  ];
  for (const [family, init] of inits) {
    it(`${init}, ${family}: saved converted (rank doubled), PeftModel applies it to the untouched base`, async () => {
      const m = await model(family);
      const out = join(dir, `${family}-${init}`);
      await trainHere(m, out, ['--init', init], TARGETS[family]);
      const cfg = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
      expect(cfg).toMatchObject({ r: 8, lora_alpha: 16, init_lora_weights: true });
      const o = await bothLosses(m, out);
      expectSameLoss(o.here, o.there, `${family} ${init} adapter`);
      const base = await bothLosses(m, null);
      expect(Math.abs(o.here.loss! - base.here.loss!), 'training changed the model').toBeGreaterThan(1e-3);
      console.log(
        `[tabtune] ${init} ${family}, loss (Tabtune | Python): ${o.here.loss!.toFixed(6)} | ${o.there.loss!.toFixed(6)}`,
      );
    }, 900_000);
  }
});
