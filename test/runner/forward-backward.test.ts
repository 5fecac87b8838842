/**
 * The whole model on the GPU against the float64 reference, for every family and block form: loss,
 * and the gradient of every LoRA A and B (all-linear), on a batch of two right-padded sequences of
 * odd length with ignored targets. The reference itself is checked by finite differences
 * (test/reference/model-fd.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { GpuLora, type LoraModuleArrays } from '../../src/lora/gpu-lora';
import { initLoraModules } from '../../src/lora/init';
import { loraConfigFromSettings, resolveTargets } from '../../src/lora/targets';
import { ModelRunner } from '../../src/model/runner';
import { dropoutSeed } from '../../src/model/runner-linear';
import type { LinearModule } from '../../src/model/registry';
import { type RefBatch, type RefLoraModule, modelBackwardRef, modelForwardRef } from '../../src/reference/model';
import { FAMILY_CASES } from '../fixtures/family-cases';
import type { TinyModelOptions } from '../fixtures/tiny-model';
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

/** Every family case in F32 without dropout, plus dtype and dropout variants of some, and QLoRA on each. */
const CASES: {
  name: string;
  o: TinyModelOptions;
  dropout: number;
  /** 4-bit NF4 frozen linear weights (the reference reads their float64 dequantization). */
  nf4?: { doubleQuant: boolean };
}[] = [
  ...FAMILY_CASES.map((fc) => ({ name: `${fc.name}, F32`, o: fc.o, dropout: 0 })),
  { name: 'llama, llama3 RoPE scaling', o: { modelType: 'llama', overrides: LLAMA3_ROPE }, dropout: 0 },
  { name: 'llama, BF16, dropout 0.1', o: { modelType: 'llama', dtype: 'BF16' }, dropout: 0.1 },
  { name: 'mistral, F16', o: { modelType: 'mistral', dtype: 'F16' }, dropout: 0 },
  { name: 'qwen3, BF16', o: { modelType: 'qwen3', dtype: 'BF16' }, dropout: 0 },
  { name: 'gpt2, dropout 0.1', o: { modelType: 'gpt2' }, dropout: 0.1 },
  {
    name: 'gemma2, BF16 (embedding scale rounded to bf16), dropout 0.1',
    o: { modelType: 'gemma2', dtype: 'BF16' },
    dropout: 0.1,
  },
  { name: 'phi3, F16, dropout 0.1', o: { modelType: 'phi3', dtype: 'F16' }, dropout: 0.1 },
  {
    name: 'opt post-norm with project_in/out, dropout 0.1',
    o: { modelType: 'opt', overrides: { do_layer_norm_before: false, word_embed_proj_dim: 16 } },
    dropout: 0.1,
  },
  // QLoRA on every family and form: 4-bit frozen linear weights (GPT-2's Conv1D transposed before
  // quantizing; fused q/k/v and gate/up quantized whole, as bitsandbytes does).
  ...FAMILY_CASES.map((fc, i) => ({
    name: `${fc.name}, 4-bit NF4${i % 2 === 0 ? ' double-quant' : ''}`,
    o: i % 3 === 0 ? { ...fc.o, dtype: 'BF16' as const } : fc.o,
    dropout: i % 4 === 1 ? 0.1 : 0,
    nf4: { doubleQuant: i % 2 === 0 },
  })),
];

