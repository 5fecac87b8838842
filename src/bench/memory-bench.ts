/**
 * `bench memory`: the peak GPU memory (and step time) of one full training step of any model shape
 * (a config.json, default Qwen2.5-0.5B's), batch 1, LoRA r=16 on every linear layer, AdamW, with
 * activation checkpointing unless told otherwise, with 16-bit or 4-bit NF4 frozen weights. It
 * trains at two small depths and extrapolates to the config's depth: every memory category and the
 * step time are affine in the number of layers (per-layer weights, LoRA, optimizer state, saved
 * inputs; embeddings, LM head and the loss once). On a real GPU `--layers N,N` measures the full
 * depth directly.
 *
 * `allocationsOnly` (`--allocations-only`) runs the step without its compute (Gpu.allocationsOnly:
 * buffers made and counted, no shader compiled or run): the peak is the engine's, value for value
 * (test/bench/memory-bench.test.ts compares the two on a small shape), reached in seconds on a
 * driver where the real step of a billion-parameter shape takes an hour. It cannot time steps.
 */
import type { Gpu } from '../gpu/context';
import { type ModelConfig, parseConfig } from '../model/config';
import type { FrozenWeightsOptions } from '../model/gpu-model';
import { benchTrainingStep, qwen25HalfBConfig } from './model-bench';

export interface MemoryBench {
  model: string;
  seq: number;
  r: number;
  activation_checkpointing: boolean;
  /** The step's buffers were made and counted without running its compute (no step times). */
  allocations_only: boolean;
  /** 'nf4' (with double_quant) or null for 16-bit frozen weights. */
  quantize: 'nf4' | null;
  double_quant: boolean | null;
  /** Measured at two depths (one when both are the same, e.g. the full depth). */
  measured: {
    layers: number;
    peak_bytes: number;
    peak_bytes_by_category: Record<string, number>;
    ms_per_step: number | null;
  }[];
  /** The config's depth and its peak, extrapolated linearly in the depth. */
  full_layers: number;
  full_peak_bytes: number;
  /** full_peak_bytes in MiB. */
  peak_mib: number;
  full_peak_bytes_by_category: Record<string, number>;
  /** Step time at the full depth, extrapolated (null without --steps). */
  full_ms_per_step: number | null;
}

/** A model shape at a given depth: the config file's JSON with its layer count replaced. */
export interface ShapeSource {
  name: string;
  atDepth(layers: number): ModelConfig;
  fullLayers: number;
}

/** Qwen2.5-0.5B's shape, the default. */
export const QWEN_HALF_B: ShapeSource = {
  name: 'Qwen2.5-0.5B',
  atDepth: qwen25HalfBConfig,
  fullLayers: qwen25HalfBConfig(24).numLayers,
};

/** The shape of a config.json (any supported model_type; a bitsandbytes 4-bit one is NF4). */
export function shapeFromConfig(json: Record<string, unknown>, name: string): ShapeSource {
  const full = parseConfig(json, name);
  const layerKey = ['num_hidden_layers', 'n_layer'].find((k) => json[k] !== undefined) ?? 'num_hidden_layers';
  return {
    name: typeof json._name_or_path === 'string' && json._name_or_path ? json._name_or_path : name,
    atDepth: (layers) => parseConfig({ ...json, [layerKey]: layers }, name),
    fullLayers: full.numLayers,
  };
}

