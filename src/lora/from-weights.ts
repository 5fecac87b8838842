/**
 * Adapter pieces computed from the frozen weights, as PEFT 0.21 computes them:
 *
 * - DoRA (LoraConfig.use_dora): ||W_o||² per output row, the constant part of the weight norm the
 *   kernels rebuild every forward (src/kernels/dora.ts), and a fresh adapter's magnitude
 *   m_o = ||W_o + s·(B·A)_o|| (DoraLinearLayer.update_layer).
 * - PiSSA / OLoRA (init_lora_weights 'pissa', 'pissa_niter_N', 'olora'; LoraLayer.pissa_init,
 *   olora_init): A0, B0 from the top-r singular triplets (B0 = U_r·√(S_r/s), A0 = √(S_r/s)·V_rᵀ) or
 *   the first r columns of a QR (B0 = Q_r, A0 = R_r) of W [out, in] (Conv1D weights transposed for
 *   PiSSA as PEFT does), and the frozen weight replaced by W - s·B0·A0 for the run. The run ends by
 *   restoring W; the adapter is saved the way PEFT's save_pretrained(path_initial_model_for_weight_
 *   conversion=...) converts it, to apply to the untouched W: A' = [A; A0], B' = [B, -B0], r and
 *   lora_alpha doubled (alpha·√2 with rsLoRA), init_lora_weights true (peftConversion below).
 * - LoftQ (init_lora_weights 'loftq', loftq_config; LoraLayer.loftq_init): A, B and the quantized
 *   base Q from src/lora/loftq.ts; the frozen weight becomes Q (in its dtype) for the run. Unlike
 *   PiSSA no conversion exists: the adapter is saved as trained and only makes sense on Q, which
 *   the run hands back (quantizedBase) to be saved as a model folder beside it (PEFT's LoftQ
 *   workflow, examples/loftq_finetuning: adapter and quantized backbone saved together).
 *
 * Each targeted weight is read back from the GPU as it is held (f32, f16, bf16; 4-bit NF4
 * dequantized on the GPU for DoRA), and summed or decomposed in float64 (src/numerics/lowrank.ts).
 */
import type { Gpu } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { packHalf } from '../gpu/half';
import type { FrozenLinear } from '../kernels/linear';
import type { LinearModule } from '../model/registry';
import { recordDequantizeNf4 } from '../kernels/nf4';
import { householderQrTop } from '../numerics/lowrank';
import { LOFTQ_DEFAULTS, type LoraConfig, LoraConfigError, loraScale, loraScaleInfo } from './config';
import { GpuLora } from './gpu-lora';
import { type LoraModuleWeights, deriveSeed, hashString } from './init';
import { balancedFactors, loftqInit } from './loftq';
import {
  type LoftqBackbone,
  type LoftqBackboneModule,
  backboneWeight,
  packForDtype,
  weightFingerprint,
} from './loftq-backbone';

/** The frozen weight as f32 [outF, inF] or, when transposed, [inF, outF] (as stored). */
async function readWeight(gpu: Gpu, lin: FrozenLinear): Promise<Float32Array> {
  const w = lin.w;
  if (!('format' in w)) return gpu.read(w);
  const tmp = gpu.tensor(`${w.label}.dequantized`, [w.rows, w.cols], 'f32', 'scratch');
  try {
    const rec = gpu.recorder('dora-weight');
    recordDequantizeNf4(gpu, rec, w, tmp);
    rec.submit();
    return await gpu.read(tmp);
  } finally {
    gpu.free(tmp);
  }
}

/** W [outF, inF] in float64 whatever the storage layout. */
function rowMajor(w: ArrayLike<number>, lin: Pick<FrozenLinear, 'inF' | 'outF' | 'transposed'>): Float64Array {
  if (!lin.transposed) return Float64Array.from(w);
  const out = new Float64Array(lin.outF * lin.inF);
  for (let i = 0; i < lin.inF; i++) for (let o = 0; o < lin.outF; o++) out[o * lin.inF + i] = w[i * lin.outF + o]!;
  return out;
}

/** ||W_o||² and ||W_o + scale·(B·A)_o|| for every output row o (float64 sums, stored f32). */
export async function doraWeightStats(
  gpu: Gpu,
  lin: FrozenLinear,
  mod: Pick<LoraModuleWeights, 'a' | 'b' | 'r'>,
  scale: number,
): Promise<{ wn2: Float32Array; norm: Float32Array }> {
  const { inF, outF } = lin;
  const w = rowMajor(await readWeight(gpu, lin), lin);
  const wn2 = new Float32Array(outF);
  const norm = new Float32Array(outF);
  for (let o = 0; o < outF; o++) {
    let plain = 0;
    let adapted = 0;
    for (let i = 0; i < inF; i++) {
      let ba = 0;
      for (let j = 0; j < mod.r; j++) ba += mod.b[o * mod.r + j]! * mod.a[j * inF + i]!;
      const v = w[o * inF + i]!;
      plain += v * v;
      adapted += (v + scale * ba) ** 2;
    }
    wn2[o] = plain;
    norm[o] = Math.sqrt(adapted);
  }
  return { wn2, norm };
}