describe('whole model on the GPU vs the float64 reference', () => {
  for (const c of CASES) {
    it(`${c.name}: loss and every LoRA gradient`, async () => {
      const gpu = await getGpu();
      const frozen = c.nf4 ? { quantize: 'nf4' as const, doubleQuant: c.nf4.doubleQuant } : {};
      const tiny = await tinyGpuModel(gpu, { ...c.o, seed: 3 }, frozen);
      expect(tiny.model.quantization?.modules ?? 0).toBe(c.nf4 ? tiny.model.linears.length : 0);
      if (c.o.overrides === LLAMA3_ROPE) expect(tiny.loaded.config.layers[0]!.rope!.scaling?.type).toBe('llama3');
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
        expectClose([fwd.lossSum / fwd.count], [sum / count], { name: `${c.name} loss`, atol: 1e-5, rtol: 1e-4 });
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

describe('activation checkpointing', () => {
  const cases: [string, TinyModelOptions][] = [
    ['llama', { modelType: 'llama' }],
    ['qwen3', { modelType: 'qwen3' }],
    ['gpt2', { modelType: 'gpt2' }],
    [
      'gemma2 (sandwich norms, windows)',
      { modelType: 'gemma2', overrides: { layer_types: ['sliding_attention', 'full_attention', 'sliding_attention'] } },
    ],
    ['falcon (parallel, one norm)', { modelType: 'falcon' }],
    ['gpt_neox (parallel, two norms)', { modelType: 'gpt_neox' }],
    ['opt (norms after the residuals)', { modelType: 'opt', overrides: { do_layer_norm_before: false } }],
    ['mixtral (experts)', { modelType: 'mixtral' }],
  ];
  for (const [name, o] of cases) {
    it(`${name}: recomputing layers gives bit-identical loss and gradients with less activation memory`, async () => {
      const gpu = await getGpu();
      const tiny = await tinyGpuModel(gpu, {
        ...o,
        dtype: 'BF16',
        seed: 6,
        overrides: { ...o.overrides, num_hidden_layers: 3, n_layer: 3 },
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

describe('(IA)³ on the whole model vs the float64 reference', () => {
  // Every linear module gets a vector: the MLP's output projection (and a mixture's experts' down
  // projections) scale their input as PEFT's feedforward_modules do, every other module its output.
  const cases = FAMILY_CASES.filter((fc) =>
    ['llama', 'gpt2', 'mixtral', 'gpt_neox', 'opt (post-norm, project_in/out)', 'phi3', 'gemma2', 'bloom'].some(
      (n) => fc.name === n || fc.name.startsWith(`${n} (`),
    ),
  );
  for (const fc of cases) {
    it(`${fc.name}: loss and every (IA)³ vector's gradient`, async () => {
      const gpu = await getGpu();
      const tiny = await tinyGpuModel(gpu, { ...fc.o, seed: 3 });
      const modules = tiny.model.linears;
      const vectors = modules.map((m, i) => {
        const input = m.role === 'down' || m.role === 'fc_out';
        const n = input ? m.inF : m.outF;
        return { path: m.path, input, l: randArray(n, 50 + i, 0.5).map((v) => 1 + v) };
      });
      const lora = GpuLora.fromIa3(gpu, modules, vectors);
      lora.enableTraining(0);
      expect(lora.parameterCount).toBe(vectors.reduce((s, v) => s + v.l.length, 0));
      const batch = makeBatch(200, 2, 9, 5);
      const runner = new ModelRunner(gpu, tiny.model, { mode: 'train', maxTokens: 18, ceChunk: 37 });
      try {
        runner.setBatch(batch.ids as Uint32Array, batch.positions as Uint32Array, batch.targets as Uint32Array);
        const rec = gpu.recorder('fb-ia3');
        runner.recordResetLoss(rec);
        const f = { B: batch.B, S: batch.S, lora };
        runner.recordForward(rec, f);
        runner.recordLoss(rec, batch.B * batch.S, 1 / batch.counted);
        runner.recordBackward(rec, f, false);
        rec.submit();
        const { sum, count } = await runner.readLoss();
        const rl = new Map(vectors.map((v) => [v.path, { ia3: { l: Float64Array.from(v.l), input: v.input } }]));
        const fwd = modelForwardRef(tiny.ref, rl, batch);
        expectClose([fwd.lossSum / fwd.count], [sum / count], { name: `${fc.name} loss`, atol: 1e-5, rtol: 1e-4 });
        const grads = modelBackwardRef(tiny.ref, rl, batch, fwd, 1 / batch.counted);
        expect(grads.dl.size).toBe(modules.length);
        for (const [path, slot] of lora.ia3Slots) {
          const ref = grads.dl.get(path)!;
          expect(maxAbs(ref)).toBeGreaterThan(0);
          expectClose(ref, await gpu.read(slot.dl!), {
            name: `${path}.ia3_l`,
            atol: 2e-4 * maxAbs(ref) + 1e-9,
            rtol: 2e-3,
          });
        }
      } finally {
        runner.dispose();
        lora.dispose();
        tiny.model.dispose();
      }
    });
  }
});

describe('prompt and prefix tuning on the whole model vs the float64 reference', () => {
  const names = ['llama', 'gpt2', 'gemma2', 'bloom', 'falcon (ALiBi, sequential)', 'mistral (sliding window)', 'qwen3'];
  for (const fc of FAMILY_CASES.filter((f) => names.includes(f.name))) {
    for (const kind of ['prompt', 'prefix'] as const) {
      it(`${fc.name}, ${kind} tuning: loss and the table's gradient (2 micro-batches accumulated)`, async () => {
        const gpu = await getGpu();
        const tiny = await tinyGpuModel(gpu, { ...fc.o, seed: 3 });
        const c = tiny.loaded.config;
        const P = 3;
        const width = kind === 'prompt' ? c.hiddenSize : 2 * c.numLayers * c.numKvHeads * c.headDim;
        const table = randArray(P * width, 61, 0.5);
        const lora = GpuLora.fromVirtual(gpu, kind, P, table);
        lora.enableTraining(0);
        expect(lora.parameterCount).toBe(P * width);
        // two right-padded sequences of 9 real tokens after P virtual rows
        const base = makeBatch(200, 2, 9, 5);
        const S = P + 9;
        const ids = new Uint32Array(2 * S);
        const positions = new Uint32Array(2 * S);
        const targets = new Uint32Array(2 * S).fill(IGNORE);
        for (let b = 0; b < 2; b++) {
          for (let t = 0; t < S; t++) {
            positions[b * S + t] = t;
            if (t < P) continue;
            ids[b * S + t] = base.ids[b * 9 + t - P]!;
            targets[b * S + t] = base.targets[b * 9 + t - P]!;
          }
        }
        const batch = { B: 2, S, ids, positions, targets, virtual: { kind, P, table: Float64Array.from(table) } };
        const runner = new ModelRunner(gpu, tiny.model, { mode: 'train', maxTokens: 2 * S, ceChunk: 37 });
        try {
          runner.setBatch(ids, positions, targets);
          const rec = gpu.recorder('fb-virtual');
          runner.recordResetLoss(rec);
          const f = { B: 2, S, lora };
          for (const acc of [false, true]) {
            runner.recordForward(rec, f);
            runner.recordLoss(rec, 2 * S, 1 / base.counted);
            runner.recordBackward(rec, f, acc);
          }
          rec.submit();
          const { sum, count } = await runner.readLoss();
          const none = new Map<string, RefLoraModule>();
          const fwd = modelForwardRef(tiny.ref, none, batch);
          expect(count).toBe(2 * base.counted);
          expectClose([fwd.lossSum / fwd.count], [sum / count], { name: `${fc.name} loss`, atol: 1e-5, rtol: 1e-4 });
          const ref = modelBackwardRef(tiny.ref, none, batch, fwd, 1 / base.counted).dVirtual!.map((x) => 2 * x);
          expect(maxAbs(ref)).toBeGreaterThan(0);
          const got = await gpu.read(lora.virtualSlot!.grad!);
          expectClose(ref, got, { name: `${kind} grad`, atol: 2e-4 * maxAbs(ref) + 1e-9, rtol: 2e-3 });
        } finally {
          runner.dispose();
          lora.dispose();
          tiny.model.dispose();
        }
      });
    }
  }
});
