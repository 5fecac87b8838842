// NaN/Inf in frozen weights, F32 bytes read as F16, adapters holding NaN or a huge lora_alpha: each
// fails loudly with a named error (it used to print "loss NaN" and exit 0).
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine';
import { f16BitsToF32 } from '../../src/gpu';
import { validateLoraConfig } from '../../src/lora/config';
import { exportPeft } from '../../src/lora/peft';
import { parseSafetensorsHeader } from '../../src/model/safetensors';
import { writeTinyModel, tinyCorpusJsonl } from '../fixtures/tiny-model';
import { getGpu } from '../helpers/gpu';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-nonfinite-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A tiny model folder whose `key` tensor bytes are rewritten by `edit` (same length). */
async function damaged(name: string, dtype: 'F32' | 'F16', key: string, edit: (bytes: Uint8Array) => void) {
  const p = join(dir, name);
  await writeTinyModel(p, { modelType: 'llama', dtype, seed: 3 });
  const file = new Uint8Array(await readFile(join(p, 'model.safetensors')));
  const { entries, dataStart } = parseSafetensorsHeader(file);
  const [b0, b1] = entries.get(key)!.data_offsets;
  edit(file.subarray(dataStart + b0, dataStart + b1));
  await writeFile(join(p, 'model.safetensors'), file);
  return p;
}

const KEY = 'model.layers.1.mlp.up_proj.weight';

describe('non-finite weights', () => {
  it('a NaN in a frozen weight is refused at load, naming the file, tensor and element', async () => {
    const p = await damaged('nan', 'F32', KEY, (b) =>
      new DataView(b.buffer, b.byteOffset).setFloat32(4 * 37, NaN, true),
    );
    const engine = new Engine(await getGpu());
    await expect(engine.loadModel({ kind: 'dir', id: 'nan', path: p })).rejects.toThrow(
      `model.safetensors: tensor "${KEY}" (F32) holds NaN at element 37.`,
    );
    await expect(engine.loadModel({ kind: 'dir', id: 'nan', path: p })).rejects.toMatchObject({
      name: 'ModelWeightsError',
    });
  });

  it('F32 bytes labelled F16 are caught by the infinities and NaNs they make', async () => {
    let first = -1;
    const p = await damaged('mislabelled', 'F16', KEY, (b) => {
      // The first half of the tensor's values as F32 (what a converter that forgot to cast writes).
      const n = b.byteLength / 2;
      const f32 = new Float32Array(n / 2);
      for (let i = 0; i < f32.length; i++) f32[i] = Math.sin(i + 1) * 0.05;
      b.set(new Uint8Array(f32.buffer));
      const halves = new Uint16Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
      first = halves.findIndex((h) => !Number.isFinite(f16BitsToF32(h)));
    });
    expect(first).toBeGreaterThanOrEqual(0);
    const engine = new Engine(await getGpu());
    await expect(engine.loadModel({ kind: 'dir', id: 'mislabelled', path: p })).rejects.toThrow(
      new RegExp(
        `tensor "${KEY.replace(/\./g, '\\.')}" \\(F16\\) holds (NaN|-?Infinity) at element ${first}\\. .*F32 data labelled F16`,
      ),
    );
  });
});

describe('non-finite adapters', () => {
  let engine: Engine;
  beforeAll(async () => {
    const p = join(dir, 'ok');
    await writeTinyModel(p, { modelType: 'llama', dtype: 'F32', seed: 3 });
    engine = new Engine(await getGpu());
    await engine.loadModel({ kind: 'dir', id: 'ok', path: p });
    const data = tinyCorpusJsonl();
    await engine.loadDataset('c.jsonl', data, { maxLen: 32, valFraction: 0.5, seed: 0 });
  });
  afterAll(() => engine?.unload());

  const adapter = (alpha: number, poison?: number, module = 'q_proj', bScale = 0.1) => {
    const info = engine.modelInfo();
    const H = info.hiddenSize;
    const modules = [0, 1].map((l) => ({
      path: `model.layers.${l}.self_attn.${module}`,
      r: 2,
      inF: H,
      outF: H,
      a: Float32Array.from({ length: 2 * H }, (_, i) => Math.cos(i) * 0.1),
      b: Float32Array.from({ length: 2 * H }, (_, i) => Math.sin(i) * bScale),
    }));
    if (poison !== undefined) modules[1]!.b[5] = poison;
    const cfg = {
      r: 2,
      lora_alpha: alpha,
      lora_dropout: 0,
      target_modules: [module],
      use_rslora: false,
      bias: 'none' as const,
      fan_in_fan_out: false,
      init_lora_weights: true as const,
    };
    return {
      key: `a${alpha}-${poison}-${module}-${bScale}`,
      files: exportPeft({ config: cfg, baseModel: 'ok', modules, fanInFanOut: false }),
    };
  };

  it('an adapter holding NaN or Infinity is refused naming the tensor', async () => {
    await expect(engine.evaluate(adapter(4, NaN))).rejects.toThrow(
      /adapter_model\.safetensors: "base_model\.model\.model\.layers\.1\.self_attn\.q_proj\.lora_B\.weight" holds NaN at element 5/,
    );
    await expect(engine.evaluate(adapter(4, Infinity))).rejects.toThrow(/holds Infinity at element 5/);
  });

  it('lora_alpha 1e300 (a scale no 32-bit float holds) is refused', async () => {
    await expect(engine.evaluate(adapter(1e300))).rejects.toThrow(
      /adapter_config\.json: the scale of "model\.layers\.0\.self_attn\.q_proj" \(lora_alpha \/ r = 5e\+299\) does not fit a 32-bit float/,
    );
  });

  it('the settings form refuses such a lora_alpha too', () => {
    const cfg = {
      r: 8,
      lora_alpha: 1e300,
      lora_dropout: 0,
      target_modules: ['q_proj'],
      use_rslora: false,
      bias: 'none' as const,
      fan_in_fan_out: false,
      init_lora_weights: true as const,
    };
    expect(() => validateLoraConfig(cfg)).toThrow(/lora_alpha 1e\+300 makes a scale no 32-bit float holds/);
  });

  it('an evaluation or generation whose logits stop being finite fails loudly', async () => {
    // A scale that fits a float, but whose outputs overflow to infinity inside the model.
    const huge = adapter(6e38, undefined, 'o_proj', 100);
    await expect(engine.evaluate(huge)).rejects.toThrow(
      /The evaluation's loss is NaN: the model with this adapter gives non-finite logits/,
    );
    await expect(
      engine.generate('Once', huge, {
        maxNewTokens: 2,
        temperature: 0,
        topK: 0,
        topP: 1,
        seed: 0,
        repetitionPenalty: 1,
        chat: false,
      }),
    ).rejects.toThrow(/Generation stopped: the logits of new token 1 hold NaN/);
    // The base model alone is fine.
    const base = await engine.evaluate(null);
    expect(Number.isFinite(base.loss)).toBe(true);
  });
});