/**
 * DoRA's ||W||² of every module, and each module's magnitude: kept when it has one (an imported
 * or checkpointed adapter), else PEFT's initial ||W + s·B·A||. Returns the modules with `m` set.
 */
export async function prepareDora(
  gpu: Gpu,
  frozen: (path: string) => FrozenLinear,
  cfg: LoraConfig,
  modules: LoraModuleWeights[],
): Promise<{ modules: LoraModuleWeights[]; weightNormsSq: Map<string, Float32Array> }> {
  const weightNormsSq = new Map<string, Float32Array>();
  const out: LoraModuleWeights[] = [];
  for (const m of modules) {
    const { wn2, norm } = await doraWeightStats(gpu, frozen(m.path), m, loraScale(cfg, m));
    weightNormsSq.set(m.path, wn2);
    out.push({ ...m, m: m.m ?? norm });
  }
  return { modules: out, weightNormsSq };
}

/** What GpuLora needs of the model: its linear modules and their frozen weights. */
interface ModelWeights {
  linears: LinearModule[];
  frozen(m: LinearModule): FrozenLinear;
}

/** The frozen weight of module `path`. */
function frozenOf(model: ModelWeights): (path: string) => FrozenLinear {
  const byPath = new Map(model.linears.map((m) => [m.path, m]));
  return (path) => {
    const m = byPath.get(path);
    if (!m) throw new LoraConfigError(`Module "${path}" does not exist in this model.`);
    return model.frozen(m);
  };
}

/** An adapter onto the GPU: with DoRA, its ||W||² read from the model and a fresh magnitude initialised as PEFT does. */
export async function gpuAdapter(
  gpu: Gpu,
  model: ModelWeights,
  cfg: LoraConfig,
  modules: LoraModuleWeights[],
): Promise<GpuLora> {
  let norms: Map<string, Float32Array> | undefined;
  if (cfg.use_dora) ({ modules, weightNormsSq: norms } = await prepareDora(gpu, frozenOf(model), cfg, modules));
  return GpuLora.fromArrays(gpu, model.linears, modules, (mod) => loraScaleInfo(cfg, mod), norms);
}

/** A0, B0 of one module for a PiSSA / OLoRA init of W [outF, inF] (float64). */
export function weightInit(
  init: string,
  w: Float64Array,
  outF: number,
  inF: number,
  r: number,
  scale: number,
  seed: number,
): { a: Float64Array; b: Float64Array } {
  if (init === 'olora') {
    const { q, rTop } = householderQrTop(w, outF, inF, r);
    return { a: rTop, b: q };
  }
  const niter = /^pissa_niter_(\d+)$/.exec(init);
  const { a, b } = balancedFactors(
    w,
    outF,
    inF,
    r,
    niter ? { exact: false, niter: Number(niter[1]), seed } : { exact: true },
  );
  // B0 = U·√(S/s), A0 = √(S/s)·Vᵀ: the balanced factors over √s
  const k = 1 / Math.sqrt(scale);
  for (let i = 0; i < a.length; i++) a[i] = a[i]! * k;
  for (let i = 0; i < b.length; i++) b[i] = b[i]! * k;
  return { a, b };
}

/** W - s·B0·A0 in the weight's stored layout (float64). */
function residual(
  wf: Float64Array,
  a: Float64Array,
  b: Float64Array,
  lin: Pick<FrozenLinear, 'inF' | 'outF' | 'transposed'>,
  r: number,
  scale: number,
): Float64Array {
  const res = new Float64Array(lin.outF * lin.inF);
  for (let o = 0; o < lin.outF; o++) {
    for (let i = 0; i < lin.inF; i++) {
      let ba = 0;
      for (let j = 0; j < r; j++) ba += b[o * r + j]! * a[j * lin.inF + i]!;
      res[lin.transposed ? i * lin.outF + o : o * lin.inF + i] = wf[o * lin.inF + i]! - scale * ba;
    }
  }
  return res;
}

