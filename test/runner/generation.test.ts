/**
 * Generation (infer mode with a KV cache) for every family and form, against the float64
 * reference's logits of the whole sequence: a prompt prefilled in one chunk (the tiled attention
 * kernel), then tokens fed one at a time (the decode kernel), with a LoRA adapter on every linear
 * module. Sliding windows, ALiBi, soft-caps, learned positions with offsets and the head's
 * transform all have to agree with the training forward at every position. Each family runs again
 * with 4-bit NF4 frozen weights (QLoRA: the reference reads their float64 dequantization), so the
 * tiled and the small-M matmul read the 4-bit weights on every layout.
 */
import { describe, expect, it } from 'vitest';
import { GpuLora } from '../../src/lora/gpu-lora';
import { initLoraModules } from '../../src/lora/init';
import { loraConfigFromSettings, resolveTargets } from '../../src/lora/targets';
import { ModelRunner } from '../../src/model/runner';
import { type RefLoraModule, modelForwardRef, modelLogitsRef } from '../../src/reference/model';
import { FAMILY_CASES } from '../fixtures/family-cases';
import { expectClose, randArray, rng } from '../helpers/close';
import { getGpu } from '../helpers/gpu';
import { tinyGpuModel } from '../helpers/tiny-gpu-model';

const S = 14;
const PREFILL = 9;

describe('generation with a KV cache vs the float64 reference', () => {
  const cases = FAMILY_CASES.flatMap((fc, i) => [
    { fc, nf4: null },
    { fc, nf4: { quantize: 'nf4' as const, doubleQuant: i % 2 === 0 } },
  ]);
  for (const { fc, nf4 } of cases) {
    const form = nf4 ? `, 4-bit NF4${nf4.doubleQuant ? ' double-quant' : ''}` : '';
    it(`${fc.name}${form}: logits after prefill and after each decoded token`, async () => {
      const gpu = await getGpu();
      const tiny = await tinyGpuModel(gpu, { ...fc.o, seed: 8 }, nf4 ?? {});
      expect(tiny.model.quantization?.modules ?? 0).toBe(nf4 ? tiny.model.linears.length : 0);
      const modules = tiny.model.linears;
      const c = tiny.loaded.config;
      const cfg = loraConfigFromSettings(
        { r: 2, lora_alpha: 4, lora_dropout: 0, target_modules: 'all-linear', use_rslora: false },
        c.modelType,
      );
      const arrays = initLoraModules(cfg, resolveTargets(cfg, modules), 5).map((m, i) => ({
        ...m,
        b: randArray(m.b.length, 50 + i, 0.3),
      }));
      const lora = GpuLora.fromArrays(gpu, modules, arrays, () => ({ r: 2, scale: 2, dropout: 0 }));
      const refLora = new Map<string, RefLoraModule>(
        arrays.map((a) => [
          a.path,
          { a: Float64Array.from(a.a), b: Float64Array.from(a.b), r: 2, scale: 2, dropout: 0, seed: 0 },
        ]),
      );
      const r = rng(17);
      const ids = Array.from({ length: S }, () => Math.floor(r() * 200));
      const positions = ids.map((_, t) => t);
      const fwd = modelForwardRef(tiny.ref, refLora, { B: 1, S, ids, positions, targets: ids.map(() => 0xffffffff) });
      const ref = modelLogitsRef(tiny.ref, fwd, S);
      const V = c.vocabSize;
      const runner = new ModelRunner(gpu, tiny.model, { mode: 'infer', maxTokens: PREFILL, maxContext: S });
      try {
        const feed = async (from: number, n: number) => {
          runner.setBatch(
            Uint32Array.from(ids.slice(from, from + n)),
            Uint32Array.from(positions.slice(from, from + n)),
          );
          const rec = gpu.recorder('gen');
          runner.recordForward(rec, { B: 1, S: n, lora }, from);
          runner.recordLogitsAt(rec, n - 1);
          rec.submit();
          const got = await gpu.read(runner.logits!);
          const pos = from + n - 1;
          const want = ref.subarray(pos * V, (pos + 1) * V);
          let scale = 0;
          for (const x of want) scale = Math.max(scale, Math.abs(x));
          expect(scale).toBeGreaterThan(0);
          expectClose(want, got, { name: `logits at position ${pos}`, atol: 2e-5 * scale + 1e-6, rtol: 1e-4 });
        };
        await feed(0, PREFILL);
        for (let t = PREFILL; t < S; t++) await feed(t, 1);
      } finally {
        runner.dispose();
        lora.dispose();
        tiny.model.dispose();
      }
    });
  }
});

describe('generation with prompt and prefix tuning: the KV cache keeps the virtual tokens', () => {
  const names = ['llama', 'gpt2', 'gemma2', 'falcon (ALiBi, sequential)', 'mistral (sliding window)'];
  for (const fc of FAMILY_CASES.filter((f) => names.includes(f.name))) {
    for (const kind of ['prompt', 'prefix'] as const) {
      it(`${fc.name}, ${kind}: logits after prefill (virtual rows + prompt) and after each decoded token`, async () => {
        const gpu = await getGpu();
        const tiny = await tinyGpuModel(gpu, { ...fc.o, seed: 8 });
        const c = tiny.loaded.config;
        const P = 3;
        const width = kind === 'prompt' ? c.hiddenSize : 2 * c.numLayers * c.numKvHeads * c.headDim;
        const table = randArray(P * width, 71, 0.5);
        const lora = GpuLora.fromVirtual(gpu, kind, P, table);
        const r = rng(17);
        const ids = Array.from({ length: S }, (_, t) => (t < P ? 0 : Math.floor(r() * 200)));
        const positions = ids.map((_, t) => t);
        const virtual = { kind, P, table: Float64Array.from(table) };
        const batch = { B: 1, S, ids, positions, targets: ids.map(() => 0xffffffff), virtual };
        const fwd = modelForwardRef(tiny.ref, new Map(), batch);
        const ref = modelLogitsRef(tiny.ref, fwd, S);
        const V = c.vocabSize;
        const runner = new ModelRunner(gpu, tiny.model, { mode: 'infer', maxTokens: PREFILL, maxContext: S });
        try {
          const feed = async (from: number, n: number) => {
            runner.setBatch(
              Uint32Array.from(ids.slice(from, from + n)),
              Uint32Array.from(positions.slice(from, from + n)),
            );
            const rec = gpu.recorder('gen');
            runner.recordForward(rec, { B: 1, S: n, lora }, from);
            runner.recordLogitsAt(rec, n - 1);
            rec.submit();
            const got = await gpu.read(runner.logits!);
            const pos = from + n - 1;
            const want = ref.subarray(pos * V, (pos + 1) * V);
            let scale = 0;
            for (const x of want) scale = Math.max(scale, Math.abs(x));
            expectClose(want, got, { name: `logits at position ${pos}`, atol: 2e-5 * scale + 1e-6, rtol: 1e-4 });
          };
          await feed(0, PREFILL);
          for (let t = PREFILL; t < S; t++) await feed(t, 1);
        } finally {
          runner.dispose();
          lora.dispose();
          tiny.model.dispose();
        }
      });
    }
  }
});
