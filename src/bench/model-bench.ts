/**
 * Whole-model benchmarks on a model shaped like SmolLM2-135M (hidden 576, 9 heads / 3 KV heads,
 * MLP 1536, vocab 49152, tied head; 30 layers unless told otherwise) with random bf16 weights made
 * in memory: one full training step (forward, backward, AdamW) with LoRA r=16 on every linear layer,
 * and generation tokens/s with and without that adapter.
 */

import type { Gpu } from '../gpu/context';
import { f32ToBf16Bits } from '../gpu/half';
import { loraScaleInfo } from '../lora/config';
import { GpuLora } from '../lora/gpu-lora';
import { initLoraModules } from '../lora/init';
import { loraConfigFromSettings, resolveTargets } from '../lora/targets';
import { parseConfig } from '../model/config';
import { GpuModel } from '../model/gpu-model';
import { describeModel, expectedTensors } from '../model/registry';
import type { SafeTensor } from '../model/safetensors';
import { Generator } from '../generate/generator';
import { Trainer } from '../train/trainer';

export function smolLm2Config(layers: number) {
  return parseConfig({
    model_type: 'llama',
    hidden_size: 576,
    num_hidden_layers: layers,
    num_attention_heads: 9,
    num_key_value_heads: 3,
    intermediate_size: 1536,
    vocab_size: 49152,
    max_position_embeddings: 8192,
    rms_norm_eps: 1e-5,
    rope_theta: 100000,
    tie_word_embeddings: true,
    hidden_act: 'silu',
    bos_token_id: 1,
    eos_token_id: 2,
  });
}

/** Qwen2.5-0.5B's shape (hidden 896, 14 / 2 heads, MLP 4864, vocab 151936, q/k/v biases, tied head). */
export function qwen25HalfBConfig(layers: number) {
  return parseConfig({
    model_type: 'qwen2',
    hidden_size: 896,
    num_hidden_layers: layers,
    num_attention_heads: 14,
    num_key_value_heads: 2,
    intermediate_size: 4864,
    vocab_size: 151936,
    max_position_embeddings: 32768,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000,
    tie_word_embeddings: true,
    hidden_act: 'silu',
    bos_token_id: 151643,
    eos_token_id: 151643,
    torch_dtype: 'bfloat16',
  });
}

/** A GpuModel of the given config (default SmolLM2-135M-shaped) with random bf16 weights (1-D tensors, norms and biases, all 1). */
export function randomModel(gpu: Gpu, layers: number, config = smolLm2Config(layers)): Promise<GpuModel> {
  const tensors = new Map<string, SafeTensor>();
  let s = 12345;
  const one = f32ToBf16Bits(1);
  for (const e of expectedTensors(config)) {
    const n = e.shape.reduce((a, b) => a * b, 1);
    const bits = new Uint16Array(n);
    if (e.shape.length === 1) bits.fill(one);
    else {
      const scale = 0.5 / Math.sqrt(e.shape[e.shape.length - 1]!);
      for (let i = 0; i < n; i++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        bits[i] = f32ToBf16Bits(((s >>> 8) / 16777216 - 0.5) * 2 * scale);
      }
    }
    tensors.set(e.key, { dtype: 'BF16', shape: e.shape, data: new Uint8Array(bits.buffer) });
  }
  const arch = describeModel(config, tensors);
  return GpuModel.upload(gpu, { config, arch, tensors });
}

function adapter(gpu: Gpu, model: GpuModel, r: number): GpuLora {
  const cfg = loraConfigFromSettings(
    { r, lora_alpha: 2 * r, lora_dropout: 0.05, target_modules: 'all-linear', use_rslora: false },
    model.config.modelType,
  );
  const targets = resolveTargets(cfg, model.linears);
  return GpuLora.fromArrays(gpu, model.linears, initLoraModules(cfg, targets, 1), (m) => loraScaleInfo(cfg, m));
}

export interface TrainStepBench {
  model: string;
  batch: number;
  seq: number;
  r: number;
  ms_per_step: number;
  tokens_per_second: number;
  /** Measured over the timed steps that do not read the loss (the loss read adds one readback). */
  submits_per_step: number;
  readbacks_per_step: number;
  activation_checkpointing: boolean;
  peak_bytes: number;
  peak_bytes_by_category: Record<string, number>;
}

