/**
 * The whole model on the GPU against the float64 reference, for every architecture: loss, and the
 * gradient of every LoRA A and B, on a batch of two right-padded sequences of odd length with
 * ignored targets. The reference itself is checked by finite differences.
 */
import { describe, expect, it } from 'vitest';
import { GpuLora, type LoraModuleArrays } from '../../src/lora/gpu-lora';
import { initLoraModules } from '../../src/lora/init';
import { loraConfigFromSettings, resolveTargets } from '../../src/lora/targets';
import { ModelRunner } from '../../src/model/runner';
import { dropoutSeed } from '../../src/model/runner-forward';
import type { LinearModule } from '../../src/model/registry';
import {
  type RefBatch,
  type RefLoraModule,
  type RefWeights,
  modelBackwardRef,
  modelForwardRef,
} from '../../src/reference/model';
import type { TinyModelType } from '../fixtures/tiny-model';
import { expectClose, randArray, rng } from '../helpers/close';
import { getGpu } from '../helpers/gpu';
import { tinyGpuModel } from '../helpers/tiny-gpu-model';

const IGNORE = 0xffffffff;

/** Two sequences (lengths S and S-3, right-padded) with a few ignored targets. */
function makeBatch(vocab: number, B: number, S: number, seed: number): RefBatch & { counted: number } {
  const r = rng(seed);
  const T = B * S;
  const ids = new Uint32Array(T);
  const positions = new Uint32Array(T);
  const targets = new Uint32Array(T).fill(IGNORE);
  let counted = 0;
  for (let b = 0; b < B; b++) {
    const len = b === 0 ? S : S - 3;
    for (let t = 0; t < S; t++) {
      ids[b * S + t] = t < len ? Math.floor(r() * vocab) : 0;
      positions[b * S + t] = t;
    }
    for (let t = 0; t + 1 < len; t++) {
      if (t === 1) continue; // one ignored target inside the sequence
      targets[b * S + t] = ids[b * S + t + 1]!;
      counted++;
    }
  }
  return { B, S, ids, positions, targets, counted };
}

function loraArrays(modules: LinearModule[], r: number, seed: number): LoraModuleArrays[] {
  const cfg = loraConfigFromSettings(
    { r, lora_alpha: 2 * r, lora_dropout: 0, target_modules: 'all-linear', use_rslora: false },
    'llama',
  );
  const init = initLoraModules(cfg, resolveTargets(cfg, modules), seed);
  // B is zero at init; give it values so every path of the gradient is exercised.
  return init.map((m, i) => ({ ...m, b: randArray(m.b.length, seed * 97 + i, 0.3) }));
}

function refLora(
  arrays: LoraModuleArrays[],
  modules: LinearModule[],
  scale: number,
  dropout: number,
  seedBase: number,
): Map<string, RefLoraModule> {
  const out = new Map<string, RefLoraModule>();
  for (const a of arrays) {
    const index = modules.findIndex((m) => m.path === a.path);
    out.set(a.path, {
      a: Float64Array.from(a.a),
      b: Float64Array.from(a.b),
      r: a.r,
      scale,
      dropout,
      seed: dropoutSeed(seedBase, index),
    });
  }
  return out;
}

function maxAbs(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]!));
  return m;
}

const LLAMA3_ROPE = {
  rope_scaling: {
    rope_type: 'llama3',
    factor: 8,
    low_freq_factor: 1,
    high_freq_factor: 4,
    original_max_position_embeddings: 16,
  },
};

const CASES: {
  type: TinyModelType;
  dtype: 'F32' | 'F16' | 'BF16';
  dropout: number;
  overrides?: Record<string, unknown>;
}[] = [
  { type: 'llama', dtype: 'F32', dropout: 0, overrides: LLAMA3_ROPE },
  { type: 'llama', dtype: 'F32', dropout: 0 },
  { type: 'llama', dtype: 'BF16', dropout: 0.1 },
  { type: 'mistral', dtype: 'F16', dropout: 0 },
  { type: 'qwen2', dtype: 'F32', dropout: 0 },
  { type: 'qwen3', dtype: 'BF16', dropout: 0 },
  { type: 'gpt2', dtype: 'F32', dropout: 0.1 },
];

describe('whole model on the GPU vs the float64 reference', () => {
  for (const c of CASES) {
    const extra = c.overrides ? ', llama3 RoPE scaling' : '';
    it(`${c.type} (${c.dtype} weights, dropout ${c.dropout}${extra}): loss and every LoRA gradient`, async () => {
      const gpu = await getGpu();
      const tiny = await tinyGpuModel(gpu, { modelType: c.type, dtype: c.dtype, seed: 3, overrides: c.overrides });
      if (c.overrides) expect(tiny.loaded.config.rope!.scaling?.type).toBe('llama3');
      const modules = tiny.model.linears;
      const r = 3;
      const arrays = loraArrays(modules, r, 11);
      const scale = 2;
      const lora = GpuLora.fromArrays(gpu, modules, arrays, () => ({ r, scale, dropout: c.dropout }));
      lora.enableTraining(0);
      const batch = makeBatch(200, 2, 9, 5);
      const seedBase = 1234;
      const runner = new ModelRunner(gpu, tiny.model, { mode: 'train', maxTokens: 18, ceChunk: 37 });
      try {
        runner.setBatch(batch.ids as Uint32Array, batch.positions as Uint32Array, batch.targets as Uint32Array);
        const rec = gpu.recorder('fb');
        runner.recordResetLoss(rec);
        const f = { B: batch.B, S: batch.S, lora, seed: seedBase, dropout: c.dropout > 0 };
        runner.recordForward(rec, f);
        runner.recordLoss(rec, batch.B * batch.S, 1 / batch.counted);
        runner.recordBackward(rec, f, false);
        rec.submit();
        const { sum, count } = await runner.readLoss();

        const rl = refLora(arrays, modules, scale, c.dropout, seedBase);
        const fwd = modelForwardRef(tiny.ref, rl, batch);
        expect(count).toBe(batch.counted);
        expect(fwd.count).toBe(batch.counted);
        expectClose([fwd.lossSum / fwd.count], [sum / count], { name: `${c.type} loss`, atol: 1e-5, rtol: 1e-4 });
        const grads = modelBackwardRef(tiny.ref, rl, batch, fwd, 1 / batch.counted);
        expect(grads.dA.size).toBe(modules.length);
        for (const [path, slot] of lora.slots) {
          for (const [name, ref, t] of [
            ['dA', grads.dA.get(path)!, slot.dA!],
            ['dB', grads.dB.get(path)!, slot.dB!],
          ] as const) {
            const got = await gpu.read(t);
            expect(maxAbs(ref)).toBeGreaterThan(0);
            expectClose(ref, got, { name: `${path}.${name}`, atol: 2e-4 * maxAbs(ref) + 1e-9, rtol: 2e-3 });
          }
        }
      } finally {
        runner.dispose();
        lora.dispose();
        tiny.model.dispose();
      }
    });
  }
});