/** What a PiSSA / OLoRA / LoftQ run changes: the initial A0, B0 per module, and the base weights. */
export interface MutatedBase {
  initial: Map<string, { a: Float32Array; b: Float32Array }>;
  /**
   * LoftQ: the quantized base weight Q of each module (float32, [out, in]), which the adapter needs
   * for good: it is saved beside the adapter (PEFT's LoftQ workflow). Empty for PiSSA / OLoRA.
   */
  quantizedBase: Map<string, Float32Array>;
  /** LoftQ: what rebuilds each Q exactly from the original weight (src/lora/loftq-backbone.ts). */
  backbone: LoftqBackboneModule[];
  /** Replaces each targeted frozen weight by W - s·B0·A0 (LoftQ: by Q), in its own dtype. */
  apply(): void;
  /** Writes every replaced weight back as it was (bit for bit). */
  restore(): void;
}

/**
 * PiSSA / OLoRA: computes A0, B0 of every module from its frozen weight and, unless `keep` (a
 * resumed run: the checkpoint holds the trained A, B), sets them as its A and B. The frozen
 * weights change only when `apply()` is called (see the file comment).
 */
export async function prepareWeightInit(
  gpu: Gpu,
  model: ModelWeights,
  cfg: LoraConfig,
  modules: LoraModuleWeights[],
  seed: number,
  keep: boolean,
): Promise<MutatedBase> {
  const init = String(cfg.init_lora_weights);
  const loftq = init === 'loftq';
  if (cfg.use_dora) {
    throw new LoraConfigError(
      `init_lora_weights ${JSON.stringify(init)} with DoRA: PEFT's conversion to a LoRA on the untouched base ` +
        '(path_initial_model_for_weight_conversion) does not carry a DoRA magnitude; use one or the other.',
    );
  }
  const frozen = frozenOf(model);
  const pending: { t: Tensor; original: ArrayBuffer; residual: Float32Array | Uint16Array }[] = [];
  const initial = new Map<string, { a: Float32Array; b: Float32Array }>();
  const quantizedBase = new Map<string, Float32Array>();
  const backbone: LoftqBackboneModule[] = [];
  for (const m of modules) {
    const lin = frozen(m.path);
    const w = lin.w;
    if ('format' in w) {
      throw new LoraConfigError(
        loftq
          ? 'init_lora_weights "loftq" quantizes the full-precision weights itself (PEFT: "you should not pass a quantized model"); ' +
              'load the model without --quantize nf4. Its quantized backbone is saved beside the adapter, and that one loads with --quantize nf4.'
          : `init_lora_weights ${JSON.stringify(init)} needs the frozen weights in 16 or 32 bits (PEFT refuses it on quantized weights too); load the model without --quantize nf4.`,
      );
    }
    if (loftq && lin.transposed) {
      throw new LoraConfigError(
        `init_lora_weights "loftq" on "${m.path}": PEFT's LoftQ decomposes the weight as stored and does not support Conv1D ([in, out]) layers.`,
      );
    }
    if (init === 'olora' && lin.transposed) {
      throw new LoraConfigError(
        `init_lora_weights "olora" on "${m.path}": PEFT's OLoRA decomposes the weight as stored and does not support Conv1D ([in, out]) layers; use "pissa".`,
      );
    }
    if (m.r > Math.min(lin.inF, lin.outF)) {
      throw new LoraConfigError(
        `init_lora_weights ${JSON.stringify(init)} on "${m.path}": r = ${m.r} is above min(in_features, out_features) = ${Math.min(lin.inF, lin.outF)}; lower r.`,
      );
    }
    const scale = loraScale(cfg, m);
    const wf = rowMajor(await gpu.read(w), lin);
    let a: Float64Array;
    let b: Float64Array;
    let res: ArrayLike<number>;
    if (loftq) {
      const iters = (cfg.loftq_config ?? LOFTQ_DEFAULTS).loftq_iter;
      const w32 = Float32Array.from(wf);
      const init = loftqInit(w32, lin.outF, lin.inF, m.r, iters);
      ({ a, b } = init);
      quantizedBase.set(m.path, init.q);
      backbone.push({
        path: m.path,
        key: model.linears.find((l) => l.path === m.path)!.weightKey,
        outF: lin.outF,
        inF: lin.inF,
        r: m.r,
        dtype: w.dtype as LoftqBackboneModule['dtype'],
        fingerprint: weightFingerprint(w32),
        prev: init.prev,
      });
      res = init.q;
    } else {
      ({ a, b } = weightInit(init, wf, lin.outF, lin.inF, m.r, scale, deriveSeed(seed, hashString(m.path))));
      res = residual(wf, a, b, lin, m.r, scale);
    }
    pending.push({
      t: w,
      original: await gpu.readBytes(w.buffer),
      residual: w.dtype === 'f32' ? Float32Array.from(res) : packHalf(res, w.dtype as 'f16' | 'bf16'),
    });
    const a32 = Float32Array.from(a);
    const b32 = Float32Array.from(b);
    initial.set(m.path, { a: a32, b: b32 });
    if (!keep) {
      m.a = a32.slice();
      m.b = b32.slice();
    }
  }
  return { initial, quantizedBase, backbone, ...replaceable(gpu, pending) };
}