export async function benchTrainingStep(
  gpu: Gpu,
  o: {
    seq: number;
    layers: number;
    batch?: number;
    r?: number;
    checkpoint?: boolean;
    log?: (l: string) => void;
    /** Qwen2.5-0.5B's shape instead of SmolLM2-135M's. */
    qwen?: boolean;
    /** Time this many steps after a warm-up step (default 2); 0: one step, for its memory only. */
    steps?: number;
  },
): Promise<TrainStepBench> {
  const B = o.batch ?? 1;
  const S = o.seq;
  const r = o.r ?? 16;
  const config = o.qwen ? qwen25HalfBConfig(o.layers) : smolLm2Config(o.layers);
  const model = await randomModel(gpu, o.layers, config);
  const lora = adapter(gpu, model, r);
  gpu.resetPeak();
  const trainer = new Trainer(
    gpu,
    model,
    lora,
    {
      optimizer: 'adamw',
      lr: 1e-4,
      weightDecay: 0,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      maxGradNorm: 1,
      scheduler: 'constant',
      warmup: 0,
      totalSteps: 100,
    },
    { maxTokens: B * S, lossEvery: 1000, checkpointActivations: o.checkpoint ?? false },
  );
  try {
    const T = B * S;
    const ids = new Uint32Array(T);
    const targets = new Uint32Array(T);
    const positions = new Uint32Array(T);
    const V = config.vocabSize;
    for (let i = 0; i < T; i++) {
      ids[i] = (i * 7919) % V;
      targets[i] = (i * 104729 + 1) % V;
      positions[i] = i % S;
    }
    const micro = [{ B, S, ids, targets, positions, counted: T }];
    const steps = o.steps ?? 2;
    let t0 = performance.now();
    // Warm-up (compiles every pipeline) without reading the loss; its traffic is counted on the
    // device's own counters: what every step that does not read the loss costs.
    const c0 = { ...gpu.counters };
    await trainer.trainStep(micro, false);
    const submitsPerStep = gpu.counters.submits - c0.submits;
    const readbacksPerStep = gpu.counters.readbacks - c0.readbacks;
    if (steps > 0) {
      t0 = performance.now();
      for (let i = 0; i < steps; i++) await trainer.trainStep(micro, i === steps - 1);
    }
    await gpu.sync();
    const ms = (performance.now() - t0) / Math.max(1, steps);
    const mem = gpu.memory();
    const res: TrainStepBench = {
      model: `${o.qwen ? 'Qwen2.5-0.5B' : 'SmolLM2-135M'}-shaped, ${o.layers} layers, random bf16 weights`,
      batch: B,
      seq: S,
      r,
      ms_per_step: ms,
      tokens_per_second: (T * 1000) / ms,
      submits_per_step: submitsPerStep,
      readbacks_per_step: readbacksPerStep,
      activation_checkpointing: o.checkpoint ?? false,
      peak_bytes: mem.peak,
      peak_bytes_by_category: mem.peakByCategory,
    };
    const mb = (x: number) => `${(x / 2 ** 20).toFixed(1)} MiB`;
    o.log?.(
      `train step (${res.model}, B=${B} S=${S}, LoRA r=${r} all-linear${o.checkpoint ? ', activation checkpointing' : ''}): ${ms.toFixed(0)} ms/step, ` +
        `${res.tokens_per_second.toFixed(1)} tok/s; peak ${mb(mem.peak)} = weights ${mb(mem.peakByCategory.weights)} + ` +
        `lora ${mb(mem.peakByCategory.lora)} + optimizer ${mb(mem.peakByCategory.optimizer)} + activations ` +
        `${mb(mem.peakByCategory.activations)} + scratch ${mb(mem.peakByCategory.scratch)} + io ${mb(mem.peakByCategory.io)}`,
    );
    return res;
  } finally {
    trainer.dispose();
    lora.dispose();
    model.dispose();
  }
}

export interface GenerationBench {
  tokens: number;
  base_tokens_per_second: number;
  adapter_tokens_per_second: number;
}

