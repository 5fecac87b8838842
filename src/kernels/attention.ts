/**
 * Causal grouped-query attention (see shaders/attention.wgsl for the kernels and layouts):
 *   recordAttention          FlashAttention-2 style forward, saves the row logsumexp
 *   recordAttentionBackward  D = rowsum(dO*O), then dQ and dK/dV without atomics (3 dispatches)
 *   recordAttentionDecode    generation with a KV cache (batch 1)
 * Every call takes the same AttentionVariant: score scale, sliding window, soft-cap (Gemma 2) and
 * ALiBi (BLOOM, Falcon), as the float64 reference (src/reference/attention.ts) defines them.
 * Tile sizes are picked per head dim so workgroup storage stays within 16 KiB (or the device's
 * smaller limit); the head dim (the direct kernels: only its 16-byte chunks per invocation), the
 * tiles and whether soft-capping / ALiBi are on are baked into the WGSL text; the window, the cap,
 * the slopes and the sizes are uniforms.
 *
 * Packed sequences (several examples in one row, as TRL's padding-free packing): pass `keyStart`
 * (u32 [batch*seq], the index of each row's example start in its sequence) to the forward and the
 * backward, and query i sees keys keyStart[i]..i only. It is a shader flag (`_seg` variants bind
 * one more storage buffer); without it the kernels are exactly the plain causal ones.
 * Which kernels and tiles run: src/kernels/attention-variants.ts (tiled, or the direct subgroup
 * kernels of shaders/attention_direct.wgsl on CPU drivers).
 */
