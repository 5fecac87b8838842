/**
 * `bench profile`: where the GPU time of one training step and of decoded tokens goes, kernel by
 * kernel (src/gpu/profiler.ts: every dispatch in its own compute pass between two timestamps),
 * grouped by kernel family. The model is the training-step benchmark's (prepareTrainingStep in
 * model-bench.ts: SmolLM2-135M's shape or a config.json's, random weights, LoRA r=16 on every
 * linear layer, AdamW); the step is profiled after warm-up steps (every pipeline compiled, the
 * matmul kernels tuned unless told not to), the tokens are greedy decode steps with the same
 * adapter after a 16-token prompt, each a one-token forward with the LM head and the pick.
 *
 * Times are the GPU's, one dispatch at a time (no overlap between dispatches), so their sum is a
 * little more than an unprofiled step's GPU time; what matters is the shares. The matmuls declare
 * their FLOPs (recordMatmul), so the matmul family and its members also get GFLOP/s.
 */
import type { Gpu } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import { type KernelTime, Profiler } from '../gpu/profiler';
import { Generator } from '../generate/generator';
import { tuneMatmul } from '../kernels/matmul/tune';
import { type StepShape, prepareTrainingStep } from './model-bench';

/** Kernel families by pipeline label (the labels' prefixes; src/kernels), first match wins. */
const FAMILIES: [string, RegExp][] = [
  ['matmul', /^(matmul|splitk_reduce)/],
  ['attention', /^attn_/],
  ['norm', /^(rms|ln)_/],
  ['rope', /^rope_/],
  ['activation', /^(act|gated)_/],
  ['cross-entropy / LM head', /^(ce_|logit_transform|argmax)/],
  ['embedding', /^embed_/],
  ['element-wise', /^(ew_|dropout_apply)/],
  ['optimizer', /^(adamw|sgd|sumsq_)/],
  ['nf4 dequant', /^nf4_/],
  ['DoRA', /^dora_/],
  ['IA3', /^ia3_/],
  ['mixture of experts', /^moe_/],
  ['finite check', /^finite_/],
];

export function kernelFamily(label: string): string {
  return FAMILIES.find(([, re]) => re.test(label))?.[0] ?? 'other';
}

export interface ProfileRow {
  /** The family, or the kernel's pipeline label. */
  name: string;
  ms: number;
  /** Percent of the section's kernel time. */
  percent: number;
  count: number;
  /** From the FLOPs the dispatches declare (the matmuls); null where none do. */
  gflops: number | null;
}

export interface ProfileSection {
  /** Sum of every dispatch's GPU time. */
  gpu_ms: number;
  /** Wall time of the profiled work, profiling included (one pass per dispatch slows it). */
  wall_ms: number;
  /** Dispatches the recorders submitted (gpu.counters), against which `families` is counted. */
  dispatches: number;
  submits: number;
  /** Largest first; each with its kernels, largest first. */
  families: (ProfileRow & { kernels: ProfileRow[] })[];
}

export interface ProfileBench {
  model: string;
  batch: number;
  seq: number;
  r: number;
  tuned: boolean;
  train_step: ProfileSection;
  decode: ProfileSection & { tokens: number; prompt_tokens: number; gpu_ms_per_token: number };
}

function row(name: string, times: KernelTime[], total: number): ProfileRow {
  const ms = times.reduce((a, t) => a + t.ms, 0);
  const flops = times.reduce((a, t) => a + t.flops, 0);
  return {
    name,
    ms,
    percent: total > 0 ? (100 * ms) / total : 0,
    count: times.reduce((a, t) => a + t.count, 0),
    gflops: flops > 0 && ms > 0 ? flops / ms / 1e6 : null,
  };
}

/** Per-kernel times grouped by family, largest first. */
export function groupByFamily(times: KernelTime[]): ProfileSection['families'] {
  const total = times.reduce((a, t) => a + t.ms, 0);
  const byFamily = new Map<string, KernelTime[]>();
  for (const t of times) {
    const f = kernelFamily(t.label);
    byFamily.set(f, [...(byFamily.get(f) ?? []), t]);
  }
  return [...byFamily]
    .map(([family, ts]) => ({
      ...row(family, ts, total),
      kernels: ts.map((t) => row(t.label, [t], total)).sort((a, b) => b.ms - a.ms),
    }))
    .sort((a, b) => b.ms - a.ms);
}

