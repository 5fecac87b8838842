/**
 * LoftQ (init_lora_weights "loftq", src/lora/loftq.ts) against PEFT 0.21's own LoftQ on a tiny
 * llama that transformers builds (float32), with scripts/loftq_interop.py supplying bitsandbytes'
 * NF4 rule (as scripts/qlora_interop.py implements it) since bitsandbytes does not install here:
 *   1. the init: `tabtune train --init loftq` (one SGD step at lr 1e-30, so the saved adapter is the
 *      init) saves the same A, B and quantized base Q (OUT/loftq-base) as get_peft_model with
 *      LoftQConfig: Q equal, B·A equal to 1e-4 relative (the SVD's signs are free, so products are
 *      compared), for 1 and 2 alternating iterations;
 *   2. a Tabtune-trained LoftQ adapter on its saved quantized backbone: PeftModel.from_pretrained
 *      gives Tabtune's loss (1e-4 relative), and its adapter_config is PEFT's LoftQ example's
 *      (init_lora_weights true, loftq_config, base_model_name_or_path = the backbone);
 *   3. an adapter and backbone saved by PEFT's LoftQ workflow load in Tabtune with Python's loss, and
 *      `tabtune merge` takes that backbone as the adapter's and refuses the original model (as
 *      `tabtune eval` does);
 *   4. the app's LoftQ run (the engine in-process, as the worker runs it): its export, the PEFT
 *      files + loftq-base/ rebuilt from the adapter's backbone recipe, loads in PeftModel with the
 *      loss the app evaluates with the backbone put in place.
 * One case: `npm run test:peft -- -t loftq`.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { unzipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensors, tensorToF32 } from '../../src/model/safetensors';
import { writeTinyModel } from '../fixtures/tiny-model';
import { DEFAULT_TRAIN } from '../../src/engine/defaults';
import { Engine } from '../../src/engine/engine';
import { getGpu } from '../helpers/gpu';
import { runCommand } from '../helpers/proc';
import { closePython, corpusDir, expectSameLoss, pyScript, python, tabtune } from '../helpers/interop';

const ROOT = join(import.meta.dirname, '..', '..');
let dir = '';
let model = '';
const TARGETS = 'q_proj,v_proj,down_proj';

beforeAll(async () => {
  dir = await corpusDir('tabtune-loftq-');
  model = join(dir, 'llama');
  await writeTinyModel(model, { modelType: 'llama', addBos: true });
  await python(['make-model', '--model', model, '--seed', '1']);
});

afterAll(async () => {
  closePython();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function tensors(file: string): Promise<Map<string, { shape: number[]; v: Float32Array }>> {
  const st = parseSafetensors(new Uint8Array(await readFile(file)));
  const out = new Map<string, { shape: number[]; v: Float32Array }>();
  for (const [k, t] of st.tensors) out.set(k, { shape: t.shape, v: tensorToF32(t) });
  return out;
}

/** B·A [out, in] of B [out, r] and A [r, in]. */
function product(b: Float32Array, a: Float32Array, outF: number, r: number): Float64Array {
  const inF = a.length / r;
  const p = new Float64Array(outF * inF);
  for (let o = 0; o < outF; o++)
    for (let j = 0; j < r; j++) for (let i = 0; i < inF; i++) p[o * inF + i]! += b[o * r + j]! * a[j * inF + i]!;
  return p;
}

function relDiff(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < x.length; i++) {
    d += (x[i]! - y[i]!) ** 2;
    n += y[i]! ** 2;
  }
  return Math.sqrt(d / n);
}

const trainArgs = (out: string, extra: string[], targets = TARGETS) => [
  'train',
  ...['--model', model, '--data', join(dir, 'train.jsonl'), '--out', out, '--targets', targets],
  ...['--r', '4', '--alpha', '8', '--dropout', '0', '--seed', '3', '--init', 'loftq', '--json'],
  ...extra,
];