import { type Gpu, type Recorder, params } from '../gpu/context';
import { GpuError, GpuLimitError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { bf16BitsToF32, f32ToBf16Bits } from '../gpu/half';
import type { Workspace } from '../gpu/workspace';
import { MAX_ALIBI_HEADS, attentionDirect, attentionTiles, pipelineFor } from './attention-variants';
import { bindable, flatGrid, needDims, needElems } from './common';

const F32 = ['f32'];

/** How scores are formed and masked (defaults: 1/sqrt(headDim), no window, no cap, no ALiBi). */
export interface AttentionVariant {
  /** Score scale; default 1/sqrt(headDim). */
  scale?: number;
  /** The query at position t sees keys t - window < j <= t; null/0/absent = every earlier key. */
  window?: number | null;
  /** score = softcap·tanh(score / softcap). */
  softcap?: number | null;
  /** score += slopes[h]·(key position), rounded to bfloat16 when bf16, times mul (at most 256 heads). */
  alibi?: { slopes: ArrayLike<number>; bf16: boolean; mul: number } | null;
}

export interface AttentionArgs extends AttentionVariant {
  q: Tensor; // f32 [batch*seq, heads, headDim]
  k: Tensor; // f32 [batch*seq, kvHeads, headDim]
  v: Tensor; // f32 [batch*seq, kvHeads, headDim]
  o: Tensor; // f32 [batch*seq, heads, headDim] (output)
  lse: Tensor; // f32 [batch*seq, heads] (output, saved for backward)
  batch: number;
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** u32 [batch*seq]: first key each query row sees (packed examples); absent = plain causal. */
  keyStart?: Tensor;
}

export interface AttentionBackwardArgs extends AttentionVariant {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  o: Tensor; // forward output
  lse: Tensor; // forward logsumexp
  dO: Tensor; // f32 [batch*seq, heads, headDim]
  dq: Tensor; // f32 [batch*seq, heads, headDim] (output, overwritten)
  dk: Tensor; // f32 [batch*seq, kvHeads, headDim] (output, overwritten)
  dv: Tensor; // f32 [batch*seq, kvHeads, headDim] (output, overwritten)
  batch: number;
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** The forward's keyStart (packed examples). */
  keyStart?: Tensor;
  /** Scratch: holds D = rowsum(dO*O) [batch*seq, heads] under the name 'attention.D'. */
  ws: Workspace;
}

export interface AttentionDecodeArgs extends AttentionVariant {
  q: Tensor; // f32 [qLen, heads, headDim]: positions past .. past+qLen-1
  kCache: Tensor; // f32 [maxLen, kvHeads, headDim], rows 0 .. past+qLen-1 filled
  vCache: Tensor; // f32 [maxLen, kvHeads, headDim]
  o: Tensor; // f32 [qLen, heads, headDim] (output)
  qLen: number;
  past: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /**
   * f32 [qLen, heads] scratch, optional: where the direct kernels serve, the forward then writes
   * the logsumexp there and runs training's forward module (one compile fewer on a first run).
   */
  lse?: Tensor;
}

// ------------------------------------------------------------------ checks

interface Shape {
  batch: number;
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
}

function checkShape(what: string, a: Shape): void {
  const { batch, seq, heads, kvHeads, headDim } = a;
  needDims(what, { batch, seq, heads, kvHeads, headDim });
  if (a.heads === 0 || a.kvHeads === 0 || a.headDim === 0) {
    throw new GpuError(`${what}: heads, kvHeads and headDim must be positive.`);
  }
  if (a.heads % a.kvHeads !== 0) {
    throw new GpuError(`${what}: heads (${a.heads}) must be a multiple of kvHeads (${a.kvHeads}).`);
  }
}

/** Checks keyStart (u32 [rows]) and that the device binds one more buffer; returns it as extra bindings. */
function keyStartBindings(
  gpu: Gpu,
  what: string,
  keyStart: Tensor | undefined,
  rows: number,
  buffers: number,
): Tensor[] {
  if (!keyStart) return [];
  needElems(what, 'keyStart', keyStart, rows, ['u32']);
  bindable(gpu, what, { keyStart });
  const limit = gpu.limits.maxStorageBuffersPerShaderStage;
  if (buffers + 1 > limit) {
    throw new GpuLimitError(
      `${what}: packed sequences need ${buffers + 1} storage buffers in one shader stage; this GPU allows ${limit}. ` +
        'Turn packing off.',
    );
  }
  return [keyStart];
}

function scaleOf(a: { scale?: number; headDim: number }): number {
  return a.scale ?? 1 / Math.sqrt(a.headDim);
}

/** The shader variant flags of an AttentionVariant (checked). */
function flags(what: string, a: AttentionVariant & { heads: number }): { softcap: boolean; alibi: boolean } {
  const w = a.window ?? 0;
  if (!Number.isInteger(w) || w < 0) throw new GpuError(`${what}: window must be a non-negative integer, got ${w}.`);
  if (a.softcap != null && !(a.softcap > 0)) throw new GpuError(`${what}: softcap must be > 0, got ${a.softcap}.`);
  if (a.alibi) {
    if (a.heads > MAX_ALIBI_HEADS)
      throw new GpuError(`${what}: ALiBi supports at most ${MAX_ALIBI_HEADS} heads, got ${a.heads}.`);
    if (a.alibi.slopes.length < a.heads)
      throw new GpuError(`${what}: ${a.alibi.slopes.length} ALiBi slopes for ${a.heads} heads.`);
  }
  return { softcap: !!a.softcap, alibi: !!a.alibi };
}

function uniforms(
  nq: number,
  nk: number,
  qPos0: number,
  a: AttentionVariant & { heads: number; kvHeads: number; headDim: number },
): Uint32Array {
  const head = params(
    nq,
    nk,
    qPos0,
    a.heads,
    a.kvHeads,
    a.heads / a.kvHeads,
    { f: scaleOf(a) },
    a.headDim,
    a.window ?? 0,
    { f: a.softcap ?? 0 },
    { f: a.alibi?.mul ?? 0 },
    a.alibi?.bf16 ? 1 : 0,
  );
  const out = new Uint32Array(head.length + (a.alibi ? MAX_ALIBI_HEADS : 4));
  out.set(head);
  if (a.alibi) {
    // Falcon rounds the slopes themselves to bfloat16 before multiplying (see src/reference/alibi.ts)
    const slopes = Array.from(a.alibi.slopes, (x) => (a.alibi!.bf16 ? bf16BitsToF32(f32ToBf16Bits(x)) : x));
    new Float32Array(out.buffer, head.length * 4).set(slopes.slice(0, a.heads));
  }
  return out;
}

// ------------------------------------------------------------------ forward

/**
 * The forward's tensors (q, k, v, o, lse) checked against the shape; their element counts, or null
 * for an empty problem (nothing to record).
 */
function checkForwardTensors(what: string, args: AttentionArgs): { rows: number; qn: number; kn: number } | null {
  const rows = args.batch * args.seq;
  if (rows === 0) return null;
  const qn = rows * args.heads * args.headDim;
  const kn = rows * args.kvHeads * args.headDim;
  needElems(what, 'q', args.q, qn, F32);
  needElems(what, 'k', args.k, kn, F32);
  needElems(what, 'v', args.v, kn, F32);
  needElems(what, 'o', args.o, qn, F32);
  needElems(what, 'lse', args.lse, rows * args.heads, F32);
  return { rows, qn, kn };
}

/** Records o = softmax(scale·QKᵀ + causal mask)·V per head and lse = the row logsumexp. */
export function recordAttention(gpu: Gpu, rec: Recorder, args: AttentionArgs): void {
  const what = 'attention';
  checkShape(what, args);
  const sizes = checkForwardTensors(what, args);
  if (!sizes) return;
  const { rows } = sizes;
  bindable(gpu, what, { q: args.q, k: args.k, v: args.v, o: args.o, lse: args.lse });
  const f = flags(what, args);
  const seg = keyStartBindings(gpu, what, args.keyStart, rows, 5);
  const direct = attentionDirect(gpu, args.headDim)?.fwd;
  const t = direct ? { br: direct.tq, bc: direct.tk } : attentionTiles(gpu, 'attn_fwd', args.headDim);
  const pipe = pipelineFor(gpu, 'attn_fwd', {
    hd: args.headDim,
    ...t,
    lse: true,
    ...f,
    seg: seg.length > 0,
    ...(direct && { direct }),
  });
  rec.dispatch(
    pipe,
    [args.q, args.k, args.v, args.o, args.lse, ...seg],
    [Math.ceil(args.seq / t.br), args.heads, args.batch],
    uniforms(args.seq, args.seq, 0, args),
  );
}

// ------------------------------------------------------------------ backward

/** Records dq, dk, dv (overwritten) of the causal attention given dO and the forward's o and lse. */
export function recordAttentionBackward(gpu: Gpu, rec: Recorder, args: AttentionBackwardArgs): void {
  const what = 'attention backward';
  checkShape(what, args);
  const sizes = checkForwardTensors(what, args);
  if (!sizes) return;
  const { rows, qn, kn } = sizes;
  needElems(what, 'dO', args.dO, qn, F32);
  needElems(what, 'dq', args.dq, qn, F32);
  needElems(what, 'dk', args.dk, kn, F32);
  needElems(what, 'dv', args.dv, kn, F32);
  bindable(gpu, what, {
    q: args.q,
    k: args.k,
    v: args.v,
    o: args.o,
    lse: args.lse,
    dO: args.dO,
    dq: args.dq,
    dk: args.dk,
    dv: args.dv,
  });
  const hd = args.headDim;
  const f = flags(what, args);
  const seg = keyStartBindings(gpu, what, args.keyStart, rows, 8);

  // 1. D = rowsum(dO * O), one thread per (row, head).
  const nD = rows * args.heads;
  const D = args.ws.get('attention.D', [rows, args.heads]);
  const [gx, gy] = flatGrid(gpu, nD);
  const pd = pipelineFor(gpu, 'attn_bwd_d', { hd, br: 1, bc: 1 });
  rec.dispatch(pd, [args.dO, args.o, D], [gx, gy], params(nD, gx, 0, 0, 0, 0, { f: 0 }, hd, 0, 0, 0, 0, 0, 0, 0, 0));

  const u = uniforms(args.seq, args.seq, 0, args);
  // 2. dq per query block over KV tiles.
  const direct = attentionDirect(gpu, hd)?.bwd;
  const more = { ...f, seg: seg.length > 0, ...(direct && { direct }) };
  const tq = direct ? { br: direct.tq, bc: direct.tk } : attentionTiles(gpu, 'attn_bwd_dq', hd);
  const pq = pipelineFor(gpu, 'attn_bwd_dq', { hd, ...tq, ...more });
  rec.dispatch(
    pq,
    [args.q, args.k, args.v, args.dO, args.lse, D, args.dq, ...seg],
    [Math.ceil(args.seq / tq.br), args.heads, args.batch],
    u,
  );
  // 3. dk, dv per KV block over the group's query heads and the query tiles at or after it.
  const tk = direct ? { br: direct.tq, bc: direct.tk } : attentionTiles(gpu, 'attn_bwd_dkdv', hd);
  const pk = pipelineFor(gpu, 'attn_bwd_dkdv', { hd, ...tk, ...more });
  rec.dispatch(
    pk,
    [args.q, args.k, args.v, args.dO, args.lse, D, args.dk, args.dv, ...seg],
    [Math.ceil(args.seq / tk.bc), args.kvHeads, args.batch],
    u,
  );
}

// ------------------------------------------------------------------ generation

/**
 * Records o for qLen new queries at positions past .. past+qLen-1 against a KV cache that already
 * holds positions 0 .. past+qLen-1 (batch 1). Short query blocks (qLen < 8, e.g. one token) use a
 * row kernel (one workgroup per query row and head, keys in tiles of 64); longer ones (prompt
 * prefill) use the tiled forward kernel without the logsumexp. Where the direct kernels serve
 * (attentionDirect), their forward runs both, with one query row per workgroup for short blocks
 * (and with args.lse given, a prompt block runs the very module training's forward runs).
 */
export function recordAttentionDecode(gpu: Gpu, rec: Recorder, args: AttentionDecodeArgs): void {
  const what = 'attention decode';
  checkShape(what, { batch: 1, seq: args.qLen, heads: args.heads, kvHeads: args.kvHeads, headDim: args.headDim });
  needDims(what, { past: args.past });
  if (args.qLen === 0) return;
  const kvRow = args.kvHeads * args.headDim;
  const capacity = Math.floor(args.kCache.buffer.size / (kvRow * 4));
  const keys = args.past + args.qLen;
  if (keys > capacity) {
    throw new GpuError(
      `${what}: past + qLen = ${keys} positions exceed the KV cache "${args.kCache.label}" (${capacity} rows).`,
    );
  }
  const qn = args.qLen * args.heads * args.headDim;
  needElems(what, 'q', args.q, qn, F32);
  needElems(what, 'kCache', args.kCache, keys * kvRow, F32);
  needElems(what, 'vCache', args.vCache, keys * kvRow, F32);
  needElems(what, 'o', args.o, qn, F32);
  bindable(gpu, what, { q: args.q, kCache: args.kCache, vCache: args.vCache, o: args.o });
  const f = flags(what, args);
  let direct = attentionDirect(gpu, args.headDim)?.fwd;
  const u = uniforms(args.qLen, capacity, args.past, args);
  if (args.qLen < 8 && !direct) {
    const pipe = pipelineFor(gpu, 'attn_decode_rows', { hd: args.headDim, br: 1, bc: 1, ...f });
    rec.dispatch(pipe, [args.q, args.kCache, args.vCache, args.o], [args.qLen, args.heads], u);
    return;
  }
  // The direct forward serves short blocks too, one query row per workgroup. Given an lse scratch,
  // it runs training's forward module: no compile of its own.
  if (direct && args.qLen < 8) direct = { ...direct, tq: 1 };
  const t = direct ? { br: direct.tq, bc: direct.tk } : attentionTiles(gpu, 'attn_fwd', args.headDim);
  const lse = direct && args.lse ? [args.lse] : [];
  if (lse.length) {
    needElems(what, 'lse', args.lse!, args.qLen * args.heads, F32);
    bindable(gpu, what, { lse: args.lse! });
  }
  const pipe = pipelineFor(gpu, 'attn_fwd', {
    hd: args.headDim,
    ...t,
    lse: lse.length > 0,
    ...f,
    ...(direct && { direct }),
  });
  rec.dispatch(
    pipe,
    [args.q, args.kCache, args.vCache, args.o, ...lse],
    [Math.ceil(args.qLen / t.br), args.heads, 1],
    u,
  );
}
