/**
 * General matmul on the GPU (see shaders/matmul.wgsl for the kernel and its template prelude):
 *
 *   C[M, N] = (accumulate ? C : 0) + alpha * (opA(A)·opB(B) + alpha2 * drop_out ∘ opA2(A2)·opB2(B2)) + bias
 *
 * opA(A) is A [M, K] or, with transA, Aᵀ of A stored [K, M]; opB(B) is B [K, N] or, with transB,
 * Bᵀ of B stored [N, K] (so X·Wᵀ for an nn.Linear weight is `transB: true`). A is f32; B (the
 * weight) may be f32, f16 or bf16 (packed two per u32, widened in the loader) or a 4-bit NF4 weight
 * (src/kernels/nf4.ts, dequantized in the loader: the QLoRA frozen matmuls); C is f32.
 *
 * The optional `extra` segment adds r more columns to the same K loop (the fused LoRA linear). A
 * dropout mask may be applied to segment 1's A or B operand as it is loaded, and to segment 2's
 * contribution per output element. Split-K (deterministic two-pass) serves reductions over a long
 * K with a small output (dA, dB over the tokens).
 *
 * recordMatmul runs in three stages: validateMatmul (arguments -> MatmulProblem) and planMatmul
 * (variant, chunks of operands larger than maxStorageBufferBindingSize, split-K) in
 * src/kernels/matmul/plan.ts, then the dispatches below (one per chunk, or the split-K pass and its
 * fixed-order reduction, shaders/splitk_reduce.wgsl).
 */
import reduceSource from '../../shaders/splitk_reduce.wgsl?raw';
import { type Gpu, type Recorder, params } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { dropoutThreshold } from '../numerics/dropout';
import { flatGrid, variantPipeline } from './common';
import {
  type DropoutSpec,
  type MatmulArgs,
  type MatmulPlan,
  type MatmulProblem,
  bBindings,
  chunkWindows,
  planMatmul,
  validateMatmul,
} from './matmul/plan';
import { matmulShader, matmulVariantName } from './matmul/shader';

export { type DropoutSpec, type MatmulArgs, type MatmulExtra } from './matmul/plan';
export { matmulShader } from './matmul/shader';
export type { WeightDType } from './common';

/** Records C = alpha·opA(A)·opB(B) (+ extra segment) + bias (+ C). See the file comment. */
export function recordMatmul(gpu: Gpu, rec: Recorder, args: MatmulArgs): void {
  const problem = validateMatmul(gpu, args);
  if (!problem) return;
  const plan = planMatmul(gpu, problem);
  if (plan.splits > 1) recordSplitK(gpu, rec, problem, plan);
  else recordChunks(gpu, rec, problem, plan);
}

// ------------------------------------------------------------------ dispatch

function dropWords(d: DropoutSpec | null): [number, number, { f: number }] {
  if (!d || d.p === 0) return [0, 0, { f: 1 }];
  return [d.seed >>> 0, dropoutThreshold(d.p), { f: 1 / (1 - d.p) }];
}

/** The uniform block P of every matmul body (shaders/matmul_params.wgsl). */
interface Uniforms {
  mEnd: number;
  nEnd: number;
  k0: number;
  kEnd: number;
  m0: number;
  n0: number;
  kSplit: number;
  k2: number;
  ldc: number;
  cStrideZ: number;
  aAdj: number;
  bAdj: number;
  cAdj: number;
  accumulate: boolean;
  a2Adj: number;
  b2Adj: number;
  useBias: boolean;
}

/** Codes of the bias' element type for the register-block kernels (P.biasType). */
const BIAS_TYPE = { f32: 0, f16: 1, bf16: 2 } as const;

function uniforms(p: MatmulProblem, u: Uniforms): Uint32Array {
  const [seedIn, thrIn, scaleIn] = dropWords(p.dropIn);
  const [seedOut, thrOut, scaleOut] = dropWords(p.dropOut);
  // Segment 2's element strides (row, column) of opA2 [M, K2] and opB2 [K2, N].
  const ex = p.ex;
  const a2 = !ex ? [0, 0] : ex.transA ? [1, ex.lda] : [ex.lda, 1];
  const b2 = !ex ? [0, 0] : ex.transB ? [1, ex.ldb] : [ex.ldb, 1];
  return params(
    u.mEnd,
    u.nEnd,
    u.k0,
    u.kEnd,
    u.m0,
    u.n0,
    u.kSplit,
    u.k2,
    p.lda,
    p.ldb,
    u.ldc,
    u.cStrideZ,
    u.aAdj,
    u.bAdj,
    u.cAdj,
    u.accumulate ? 1 : 0,
    p.ex?.lda ?? 0,
    p.ex?.ldb ?? 0,
    u.a2Adj,
    u.b2Adj,
    { f: p.args.alpha ?? 1 },
    { f: p.args.extra?.alpha ?? 1 },
    u.useBias ? 1 : 0,
    0,
    seedIn,
    thrIn,
    scaleIn,
    seedOut,
    thrOut,
    scaleOut,
    p.nf4?.layout.absOff ?? 0,
    p.nf4?.layout.abs2Off ?? 0,
    BIAS_TYPE[p.biasType ?? 'f32'],
    p.dropOut ? 1 : 0,
    a2[0]!,
    a2[1]!,
    b2[0]!,
    b2[1]!,
  );
}

