/**
 * (IA)³, prompt tuning and prefix tuning through the engine on tiny models: training lowers the
 * loss, the PEFT files it returns load back (evaluation through them gives the trained model's
 * loss, lower than the base model's), a run resumed from a checkpoint ends bit-identical to the
 * uninterrupted one, --init-from continues an adapter, and generation runs with the KV cache.
 */
import { describe, expect, it } from 'vitest';
import type { LoraSettings, TrainSettings } from '../../src/engine/types';
import { parseSafetensors, tensorToF32 } from '../../src/model/safetensors';
import { prefixMlpForwardRef } from '../../src/reference/prefix-projection';
import { decodeCheckpoint } from '../../src/train/checkpoint';
import { expectClose } from '../helpers/close';
import type { TinyModelType } from '../fixtures/tiny-model';
import { useTinyModelDirs } from '../helpers/tiny-dirs';
import { TINY_TRAIN, tinyEngine } from '../helpers/tiny-engine';

const dirs = useTinyModelDirs('tabtune-methods-', ['llama', 'gpt2'], { seed: 1 });

const BASE: LoraSettings = { r: 8, lora_alpha: 16, lora_dropout: 0, target_modules: [], use_rslora: false };
const TRAIN: TrainSettings = { ...TINY_TRAIN, lr: 3e-2, steps: 30, packing: false };

const engineWith = (type: TinyModelType) => tinyEngine(dirs, type);

const METHODS: [string, LoraSettings, string][] = [
  ['ia3', { ...BASE, method: 'ia3' }, 'IA3'],
  ['prompt-tuning', { ...BASE, method: 'prompt-tuning', num_virtual_tokens: 4 }, 'PROMPT_TUNING'],
  [
    'prompt-tuning (TEXT init)',
    { ...BASE, method: 'prompt-tuning', num_virtual_tokens: 5, prompt_tuning_init_text: 'the cat' },
    'PROMPT_TUNING',
  ],
  ['prefix-tuning', { ...BASE, method: 'prefix-tuning', num_virtual_tokens: 3 }, 'PREFIX_TUNING'],
];