describe('whole-model reference', () => {
  for (const type of ['llama', 'qwen3', 'gpt2'] as const) {
    it(`${type}: LoRA gradients match central finite differences of the token-mean loss`, async () => {
      const gpu = await getGpu();
      const tiny = await tinyGpuModel(gpu, { modelType: type, dtype: 'F32', seed: 4 });
      tiny.model.dispose();
      const modules = tiny.model.linears;
      const r = 2;
      const arrays = loraArrays(modules, r, 21);
      const batch = makeBatch(200, 2, 6, 9);
      const ref: RefWeights = tiny.ref;
      const loss = (lm: Map<string, RefLoraModule>) => {
        const f = modelForwardRef(ref, lm, batch);
        return f.lossSum / f.count;
      };
      const base = refLora(arrays, modules, 2, 0, 0);
      const fwd = modelForwardRef(ref, base, batch);
      const grads = modelBackwardRef(ref, base, batch, fwd, 1 / fwd.count);
      const pick = rng(3);
      const eps = 1e-5;
      let checked = 0;
      for (const m of [modules[0]!, modules[modules.length - 1]!, modules[Math.floor(modules.length / 2)]!]) {
        for (const which of ['a', 'b'] as const) {
          const arr = base.get(m.path)![which] as Float64Array;
          const i = Math.floor(pick() * arr.length);
          const orig = arr[i]!;
          arr[i] = orig + eps;
          const lp = loss(base);
          arr[i] = orig - eps;
          const lm = loss(base);
          arr[i] = orig;
          const fd = (lp - lm) / (2 * eps);
          const an = (which === 'a' ? grads.dA : grads.dB).get(m.path)![i]!;
          expect(Math.abs(fd - an), `${m.path}.${which}[${i}]: fd ${fd} vs analytic ${an}`).toBeLessThan(
            1e-6 + 1e-4 * Math.abs(fd),
          );
          checked++;
        }
      }
      expect(checked).toBe(6);
    });
  }
});

describe('activation checkpointing', () => {
  for (const type of ['llama', 'qwen3', 'gpt2'] as const) {
    it(`${type}: recomputing layers gives bit-identical loss and gradients with less activation memory`, async () => {
      const gpu = await getGpu();
      const tiny = await tinyGpuModel(gpu, {
        modelType: type,
        dtype: 'BF16',
        seed: 6,
        overrides: { num_hidden_layers: 3, n_layer: 3 },
      });
      const modules = tiny.model.linears;
      const arrays = loraArrays(modules, 4, 5);
      const batch = makeBatch(200, 2, 11, 8);
      const run = async (checkpointActivations: boolean) => {
        const lora = GpuLora.fromArrays(gpu, modules, arrays, () => ({ r: 4, scale: 2, dropout: 0.1 }));
        lora.enableTraining(0);
        const before = gpu.memory().byCategory.activations;
        const runner = new ModelRunner(gpu, tiny.model, { mode: 'train', maxTokens: 22, checkpointActivations });
        const activationBytes = gpu.memory().byCategory.activations - before;
        try {
          runner.setBatch(batch.ids as Uint32Array, batch.positions as Uint32Array, batch.targets as Uint32Array);
          const rec = gpu.recorder('ckpt');
          runner.recordResetLoss(rec);
          const f = { B: batch.B, S: batch.S, lora, seed: 99, dropout: true };
          runner.recordForward(rec, f);
          runner.recordLoss(rec, batch.B * batch.S, 1 / batch.counted);
          runner.recordBackward(rec, f, false);
          rec.submit();
          const loss = await runner.readLoss();
          const grads: Float32Array[] = [];
          for (const t of lora.trainables()) grads.push(await gpu.read(t.grad));
          return { loss, grads, activationBytes };
        } finally {
          runner.dispose();
          lora.dispose();
        }
      };
      const plain = await run(false);
      const ckpt = await run(true);
      tiny.model.dispose();
      expect(ckpt.loss).toEqual(plain.loss);
      expect(ckpt.grads.length).toBe(plain.grads.length);
      plain.grads.forEach((g, i) =>
        expect(Buffer.from(ckpt.grads[i]!.buffer).equals(Buffer.from(g.buffer)), `grad ${i}`).toBe(true),
      );
      expect(ckpt.activationBytes).toBeLessThan(0.6 * plain.activationBytes);
    });
  }
});