describe('LoftQ: Tabtune and PEFT', () => {
  for (const iters of [1, 2]) {
    it(`loftq_iter ${iters}: the same init (A, B, Q) as PEFT's get_peft_model with LoftQConfig`, async () => {
      const out = join(dir, `init-${iters}`);
      await tabtune([
        ...trainArgs(out, ['--loftq-iter', String(iters)]),
        ...['--optimizer', 'sgd', '--lr', '1e-30', '--steps', '1'],
      ]);
      const theirsFile = join(dir, `peft-init-${iters}.safetensors`);
      const r = await pyScript('loftq_interop.py', [
        'init',
        ...['--model', model, '--targets', TARGETS, '--r', '4', '--alpha', '8', '--iter', String(iters)],
        ...['--out', theirsFile],
      ]);
      const theirs = await tensors(theirsFile);
      const ours = await tensors(join(out, 'adapter_model.safetensors'));
      const base = await tensors(join(out, 'loftq-base', 'model.safetensors'));
      expect(r.modules).toBe(ours.size / 2);
      let worstBa = 0;
      let qBad = 0;
      let qCount = 0;
      for (const [k, q] of theirs) {
        if (!k.endsWith('.q')) continue;
        const path = k.slice(0, -2);
        const a = ours.get(`base_model.model.${path}.lora_A.weight`)!;
        const b = ours.get(`base_model.model.${path}.lora_B.weight`)!;
        const ba = product(b.v, a.v, b.shape[0]!, b.shape[1]!);
        const baTheirs = product(theirs.get(`${path}.lora_B`)!.v, theirs.get(`${path}.lora_A`)!.v, b.shape[0]!, 4);
        worstBa = Math.max(worstBa, relDiff(ba, baTheirs));
        const qOurs = base.get(`${path}.weight`)!.v;
        for (let i = 0; i < q.v.length; i++) if (Math.abs(qOurs[i]! - q.v[i]!) > 1e-6 * Math.abs(q.v[i]!)) qBad++;
        qCount += q.v.length;
      }
      console.log(
        `[tabtune] loftq_iter ${iters}: B·A worst relative difference ${worstBa.toExponential(2)}, Q ${qBad}/${qCount} differ`,
      );
      expect(worstBa, 'B·A').toBeLessThan(1e-4);
      expect(qBad, 'quantized base weights that differ').toBe(0);
      const cfg = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
      expect(cfg).toMatchObject({
        init_lora_weights: true,
        loftq_config: { loftq_bits: 4, loftq_iter: iters },
        base_model_name_or_path: join(out, 'loftq-base'),
      });
    }, 900_000);
  }

  it('a Tabtune-trained LoftQ adapter on its quantized backbone: PeftModel gives the same loss', async () => {
    const out = join(dir, 'trained');
    await tabtune([...trainArgs(out, ['--loftq-iter', '2'], 'all-linear'), '--steps', '6', '--lr', '0.02']);
    const backbone = join(out, 'loftq-base');
    const data = join(dir, 'eval.jsonl');
    const here = await tabtune(['eval', '--model', backbone, '--adapter', out, '--data', data, '--json']);
    const there = await python(['eval', '--model', backbone, '--adapter', out, '--data', data]);
    expectSameLoss(here, there, 'Tabtune-trained LoftQ adapter');
    // QLoRA on the backbone: with every linear layer adapted (as QLoRA quantizes them all) its
    // weights are already on the NF4 grid, so quantizing them again (without double quantization,
    // as LoftQ's own) gives them back
    const nf4 = await tabtune([
      ...['eval', '--model', backbone, '--adapter', out, '--data', data],
      ...['--quantize', 'nf4', '--no-double-quant', '--json'],
    ]);
    expectSameLoss(nf4, there, 'Tabtune-trained LoftQ adapter on the backbone loaded as NF4');
    const bare = await tabtune(['eval', '--model', backbone, '--data', data, '--json']);
    expect(Math.abs(here.loss! - bare.loss!), 'the adapter changes the model').toBeGreaterThan(1e-3);
    console.log(
      `[tabtune] loftq trained, loss (Tabtune | Python): ${here.loss!.toFixed(6)} | ${there.loss!.toFixed(6)}`,
    );
  }, 900_000);

  it("an adapter and backbone saved by PEFT's LoftQ workflow load in Tabtune with Python's loss", async () => {
    const save = join(dir, 'peft-made');
    await pyScript('loftq_interop.py', [
      'init',
      ...['--model', model, '--targets', TARGETS, '--r', '4', '--alpha', '8', '--iter', '2'],
      ...['--out', join(dir, 'peft-made.safetensors'), '--save', save],
    ]);
    const data = join(dir, 'eval.jsonl');
    const args = ['--model', join(save, 'base'), '--adapter', join(save, 'adapter'), '--data', data];
    const here = await tabtune(['eval', ...args, '--json']);
    const there = await python(['eval', ...args]);
    expectSameLoss(here, there, 'PEFT-made LoftQ adapter');
    // merge's LoftQ check (src/lora/loftq-grid.ts) takes PEFT's saved base as the backbone and
    // refuses the original model, which PEFT itself would merge into silently
    const adapter = join(save, 'adapter');
    const merged = await tabtune([
      'merge',
      '--model',
      join(save, 'base'),
      '--adapter',
      adapter,
      '--out',
      join(dir, 'pm'),
      '--json',
    ]);
    expect(merged.merged).toBeGreaterThan(0);
    const wrong = await runCommand(
      process.execPath,
      [join(ROOT, 'bin', 'tabtune.mjs'), 'merge', '--model', model, '--adapter', adapter, '--out', join(dir, 'pm2')],
      ROOT,
    );
    expect(wrong.code, wrong.stderr).toBe(2);
    expect(wrong.stderr).toMatch(/is a LoftQ adapter .* is not NF4-dequantized .*--any-base/);
    // so does eval (before any GPU work), which with PEFT's base gave Python's loss above
    const wrongEval = await runCommand(
      process.execPath,
      [join(ROOT, 'bin', 'tabtune.mjs'), 'eval', '--model', model, '--adapter', adapter, '--data', data],
      ROOT,
    );
    expect(wrongEval.code, wrongEval.stderr).toBe(2);
    expect(wrongEval.stderr).toMatch(
      /tabtune: eval: --adapter .* is a LoftQ adapter .* is not NF4-dequantized .*--any-base/,
    );
  }, 900_000);

  it("the app's LoftQ export (adapter + loftq-base/ rebuilt from the backbone recipe) loads in PeftModel with the app's loss", async () => {
    // the engine as the app's worker drives it: 16-bit weights, LoftQ, a few steps
    const engine = new Engine(await getGpu());
    const exported = join(dir, 'app-export');
    let inApp: { loss: number; tokens: number };
    try {
      await engine.loadModel({ kind: 'dir', id: 'tiny-llama', path: model });
      await engine.loadDataset('train.jsonl', await readFile(join(dir, 'train.jsonl'), 'utf8'), {
        maxLen: 64,
        valFraction: 0,
        seed: 0,
      });
      const lora = {
        ...{ r: 4, lora_alpha: 8, lora_dropout: 0, target_modules: 'all-linear' as const, use_rslora: false },
        ...{ init_lora_weights: 'loftq' as const, loftq_config: { loftq_bits: 4, loftq_iter: 2 } },
      };
      const run = await engine.train(lora, { ...DEFAULT_TRAIN, steps: 6, epochs: 0, lr: 0.02, batch: 4, maxLen: 64, valFraction: 0 }); // prettier-ignore
      await engine.loadDataset('eval.jsonl', await readFile(join(dir, 'eval.jsonl'), 'utf8'), {
        maxLen: 64,
        valFraction: 0,
        seed: 0,
      });
      // the app's evaluation: the adapter on the backbone put in place from its recipe
      inApp = await engine.evaluate({ key: 'loftq', files: run.adapter }, 'all');
      const zip = await engine.mergeAdapter(run.adapter);
      for (const [name, bytes] of Object.entries(unzipSync(new Uint8Array(await zip.zip.arrayBuffer())))) {
        const p = join(exported, name.split('/').slice(1).join('/'));
        await mkdir(dirname(p), { recursive: true });
        await writeFile(p, bytes);
      }
    } finally {
      engine.unload();
    }
    // loftq-base/ carries the model's tokenizer files too, so it loads as a model folder on its own
    const data = join(dir, 'eval.jsonl');
    const args = ['--model', join(exported, 'loftq-base'), '--adapter', exported, '--data', data];
    const there = await python(['eval', ...args]);
    const here = await tabtune(['eval', ...args, '--json']);
    expectSameLoss(here, there, "the app's exported LoftQ adapter");
    expect(Math.abs(inApp.loss - there.loss!) / there.loss!, `app ${inApp.loss} vs Python ${there.loss}`).toBeLessThan(
      1e-4,
    );
    console.log(
      `[tabtune] app LoftQ export, loss (app | tabtune eval | Python PeftModel): ${inApp.loss.toFixed(6)} | ` +
        `${here.loss!.toFixed(6)} | ${there.loss!.toFixed(6)}`,
    );
  }, 900_000);
});