export async function benchGeneration(
  gpu: Gpu,
  o: { layers: number; tokens: number; log?: (l: string) => void },
): Promise<GenerationBench> {
  const model = await randomModel(gpu, o.layers);
  const lora = adapter(gpu, model, 16);
  const gen = new Generator(gpu, model, { maxContext: 256 });
  try {
    const prompt = Array.from({ length: 16 }, (_, i) => (i * 31 + 5) % 49152);
    const rate = async (l: GpuLora | null) => {
      await gen.generate(prompt, l, { maxNewTokens: 2 }); // warm-up
      const t0 = performance.now();
      const r = await gen.generate(prompt, l, { maxNewTokens: o.tokens });
      return (r.ids.length * 1000) / (performance.now() - t0);
    };
    const base = await rate(null);
    const withLora = await rate(lora);
    o.log?.(
      `generation (16-token prompt, ${o.tokens} new, greedy): base ${base.toFixed(2)} tok/s, with LoRA r=16 ${withLora.toFixed(2)} tok/s`,
    );
    return { tokens: o.tokens, base_tokens_per_second: base, adapter_tokens_per_second: withLora };
  } finally {
    gen.dispose();
    lora.dispose();
    model.dispose();
  }
}

export interface MemoryBench {
  model: string;
  seq: number;
  r: number;
  activation_checkpointing: boolean;
  /** Measured peaks at two depths. */
  measured: { layers: number; peak_bytes: number; peak_bytes_by_category: Record<string, number> }[];
  /** The full model's depth and its peak, extrapolated linearly in the depth (every category is affine in it). */
  full_layers: number;
  full_peak_bytes: number;
  full_peak_bytes_by_category: Record<string, number>;
}

/**
 * Peak GPU memory of one training step of a Qwen2.5-0.5B-shaped model (24 layers) at batch 1:
 * one step at `layers[0]` and at `layers[1]` layers (each category's peak is affine in the depth:
 * per-layer weights, LoRA, optimizer state and saved activations), extrapolated to 24. The full
 * depth would take most of an hour on a CPU driver; on a real GPU `layers: [24, 24]` measures it
 * directly.
 */
export async function benchMemory(
  gpu: Gpu,
  o: { seq: number; r?: number; checkpoint: boolean; layers?: [number, number]; log?: (l: string) => void },
): Promise<MemoryBench> {
  const [l1, l2] = o.layers ?? [1, 2];
  const r = o.r ?? 16;
  const measured: MemoryBench['measured'] = [];
  for (const layers of [l1, l2]) {
    gpu.resetPeak();
    const b = await benchTrainingStep(gpu, {
      seq: o.seq,
      layers,
      r,
      checkpoint: o.checkpoint,
      qwen: true,
      steps: 0,
      log: o.log,
    });
    measured.push({ layers, peak_bytes: b.peak_bytes, peak_bytes_by_category: b.peak_bytes_by_category });
  }
  const full = qwen25HalfBConfig(24).numLayers;
  const extrapolate = (a: number, b: number) => (l2 === l1 ? b : a + ((b - a) * (full - l1)) / (l2 - l1));
  const cats = Object.keys(measured[0]!.peak_bytes_by_category);
  const byCat: Record<string, number> = {};
  for (const c of cats)
    byCat[c] = Math.round(
      extrapolate(measured[0]!.peak_bytes_by_category[c]!, measured[1]!.peak_bytes_by_category[c]!),
    );
  const res: MemoryBench = {
    model: 'Qwen2.5-0.5B-shaped, random bf16 weights',
    seq: o.seq,
    r,
    activation_checkpointing: o.checkpoint,
    measured,
    full_layers: full,
    full_peak_bytes: Math.round(extrapolate(measured[0]!.peak_bytes, measured[1]!.peak_bytes)),
    full_peak_bytes_by_category: byCat,
  };
  const mb = (x: number) => `${(x / 2 ** 20).toFixed(0)} MiB`;
  o.log?.(
    `memory (${res.model}, B=1 S=${o.seq}, LoRA r=${r} all-linear${o.checkpoint ? ', activation checkpointing' : ''}): ` +
      `measured ${measured.map((m) => `${mb(m.peak_bytes)} at ${m.layers} layer${m.layers > 1 ? 's' : ''}`).join(', ')}; ` +
      `at ${full} layers ${mb(res.full_peak_bytes)} = ${cats.map((c) => `${c} ${mb(byCat[c]!)}`).join(' + ')}`,
  );
  return res;
}
