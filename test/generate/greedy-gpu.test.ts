// Greedy generation with the pick on the GPU, a step ahead of the CPU (Generator's default), against
// the CPU path (gpuPick: false: every row of logits read back and argmax'ed on the CPU): the same
// ids and the same stop reason for an EOS met mid-way, the length limit, the context limit, a
// callback that stops, a prompt prefilled in several chunks, a LoRA adapter, and a next prompt that
// reuses the KV cache the GPU path left (the tokens it fed back, one past the reply's end included).
// Once warm, neither path makes bind groups, nor do Compare's and Chat's sampled calls through the cache.
import { describe, expect, it } from 'vitest';
import { Generator, type GenerateOptions } from '../../src/generate/generator';
import { GpuLora } from '../../src/lora/gpu-lora';
import { initLoraModules } from '../../src/lora/init';
import { loraConfigFromSettings, resolveTargets } from '../../src/lora/targets';
import { randArray } from '../helpers/close';
import { getGpu } from '../helpers/gpu';
import { tinyGpuModel } from '../helpers/tiny-gpu-model';

describe('greedy generation: GPU pick vs CPU pick', () => {
  it('gives the same ids and stop reasons', async () => {
    const gpu = await getGpu();
    const tiny = await tinyGpuModel(gpu, { modelType: 'llama', seed: 21 });
    const modules = tiny.model.linears;
    const cfg = loraConfigFromSettings(
      { r: 2, lora_alpha: 4, lora_dropout: 0, target_modules: 'all-linear', use_rslora: false },
      tiny.loaded.config.modelType,
    );
    const arrays = initLoraModules(cfg, resolveTargets(cfg, modules), 5).map((m, i) => ({
      ...m,
      b: randArray(m.b.length, 70 + i, 0.5),
    }));
    const lora = GpuLora.fromArrays(gpu, modules, arrays, () => ({ r: 2, scale: 2, dropout: 0 }));
    // Context 24, prefill chunks of 5: a 12-token prompt takes three chunks.
    const gen = new Generator(gpu, tiny.model, { maxContext: 24, prefillChunk: 5 });
    try {
      const prompt = [3, 17, 99, 45, 8, 120, 7, 7, 64, 31, 2, 150];
      const run = async (o: Partial<GenerateOptions> & { maxNewTokens: number }, l: GpuLora | null) => {
        const seen: { gpu: number[]; cpu: number[] } = { gpu: [], cpu: [] };
        const res = [];
        for (const mode of ['gpu', 'cpu'] as const) {
          gen.forget();
          const onToken = o.onToken ? (id: number) => (seen[mode].push(id), o.onToken!(id)) : undefined;
          res.push(await gen.generate(prompt, l, { ...o, onToken, gpuPick: mode === 'gpu' }));
        }
        expect(res[0]).toEqual(res[1]);
        expect(seen.gpu).toEqual(seen.cpu);
        return res[0]!;
      };
      for (const l of [null, lora]) {
        const long = await run({ maxNewTokens: 8 }, l);
        expect(long.stopReason).toBe('length');
        expect(long.ids).toHaveLength(8);
        // An EOS id met mid-way (the 4th token) ends the reply there.
        const eos = await run({ maxNewTokens: 8, stopIds: [long.ids[3]!] }, l);
        expect(eos.stopReason).toBe('eos');
        expect(eos.ids).toEqual(long.ids.slice(0, long.ids.indexOf(long.ids[3]!) + 1));
        // The context (24) ends it after 24 - 12 tokens.
        const ctx = await run({ maxNewTokens: 50 }, l);
        expect(ctx.stopReason).toBe('context');
        expect(ctx.ids).toHaveLength(12);
        // A streaming callback that stops after 3 tokens.
        let n = 0;
        const stopped = await run({ maxNewTokens: 8, onToken: () => ++n % 3 !== 0 }, l);
        expect(stopped.stopReason).toBe('stopped');
        expect(stopped.ids).toHaveLength(3);
        // A next turn after a GPU-path reply reuses what it fed back: the prompt and 7 of its 8 tokens.
        gen.forget();
        await gen.generate(prompt, l, { maxNewTokens: 8 });
        const next = [...prompt, ...long.ids.slice(0, 5), 9];
        const reusing = await gen.generate(next, l, { maxNewTokens: 4 });
        expect(reusing.reused).toBe(prompt.length + 5);
        gen.forget();
        const fresh = await gen.generate(next, l, { maxNewTokens: 4, gpuPick: false });
        expect(fresh.reused).toBe(0);
        expect(reusing.ids).toEqual(fresh.ids);
        // One token: no step is submitted ahead.
        expect((await run({ maxNewTokens: 1 }, l)).ids).toEqual(long.ids.slice(0, 1));
      }
    } finally {
      gen.dispose();
      lora.dispose();
      tiny.model.dispose();
    }
  });

  it('makes no bind groups once warm (each one lives until the garbage collector runs)', async () => {
    const gpu = await getGpu();
    const tiny = await tinyGpuModel(gpu, { modelType: 'llama', seed: 22 });
    const gen = new Generator(gpu, tiny.model, { maxContext: 24, prefillChunk: 5 });
    try {
      const prompt = [3, 17, 99, 45, 8, 120, 7, 7, 64, 31, 2, 150];
      const made: number[] = [];
      for (let i = 0; i < 3; i++) {
        for (const gpuPick of [true, false]) {
          gen.forget();
          const before = gpu.counters.bindGroups;
          await gen.generate(prompt, null, { maxNewTokens: 6, gpuPick });
          made.push(gpu.counters.bindGroups - before);
        }
      }
      expect(made[0]).toBeGreaterThan(0);
      expect(made.slice(2)).toEqual([0, 0, 0, 0]);
    } finally {
      gen.dispose();
      tiny.model.dispose();
    }
  });
});

