/**
 * `bench memory --allocations-only` reports the peak of the real step: the same model shape is
 * measured once with the step's compute and once without (Gpu.allocationsOnly), and every byte
 * count agrees, by category, at both depths, 16-bit and NF4; the run without compute compiles no
 * shader. The shape is small so the real step is cheap here.
 */
import { describe, expect, it } from 'vitest';
import { benchMemory, shapeFromConfig } from '../../src/bench/memory-bench';
import { getGpu } from '../helpers/gpu';

const SMALL = {
  model_type: 'llama',
  hidden_size: 96,
  num_hidden_layers: 4,
  num_attention_heads: 6,
  num_key_value_heads: 2,
  intermediate_size: 160,
  vocab_size: 301,
  max_position_embeddings: 256,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
  hidden_act: 'silu',
  bos_token_id: 1,
  eos_token_id: 2,
  torch_dtype: 'bfloat16',
};

describe('bench memory: allocations only', () => {
  for (const quantize of [null, 'nf4'] as const) {
    it(`gives the peak of the real step, every category, at both depths (${quantize ?? '16-bit'})`, async () => {
      const gpu = await getGpu();
      const shape = shapeFromConfig(SMALL, 'small.json');
      const o = { seq: 37, r: 4, checkpoint: true, layers: [1, 2] as [number, number], shape, frozen: { quantize } };
      const real = await benchMemory(gpu, o);
      const pipelines = gpu.pipelineCount;
      const dry = await benchMemory(gpu, { ...o, allocationsOnly: true });
      expect(gpu.pipelineCount).toBe(pipelines);
      expect(gpu.allocationsOnly).toBe(false);
      expect(dry.allocations_only).toBe(true);
      expect(real.allocations_only).toBe(false);
      expect(dry.measured.map((m) => m.peak_bytes)).toEqual(real.measured.map((m) => m.peak_bytes));
      expect(dry.measured.map((m) => m.peak_bytes_by_category)).toEqual(
        real.measured.map((m) => m.peak_bytes_by_category),
      );
      expect(dry.full_peak_bytes).toBe(real.full_peak_bytes);
      // The step held something in every category it reports (the comparison is not of zeros).
      for (const c of ['weights', 'lora', 'optimizer', 'activations'])
        expect(real.measured[1]!.peak_bytes_by_category[c], c).toBeGreaterThan(0);
      expect(real.measured[1]!.peak_bytes).toBeGreaterThan(real.measured[0]!.peak_bytes);
    });
  }

  it('without --layers, allocations only measures the full depth once (no extrapolation)', async () => {
    const gpu = await getGpu();
    const shape = shapeFromConfig(SMALL, 'small.json');
    const dry = await benchMemory(gpu, { seq: 37, r: 4, checkpoint: true, shape, allocationsOnly: true });
    expect(dry.measured.map((m) => m.layers)).toEqual([4]);
    expect(dry.full_peak_bytes).toBe(dry.measured[0]!.peak_bytes);
    const real = await benchMemory(gpu, { seq: 37, r: 4, checkpoint: true, shape, layers: [4, 4] });
    expect(real.measured[0]!.peak_bytes).toBe(dry.full_peak_bytes);
  });

  it('refuses two equal depths that are not the full depth (they cannot be extrapolated)', async () => {
    const gpu = await getGpu();
    await expect(
      benchMemory(gpu, { seq: 16, checkpoint: true, shape: shapeFromConfig(SMALL, 'small.json'), layers: [2, 2] }),
    ).rejects.toThrow(/measures one depth, which is not .*'s 4/);
  });

  it('refuses to time steps without compute', async () => {
    const gpu = await getGpu();
    await expect(
      benchMemory(gpu, {
        seq: 16,
        checkpoint: true,
        shape: shapeFromConfig(SMALL, 'small.json'),
        steps: 1,
        allocationsOnly: true,
      }),
    ).rejects.toThrow(/cannot time steps/);
  });
});
