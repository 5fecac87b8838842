/**
 * The PEFT methods' cost side by side: one training step (forward, backward, AdamW) of LoRA, DoRA,
 * (IA)³, prompt tuning and prefix tuning on the same random model (SmolLM2-135M's layer shape, few
 * layers, a small vocabulary so the LM head does not hide the layers), timed round-robin in one
 * process (one step of each method per round) and reported as ratios to LoRA's time.
 *
 * Settings: LoRA and DoRA r=16 on every linear layer; (IA)³ PEFT's defaults for llama (k_proj,
 * v_proj, down_proj's input); prompt and prefix tuning 20 virtual tokens (each sequence grows by
 * them, which is most of their cost at short lengths).
 */

import type { Gpu } from '../gpu/context';
import { ia3ConfigFromSettings, initIa3 } from '../lora/ia3';
import { gpuAdapter } from '../lora/from-weights';
import type { GpuLora } from '../lora/gpu-lora';
import { initLoraModules } from '../lora/init';
import type { PeftMethod } from '../lora/methods';
import { otherOnGpu } from '../lora/other';
import { loraConfigFromSettings, resolveTargets } from '../lora/targets';
import { standardNormal, virtualShape, virtualWidth } from '../lora/virtual';
import type { GpuModel } from '../model/gpu-model';
import { Trainer } from '../train/trainer';
import { BENCH_OPTIMIZER, randomModel, smolLm2Config } from './model-bench';

const VIRTUAL_TOKENS = 20;
const RANK = 16;

export interface MethodStepBench {
  method: PeftMethod;
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
}

/** The method's fresh adapter on the GPU, as a new run would start it. */
async function adapterFor(gpu: Gpu, model: GpuModel, method: PeftMethod): Promise<GpuLora> {
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
  const config = { ...shape, ...common, prefix_projection: false, encoder_hidden_size: shape.token_dim };
  return otherOnGpu(gpu, model.linears, {
    method,
    config,
    table: standardNormal(VIRTUAL_TOKENS * virtualWidth('prefix', shape), 1),
  });
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
  const methods: PeftMethod[] = ['lora', 'dora', 'ia3', 'prompt-tuning', 'prefix-tuning'];
  const runs: { method: PeftMethod; lora: GpuLora; trainer: Trainer; ms: number }[] = [];
  try {
    for (const method of methods) {
      const lora = await adapterFor(gpu, model, method);
      const virtual = method === 'prompt-tuning' || method === 'prefix-tuning' ? VIRTUAL_TOKENS : 0;
      const trainer = new Trainer(gpu, model, lora, BENCH_OPTIMIZER, {
        maxTokens: B * (S + virtual),
        lossEvery: 1000,
        checkpointActivations: false,
      });
      runs.push({ method, lora, trainer, ms: 0 });
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
    for (const r of runs) await r.trainer.trainStep(micro, true);
    for (let i = 0; i < rounds; i++) {
      // each round starts with another method, so no method always follows the same one
      for (const r of [...runs.slice(i % runs.length), ...runs.slice(0, i % runs.length)]) {
        const t = performance.now();
        await r.trainer.trainStep(micro, true);
        r.ms += performance.now() - t;
      }
    }
    const loraMs = runs[0]!.ms / rounds;
    const res: MethodsBench = {
      model: `SmolLM2-135M-shaped layers, ${o.layers} layers, vocabulary ${vocab}, random bf16 weights`,
      batch: B,
      seq: S,
      rounds,
      methods: runs.map((r) => ({
        method: r.method,
        trainable_params: r.lora.parameterCount,
        ms_per_step: r.ms / rounds,
        ratio_to_lora: r.ms / rounds / loraMs,
      })),
    };
    o.log?.(
      `methods, one train step each (${res.model}, B=${B} S=${S}; LoRA/DoRA r=${RANK} all-linear, (IA)³ PEFT's defaults, ` +
        `prompt/prefix ${VIRTUAL_TOKENS} virtual tokens; ${rounds} round-robin rounds):`,
    );
    for (const m of res.methods) {
      o.log?.(
        `  ${m.method.padEnd(13)} ${m.ms_per_step.toFixed(0).padStart(6)} ms/step  ${m.ratio_to_lora.toFixed(2)}x LoRA  ` +
          `(${m.trainable_params} trainable parameters)`,
      );
    }
    return res;
  } finally {
    for (const r of runs) {
      r.trainer.dispose();
      r.lora.dispose();
    }
    model.dispose();
  }
}
