/**
 * The engine's kept adapters (src/engine/adapter-cache.ts): an adapter forgotten while an
 * evaluation or a generation uses it (the worker forgets out of turn: the app's library deleting
 * an adapter while Compare or Chat runs) is freed when that operation ends, which finishes with
 * the result it gives without forgetting; a later call loads it afresh. A known key with other
 * files (another version, another config) gives the new adapter's results, not the kept one's.
 */
import { describe, expect, it } from 'vitest';
import { type Engine } from '../../src/engine/engine';
import { DEFAULT_SAMPLING } from '../../src/engine/defaults';
import type { AdapterRef, LoraSettings, PeftFiles, TrainSettings } from '../../src/engine/types';
import type { Gpu } from '../../src/gpu/context';
import { useTinyModelDirs } from '../helpers/tiny-dirs';
import { TINY_TRAIN, tinyEngine } from '../helpers/tiny-engine';

const dirs = useTinyModelDirs('tabtune-adapter-life-', ['llama'], { dtype: 'BF16', seed: 1 });

const LORA: LoraSettings = { r: 8, lora_alpha: 16, lora_dropout: 0, target_modules: 'all-linear', use_rslora: false };
const TRAIN: TrainSettings = { ...TINY_TRAIN, steps: 3 };
const SAMPLING = { ...DEFAULT_SAMPLING, maxNewTokens: 6, temperature: 0, chat: false };

/** An engine with the tiny llama, the corpus and a few-step adapter (B no longer zero). */
async function engineWithAdapter(lora = LORA, seed = TRAIN.seed): Promise<{ engine: Engine; files: PeftFiles }> {
  const engine = await tinyEngine(dirs, 'llama');
  const { adapter } = await engine.train(lora, { ...TRAIN, seed });
  return { engine, files: adapter };
}

/** Calls `then` when the evaluation in progress records its `n`-th batch. */
function atBatch(gpu: Gpu, n: number, then: () => void): { seen: () => number; restore: () => void } {
  const recorder = gpu.recorder;
  let batches = 0;
  gpu.recorder = (label, reuseKey) => {
    if (label === 'eval' && ++batches === n) then();
    return recorder.call(gpu, label, reuseKey);
  };
  return { seen: () => batches, restore: () => void (gpu.recorder = recorder) };
}

describe('kept adapters', () => {
  it('forgotten during an evaluation: the same loss, then freed; forgotten while it loads: the same', async () => {
    const { engine, files } = await engineWithAdapter();
    const gpu = engine.gpu;
    const ref: AdapterRef = { key: 'a', files };
    try {
      const held = gpu.memory().total;
      const expected = await engine.evaluate(ref, 'all');
      expect(gpu.memory().total).toBeGreaterThan(held);
      engine.forgetAdapter('a');
      expect(gpu.memory().total, 'adapter and runner freed').toBe(held);

      await engine.evaluate(ref, 'all'); // kept again
      let during = 0;
      const hook = atBatch(gpu, 1, () => {
        engine.forgetAdapter('a');
        during = gpu.memory().total;
      });
      try {
        expect(await engine.evaluate(ref, 'all')).toEqual(expected);
      } finally {
        hook.restore();
      }
      expect(hook.seen()).toBeGreaterThan(1); // batches after the forget used the adapter
      expect(during, 'nothing freed while the evaluation ran').toBeGreaterThan(held);
      expect(gpu.memory().total, 'freed at its end').toBe(held);

      // Forgotten before its weights are on the GPU: that evaluation has them, nothing keeps them.
      const loading = engine.evaluate(ref, 'all');
      engine.forgetAdapter('a');
      expect(await loading).toEqual(expected);
      expect(gpu.memory().total).toBe(held);
      // A later call loads it afresh.
      expect(await engine.evaluate(ref, 'all')).toEqual(expected);
    } finally {
      engine.unload();
    }
  });

  it('forgotten during a generation: the same reply, then freed', async () => {
    const { engine, files } = await engineWithAdapter();
    const gpu = engine.gpu;
    const ref: AdapterRef = { key: 'a', files };
    const prompt = 'the cat sat on';
    try {
      const expected = await engine.generate(prompt, ref, SAMPLING);
      expect(expected.tokens).toBe(SAMPLING.maxNewTokens);
      engine.forgetAdapter('a');
      const held = gpu.memory().total; // the generator is kept, the adapter is not
      let during = 0;
      let pieces = 0;
      const res = await engine.generate(prompt, ref, SAMPLING, () => {
        if (++pieces > 1) return;
        engine.forgetAdapter('a');
        during = gpu.memory().total;
      });
      expect(pieces).toBeGreaterThan(0);
      expect(res.text).toBe(expected.text);
      expect(res.tokens).toBe(expected.tokens);
      expect(during, 'nothing freed while it generated').toBeGreaterThan(held);
      expect(gpu.memory().total, 'freed at its end').toBe(held);
      // The chat form too, and a later call loads it afresh.
      const chat = engine.chat(
        { messages: [{ role: 'user', content: prompt }], mode: 'completion', sampling: SAMPLING },
        ref,
      );
      engine.forgetAdapter('a');
      expect((await chat).text).toBe(expected.text);
      expect(gpu.memory().total).toBe(held);
      expect((await engine.generate(prompt, ref, SAMPLING)).text).toBe(expected.text);
    } finally {
      engine.unload();
    }
  });

  it("a known key with other files gives the new adapter's loss (another version, another config)", async () => {
    const { engine, files: a } = await engineWithAdapter();
    try {
      const { adapter: b } = await engine.train(LORA, { ...TRAIN, seed: 8 });
      const { adapter: c } = await engine.train({ ...LORA, r: 4 }, TRAIN);
      const held = engine.gpu.memory().total;
      const lossOf = async (files: PeftFiles) => {
        const loss = await engine.evaluate({ key: 'alone', files }, 'all');
        engine.forgetAdapter('alone');
        return loss;
      };
      const [lossA, lossB, lossC] = [await lossOf(a), await lossOf(b), await lossOf(c)];
      expect(lossB.loss).not.toBe(lossA.loss);
      expect(lossC.loss).not.toBe(lossA.loss);
      // The same sizes and config: a version tells them apart (the CLI's files' modification times).
      expect(await engine.evaluate({ key: 'k', files: a, version: '1' }, 'all')).toEqual(lossA);
      expect(await engine.evaluate({ key: 'k', files: b, version: '2' }, 'all')).toEqual(lossB);
      // Another rank under the same key and version: its config differs.
      expect(await engine.evaluate({ key: 'k', files: c, version: '2' }, 'all')).toEqual(lossC);
      // The replaced adapters were freed: forgetting the one kept frees everything.
      engine.forgetAdapter('k');
      expect(engine.gpu.memory().total).toBe(held);
    } finally {
      engine.unload();
    }
  });
});