/** The section as a table: families, and under each the kernels of the matmul family and of any family of several. */
export function profileTable(title: string, s: ProfileSection): string[] {
  const line = (indent: string, r: ProfileRow) =>
    `${indent}${r.name.padEnd(46 - indent.length)} ${r.ms.toFixed(3).padStart(10)} ` +
    `${`${r.percent.toFixed(1)}%`.padStart(7)} ${String(r.count).padStart(6)}` +
    (r.gflops === null ? '' : ` ${(r.gflops >= 100 ? r.gflops.toFixed(0) : r.gflops.toPrecision(3)).padStart(9)}`);
  const out = [
    `${title}: ${s.gpu_ms.toFixed(2)} ms of kernel time in ${s.dispatches} dispatches, ` +
      `${s.submits} submit${s.submits === 1 ? '' : 's'} ` +
      `(${s.wall_ms.toFixed(0)} ms wall, profiled)`,
    `  ${'family / kernel'.padEnd(44)} ${'ms'.padStart(10)} ${'%'.padStart(7)} ${'count'.padStart(6)} ${'GFLOP/s'.padStart(9)}`,
  ];
  for (const f of s.families) {
    out.push(line('  ', f));
    if (f.kernels.length > 1 || f.name === 'matmul') for (const k of f.kernels) out.push(line('    ', k));
  }
  return out;
}

/** Profiles `work` (everything it submits until the GPU is idle) into a section. */
async function profiled(gpu: Gpu, work: () => Promise<unknown>): Promise<ProfileSection> {
  await gpu.sync();
  const profiler = new Profiler(gpu.device);
  const c0 = { ...gpu.counters };
  const t0 = performance.now();
  gpu.profiler = profiler;
  try {
    await work();
    await gpu.sync();
  } finally {
    gpu.profiler = null;
  }
  const wall = performance.now() - t0;
  const times = await profiler.report();
  return {
    gpu_ms: times.reduce((a, t) => a + t.ms, 0),
    wall_ms: wall,
    dispatches: gpu.counters.dispatches - c0.dispatches,
    submits: gpu.counters.submits - c0.submits,
    families: groupByFamily(times),
  };
}

/** Throws (a clear message, for a non-zero exit) where the device cannot time kernels. */
export function requireTimestamps(gpu: Gpu): void {
  if (gpu.features.timestampQuery) return;
  const i = gpu.info;
  throw new GpuError(
    `bench profile times every kernel with GPU timestamp queries, and this adapter ` +
      `(${[i.vendor, i.architecture, i.description].filter(Boolean).join(' / ') || 'unnamed'}) does not offer ` +
      `WebGPU's 'timestamp-query' feature. Run it on an adapter that does (most Vulkan, Metal and D3D12 ` +
      `GPUs through Dawn, and Mesa's lavapipe), or use \`bench\`'s wall-clock timings instead.`,
  );
}

const PROMPT_TOKENS = 16;

export async function benchProfile(
  gpu: Gpu,
  o: StepShape & { tokens: number; tune: boolean; log?: (l: string) => void },
): Promise<ProfileBench> {
  requireTimestamps(gpu);
  const step = await prepareTrainingStep(gpu, o);
  const { trainer, micro, config } = step;
  const gen = new Generator(gpu, step.model, { maxContext: PROMPT_TOKENS + o.tokens + 8 });
  try {
    const prompt = Array.from({ length: PROMPT_TOKENS }, (_, i) => (i * 31 + 5) % config.vocabSize);
    const warmUp = async () => {
      await trainer.trainStep(micro, false);
      // Leaves the prompt and one reply token in the KV cache: the profiled call re-feeds only
      // the prompt's last token, so each of its submits is one decode step.
      await gen.generate(prompt, step.lora, { maxNewTokens: 2 });
    };
    await warmUp();
    if (o.tune) {
      // The shapes both met, tuned as the engine does between uses, then compiled.
      await tuneMatmul(gpu);
      await warmUp();
    }
    const train = await profiled(gpu, () => trainer.trainStep(micro, false));
    let made = 0;
    const decode = await profiled(gpu, async () => {
      made = (await gen.generate(prompt, step.lora, { maxNewTokens: o.tokens })).ids.length;
    });
    if (made !== o.tokens) throw new GpuError(`bench profile: decoded ${made} tokens, not ${o.tokens}.`);
    const res: ProfileBench = {
      model: step.describe,
      batch: step.B,
      seq: step.S,
      r: step.r,
      tuned: o.tune,
      train_step: train,
      decode: {
        ...decode,
        tokens: o.tokens,
        prompt_tokens: PROMPT_TOKENS,
        gpu_ms_per_token: decode.gpu_ms / o.tokens,
      },
    };
    const what = `B=${step.B} S=${step.S}, LoRA r=${step.r} all-linear${o.checkpoint ? ', activation checkpointing' : ''}`;
    for (const l of profileTable(`training step (${res.model}, ${what})`, train)) o.log?.(l);
    const tok = `${o.tokens} greedy tokens after a ${PROMPT_TOKENS}-token prompt, LoRA r=${step.r}`;
    for (const l of profileTable(`decode (${tok}; ${res.decode.gpu_ms_per_token.toFixed(3)} ms/token)`, decode))
      o.log?.(l);
    return res;
  } finally {
    gen.dispose();
    step.dispose();
  }
}