/** apply() writes each tensor's replacement, restore() its original bytes back. */
function replaceable(
  gpu: Gpu,
  pending: { t: Tensor; original: ArrayBuffer; residual: Float32Array | Uint16Array }[],
): { apply(): void; restore(): void } {
  let applied = false;
  return {
    apply() {
      for (const p of pending) gpu.write(p.t, p.residual);
      applied = true;
    },
    restore() {
      if (!applied) return;
      for (const p of pending) gpu.write(p.t, new Uint8Array(p.original));
      applied = false;
    },
  };
}

/**
 * The adapter as PEFT's save_pretrained(path_initial_model_for_weight_conversion=...) saves a
 * PiSSA / OLoRA adapter: A' = [A; A0] [2r, in], B' = [B, -B0] [out, 2r], and the config with r,
 * lora_alpha (·√2 with rsLoRA), rank_pattern and alpha_pattern doubled, init_lora_weights true.
 */
export function peftConversion<M extends LoraModuleWeights>(
  cfg: LoraConfig,
  modules: M[],
  initial: ReadonlyMap<string, { a: Float32Array; b: Float32Array }>,
): { config: LoraConfig; modules: M[] } {
  const double = (p: Record<string, number> | undefined) =>
    p ? Object.fromEntries(Object.entries(p).map(([k, v]) => [k, 2 * v])) : p;
  const config: LoraConfig = {
    ...cfg,
    init_lora_weights: true,
    r: 2 * cfg.r,
    lora_alpha: cfg.use_rslora ? cfg.lora_alpha * Math.SQRT2 : 2 * cfg.lora_alpha,
    rank_pattern: double(cfg.rank_pattern),
    alpha_pattern: double(cfg.alpha_pattern),
  };
  const out = modules.map((m) => {
    const i0 = initial.get(m.path);
    if (!i0) throw new LoraConfigError(`Module "${m.path}" has no initial A0/B0 to convert against.`);
    const a = new Float32Array(2 * m.r * m.inF);
    a.set(m.a);
    a.set(i0.a, m.r * m.inF);
    const b = new Float32Array(m.outF * 2 * m.r);
    for (let o = 0; o < m.outF; o++) {
      for (let j = 0; j < m.r; j++) {
        b[o * 2 * m.r + j] = m.b[o * m.r + j]!;
        b[o * 2 * m.r + m.r + j] = -i0.b[o * m.r + j]!;
      }
    }
    return { ...m, r: 2 * m.r, a, b };
  });
  return { config, modules: out };
}

/**
 * A LoftQ adapter's backbone on the loaded model: each module's Q rebuilt from the frozen weight the
 * GPU holds (src/lora/loftq-backbone.ts checks it is the original W); apply() puts Q in place,
 * restore() the original bytes. The model must be loaded in 16 or 32 bits, as for LoftQ training.
 */
export async function loftqBackboneOnGpu(
  gpu: Gpu,
  model: ModelWeights,
  spec: LoftqBackbone,
): Promise<{ apply(): void; restore(): void }> {
  const frozen = frozenOf(model);
  const pending: { t: Tensor; original: ArrayBuffer; residual: Float32Array | Uint16Array }[] = [];
  for (const m of spec.modules) {
    const lin = frozen(m.path);
    const w = lin.w;
    if ('format' in w || lin.transposed) {
      throw new LoraConfigError(
        `A LoftQ adapter's backbone is rebuilt from the original 16-bit weights ("${m.path}" is ${'format' in w ? '4-bit' : 'a Conv1D weight'}): ` +
          'load the model with 16-bit frozen weights to use this adapter.',
      );
    }
    if (w.dtype !== m.dtype) {
      throw new LoraConfigError(
        `"${m.path}" is held as ${w.dtype}, but the LoftQ adapter's backbone was made from ${m.dtype} weights: load the model in ${m.dtype}.`,
      );
    }
    const original = await gpu.readBytes(w.buffer);
    const q = backboneWeight(m, await gpu.read(w), `the loaded model's "${m.path}"`);
    pending.push({ t: w, original, residual: packForDtype(q, m.dtype) });
  }
  return replaceable(gpu, pending);
}
