/**
 * The harness under every kernel test and the self-test (tinygrad's helper_test_op, for WGSL):
 *
 *   const r = await runKernelCheck(gpu, {
 *     tensors: { x: rand([M, K]), w: rand([N, K], { dtype: 'bf16' }), y: zeros([M, N]) },
 *     record: (gpu, rec, t) => recordMatmul(gpu, rec, { a: t.x, b: t.w, c: t.y, M, N, K, transB: true }),
 *     reference: (v) => ({ y: matmulRefOf(v.x, v.w) }),
 *     tol: { atol: 1e-5, rtol: 1e-5 },
 *   });
 *
 * It uploads the tensors (random data is rounded to the tensor's dtype first, and the reference
 * sees exactly the values the GPU sees, as float64), records the kernel into one recorder, submits,
 * reads back every tensor the reference returns, compares each with compareClose and its own
 * tolerance, and frees everything, also when the kernel throws. No DOM, no test framework: the
 * tests wrap it with `expect` (test/helpers/kernel.ts), the self-test reports its results.
 */
import type { Gpu, Recorder } from './gpu/context';
import { packHalf, roundThroughHalf } from './gpu/half';
import { type DType, type Tensor, numel } from './gpu/tensor';
import { Workspace } from './gpu/workspace';
import { type CloseReport, compareClose, randomValues } from './reference/check';

/** How a tensor of the check starts. */
export interface TensorSpec {
  shape: number[];
  dtype: DType;
  /** Uniform random values in [-scale, scale) from `seed` (default: the check's seed + position). */
  random?: { scale: number; seed?: number };
  /** Given values (floats are rounded to the dtype; u32 / i32 are stored as integers). */
  values?: ArrayLike<number>;
  /** Every element set to this value (default 0). */
  fill?: number;
}

/** Random data, uniform in [-scale, scale), stored as `dtype` (default f32). */
export function rand(shape: number[], o: { dtype?: DType; scale?: number; seed?: number } = {}): TensorSpec {
  return { shape, dtype: o.dtype ?? 'f32', random: { scale: o.scale ?? 1, seed: o.seed } };
}

/** The given values, stored as `dtype` (default f32). */
export function values(shape: number[], v: ArrayLike<number>, dtype: DType = 'f32'): TensorSpec {
  return { shape, dtype, values: v };
}

/** Every element `value` (default 0): outputs that are overwritten, accumulators. */
export function filled(shape: number[], value = 0, dtype: DType = 'f32'): TensorSpec {
  return { shape, dtype, fill: value };
}

export interface Tolerance {
  atol?: number;
  rtol?: number;
  /** atol is relative to the largest |reference| (compareClose's atolOfMax). */
  atolOfMax?: boolean;
}

export interface KernelCheck<N extends string> {
  /** Tensors by name; an undefined entry is an absent optional tensor. */
  tensors: Record<N, TensorSpec | undefined>;
  /** Records the kernel(s) under test; `ws` is a workspace freed after the check. */
  record: (gpu: Gpu, rec: Recorder, t: Record<N, Tensor>, ws: Workspace) => void;
  /**
   * The expected contents of the outputs after the kernel, by name, from the values the GPU saw
   * (inputs rounded to their dtype, as float64). Only the tensors returned are read back.
   */
  reference: (v: Record<N, Float64Array>) => Partial<Record<N, ArrayLike<number>>>;
  /** Tolerance of every output (default atol 1e-5, rtol 1e-5), and per output. */
  tol?: Tolerance;
  tols?: Partial<Record<N, Tolerance>>;
  /** Base seed of the random tensors (default 1). */
  seed?: number;
  /** Run the kernel twice from the same inputs and require bit-identical outputs. */
  repeat?: boolean;
  /** Prefix of the tensors' labels and of the messages. */
  label?: string;
}

export interface KernelCheckResult<N extends string> {
  /** The outputs as read back: f32 (16-bit outputs widened), u32 / i32 exactly. */
  got: Partial<Record<N, Float32Array | Uint32Array | Int32Array>>;
  /** One comparison per output, then (with `repeat`) one per output for the second run. */
  reports: CloseReport[];
  ok: boolean;
}

