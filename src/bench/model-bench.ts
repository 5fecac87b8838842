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
import { type ModelConfig, parseConfig } from '../model/config';
import { type FrozenWeightsOptions, GpuModel } from '../model/gpu-model';
import { describeModel, expectedTensors } from '../model/registry';
import type { SafeTensor } from '../model/safetensors';
import { mulberry32 } from '../reference/check';
import { Generator } from '../generate/generator';
import { attentionDirect } from '../kernels/attention-variants';
import { tuneMatmul } from '../kernels/matmul/tune';
import { Trainer } from '../train/trainer';

/** The optimizer every benchmarked training step uses (AdamW, constant rate, clipping at 1). */
export const BENCH_OPTIMIZER = {
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
} as const;

export function smolLm2Config(layers: number, vocab = 49152) {
  return parseConfig({
    model_type: 'llama',
    hidden_size: 576,
    num_hidden_layers: layers,
    num_attention_heads: 9,
    num_key_value_heads: 3,
    intermediate_size: 1536,
    vocab_size: vocab,
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

/**
 * Random bf16 weights (1-D tensors, norms and biases, all 1), each made when the uploader asks for
 * it, so a big model's weights never sit in memory all at once.
 */
class RandomTensors extends Map<string, SafeTensor> {
  private readonly rand = mulberry32(12345);
  constructor(private readonly shapes: Map<string, number[]>) {
    super();
  }
  override get(key: string): SafeTensor | undefined {
    const shape = this.shapes.get(key);
    if (!shape) return undefined;
    const n = shape.reduce((a, b) => a * b, 1);
    const bits = new Uint16Array(n);
    if (shape.length === 1) bits.fill(f32ToBf16Bits(1));
    else {
      const scale = 0.5 / Math.sqrt(shape[shape.length - 1]!);
      for (let i = 0; i < n; i++) {
        bits[i] = f32ToBf16Bits((this.rand() - 0.5) * 2 * scale);
      }
    }
    return { dtype: 'BF16', shape, data: new Uint8Array(bits.buffer) };
  }
}

/** A GpuModel of the given config (default SmolLM2-135M-shaped) with random bf16 weights. */
export function randomModel(
  gpu: Gpu,
  layers: number,
  config = smolLm2Config(layers),
  frozen: FrozenWeightsOptions = {},
): Promise<GpuModel> {
  const shapes = new Map(expectedTensors(config).map((e) => [e.key, e.shape]));
  const arch = describeModel(config, new Map([...shapes].map(([k, shape]) => [k, { shape }])));
  return GpuModel.upload(gpu, { config, arch, tensors: new RandomTensors(shapes) }, frozen);
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
  /** With compareTuned: the same steps with the tuned matmul kernels, timed alternately with the baseline. */
  ms_per_step_tuned?: number;
  tokens_per_second_tuned?: number;
  speedup_tuned?: number;
  kernel_choices?: Record<string, string>;
  /**
   * With compareAttention (on devices where the direct attention kernels serve): the same steps
   * with the tiled attention kernels pinned, timed alternately with the default ones.
   */
  ms_per_step_tiled_attention?: number;
  speedup_direct_attention?: number;
}

/** The model and step every training-step benchmark runs (benchTrainingStep, bench profile). */
export interface StepShape {
  seq: number;
  layers: number;
  batch?: number;
  r?: number;
  checkpoint?: boolean;
  /** Qwen2.5-0.5B's shape instead of SmolLM2-135M's. */
  qwen?: boolean;
  /** Any model's shape (with `layers` layers), named by `name`; overrides `qwen`. */
  config?: { config: ModelConfig; name: string };
  /** Frozen weights 16-bit (default) or 4-bit NF4. */
  frozen?: FrozenWeightsOptions;
}

/**
 * A model of the shape with random weights, LoRA r (default 16) on every linear layer, an AdamW
 * trainer (loss read only when asked) and one micro-batch of B×S fixed tokens; `dispose` frees them.
 */
export async function prepareTrainingStep(gpu: Gpu, o: StepShape) {
  const B = o.batch ?? 1;
  const S = o.seq;
  const r = o.r ?? 16;
  const config = o.config?.config ?? (o.qwen ? qwen25HalfBConfig(o.layers) : smolLm2Config(o.layers));
  const name = o.config?.name ?? (o.qwen ? 'Qwen2.5-0.5B' : 'SmolLM2-135M');
  const model = await randomModel(gpu, o.layers, config, o.frozen);
  const lora = adapter(gpu, model, r);
  gpu.resetPeak();
  const trainer = new Trainer(gpu, model, lora, BENCH_OPTIMIZER, {
    maxTokens: B * S,
    lossEvery: 1000,
    checkpointActivations: o.checkpoint ?? false,
  });
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
  return {
    B,
    S,
    r,
    config,
    name,
    model,
    lora,
    trainer,
    micro: [{ B, S, ids, targets, positions, counted: T }],
    describe: `${name}-shaped, ${o.layers} layers, random bf16 weights${o.frozen?.quantize === 'nf4' ? ' in 4-bit NF4' : ''}`,
    dispose: () => {
      trainer.dispose();
      lora.dispose();
      model.dispose();
    },
  };
}

export async function benchTrainingStep(
  gpu: Gpu,
  o: StepShape & {
    log?: (l: string) => void;
    /** Time this many steps after a warm-up step (default 2); 0: one step, for its memory only. */
    steps?: number;
    /**
     * Also tune the matmul kernels after the warm-up step (src/kernels/matmul/tune.ts) and time
     * steps with the tuned choices and with the baseline alternately (round-robin, same trainer).
     */
    compareTuned?: boolean;
    /**
     * Also time steps with the tiled attention kernels pinned, alternately with the default ones
     * (the direct kernels on CPU drivers); nothing where the default is the tiled one.
     */
    compareAttention?: boolean;
  },
): Promise<TrainStepBench> {
  if (o.compareTuned) {
    // The warm-up step runs the baseline and notes every shape class for tuning.
    gpu.kernels.choices.clear();
    gpu.kernels.seen.clear();
  }
  const { B, S, r, config, trainer, micro, describe, dispose } = await prepareTrainingStep(gpu, o);
  try {
    const T = B * S;
    const steps = o.steps ?? 2;
    let t0 = performance.now();
    // Warm-up (compiles every pipeline) without reading the loss; its traffic is counted on the
    // device's own counters: what every step that does not read the loss costs.
    const c0 = { ...gpu.counters };
    await trainer.trainStep(micro, false);
    const submitsPerStep = gpu.counters.submits - c0.submits;
    const readbacksPerStep = gpu.counters.readbacks - c0.readbacks;
    let tuned: { ms: number; choices: Record<string, string> } | null = null;
    let restore = () => {};
    let ms: number;
    if (o.compareTuned && steps > 0) {
      const saved = new Map(gpu.kernels.choices);
      await tuneMatmul(gpu);
      const choices = new Map(gpu.kernels.choices);
      const use = (c: Map<string, string>) => {
        gpu.kernels.choices.clear();
        for (const [k, v] of c) gpu.kernels.choices.set(k, v);
      };
      use(choices);
      await trainer.trainStep(micro, false); // compiles the tuned kernels
      const times = { base: 0, tuned: 0 };
      for (let i = 0; i < steps; i++) {
        for (const mode of ['base', 'tuned'] as const) {
          use(mode === 'base' ? saved : choices);
          const t = performance.now();
          await trainer.trainStep(micro, true);
          times[mode] += performance.now() - t;
        }
      }
      ms = times.base / steps;
      tuned = { ms: times.tuned / steps, choices: Object.fromEntries(choices) };
      // The attention comparison below runs with the tuned matmuls.
      restore = () => use(saved);
    } else {
      if (steps > 0) {
        t0 = performance.now();
        for (let i = 0; i < steps; i++) await trainer.trainStep(micro, i === steps - 1);
      }
      await gpu.sync();
      ms = (performance.now() - t0) / Math.max(1, steps);
    }
    let tiledAttention: { tiled: number; direct: number } | null = null;
    if (o.compareAttention && steps > 0 && attentionDirect(gpu, config.headDim)) {
      tiledAttention = await alternateAttention(gpu, steps, () => trainer.trainStep(micro, false));
    }
    restore();
    const mem = gpu.memory();
    const res: TrainStepBench = {
      model: describe,
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
      ...(tuned && {
        ms_per_step_tuned: tuned.ms,
        tokens_per_second_tuned: (T * 1000) / tuned.ms,
        speedup_tuned: ms / tuned.ms,
        kernel_choices: tuned.choices,
      }),
    };
    if (tiledAttention !== null) {
      res.ms_per_step_tiled_attention = tiledAttention.tiled;
      res.speedup_direct_attention = tiledAttention.tiled / tiledAttention.direct;
    }
    const mb = (x: number) => `${(x / 2 ** 20).toFixed(1)} MiB`;
    o.log?.(
      `train step (${res.model}, B=${B} S=${S}, LoRA r=${r} all-linear${o.checkpoint ? ', activation checkpointing' : ''}): ` +
        (gpu.allocationsOnly
          ? 'allocations only (no compute, no time); '
          : `${ms.toFixed(0)} ms/step, ${res.tokens_per_second.toFixed(1)} tok/s; `) +
        `peak ${mb(mem.peak)} = weights ${mb(mem.peakByCategory.weights)} + ` +
        `lora ${mb(mem.peakByCategory.lora)} + optimizer ${mb(mem.peakByCategory.optimizer)} + activations ` +
        `${mb(mem.peakByCategory.activations)} + scratch ${mb(mem.peakByCategory.scratch)} + io ${mb(mem.peakByCategory.io)}`,
    );
    if (tiledAttention !== null) {
      o.log?.(
        `  attention kernels, alternately: tiled ${tiledAttention.tiled.toFixed(0)} ms/step, direct ` +
          `${tiledAttention.direct.toFixed(0)} ms/step (${res.speedup_direct_attention!.toFixed(2)}x)`,
      );
    }
    if (tuned) {
      o.log?.(
        `  with the tuned matmul kernels: ${tuned.ms.toFixed(0)} ms/step, ${res.tokens_per_second_tuned!.toFixed(1)} tok/s ` +
          `(${res.speedup_tuned!.toFixed(2)}x the baseline kernels, timed alternately)`,
      );
    }
    return res;
  } finally {
    dispose();
  }
}

/**
 * Mean ms of `steps` steps with the tiled attention kernels pinned and with the default (direct)
 * ones, alternately, after one step with the tiled ones (compiles them).
 */
async function alternateAttention(
  gpu: Gpu,
  steps: number,
  step: () => Promise<unknown>,
): Promise<{ tiled: number; direct: number }> {
  const before = gpu.kernels.attention;
  const times = { tiled: 0, direct: 0 };
  try {
    gpu.kernels.attention = 'tiled';
    await step();
    for (let i = 0; i < steps; i++) {
      for (const mode of ['tiled', 'direct'] as const) {
        gpu.kernels.attention = mode;
        const t = performance.now();
        await step();
        await gpu.sync();
        times[mode] += performance.now() - t;
      }
    }
  } finally {
    gpu.kernels.attention = before;
  }
  return { tiled: times.tiled / steps, direct: times.direct / steps };
}

export interface GenerationBench {
  tokens: number;
  /**
   * Greedy, the pick on the GPU a step ahead, bind groups and uniform buffers reused across
   * submits, Dawn's polls on a timer in Node (the defaults since issue 12).
   */
  base_tokens_per_second: number;
  adapter_tokens_per_second: number;
  /**
   * The same generations as before those: every row of logits read back and argmax'ed on the CPU,
   * bind groups and a uniform buffer made per submit, Dawn's busy polling (when `dawnPolling` is given).
   */
  base_tokens_per_second_cpu_pick: number;
  adapter_tokens_per_second_cpu_pick: number;
  /** base_tokens_per_second / base_tokens_per_second_cpu_pick, timed alternately. */
  speedup_gpu_pick: number;
}

/**
 * Greedy generation tokens/s (16-token prompt) with and without a LoRA r=16 adapter, each as now
 * and as before issue 12's generation work (GenerationBench), timed alternately (round-robin) over
 * `rounds` rounds.
 */
export async function benchGeneration(
  gpu: Gpu,
  o: {
    layers: number;
    tokens: number;
    rounds?: number;
    tune?: boolean;
    log?: (l: string) => void;
    /** Node: switches Dawn's event polling (src/gpu/node.ts setDawnPolling) for the before mode. */
    dawnPolling?: (mode: 'timer' | 'spin') => void;
  },
): Promise<GenerationBench> {
  const model = await randomModel(gpu, o.layers);
  const lora = adapter(gpu, model, 16);
  const gen = new Generator(gpu, model, { maxContext: 256 });
  try {
    const prompt = Array.from({ length: 16 }, (_, i) => (i * 31 + 5) % 49152);
    const modes = [
      { l: null, gpuPick: false },
      { l: null, gpuPick: true },
      { l: lora, gpuPick: false },
      { l: lora, gpuPick: true },
    ];
    for (const m of modes) await gen.generate(prompt, m.l, { maxNewTokens: 2, gpuPick: m.gpuPick }); // warm-up
    if (o.tune) {
      // The matmul shapes generation met, tuned as the engine does between uses; then compiled.
      await tuneMatmul(gpu);
      for (const m of modes) await gen.generate(prompt, m.l, { maxNewTokens: 2, gpuPick: m.gpuPick });
    }
    const ms = modes.map(() => 0);
    const made = modes.map(() => 0);
    for (let round = 0; round < (o.rounds ?? 1); round++) {
      for (const [i, m] of modes.entries()) {
        gpu.submitCache.enabled = m.gpuPick;
        gen.forget(); // the timed call prefills its prompt, as a new prompt would
        o.dawnPolling?.(m.gpuPick ? 'timer' : 'spin');
        const t0 = performance.now();
        const r = await gen.generate(prompt, m.l, { maxNewTokens: o.tokens, gpuPick: m.gpuPick });
        ms[i]! += performance.now() - t0;
        gpu.submitCache.enabled = true;
        o.dawnPolling?.('timer');
        made[i]! += r.ids.length;
      }
    }
    const rate = (i: number) => (made[i]! * 1000) / ms[i]!;
    const res: GenerationBench = {
      tokens: o.tokens,
      base_tokens_per_second_cpu_pick: rate(0),
      base_tokens_per_second: rate(1),
      adapter_tokens_per_second_cpu_pick: rate(2),
      adapter_tokens_per_second: rate(3),
      speedup_gpu_pick: rate(1) / rate(0),
    };
    o.log?.(
      `generation (${o.layers} layers, 16-token prompt, ${o.tokens} new, greedy): base ${res.base_tokens_per_second.toFixed(2)} tok/s, ` +
        `with LoRA r=16 ${res.adapter_tokens_per_second.toFixed(2)} tok/s; before (logits read back every token, ` +
        `bind groups made per submit, Dawn polling busily) ` +
        `${res.base_tokens_per_second_cpu_pick.toFixed(2)} / ${res.adapter_tokens_per_second_cpu_pick.toFixed(2)} tok/s ` +
        `(${res.speedup_gpu_pick.toFixed(2)}x / ${(rate(3) / rate(2)).toFixed(2)}x, timed alternately)`,
    );
    return res;
  } finally {
    gen.dispose();
    lora.dispose();
    model.dispose();
  }
}
