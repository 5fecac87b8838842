/**
 * DoRA's passes around the LoRA linear (shaders/dora.wgsl), with PEFT 0.21's semantics
 * (peft/tuners/lora/dora.py DoraLinearLayer, variants.py DoraLinearVariant):
 *
 *   n_o = ||W_o + s·(B·A)_o||  (detached)     g_o = m_o / n_o
 *   y   = X·Wᵀ + b + s·S·Bᵀ + (g - 1)∘Z,      Z = drop(X)·Wᵀ + s·S·Bᵀ,   S = drop(X)·Aᵀ
 *
 * (without dropout Z = X·Wᵀ + s·S·Bᵀ and y = g∘Z + b, PEFT's eval form). The norm is built from
 * rank-r pieces so W + s·B·A is never materialised: n_o² = ||W_o||² + 2s·B_o·PT_o + s²·B_o·G·B_oᵀ
 * with PT = A·Wᵀ, G = A·Aᵀ (matmuls run by src/kernels/linear.ts) and ||W_o||² computed once.
 */
import source from '../../shaders/dora.wgsl?raw';
import { type Gpu, type Recorder, params } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { flatGrid, needDims, needElems, noAlias, variantPipeline } from './common';

/** DoRA's tensors of one module (PEFT's lora_magnitude_vector and what its forward needs). */
export interface DoraParams {
  /** f32 [outF]: lora_magnitude_vector (trained). */
  m: Tensor;
  /** f32 [outF]: ||W_o||² of the frozen weight, computed once when the adapter is made. */
  wn2: Tensor;
  /** f32 [2·outF]: g = m / n, then 1 / n, written by each forward (recordDoraNorm). */
  gi: Tensor;
}

function kernel(gpu: Gpu, name: string): GPUComputePipeline {
  return variantPipeline(gpu, name, () => ({ source, kernel: name }));
}

/** gi = [m / n, 1 / n] from ||W||², B [outF, r], PT = A·Wᵀ [r, outF] and G = A·Aᵀ [r, r]. */
export function recordDoraNorm(
  gpu: Gpu,
  rec: Recorder,
  a: { dora: DoraParams; b: Tensor; pt: Tensor; gram: Tensor; outF: number; r: number; scale: number },
): void {
  const what = 'recordDoraNorm';
  needDims(what, { outF: a.outF, r: a.r });
  needElems(what, 'wn2', a.dora.wn2, a.outF, ['f32']);
  needElems(what, 'm', a.dora.m, a.outF, ['f32']);
  needElems(what, 'gi', a.dora.gi, 2 * a.outF, ['f32']);
  needElems(what, 'B', a.b, a.outF * a.r, ['f32']);
  needElems(what, 'PT', a.pt, a.r * a.outF, ['f32']);
  needElems(what, 'G', a.gram, a.r * a.r, ['f32']);
  if (a.outF === 0) return;
  const u = params(a.outF, a.r, { f: a.scale }, 0);
  const groups = Math.ceil(a.outF / 64);
  rec.dispatch(kernel(gpu, 'dora_norm'), [a.dora.wn2, a.b, a.pt, a.gram, a.dora.m, a.dora.gi], [groups, 1], u);
}

/** out [rows, outF] (+)= (g - shift)∘x, g per column from gi. */
export function recordDoraColScale(
  gpu: Gpu,
  rec: Recorder,
  a: { x: Tensor; gi: Tensor; out: Tensor; rows: number; outF: number; shift: 0 | 1; accumulate?: boolean },
): void {
  const what = 'recordDoraColScale';
  needDims(what, { rows: a.rows, outF: a.outF });
  const n = a.rows * a.outF;
  needElems(what, 'x', a.x, n, ['f32']);
  needElems(what, 'out', a.out, n, ['f32']);
  needElems(what, 'gi', a.gi, 2 * a.outF, ['f32']);
  noAlias(what, a.out, { x: a.x, gi: a.gi });
  if (n === 0) return;
  const [gx, gy, stride] = flatGrid(gpu, n);
  const u = params(n, stride, a.outF, { f: a.shift }, a.accumulate ? 1 : 0, 0, 0, 0);
  rec.dispatch(kernel(gpu, 'dora_colscale'), [a.x, a.gi, a.out], [gx, gy], u);
}

/** dm [outF] (+)= (1 / n)∘Σ_t dY[t]∘Z[t]: the magnitude's gradient. */
export function recordDoraMagGrad(
  gpu: Gpu,
  rec: Recorder,
  a: { dy: Tensor; z: Tensor; gi: Tensor; dm: Tensor; rows: number; outF: number; accumulate?: boolean },
): void {
  const what = 'recordDoraMagGrad';
  needDims(what, { rows: a.rows, outF: a.outF });
  needElems(what, 'dY', a.dy, a.rows * a.outF, ['f32']);
  needElems(what, 'Z', a.z, a.rows * a.outF, ['f32']);
  needElems(what, 'gi', a.gi, 2 * a.outF, ['f32']);
  needElems(what, 'dm', a.dm, a.outF, ['f32']);
  noAlias(what, a.dm, { dy: a.dy, z: a.z, gi: a.gi });
  if (a.outF === 0) return;
  const u = params(a.rows, a.outF, a.accumulate ? 1 : 0, 0);
  rec.dispatch(kernel(gpu, 'dora_dmag'), [a.dy, a.z, a.gi, a.dm], [Math.ceil(a.outF / 64), 1], u);
}
