/**
 * A prefix trained through PEFT's projection MLP (src/lora/prefix-mlp.ts, on the GPU) in the
 * trainer: one step's loss and the five parameters' gradients against the float64 reference (the
 * whole model's gradient of the prefix table from src/reference/model.ts, pushed through the MLP by
 * src/reference/prefix-projection.ts), on a tiny Llama with two right-padded sequences; and after
 * AdamW steps over two micro-batches, the table the runner attends over is the MLP's output of the
 * updated parameters (so the next step and any evaluation see it), with no submit or readback
 * beyond what any adapter's step has.
 */
import { describe, expect, it } from 'vitest';
import { GpuLora } from '../../src/lora/gpu-lora';
import { PREFIX_MLP_PARTS, type PrefixMlpArrays, type PrefixMlpDims, initPrefixMlp } from '../../src/lora/prefix-mlp';
import { type RefLoraModule, modelBackwardRef, modelForwardRef } from '../../src/reference/model';
import { prefixMlpBackwardRef, prefixMlpForwardRef } from '../../src/reference/prefix-projection';
import { type OptimConfig, Trainer } from '../../src/train/trainer';
import { withVirtualRows } from '../../src/train/virtual-rows';
import { expectClose, rng } from '../helpers/close';
import { getGpu } from '../helpers/gpu';
import { tinyGpuModel } from '../helpers/tiny-gpu-model';

const IGNORE = 0xffffffff;
const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, x) => Math.max(m, Math.abs(x)), 0);

/** Two sequences (9 and 6 real tokens, right-padded) with next-token targets. */
function batch(vocab: number, seed: number) {
  const B = 2;
  const S = 9;
  const r = rng(seed);
  const ids = new Uint32Array(B * S);
  const positions = new Uint32Array(B * S);
  const targets = new Uint32Array(B * S).fill(IGNORE);
  let counted = 0;
  for (let b = 0; b < B; b++) {
    const len = b === 0 ? S : S - 3;
    for (let t = 0; t < S; t++) {
      ids[b * S + t] = t < len ? Math.floor(r() * vocab) : 0;
      positions[b * S + t] = t;
    }
    for (let t = 0; t + 1 < len; t++, counted++) targets[b * S + t] = ids[b * S + t + 1]!;
  }
  return { B, S, ids, positions, targets, counted };
}

async function setup(optim: Partial<OptimConfig>) {
  const gpu = await getGpu();
  const tiny = await tinyGpuModel(gpu, { modelType: 'llama', seed: 3 });
  const c = tiny.loaded.config;
  const D = c.numKvHeads * c.headDim;
  const dims = { P: 3, D, E: 5, O: c.numLayers * 2 * D };
  const mlp = initPrefixMlp(dims, 11);
  const lora = GpuLora.fromPrefixMlp(gpu, dims, mlp);
  const base: OptimConfig = {
    optimizer: 'sgd',
    lr: 0,
    weightDecay: 0,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    maxGradNorm: 0,
    scheduler: 'constant',
    warmup: 0,
    totalSteps: 4,
  };
  const trainer = new Trainer(
    gpu,
    tiny.model,
    lora,
    { ...base, ...optim },
    { maxTokens: 2 * (9 + dims.P), lossEvery: 100 },
  );
  const dispose = () => {
    trainer.dispose();
    lora.dispose();
    tiny.model.dispose();
  };
  return { gpu, tiny, c, D, dims, mlp, lora, trainer, dispose };
}

const f64 = (a: Float32Array) => Float64Array.from(a);
const refOf = (dims: PrefixMlpDims, a: PrefixMlpArrays) => ({
  ...dims,
  x: f64(a.x),
  w1: f64(a.w1),
  b1: f64(a.b1),
  w2: f64(a.w2),
  b2: f64(a.b2),
});