export async function benchMemory(
  gpu: Gpu,
  o: {
    seq: number;
    r?: number;
    checkpoint: boolean;
    layers?: [number, number];
    shape?: ShapeSource;
    frozen?: FrozenWeightsOptions;
    /** Time this many steps at each depth (0: memory only). */
    steps?: number;
    /** Make and count the step's buffers without running its compute (steps must be 0). */
    allocationsOnly?: boolean;
    log?: (l: string) => void;
  },
): Promise<MemoryBench> {
  const allocationsOnly = o.allocationsOnly ?? false;
  if (allocationsOnly && (o.steps ?? 0) > 0)
    throw new Error('bench memory: --allocations-only runs no compute, so it cannot time steps; drop --steps.');
  const r = o.r ?? 16;
  const shape = o.shape ?? QWEN_HALF_B;
  // Without compute the full depth costs only its upload, so it is measured, not extrapolated.
  const [l1, l2] = o.layers ?? (o.allocationsOnly ? [shape.fullLayers, shape.fullLayers] : [1, 2]);
  const stored = shape.atDepth(l1).quantization;
  // A bitsandbytes 4-bit config is measured in 4 bits (its own double-quant setting).
  const frozen: FrozenWeightsOptions = stored
    ? { quantize: 'nf4', doubleQuant: stored.doubleQuant }
    : (o.frozen ?? { quantize: null });
  const steps = o.steps ?? 0;
  const measured: MemoryBench['measured'] = [];
  if (l1 === l2 && l1 !== shape.fullLayers) {
    throw new Error(
      `bench memory: --layers ${l1},${l2} measures one depth, which is not ${shape.name}'s ${shape.fullLayers}: ` +
        `give two different depths to extrapolate, or ${shape.fullLayers},${shape.fullLayers}.`,
    );
  }
  for (const layers of l1 === l2 ? [l1] : [l1, l2]) {
    gpu.resetPeak();
    const was = gpu.allocationsOnly;
    gpu.allocationsOnly = allocationsOnly;
    let b: Awaited<ReturnType<typeof benchTrainingStep>>;
    try {
      b = await benchTrainingStep(gpu, {
        seq: o.seq,
        layers,
        r,
        checkpoint: o.checkpoint,
        config: { config: shape.atDepth(layers), name: shape.name },
        frozen,
        steps,
        log: o.log,
      });
    } finally {
      gpu.allocationsOnly = was;
    }
    measured.push({
      layers,
      peak_bytes: b.peak_bytes,
      peak_bytes_by_category: b.peak_bytes_by_category,
      ms_per_step: steps > 0 ? b.ms_per_step : null,
    });
  }
  const full = shape.fullLayers;
  const extrapolate = (a: number, b: number) => (l2 === l1 ? b : a + ((b - a) * (full - l1)) / (l2 - l1));
  const [m1, m2] = [measured[0]!, measured.at(-1)!];
  const cats = Object.keys(m1.peak_bytes_by_category);
  const byCat: Record<string, number> = {};
  for (const c of cats)
    byCat[c] = Math.round(extrapolate(m1.peak_bytes_by_category[c]!, m2.peak_bytes_by_category[c]!));
  const peak = Math.round(extrapolate(m1.peak_bytes, m2.peak_bytes));
  const nf4 = frozen.quantize === 'nf4';
  const res: MemoryBench = {
    model: `${shape.name}-shaped, random bf16 weights${nf4 ? ' in 4-bit NF4' : ''}`,
    seq: o.seq,
    r,
    activation_checkpointing: o.checkpoint,
    allocations_only: allocationsOnly,
    quantize: nf4 ? 'nf4' : null,
    double_quant: nf4 ? (frozen.doubleQuant ?? true) : null,
    measured,
    full_layers: full,
    full_peak_bytes: peak,
    peak_mib: Math.round((peak / 2 ** 20) * 10) / 10,
    full_peak_bytes_by_category: byCat,
    full_ms_per_step: steps > 0 ? extrapolate(m1.ms_per_step!, m2.ms_per_step!) : null,
  };
  const mb = (x: number) => `${(x / 2 ** 20).toFixed(0)} MiB`;
  o.log?.(
    `memory (${res.model}, B=1 S=${o.seq}, LoRA r=${r} all-linear${o.checkpoint ? ', activation checkpointing' : ''}` +
      `${allocationsOnly ? ', allocations only' : ''}): ` +
      `measured ${measured.map((m) => `${mb(m.peak_bytes)} at ${m.layers} layer${m.layers > 1 ? 's' : ''}`).join(', ')}; ` +
      `at ${full} layers ${mb(res.full_peak_bytes)} = ${cats.map((c) => `${c} ${mb(byCat[c]!)}`).join(' + ')}` +
      (res.full_ms_per_step !== null ? `; step ${(res.full_ms_per_step / 1000).toFixed(1)} s (extrapolated)` : ''),
  );
  return res;
}