function pipeline(gpu: Gpu, plan: MatmulPlan): GPUComputePipeline {
  return variantPipeline(gpu, matmulVariantName(plan.variant), () => matmulShader(plan.variant));
}

/** One dispatch per (M, N, K) chunk; K chunks after the first accumulate, the bias comes once. */
function recordChunks(gpu: Gpu, rec: Recorder, p: MatmulProblem, plan: MatmulPlan): void {
  const pipe = pipeline(gpu, plan);
  for (const [m0, mc] of plan.mChunks) {
    for (const [n0, nc] of plan.nChunks) {
      plan.kChunks.forEach(([k0, kc], ki) => {
        const first = ki === 0;
        const w = chunkWindows(gpu, p, m0, mc, n0, nc, k0, kc);
        const u = uniforms(p, {
          mEnd: m0 + mc,
          nEnd: n0 + nc,
          k0,
          kEnd: k0 + kc,
          m0,
          n0,
          kSplit: Math.max(kc, 1),
          k2: first && p.ex ? p.ex.K : 0,
          ldc: p.ldc,
          cStrideZ: 0,
          aAdj: w.aAdj,
          bAdj: w.bAdj,
          cAdj: w.cAdj,
          accumulate: first ? !!p.args.accumulate : true,
          a2Adj: w.a2Adj,
          b2Adj: w.b2Adj,
          useBias: first && !!p.args.bias,
        });
        // FLOPs for a profile (src/gpu/profiler.ts): the K chunk, and segment 2 with the first.
        const flops = 2 * mc * nc * (kc + (first && p.ex ? p.ex.K : 0));
        rec.dispatch(pipe, w.bindings, [plan.gridX(nc), plan.gridY(mc), 1], u, flops);
      });
    }
  }
}

/** Split-K: slice z of the K loop writes partial C z of a workspace, then a fixed-order sum. */
function recordSplitK(gpu: Gpu, rec: Recorder, p: MatmulProblem, plan: MatmulPlan): void {
  const { M, N, K, args: a } = p;
  const part = a.ws!.get('matmul.partials', [plan.splits, M, N]);
  const u = uniforms(p, {
    mEnd: M,
    nEnd: N,
    k0: 0,
    kEnd: K,
    m0: 0,
    n0: 0,
    kSplit: plan.kSplit,
    k2: 0,
    ldc: N,
    cStrideZ: M * N,
    aAdj: p.aOff >>> 0,
    bAdj: p.bOff >>> 0,
    cAdj: 0,
    accumulate: false,
    a2Adj: 0,
    b2Adj: 0,
    useBias: false,
  });
  const grid = [plan.gridX(N), plan.gridY(M), plan.splits];
  rec.dispatch(pipeline(gpu, plan), [a.a, ...bBindings(p), part], grid, u, 2 * M * N * K);
  recordReducePartials(gpu, rec, {
    part,
    out: a.c,
    rows: M,
    cols: N,
    ldc: p.ldc,
    cOffset: p.cOff,
    splits: plan.splits,
    accumulate: !!a.accumulate,
  });
}

// ------------------------------------------------------------------ split-K reduction

export interface ReducePartialsArgs {
  part: Tensor; // f32 [splits, rows, cols]
  out: Tensor; // f32, element (row, col) at cOffset + row*ldc + col
  rows: number;
  cols: number;
  ldc?: number;
  cOffset?: number;
  splits: number;
  accumulate?: boolean;
}

/** out (+)= sum over the splits in a fixed order (deterministic; shaders/splitk_reduce.wgsl). */
export function recordReducePartials(gpu: Gpu, rec: Recorder, args: ReducePartialsArgs): void {
  const n = args.rows * args.cols;
  if (n === 0) return;
  const pipe = variantPipeline(gpu, 'splitk_reduce', () => ({ source: reduceSource }));
  const [gx, gy, stride] = flatGrid(gpu, n);
  const u = params(
    args.rows,
    args.cols,
    args.ldc ?? args.cols,
    args.cOffset ?? 0,
    args.splits,
    n,
    args.accumulate ? 1 : 0,
    stride,
  );
  rec.dispatch(pipe, [args.part, args.out], [gx, gy], u);
}
