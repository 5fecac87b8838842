/**
 * The PEFT methods' cost side by side: one training step (forward, backward, AdamW) of LoRA, DoRA,
 * (IA)³, prompt tuning and prefix tuning on the same random model (SmolLM2-135M's layer shape, few
 * layers, a small vocabulary so the LM head does not hide the layers), timed round-robin in one
 * process (one step of each method per round) and reported as ratios to LoRA's time.
 *
 * Settings: LoRA and DoRA r=16 on every linear layer; (IA)³ PEFT's defaults for llama (k_proj,
 * v_proj, down_proj's input); prompt and prefix tuning 20 virtual tokens (each sequence grows by
 * them, which is most of their cost at short lengths).
 *
 * Prefix tuning through PEFT's projection MLP (encoder hidden size = the kv width) runs twice: as
 * the trainer runs it (the MLP on the GPU inside the step's submits, src/lora/prefix-mlp.ts) and
 * the way it ran before that (kept here only as the baseline): the five parameters read back, the
 * table computed on the CPU in float64 and uploaded, the step, the table's gradient read back,
 * pushed through the MLP on the CPU, the five gradients uploaded and AdamW run over them.
 */

import type { Gpu } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { Workspace } from '../gpu/workspace';
import { recordAdamW } from '../kernels/optim';
import { ia3ConfigFromSettings, initIa3 } from '../lora/ia3';
import { gpuAdapter } from '../lora/from-weights';
import type { GpuLora } from '../lora/gpu-lora';
import { initLoraModules } from '../lora/init';
import type { PeftMethod } from '../lora/methods';
import { otherOnGpu, prefixMlpDims } from '../lora/other';
import { type PrefixMlpArrays, PREFIX_MLP_PARTS, initPrefixMlp, prefixMlpSizes } from '../lora/prefix-mlp';
import { loraConfigFromSettings, resolveTargets } from '../lora/targets';
import { standardNormal, virtualShape, virtualWidth } from '../lora/virtual';
import type { GpuModel } from '../model/gpu-model';
import { type PrefixMlpRef, prefixMlpBackwardRef, prefixMlpForwardRef } from '../reference/prefix-projection';
import { type MicroBatch, Trainer } from '../train/trainer';
import { BENCH_OPTIMIZER, randomModel, smolLm2Config } from './model-bench';

const VIRTUAL_TOKENS = 20;
const RANK = 16;

export interface MethodStepBench {
  method: PeftMethod;
  /** What ran, when the method alone does not say (the projection MLP variants). */
  variant: string;
  trainable_params: number;
  ms_per_step: number;
  /** ms_per_step over LoRA's, measured in the same rounds. */
  ratio_to_lora: number;
}

export interface MethodsBench {
  model: string;
  batch: number;
  seq: number;
  rounds: number;
  methods: MethodStepBench[];
  /**
   * The projection MLP alone (forward and backward, without the model's step), on the GPU as the
   * trainer records it vs the CPU path with its readbacks, timed alternately to completion.
   */
  prefix_mlp: { gpu_ms: number; cpu_ms: number; ratio: number };
}

/** The method's fresh adapter on the GPU, as a new run would start it. */
async function adapterFor(gpu: Gpu, model: GpuModel, method: PeftMethod, projection = false): Promise<GpuLora> {
  const c = model.config;
  if (method === 'lora' || method === 'dora') {
    const cfg = loraConfigFromSettings(
      { method, r: RANK, lora_alpha: 2 * RANK, lora_dropout: 0.05, target_modules: 'all-linear', use_rslora: false },
      c.modelType,
    );
    return gpuAdapter(gpu, model, cfg, initLoraModules(cfg, resolveTargets(cfg, model.linears), 1));
  }
  if (method === 'ia3') {
    const config = ia3ConfigFromSettings({ target_modules: [], feedforward_modules: [] }, c.modelType);
    return otherOnGpu(gpu, model.linears, { method, config, vectors: initIa3(config, model.linears) });
  }
  const common = { num_virtual_tokens: VIRTUAL_TOKENS };
  if (method === 'prompt-tuning') {
    const shape = virtualShape('prompt', c);
    const config = {
      ...shape,
      ...common,
      prompt_tuning_init: 'RANDOM' as const,
      prompt_tuning_init_text: null,
      tokenizer_name_or_path: null,
    };
    return otherOnGpu(gpu, model.linears, {
      method,
      config,
      table: standardNormal(VIRTUAL_TOKENS * virtualWidth('prompt', shape), 1),
    });
  }
  const shape = virtualShape('prefix', c);
  const config = { ...shape, ...common, prefix_projection: projection, encoder_hidden_size: shape.token_dim };
  const mlp = projection ? initPrefixMlp(prefixMlpDims(config), 1) : undefined;
  return otherOnGpu(gpu, model.linears, {
    method,
    config,
    table: standardNormal(VIRTUAL_TOKENS * virtualWidth('prefix', shape), 1),
    mlp,
  });
}