describe('Compare and Chat: sampled turns through the KV cache', () => {
  it('make no bind groups once warm: base and adapter alternately, each next turn reusing the cache', async () => {
    const gpu = await getGpu();
    const tiny = await tinyGpuModel(gpu, { modelType: 'llama', seed: 23 });
    const modules = tiny.model.linears;
    const cfg = loraConfigFromSettings(
      { r: 2, lora_alpha: 4, lora_dropout: 0, target_modules: 'all-linear', use_rslora: false },
      tiny.loaded.config.modelType,
    );
    const arrays = initLoraModules(cfg, resolveTargets(cfg, modules), 6).map((m, i) => ({
      ...m,
      b: randArray(m.b.length, 90 + i, 0.5),
    }));
    const lora = GpuLora.fromArrays(gpu, modules, arrays, () => ({ r: 2, scale: 2, dropout: 0 }));
    // One Generator for every call, as the engine keeps (src/engine/generation.ts); chunks of 5.
    const gen = new Generator(gpu, tiny.model, { maxContext: 96, prefillChunk: 5 });
    try {
      const sampling = { temperature: 0.8, topK: 20, topP: 0.9, repetitionPenalty: 1.1 };
      // Compare: the conversation so far from the base model and the adapter (each starts over:
      // the cache was made with the other); Chat: the adapter's reply, and the next prompt is the
      // last one, that reply and a new message of another length (its prefill chunks differ).
      const conversation = async () => {
        const made: number[] = [];
        const reused: number[] = [];
        let chat = [3, 17, 99, 45, 8, 120, 7];
        const call = async (l: GpuLora | null, maxNewTokens: number, seed: number) => {
          const before = gpu.counters.bindGroups;
          const r = await gen.generate(chat, l, { maxNewTokens, seed, ...sampling });
          made.push(gpu.counters.bindGroups - before);
          reused.push(r.reused);
          return r.ids;
        };
        for (let turn = 0; turn < 5; turn++) {
          await call(null, 3, turn);
          await call(lora, 3, turn);
          const reply = await call(lora, 4, 9);
          chat = [...chat, ...reply, ...Array.from({ length: turn + 1 }, (_, i) => (turn * 11 + i * 5 + 1) % 200)];
        }
        return { made, reused };
      };
      const first = await conversation();
      // Each chat turn reused the cache of the Compare call before it (all but its last token).
      expect(first.reused.filter((_, i) => i % 3 === 2).every((n) => n > 0)).toBe(true);
      expect(first.made[0]).toBeGreaterThan(0);
      // The small-M matmul kernels come in row classes (a pipeline each for 1, 2, 4, 8 rows), so a
      // prefill whose last chunk is of a class not met before makes that class's groups once
      // (here the third turn's prompt of 18 tokens: chunks of 5, 5, 5, 3); they are kept like the others. Met again: none at all.
      gen.forget();
      const again = await conversation();
      expect(again.reused).toEqual(first.reused);
      expect(again.made).toEqual(new Array<number>(again.made.length).fill(0));
    } finally {
      gen.dispose();
      lora.dispose();
      tiny.model.dispose();
    }
  });
});
