/**
 * The LM head's logit transform (see shaders/logits.wgsl): in place on a block of logits,
 * z = softcap·tanh(scale·(z + bias) / softcap), for heads with a bias (Phi, GPT-J), a logit scale
 * (Granite) or soft-capping (Gemma 2). recordCrossEntropy applies it to each vocabulary chunk and
 * recordLogits to generation's logits; the identity transform records nothing.
 */
import code from '../../shaders/logits.wgsl?raw';
import { type Gpu, type Recorder, params } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { flatGrid, needDims, needElems, variantPipeline, weightDType, weightLoader } from './common';

export interface LogitTransform {
  /** [V] f32 | f16 | bf16: added before scaling. */
  bias?: Tensor | null;
  /** Multiplies the logits (default 1). */
  scale?: number;
  /** z = softcap·tanh(z / softcap); null / 0 / absent: none. */
  softcap?: number | null;
}

export function isIdentityTransform(t: LogitTransform | undefined): boolean {
  return !t || (!t.bias && (t.scale ?? 1) === 1 && !t.softcap);
}

/** Records L[t·ldl + j] = transform(L[t·ldl + j], column c0 + j) for t < T, j < n. */
export function recordLogitTransform(
  gpu: Gpu,
  rec: Recorder,
  a: { logits: Tensor; T: number; n: number; ldl: number; c0: number; V: number; transform: LogitTransform },
): void {
  const what = 'recordLogitTransform';
  const t = a.transform;
  if (isIdentityTransform(t)) return;
  needDims(what, { T: a.T, n: a.n, ldl: a.ldl, c0: a.c0, V: a.V });
  if (a.c0 + a.n > a.V) throw new GpuError(`${what}: columns ${a.c0}..${a.c0 + a.n} exceed the vocabulary (${a.V}).`);
  if (!(Number.isFinite(t.scale ?? 1) && (t.softcap ?? 0) >= 0))
    throw new GpuError(`${what}: scale must be finite and softcap >= 0, got ${t.scale} / ${t.softcap}.`);
  const count = a.T * a.n;
  if (count === 0) return;
  needElems(what, 'logits', a.logits, (a.T - 1) * a.ldl + a.n, ['f32']);
  const prelude = [`const HAS_BIAS: bool = ${t.bias ? 'true' : 'false'};`];
  let label = 'logit_transform';
  const bindings: Tensor[] = [a.logits];
  if (t.bias) {
    needElems(what, 'bias', t.bias, a.V);
    const bd = weightDType(t.bias, what);
    prelude.push('@group(0) @binding(2) var<storage, read> b: array<u32>;', weightLoader('bload', 'b', bd));
    label += `_b${bd}`;
    bindings.push(t.bias);
  } else {
    prelude.push('fn bload(i: u32) -> f32 { return 0.0; }');
  }
  const [gx, gy, stride] = flatGrid(gpu, count);
  const u = params(count, stride, a.n, a.ldl, a.c0, { f: t.scale ?? 1 }, { f: t.softcap ?? 0 }, 0);
  const pipe = variantPipeline(gpu, label, () => ({ source: code, kernel: 'logit_transform', prelude }));
  rec.dispatch(pipe, bindings, [gx, gy], u);
}