describe('engine: (IA)³, prompt and prefix tuning', () => {
  for (const type of ['llama', 'gpt2'] as const) {
    for (const [name, lora, peftType] of METHODS) {
      it(`${type}, ${name}: trains, saves PEFT files that evaluate to the trained model, generates`, async () => {
        const engine = await engineWith(type);
        try {
          const run = await engine.train(lora, TRAIN);
          const losses = run.history.map((h) => h.loss!);
          // few parameters on a random tiny model: a steady fall of a few tenths in 30 steps
          expect(losses.slice(-3).reduce((a, b) => a + b, 0) / 3).toBeLessThan(losses[0]! - 0.1);
          expect(JSON.parse(run.adapter.adapterConfig).peft_type).toBe(peftType);
          const st = parseSafetensors(run.adapter.adapterModel);
          expect(st.metadata).toEqual({ format: 'pt' });
          const base = await engine.evaluate(null, 'all');
          const tuned = await engine.evaluate({ key: name, files: run.adapter }, 'all');
          expect(tuned.tokens).toBe(base.tokens);
          expect(tuned.loss).toBeLessThan(base.loss);
          const out = await engine.generate(
            'The cat',
            { key: name, files: run.adapter },
            {
              maxNewTokens: 5,
              temperature: 0,
              topK: 0,
              topP: 1,
              seed: 0,
              repetitionPenalty: 1,
              chat: false,
            },
          );
          expect(out.tokens).toBeGreaterThan(0);
          engine.forgetAdapter(name);
        } finally {
          engine.unload();
        }
      }, 120_000);
    }
  }

  for (const [name, lora] of METHODS.filter(([n]) => !n.includes('TEXT'))) {
    it(`${name}: a resumed run ends bit-identical to the uninterrupted one; --init-from continues the adapter`, async () => {
      const engine = await engineWith('llama');
      try {
        const settings = { ...TRAIN, steps: 6, checkpointEvery: 2, shuffle: true };
        const blobs: Uint8Array[] = [];
        const full = await engine.train(lora, settings, { onCheckpoint: (b) => void blobs.push(b) });
        const resumed = await engine.train(lora, settings, { resumeFrom: blobs[1]! });
        expect(Buffer.from(resumed.adapter.adapterModel).equals(Buffer.from(full.adapter.adapterModel))).toBe(true);
        const cont = await engine.train(
          BASE,
          { ...settings, steps: 2, checkpointEvery: 0 },
          { initFrom: full.adapter },
        );
        expect(JSON.parse(cont.adapter.adapterConfig).peft_type).toBe(JSON.parse(full.adapter.adapterConfig).peft_type);
        expect(cont.history[0]!.loss).toBeLessThan(full.history[0]!.loss!);
      } finally {
        engine.unload();
      }
    }, 120_000);
  }

  it("prefix tuning through PEFT's projection MLP: trains, saves the MLP's output table, resumes bit-identical", async () => {
    const engine = await engineWith('llama');
    try {
      const lora: LoraSettings = {
        ...BASE,
        method: 'prefix-tuning',
        num_virtual_tokens: 3,
        prefix_projection: true,
        encoder_hidden_size: 6,
      };
      const settings = { ...TRAIN, steps: 12, checkpointEvery: 4, shuffle: true };
      const blobs: Uint8Array[] = [];
      const run = await engine.train(lora, settings, { onCheckpoint: (b) => void blobs.push(b) });
      const losses = run.history.map((h) => h.loss!);
      expect(losses.slice(-3).reduce((a, b) => a + b, 0) / 3).toBeLessThan(losses[0]! - 0.1);
      const config = JSON.parse(run.adapter.adapterConfig);
      expect(config).toMatchObject({ peft_type: 'PREFIX_TUNING', prefix_projection: true, encoder_hidden_size: 6 });
      // the saved table is the reference MLP applied to the trained parameters (the last checkpoint's)
      const last = decodeCheckpoint(blobs.at(-1)!);
      expect(last.meta.step).toBe(12);
      const other = last.other as { mlp?: Record<'x' | 'w1' | 'b1' | 'w2' | 'b2', Float32Array> };
      const f64 = (a: Float32Array) => Float64Array.from(a);
      const m = other.mlp!;
      const D = config.token_dim as number;
      const dims = { P: 3, D, E: 6, O: (config.num_layers as number) * 2 * D };
      const want = prefixMlpForwardRef({
        ...dims,
        x: f64(m.x),
        w1: f64(m.w1),
        b1: f64(m.b1),
        w2: f64(m.w2),
        b2: f64(m.b2),
      });
      const saved = tensorToF32(parseSafetensors(run.adapter.adapterModel).tensors.get('prompt_embeddings')!);
      expect(saved.length).toBe(dims.P * dims.O);
      expectClose(want.table, saved, { name: 'saved table', atol: 1e-6, rtol: 1e-5 });
      // the files evaluate to the trained model; a resumed run ends bit-identical
      const base = await engine.evaluate(null, 'all');
      const tuned = await engine.evaluate({ key: 'proj', files: run.adapter }, 'all');
      expect(tuned.loss).toBeLessThan(base.loss);
      const resumed = await engine.train(lora, settings, { resumeFrom: blobs[1]! });
      expect(Buffer.from(resumed.adapter.adapterModel).equals(Buffer.from(run.adapter.adapterModel))).toBe(true);
    } finally {
      engine.unload();
    }
  }, 120_000);

  it('prompt and prefix tuning refuse packing', async () => {
    const engine = await engineWith('llama');
    try {
      await expect(
        engine.train(
          { ...BASE, method: 'prefix-tuning', num_virtual_tokens: 2 },
          { ...TRAIN, steps: 1, packing: true },
        ),
      ).rejects.toThrow(/packing off/);
    } finally {
      engine.unload();
    }
  });
});
