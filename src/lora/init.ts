/**
 * LoRA initialisation as PEFT does it, and the seeded random numbers every deterministic part of
 * Tabtune uses (LoRA init, data shuffling, train/validation split).
 *
 * PEFT (`LoraLayer.reset_lora_parameters`):
 * - `init_lora_weights: true`: A [r, in] ~ kaiming_uniform(a = sqrt(5)), which for a weight with
 *   fan_in = in is U(-1/sqrt(in), 1/sqrt(in)); B [out, r] = 0.
 * - `init_lora_weights: 'gaussian'`: A ~ N(0, std = 1/r); B = 0.
 * With B = 0 the adapted model starts exactly equal to the base model.
 */

import type { LoraConfig, ModuleLike } from './config';
import { loraRank } from './config';
import { initUsesWeights, requireInitImplemented } from './methods';

/** A, B of one LoRA module: A [r, inF], B [outF, r], row-major f32. Same shape as GpuLora's arrays. */
export interface LoraModuleWeights {
  path: string;
  r: number;
  inF: number;
  outF: number;
  a: Float32Array; // [r, inF]
  b: Float32Array; // [outF, r]
  /** DoRA's lora_magnitude_vector [outF]; absent for plain LoRA (and for DoRA before it is initialised from W). */
  m?: Float32Array;
}

/** splitmix32 step: a good 32-bit mixer, used to seed and to derive sub-seeds. */
function splitmix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  let z = x;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** FNV-1a hash of a string (UTF-16 code units), as an unsigned 32-bit integer. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Combines a seed with further integers (an epoch, a module index, a hash) into a new 32-bit seed,
 * so independent streams can be derived without consuming a parent generator.
 */
export function deriveSeed(seed: number, ...parts: number[]): number {
  let h = splitmix32(toU32(seed));
  for (const p of parts) h = splitmix32(h ^ toU32(p));
  return h;
}

function toU32(x: number): number {
  if (!Number.isFinite(x)) throw new RangeError(`Seed parts must be finite numbers, got ${x}.`);
  // Keep seeds above 2^32 distinct from their low bits.
  const lo = x >>> 0;
  const hi = Math.floor(Math.abs(x) / 4294967296) >>> 0;
  return hi ? (lo ^ splitmix32(hi)) >>> 0 : lo;
}

/**
 * xoshiro128** generator seeded through splitmix32. Deterministic across platforms (pure 32-bit
 * integer arithmetic); its whole state is four u32 words (`state()` / `Rng.fromState`).
 */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    let x = toU32(seed);
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      return splitmix32(x);
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // the all-zero state is a fixed point
  }

  static fromState(state: readonly number[]): Rng {
    if (state.length !== 4 || state.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffffffff)) {
      throw new RangeError(`An Rng state is four unsigned 32-bit integers, got ${JSON.stringify(state)}.`);
    }
    const rng = new Rng(0);
    [rng.s0, rng.s1, rng.s2, rng.s3] = state as [number, number, number, number];
    return rng;
  }

  /** The generator's state, serialisable as JSON. */
  state(): [number, number, number, number] {
    return [this.s0 >>> 0, this.s1 >>> 0, this.s2 >>> 0, this.s3 >>> 0];
  }

  /** Next unsigned 32-bit integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 bits of resolution. */
  next(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Uniform integer in [0, n), without modulo bias. */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 0x100000000)
      throw new RangeError(`Rng.int(n) needs an integer 1 <= n <= 2^32, got ${n}.`);
    const limit = Math.floor(0x100000000 / n) * n;
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }

  /** Standard normal N(0, 1) (Box-Muller; two uniforms per sample, no cached spare). */
  normal(): number {
    let u = this.next();
    while (u === 0) u = this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** Fisher-Yates shuffle in place; returns the array. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = items[i]!;
      items[i] = items[j]!;
      items[j] = t;
    }
    return items;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** A [r, inF] initialised as PEFT does for `init_lora_weights` (true or 'gaussian'). */
export function initLoraA(r: number, inF: number, init: true | 'gaussian', rng: Rng): Float32Array {
  const a = new Float32Array(r * inF);
  if (init === 'gaussian') {
    const std = 1 / r;
    for (let i = 0; i < a.length; i++) a[i] = std * rng.normal();
  } else {
    const bound = 1 / Math.sqrt(inF);
    for (let i = 0; i < a.length; i++) a[i] = rng.uniform(-bound, bound);
  }
  return a;
}

/**
 * Fresh A/B for every module (already resolved by `resolveTargets`). Each module draws from its own
 * stream derived from `seed` and its path, so a module's initial A does not depend on which other
 * modules are targeted. The rank honours `rank_pattern`. Inits computed from the frozen weights
 * (PiSSA, OLoRA) start at zero here: src/lora/from-weights.ts fills A and B when the run starts.
 */
export function initLoraModules(cfg: LoraConfig, modules: readonly ModuleLike[], seed: number): LoraModuleWeights[] {
  const init = cfg.init_lora_weights ?? true;
  requireInitImplemented(init, 'init_lora_weights');
  const random = init === 'gaussian' ? 'gaussian' : true;
  return modules.map((m) => {
    const r = loraRank(cfg, m.path);
    const rng = new Rng(deriveSeed(seed, hashString(m.path)));
    return {
      path: m.path,
      r,
      inF: m.inF,
      outF: m.outF,
      a: initUsesWeights(init) ? new Float32Array(r * m.inF) : initLoraA(r, m.inF, random, rng),
      b: new Float32Array(m.outF * r),
    };
  });
}
