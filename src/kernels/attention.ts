/**
 * Causal grouped-query attention (see shaders/attention.wgsl for the kernels and layouts):
 *   recordAttention          FlashAttention-2 style forward, saves the row logsumexp
 *   recordAttentionBackward  D = rowsum(dO*O), then dQ and dK/dV without atomics (3 dispatches)
 *   recordAttentionDecode    generation with a KV cache (batch 1)
 * Tile sizes are picked per head dim so workgroup storage stays within 16 KiB (or the device's
 * smaller limit); the head dim and the tiles are baked into the WGSL text, the rest are uniforms.
 */
import source from '../../shaders/attention.wgsl?raw';
import { type Gpu, type Recorder, params } from '../gpu/context';
import { GpuError, GpuLimitError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import type { Workspace } from '../gpu/workspace';
import { bindable, flatGrid, needDims, needElems, variantPipeline, wgslModule } from './common';

const F32 = ['f32'];

export interface AttentionArgs {
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
  /** Score scale; default 1/sqrt(headDim). */
  scale?: number;
}

export interface AttentionBackwardArgs {
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
  scale?: number;
  /** Scratch: holds D = rowsum(dO*O) [batch*seq, heads] under the name 'attention.D'. */
  ws: Workspace;
}

export interface AttentionDecodeArgs {
  q: Tensor; // f32 [qLen, heads, headDim]: positions past .. past+qLen-1
  kCache: Tensor; // f32 [maxLen, kvHeads, headDim], rows 0 .. past+qLen-1 filled
  vCache: Tensor; // f32 [maxLen, kvHeads, headDim]
  o: Tensor; // f32 [qLen, heads, headDim] (output)
  qLen: number;
  past: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale?: number;
}

// ------------------------------------------------------------------ template

type KernelName = 'attn_fwd' | 'attn_bwd_d' | 'attn_bwd_dq' | 'attn_bwd_dkdv' | 'attn_decode_rows';

interface Variant {
  hd: number;
  br: number;
  bc: number;
  /** attn_fwd only: write the logsumexp (binding 5). */
  lse?: boolean;
}

/** Threads of attn_decode_rows (a power of two for its tree reduction). */
const WD = 64;

/** Full WGSL of one kernel variant (exported for compile checks in tests). */
export function attentionShader(kernel: KernelName, v: Variant): string {
  const L = [
    `const HD: u32 = ${v.hd}u;`,
    `const BR: u32 = ${v.br}u;`,
    `const BC: u32 = ${v.bc}u;`,
    `const NT: u32 = ${v.br * v.bc}u;`,
    `const PSTR: u32 = ${v.hd + 1}u;`,
    `const DPC: u32 = ${Math.ceil(v.hd / v.bc)}u;`,
    `const DPR: u32 = ${Math.ceil(v.hd / v.br)}u;`,
    `const WD: u32 = ${WD}u;`,
    `const DPW: u32 = ${Math.ceil(v.hd / WD)}u;`,
  ];
  if (kernel === 'attn_fwd') {
    if (v.lse) {
      L.push('@group(0) @binding(5) var<storage, read_write> lse: array<f32>;');
      L.push('fn store_lse(i: u32, x: f32) { lse[i] = x; }');
    } else {
      L.push('fn store_lse(i: u32, x: f32) {}');
    }
  }
  return wgslModule({ source, kernel, prelude: L, describe: `${kernel} ${JSON.stringify(v)}` });
}

function pipelineFor(gpu: Gpu, kernel: KernelName, v: Variant): GPUComputePipeline {
  const name = `${kernel}_hd${v.hd}_${v.br}x${v.bc}${v.lse === false ? '_nolse' : ''}`;
  return variantPipeline(gpu, name, () => attentionShader(kernel, v));
}

// ------------------------------------------------------------------ tiles

/** Workgroup bytes of each tiled kernel for head dim hd and tiles (br, bc). */
const STORAGE: Record<'attn_fwd' | 'attn_bwd_dq' | 'attn_bwd_dkdv', (hd: number, br: number, bc: number) => number> = {
  attn_fwd: (hd, br, bc) => 4 * (br * hd + bc * (hd + 1) + bc * hd + br * bc),
  attn_bwd_dq: (hd, br, bc) => 4 * (2 * br * hd + 2 * bc * (hd + 1) + br * bc),
  attn_bwd_dkdv: (hd, br, bc) => 4 * (2 * bc * hd + 2 * br * (hd + 1) + 2 * br * bc + 2 * br),
};

const CANDIDATES: Record<keyof typeof STORAGE, [number, number][]> = {
  // [br, bc]: query rows x key columns (attn_bwd_dkdv: br query rows per tile, bc keys per workgroup)
  attn_fwd: [
    [16, 16],
    [8, 8],
    [4, 4],
    [2, 2],
    [1, 1],
  ],
  attn_bwd_dq: [
    [16, 16],
    [16, 8],
    [8, 8],
    [8, 4],
    [4, 4],
    [4, 2],
    [2, 2],
    [2, 1],
    [1, 1],
  ],
  attn_bwd_dkdv: [
    [16, 16],
    [8, 16],
    [8, 8],
    [4, 8],
    [4, 4],
    [2, 4],
    [2, 2],
    [1, 2],
    [1, 1],
  ],
};

/** The largest tiles of `kernel` whose workgroup storage fits 16 KiB (or the device limit). */
export function attentionTiles(gpu: Gpu, kernel: keyof typeof STORAGE, hd: number): { br: number; bc: number } {
  const budget = Math.min(16384, gpu.limits.maxComputeWorkgroupStorageSize);
  const threads = Math.min(256, gpu.limits.maxComputeInvocationsPerWorkgroup);
  for (const [br, bc] of CANDIDATES[kernel]) {
    if (br * bc <= threads && STORAGE[kernel](hd, br, bc) <= budget) return { br, bc };
  }
  throw new GpuLimitError(
    `attention: head dim ${hd} needs ${STORAGE[kernel](hd, 1, 1)} bytes of workgroup storage even with 1x1 tiles; ` +
      `this GPU allows ${budget}.`,
  );
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

function scaleOf(a: { scale?: number; headDim: number }): number {
  return a.scale ?? 1 / Math.sqrt(a.headDim);
}

function uniforms(
  nq: number,
  nk: number,
  qPos0: number,
  a: { heads: number; kvHeads: number; headDim: number },
  scale: number,
): Uint32Array {
  return params(nq, nk, qPos0, a.heads, a.kvHeads, a.heads / a.kvHeads, { f: scale }, a.headDim);
}

// ------------------------------------------------------------------ forward

/** Records o = softmax(scale·QKᵀ + causal mask)·V per head and lse = the row logsumexp. */
export function recordAttention(gpu: Gpu, rec: Recorder, a: AttentionArgs): void {
  const what = 'attention';
  checkShape(what, a);
  const rows = a.batch * a.seq;
  if (rows === 0) return;
  const qn = rows * a.heads * a.headDim;
  const kn = rows * a.kvHeads * a.headDim;
  needElems(what, 'q', a.q, qn, F32);
  needElems(what, 'k', a.k, kn, F32);
  needElems(what, 'v', a.v, kn, F32);
  needElems(what, 'o', a.o, qn, F32);
  needElems(what, 'lse', a.lse, rows * a.heads, F32);
  bindable(gpu, what, { q: a.q, k: a.k, v: a.v, o: a.o, lse: a.lse });
  const t = attentionTiles(gpu, 'attn_fwd', a.headDim);
  const pipe = pipelineFor(gpu, 'attn_fwd', { hd: a.headDim, br: t.br, bc: t.bc, lse: true });
  rec.dispatch(
    pipe,
    [a.q, a.k, a.v, a.o, a.lse],
    [Math.ceil(a.seq / t.br), a.heads, a.batch],
    uniforms(a.seq, a.seq, 0, a, scaleOf(a)),
  );
}

// ------------------------------------------------------------------ backward

/** Records dq, dk, dv (overwritten) of the causal attention given dO and the forward's o and lse. */
export function recordAttentionBackward(gpu: Gpu, rec: Recorder, a: AttentionBackwardArgs): void {
  const what = 'attention backward';
  checkShape(what, a);
  const rows = a.batch * a.seq;
  if (rows === 0) return;
  const qn = rows * a.heads * a.headDim;
  const kn = rows * a.kvHeads * a.headDim;
  needElems(what, 'q', a.q, qn, F32);
  needElems(what, 'k', a.k, kn, F32);
  needElems(what, 'v', a.v, kn, F32);
  needElems(what, 'o', a.o, qn, F32);
  needElems(what, 'lse', a.lse, rows * a.heads, F32);
  needElems(what, 'dO', a.dO, qn, F32);
  needElems(what, 'dq', a.dq, qn, F32);
  needElems(what, 'dk', a.dk, kn, F32);
  needElems(what, 'dv', a.dv, kn, F32);
  bindable(gpu, what, { q: a.q, k: a.k, v: a.v, o: a.o, lse: a.lse, dO: a.dO, dq: a.dq, dk: a.dk, dv: a.dv });
  const hd = a.headDim;
  const scale = scaleOf(a);

  // 1. D = rowsum(dO * O), one thread per (row, head).
  const nD = rows * a.heads;
  const D = a.ws.get('attention.D', [rows, a.heads]);
  const [gx, gy] = flatGrid(gpu, nD);
  const pd = pipelineFor(gpu, 'attn_bwd_d', { hd, br: 1, bc: 1 });
  rec.dispatch(pd, [a.dO, a.o, D], [gx, gy], params(nD, gx, 0, 0, 0, 0, { f: 0 }, hd));

  const u = uniforms(a.seq, a.seq, 0, a, scale);
  // 2. dq per query block over KV tiles.
  const tq = attentionTiles(gpu, 'attn_bwd_dq', hd);
  const pq = pipelineFor(gpu, 'attn_bwd_dq', { hd, br: tq.br, bc: tq.bc });
  rec.dispatch(pq, [a.q, a.k, a.v, a.dO, a.lse, D, a.dq], [Math.ceil(a.seq / tq.br), a.heads, a.batch], u);
  // 3. dk, dv per KV block over the group's query heads and the query tiles at or after it.
  const tk = attentionTiles(gpu, 'attn_bwd_dkdv', hd);
  const pk = pipelineFor(gpu, 'attn_bwd_dkdv', { hd, br: tk.br, bc: tk.bc });
  rec.dispatch(pk, [a.q, a.k, a.v, a.dO, a.lse, D, a.dk, a.dv], [Math.ceil(a.seq / tk.bc), a.kvHeads, a.batch], u);
}

// ------------------------------------------------------------------ generation

/**
 * Records o for qLen new queries at positions past .. past+qLen-1 against a KV cache that already
 * holds positions 0 .. past+qLen-1 (batch 1). Short query blocks (qLen < 8, e.g. one token) use a
 * row kernel (one workgroup per query row and head, keys in tiles of 64); longer ones (prompt
 * prefill) use the tiled forward kernel without the logsumexp.
 */
export function recordAttentionDecode(gpu: Gpu, rec: Recorder, a: AttentionDecodeArgs): void {
  const what = 'attention decode';
  checkShape(what, { batch: 1, seq: a.qLen, heads: a.heads, kvHeads: a.kvHeads, headDim: a.headDim });
  needDims(what, { past: a.past });
  if (a.qLen === 0) return;
  const kvRow = a.kvHeads * a.headDim;
  const capacity = Math.floor(a.kCache.buffer.size / (kvRow * 4));
  const keys = a.past + a.qLen;
  if (keys > capacity) {
    throw new GpuError(
      `${what}: past + qLen = ${keys} positions exceed the KV cache "${a.kCache.label}" (${capacity} rows).`,
    );
  }
  const qn = a.qLen * a.heads * a.headDim;
  needElems(what, 'q', a.q, qn, F32);
  needElems(what, 'kCache', a.kCache, keys * kvRow, F32);
  needElems(what, 'vCache', a.vCache, keys * kvRow, F32);
  needElems(what, 'o', a.o, qn, F32);
  bindable(gpu, what, { q: a.q, kCache: a.kCache, vCache: a.vCache, o: a.o });
  const u = uniforms(a.qLen, capacity, a.past, a, scaleOf(a));
  if (a.qLen < 8) {
    const pipe = pipelineFor(gpu, 'attn_decode_rows', { hd: a.headDim, br: 1, bc: 1 });
    rec.dispatch(pipe, [a.q, a.kCache, a.vCache, a.o], [a.qLen, a.heads], u);
  } else {
    const t = attentionTiles(gpu, 'attn_fwd', a.headDim);
    const pipe = pipelineFor(gpu, 'attn_fwd', { hd: a.headDim, br: t.br, bc: t.bc, lse: false });
    rec.dispatch(pipe, [a.q, a.kCache, a.vCache, a.o], [Math.ceil(a.qLen / t.br), a.heads, 1], u);
  }
}