/**
 * The projection MLP as it ran before it moved to the GPU (the baseline of the comparison): a plain
 * prefix trainer whose table is computed on the CPU from five parameter tensors each step, their
 * gradients pushed back on the CPU and updated by AdamW (see the file comment).
 */
class HostPrefixMlp {
  private readonly dims;
  private readonly params: Tensor[];
  private readonly grads: Tensor[];
  private readonly moments: Tensor[][];
  private readonly lora: GpuLora;
  private steps = 0;

  constructor(
    private readonly gpu: Gpu,
    lora: GpuLora,
    model: GpuModel,
  ) {
    this.lora = lora;
    const shape = virtualShape('prefix', model.config);
    this.dims = prefixMlpDims({
      ...shape,
      num_virtual_tokens: VIRTUAL_TOKENS,
      prefix_projection: true,
      encoder_hidden_size: shape.token_dim,
    });
    const init = initPrefixMlp(this.dims, 1);
    const sizes = prefixMlpSizes(this.dims);
    const make = (label: string, key: keyof PrefixMlpArrays, data?: Float32Array) =>
      gpu.tensor(label, [sizes[key]], 'f32', 'lora', data ?? new Float32Array(sizes[key]));
    this.params = PREFIX_MLP_PARTS.map((p) => make(p.name, p.key, init[p.key]));
    this.grads = PREFIX_MLP_PARTS.map((p) => make(`${p.name}.grad`, p.key));
    this.moments = PREFIX_MLP_PARTS.map((p) => [make(`${p.name}.m`, p.key), make(`${p.name}.v`, p.key)]);
  }

  /** The table from the parameters read back, computed on the CPU and uploaded. */
  async forward(): Promise<{ m: PrefixMlpRef; h: Float64Array }> {
    const gpu = this.gpu;
    const [x, w1, b1, w2, b2] = (await Promise.all(this.params.map((t) => gpu.read(t)))).map((a) =>
      Float64Array.from(a),
    );
    const m = { ...this.dims, x: x!, w1: w1!, b1: b1!, w2: w2!, b2: b2! };
    const { h, table } = prefixMlpForwardRef(m);
    gpu.write(this.lora.virtualSlot!.table, Float32Array.from(table));
    return { m, h };
  }

  /** The table's gradient read back, pushed through the MLP on the CPU, the five gradients uploaded. */
  async backward(at: { m: PrefixMlpRef; h: Float64Array }): Promise<void> {
    const gpu = this.gpu;
    const g = prefixMlpBackwardRef(at.m, at.h, await gpu.read(this.lora.virtualSlot!.grad!));
    [g.dx, g.dw1, g.db1, g.dw2, g.db2].forEach((d, i) => gpu.write(this.grads[i]!, Float32Array.from(d)));
  }

  async step(trainer: Trainer, micro: MicroBatch[]): Promise<void> {
    const gpu = this.gpu;
    const at = await this.forward();
    await trainer.trainStep(micro, true);
    await this.backward(at);
    const rec = gpu.recorder('host-mlp.optimizer');
    this.steps++;
    const { lr, beta1, beta2, eps, weightDecay } = BENCH_OPTIMIZER;
    this.params.forEach((param, i) => {
      const [m, v] = this.moments[i]!;
      const n = param.shape[0]!;
      recordAdamW(gpu, rec, {
        param,
        grad: this.grads[i]!,
        m: m!,
        v: v!,
        n,
        lr,
        beta1,
        beta2,
        eps,
        weightDecay,
        step: this.steps,
      });
    });
    rec.submit();
    await gpu.sync();
  }

  get parameterCount(): number {
    return this.params.reduce((n, t) => n + t.shape[0]!, 0);
  }

  dispose(): void {
    for (const t of [...this.params, ...this.grads, ...this.moments.flat()]) this.gpu.free(t);
  }
}

/** The MLP's forward and backward alone, GPU and CPU alternately, `rounds`·4 times each (see MethodsBench). */
async function timeMlpAlone(gpu: Gpu, lora: GpuLora, host: HostPrefixMlp, rounds: number) {
  const ws = new Workspace(gpu);
  const onGpu = async () => {
    const rec = gpu.recorder('bench.prefix-mlp');
    lora.recordPrefixTable(rec);
    lora.recordPrefixGrads(rec, ws);
    rec.submit();
    await gpu.sync();
  };
  const onCpu = async () => {
    await host.backward(await host.forward());
    await gpu.sync();
  };
  try {
    await onGpu();
    await onCpu();
    let gpuMs = 0;
    let cpuMs = 0;
    const n = rounds * 4;
    for (let i = 0; i < n; i++) {
      let t = performance.now();
      await onGpu();
      gpuMs += performance.now() - t;
      t = performance.now();
      await onCpu();
      cpuMs += performance.now() - t;
    }
    return { gpu_ms: gpuMs / n, cpu_ms: cpuMs / n, ratio: gpuMs / cpuMs };
  } finally {
    ws.dispose();
  }
}

