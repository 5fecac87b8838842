/**
 * Rotary position embedding (rotate-half convention, or GPT-J's interleaved pairs) on a [rows, heads, headDim] f32 tensor, in
 * place or into `out`, with per-token positions from a u32 buffer (padded batches, KV-cache
 * offsets). See shaders/rope.wgsl. The backward pass is the same call with `inverse: true` on the
 * gradient (rotation by -angle).
 *
 * inv_freq is computed on the CPU in float32 exactly like transformers (src/numerics/rope.ts
 * ropeInvFreq) and passed in the uniform block, so the GPU's angle f32(pos)·inv_freq[i] is the same
 * f32 number transformers feeds to cos / sin. Scaled variants (linear, llama3) can be passed as
 * `invFreq`, with `attentionScaling` for types that scale cos / sin.
 *
 * cos / sin are evaluated in the shader with a quadrant reduction and polynomials (WGSL's builtins
 * may be as coarse as 2^-11, as on SwiftShader): about 2e-7 absolute for angles up to ~4e5, i.e.
 * positions below ~400k.
 */
import code from '../../shaders/rope.wgsl?raw';
import { type Gpu, type Recorder } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { type RopeParams, ropeInvFreq } from '../numerics/rope';
import { flatGrid, needDims, needElems, noAlias, variantPipeline } from './common';

/** Largest rotaryDim the uniform block holds (256 frequencies). */
export const ROPE_MAX_ROTARY_DIM = 512;

export interface RopeArgs extends RopeParams {
  /** f32 [rows, heads, headDim]; rotated in place unless `out` is given. */
  x: Tensor;
  /** f32 [rows, heads, headDim]; must not share x's buffer. Pass-through dims are copied. */
  out?: Tensor;
  /** u32 [rows]: the position of each token. */
  positions: Tensor;
}

const HEADER_WORDS = 12;

// Default frequencies per (rotaryDim, theta): they never change within a model.
const freqCache = new Map<string, Float32Array>();

function frequencies(rot: number, theta: number, inv?: ArrayLike<number>): Float32Array {
  if (inv) {
    if (inv.length !== rot / 2)
      throw new GpuError(`recordRope: invFreq has ${inv.length} values; rotaryDim ${rot} needs ${rot / 2}.`);
    return Float32Array.from(inv);
  }
  const key = `${rot}:${theta}`;
  let f = freqCache.get(key);
  if (!f) {
    f = ropeInvFreq(rot, theta);
    freqCache.set(key, f);
  }
  return f;
}

/** Records x (or out) = RoPE(x) at the given positions; `inverse` for the backward pass. */
export function recordRope(gpu: Gpu, rec: Recorder, args: RopeArgs): void {
  const what = 'recordRope';
  const rot = args.rotaryDim ?? args.headDim;
  needDims(what, { rows: args.rows, heads: args.heads, headDim: args.headDim, rotaryDim: rot });
  if (rot % 2 !== 0 || rot > args.headDim || rot > ROPE_MAX_ROTARY_DIM) {
    throw new GpuError(
      `${what}: rotaryDim ${rot} must be even, <= headDim ${args.headDim} and <= ${ROPE_MAX_ROTARY_DIM}.`,
    );
  }
  const n = args.rows * args.heads * args.headDim;
  needElems(what, 'x', args.x, n, ['f32']);
  needElems(what, 'positions', args.positions, args.rows, ['u32', 'i32']);
  const outOfPlace = args.out !== undefined && args.out.buffer !== args.x.buffer;
  if (outOfPlace) {
    needElems(what, 'out', args.out!, n, ['f32']);
    noAlias(what, args.out!, { positions: args.positions });
  } else {
    noAlias(what, args.x, { positions: args.positions });
  }
  const half = rot / 2;
  const perRow = outOfPlace ? half + args.headDim - rot : half;
  const items = args.rows * args.heads * perRow;
  if (items === 0) {
    // Nothing rotates; an out-of-place call still has to copy x.
    if (outOfPlace && n > 0) rec.copy(args.x, args.out!, n * 4);
    return;
  }
  const [gx, gy, stride] = flatGrid(gpu, items);
  const freqs = frequencies(rot, args.theta, args.invFreq);
  const words = new Uint32Array(HEADER_WORDS + 4 * 64);
  const fl = new Float32Array(words.buffer);
  words.set([items, stride, args.heads, args.headDim, half, perRow, args.inverse ? 1 : 0]);
  fl[7] = args.attentionScaling ?? 1;
  words[8] = args.interleaved ? 1 : 0;
  fl.set(freqs, HEADER_WORDS);
  const kernel = outOfPlace ? 'rope_out' : 'rope_ip';
  const pipe = variantPipeline(gpu, kernel, () => ({ source: code, kernel }));
  const bindings = outOfPlace ? [args.x, args.positions, args.out!] : [args.x, args.positions];
  rec.dispatch(pipe, bindings, [gx, gy], words);
}
