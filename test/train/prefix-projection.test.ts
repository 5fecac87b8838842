/**
 * A prefix trained through PEFT's projection MLP (src/lora/prefix-mlp.ts) in the trainer: one
 * step's loss and the five parameters' gradients against the float64 reference (the whole model's
 * gradient of the prefix table from src/reference/model.ts, pushed through the MLP by
 * src/reference/prefix-projection.ts), on a tiny Llama with two right-padded sequences.
 */
import { describe, expect, it } from 'vitest';
import { GpuLora } from '../../src/lora/gpu-lora';
import { PREFIX_MLP_PARTS, initPrefixMlp } from '../../src/lora/prefix-mlp';
import { type RefLoraModule, modelBackwardRef, modelForwardRef } from '../../src/reference/model';
import { prefixMlpBackwardRef, prefixMlpForwardRef } from '../../src/reference/prefix-projection';
import { Trainer } from '../../src/train/trainer';
import { withVirtualRows } from '../../src/train/virtual-rows';
import { expectClose, rng } from '../helpers/close';
import { getGpu } from '../helpers/gpu';
import { tinyGpuModel } from '../helpers/tiny-gpu-model';

const IGNORE = 0xffffffff;
const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, x) => Math.max(m, Math.abs(x)), 0);

describe('prefix tuning through the projection MLP: one trainer step vs the float64 reference', () => {
  it('llama: loss and the gradients of the embedding, both weights and both biases', async () => {
    const gpu = await getGpu();
    const tiny = await tinyGpuModel(gpu, { modelType: 'llama', seed: 3 });
    const c = tiny.loaded.config;
    const D = c.numKvHeads * c.headDim;
    const dims = { P: 3, D, E: 5, O: c.numLayers * 2 * D };
    const mlp = initPrefixMlp(dims, 11);
    const lora = GpuLora.fromPrefixMlp(gpu, dims, mlp);
    // two sequences (9 and 6 real tokens, right-padded), next-token targets
    const B = 2;
    const S = 9;
    const r = rng(5);
    const ids = new Uint32Array(B * S);
    const positions = new Uint32Array(B * S);
    const targets = new Uint32Array(B * S).fill(IGNORE);
    let counted = 0;
    for (let b = 0; b < B; b++) {
      const len = b === 0 ? S : S - 3;
      for (let t = 0; t < S; t++) {
        ids[b * S + t] = t < len ? Math.floor(r() * c.vocabSize) : 0;
        positions[b * S + t] = t;
      }
      for (let t = 0; t + 1 < len; t++, counted++) targets[b * S + t] = ids[b * S + t + 1]!;
    }
    const micro = { B, S, ids, positions, targets, counted };
    // SGD at lr 0: the step leaves the parameters as they were and the gradients in place
    const trainer = new Trainer(
      gpu,
      tiny.model,
      lora,
      {
        optimizer: 'sgd',
        lr: 0,
        weightDecay: 0,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        maxGradNorm: 0,
        scheduler: 'constant',
        warmup: 0,
        totalSteps: 1,
      },
      { maxTokens: B * (S + dims.P) },
    );
    try {
      expect(lora.parameterCount).toBe(dims.P * D + dims.E * D + dims.E + dims.O * dims.E + dims.O);
      expect(lora.trainables().map((t) => t.name)).toEqual(PREFIX_MLP_PARTS.map((p) => p.name));
      const step = await trainer.trainStep([micro], true);
      const f64 = (a: Float32Array) => Float64Array.from(a);
      const refMlp = { ...dims, x: f64(mlp.x), w1: f64(mlp.w1), b1: f64(mlp.b1), w2: f64(mlp.w2), b2: f64(mlp.b2) };
      const { h, table } = prefixMlpForwardRef(refMlp);
      const batch = { ...withVirtualRows(micro, dims.P), virtual: { kind: 'prefix' as const, P: dims.P, table } };
      const none = new Map<string, RefLoraModule>();
      const fwd = modelForwardRef(tiny.ref, none, batch);
      expect(fwd.count).toBe(counted);
      expectClose([fwd.lossSum / fwd.count], [step.loss!], { name: 'loss', atol: 1e-5, rtol: 1e-4 });
      const dT = modelBackwardRef(tiny.ref, none, batch, fwd, 1 / counted).dVirtual!;
      const ref = prefixMlpBackwardRef(refMlp, h, dT);
      const refs = { x: ref.dx, w1: ref.dw1, b1: ref.db1, w2: ref.dw2, b2: ref.db2 };
      const parts = lora.prefixMlp!.parts;
      for (const part of parts) {
        const want = refs[part.key];
        expect(maxAbs(want), part.name).toBeGreaterThan(0);
        expectClose(want, await gpu.read(part.grad!), {
          name: part.name,
          atol: 2e-4 * maxAbs(want) + 1e-9,
          rtol: 2e-3,
        });
        // lr 0: the parameters are unchanged
        expect(Array.from(await gpu.read(part.param))).toEqual(Array.from(mlp[part.key]));
      }
    } finally {
      trainer.dispose();
      lora.dispose();
      tiny.model.dispose();
    }
  }, 60_000);
});