export async function benchMethods(
  gpu: Gpu,
  o: { layers: number; seq: number; batch?: number; rounds?: number; vocab?: number; log?: (l: string) => void },
): Promise<MethodsBench> {
  const B = o.batch ?? 1;
  const S = o.seq;
  const rounds = o.rounds ?? 3;
  const vocab = o.vocab ?? 8192;
  const config = smolLm2Config(o.layers, vocab);
  const model = await randomModel(gpu, o.layers, config);
  const variants: { method: PeftMethod; variant: string }[] = [
    ...(['lora', 'dora', 'ia3', 'prompt-tuning', 'prefix-tuning'] as const).map((m) => ({ method: m, variant: m })),
    { method: 'prefix-tuning', variant: 'prefix + MLP (GPU)' },
    { method: 'prefix-tuning', variant: 'prefix + MLP (CPU, before)' },
  ];
  const runs: {
    method: PeftMethod;
    variant: string;
    lora: GpuLora;
    trainer: Trainer;
    host: HostPrefixMlp | null;
    ms: number;
  }[] = [];
  try {
    for (const { method, variant } of variants) {
      const lora = await adapterFor(gpu, model, method, variant === 'prefix + MLP (GPU)');
      const virtual = method === 'prompt-tuning' || method === 'prefix-tuning' ? VIRTUAL_TOKENS : 0;
      const trainer = new Trainer(gpu, model, lora, BENCH_OPTIMIZER, {
        maxTokens: B * (S + virtual),
        lossEvery: 1000,
        checkpointActivations: false,
      });
      const host = variant === 'prefix + MLP (CPU, before)' ? new HostPrefixMlp(gpu, lora, model) : null;
      runs.push({ method, variant, lora, trainer, host, ms: 0 });
    }
    const T = B * S;
    const ids = new Uint32Array(T);
    const targets = new Uint32Array(T);
    const positions = new Uint32Array(T);
    for (let i = 0; i < T; i++) {
      ids[i] = (i * 7919) % vocab;
      targets[i] = (i * 104729 + 1) % vocab;
      positions[i] = i % S;
    }
    const micro = [{ B, S, ids, targets, positions, counted: T }];
    // A warm-up step each (compiles its pipelines), then one step of each method per round (in a
    // rotated order); the loss is read every step so each timing includes its whole step.
    const step = (r: (typeof runs)[number]) =>
      r.host ? r.host.step(r.trainer, micro) : r.trainer.trainStep(micro, true);
    for (const r of runs) await step(r);
    for (let i = 0; i < rounds; i++) {
      // each round starts with another method, so no method always follows the same one
      for (const r of [...runs.slice(i % runs.length), ...runs.slice(0, i % runs.length)]) {
        const t = performance.now();
        await step(r);
        r.ms += performance.now() - t;
      }
    }
    const prefixMlp = await timeMlpAlone(
      gpu,
      runs.find((r) => r.variant === 'prefix + MLP (GPU)')!.lora,
      runs.find((r) => r.host)!.host!,
      rounds,
    );
    const loraMs = runs[0]!.ms / rounds;
    const res: MethodsBench = {
      model: `SmolLM2-135M-shaped layers, ${o.layers} layers, vocabulary ${vocab}, random bf16 weights`,
      batch: B,
      seq: S,
      rounds,
      methods: runs.map((r) => ({
        method: r.method,
        variant: r.variant,
        trainable_params: r.host ? r.host.parameterCount : r.lora.parameterCount,
        ms_per_step: r.ms / rounds,
        ratio_to_lora: r.ms / rounds / loraMs,
      })),
      prefix_mlp: prefixMlp,
    };
    o.log?.(
      `methods, one train step each (${res.model}, B=${B} S=${S}; LoRA/DoRA r=${RANK} all-linear, (IA)³ PEFT's defaults, ` +
        `prompt/prefix ${VIRTUAL_TOKENS} virtual tokens; ${rounds} round-robin rounds):`,
    );
    for (const m of res.methods) {
      o.log?.(
        `  ${m.variant.padEnd(26)} ${m.ms_per_step.toFixed(0).padStart(6)} ms/step  ${m.ratio_to_lora.toFixed(2)}x LoRA  ` +
          `(${m.trainable_params} trainable parameters)`,
      );
    }
    const p = res.prefix_mlp;
    o.log?.(
      `  the projection MLP alone: GPU ${p.gpu_ms.toFixed(1)} ms, CPU with readbacks ${p.cpu_ms.toFixed(1)} ms (GPU/CPU ${p.ratio.toFixed(2)})`,
    );
    return res;
  } finally {
    for (const r of runs) {
      r.trainer.dispose();
      r.host?.dispose();
      r.lora.dispose();
    }
    model.dispose();
  }
}