describe('prefix tuning through the projection MLP: one trainer step vs the float64 reference', () => {
  it('llama, two micro-batches: loss and the gradients of the embedding, both weights and both biases', async () => {
    // SGD at lr 0: the step leaves the parameters as they were and the gradients in place
    const { gpu, tiny, c, D, dims, mlp, lora, trainer, dispose } = await setup({});
    const micro = [batch(c.vocabSize, 5), batch(c.vocabSize, 6)];
    const counted = micro[0]!.counted + micro[1]!.counted;
    try {
      expect(lora.parameterCount).toBe(dims.P * D + dims.E * D + dims.E + dims.O * dims.E + dims.O);
      expect(lora.trainables().map((t) => t.name)).toEqual(PREFIX_MLP_PARTS.map((p) => p.name));
      const step = await trainer.trainStep(micro, true);
      const refMlp = refOf(dims, mlp);
      const { h, table } = prefixMlpForwardRef(refMlp);
      // the step's loss and the table's gradient: both micro-batches, scaled by the step's counted tokens
      const none = new Map<string, RefLoraModule>();
      let lossSum = 0;
      const dT = new Float64Array(table.length);
      for (const m of micro) {
        const b = { ...withVirtualRows(m, dims.P), virtual: { kind: 'prefix' as const, P: dims.P, table } };
        const fwd = modelForwardRef(tiny.ref, none, b);
        expect(fwd.count).toBe(m.counted);
        lossSum += fwd.lossSum;
        const d = modelBackwardRef(tiny.ref, none, b, fwd, 1 / counted).dVirtual!;
        for (let i = 0; i < dT.length; i++) dT[i]! += d[i]!;
      }
      expectClose([lossSum / counted], [step.loss!], { name: 'loss', atol: 1e-5, rtol: 1e-4 });
      const ref = prefixMlpBackwardRef(refMlp, h, dT);
      const refs = { x: ref.dx, w1: ref.dw1, b1: ref.db1, w2: ref.dw2, b2: ref.db2 };
      for (const part of lora.prefixMlp!.parts) {
        const want = refs[part.key];
        expect(maxAbs(want), part.name).toBeGreaterThan(0);
        expectClose(want, await gpu.read(part.grad!), {
          name: part.name,
          atol: 1e-5 * maxAbs(want) + 1e-9,
          rtol: 1e-4,
        });
        // lr 0: the parameters are unchanged
        expect(Array.from(await gpu.read(part.param))).toEqual(Array.from(mlp[part.key]));
      }
    } finally {
      dispose();
    }
  }, 60_000);

  it('llama: after AdamW steps over two micro-batches, the table is the MLP of the updated parameters', async () => {
    const { gpu, c, dims, mlp, lora, trainer, dispose } = await setup({ optimizer: 'adamw', lr: 0.05, maxGradNorm: 1 });
    try {
      for (let step = 0; step < 2; step++) {
        const c0 = { ...gpu.counters };
        await trainer.trainStep([batch(c.vocabSize, 20 + step), batch(c.vocabSize, 30 + step)], step === 1);
        // the MLP adds no submit and no readback: one submit per micro-batch, and the loss read's own
        // submit and readback on the step that asks for it (as for every adapter; test/train/trainer.test.ts)
        expect({
          submits: gpu.counters.submits - c0.submits,
          readbacks: gpu.counters.readbacks - c0.readbacks,
        }).toEqual(step === 1 ? { submits: 3, readbacks: 1 } : { submits: 2, readbacks: 0 });
        const now = await lora.prefixMlpArrays();
        // the step moved every parameter
        for (const { key } of PREFIX_MLP_PARTS) expect(now![key]).not.toEqual(mlp[key]);
        const want = prefixMlpForwardRef(refOf(dims, now!)).table;
        expectClose(want, await gpu.read(lora.virtualSlot!.table), {
          name: `table after step ${step + 1}`,
          atol: 1e-6 * maxAbs(want),
          rtol: 1e-5,
        });
      }
    } finally {
      dispose();
    }
  }, 60_000);
});