/** Host values of a spec: the bits to upload and the float64 values the GPU sees. */
function materialise(spec: TensorSpec, seed: number): { data: ArrayBufferView; seen: Float64Array } {
  const n = numel(spec.shape);
  let v: ArrayLike<number>;
  if (spec.random) v = randomValues(n, spec.random.seed ?? seed, spec.random.scale);
  else if (spec.values) v = spec.values;
  else v = new Float32Array(n).fill(spec.fill ?? 0);
  if (v.length !== n) throw new Error(`kernel check: ${v.length} values for shape [${spec.shape.join(', ')}].`);
  switch (spec.dtype) {
    case 'f32': {
      const data = Float32Array.from(v);
      return { data, seen: Float64Array.from(data) };
    }
    case 'f16':
    case 'bf16':
      return { data: packHalf(v, spec.dtype), seen: roundThroughHalf(v, spec.dtype) };
    case 'u32': {
      const data = Uint32Array.from(v);
      return { data, seen: Float64Array.from(data) };
    }
    case 'i32': {
      const data = Int32Array.from(v);
      return { data, seen: Float64Array.from(data) };
    }
  }
}

/** A tensor's contents: f32 (16-bit types widened exactly), integers as integers. */
async function readExact(gpu: Gpu, t: Tensor): Promise<Float32Array | Uint32Array | Int32Array> {
  if (t.dtype === 'u32') return gpu.readU32(t, numel(t.shape));
  if (t.dtype === 'i32') return new Int32Array((await gpu.readU32(t, numel(t.shape))).buffer);
  return gpu.read(t);
}

/** Runs one check (see the file comment). Never throws for a mismatch: see `ok` and `reports`. */
export async function runKernelCheck<N extends string>(gpu: Gpu, c: KernelCheck<N>): Promise<KernelCheckResult<N>> {
  const label = c.label ?? 'check';
  const names = Object.keys(c.tensors) as N[];
  const host = new Map<N, { data: ArrayBufferView; seen: Float64Array }>();
  names.forEach((name, i) => {
    const spec = c.tensors[name];
    if (spec) host.set(name, materialise(spec, (c.seed ?? 1) * 1000 + i));
  });
  const tensors = {} as Record<N, Tensor>;
  const ws = new Workspace(gpu);
  try {
    for (const [name, h] of host) {
      const spec = c.tensors[name]!;
      tensors[name] = gpu.tensor(`${label}.${name}`, spec.shape, spec.dtype, 'scratch', h.data);
    }
    const seen = {} as Record<N, Float64Array>;
    for (const [name, h] of host) seen[name] = h.seen;
    const expected = c.reference(seen);
    const outputs = Object.keys(expected) as N[];
    const run = async () => {
      for (const name of outputs) gpu.write(tensors[name], host.get(name)!.data);
      const rec = gpu.recorder(label);
      c.record(gpu, rec, tensors, ws);
      rec.submit();
      const got: Partial<Record<N, Float32Array | Uint32Array | Int32Array>> = {};
      for (const name of outputs) got[name] = await readExact(gpu, tensors[name]);
      return got;
    };
    const got = await run();
    const reports = outputs.map((name) => {
      const t = { atol: 1e-5, rtol: 1e-5, ...c.tol, ...c.tols?.[name] };
      return compareClose(expected[name]!, got[name]!, { name: `${label}: ${name}`, ...t });
    });
    if (c.repeat) {
      const again = await run();
      for (const name of outputs) {
        const a = new Uint32Array(got[name]!.buffer);
        const b = new Uint32Array(again[name]!.buffer);
        const i = a.findIndex((x, j) => x !== b[j]);
        reports.push({
          ok: i < 0,
          maxAbs: 0,
          maxRel: 0,
          worst: i,
          message: i < 0 ? `${label}: ${name} repeats bit for bit` : `${label}: ${name}[${i}] differs between two runs`,
        });
      }
    }
    return { got, reports, ok: reports.every((r) => r.ok) };
  } finally {
    await gpu.device.queue.onSubmittedWorkDone();
    ws.dispose();
    for (const t of Object.values<Tensor>(tensors)) gpu.free(t);
  }
}
