/**
 * The TF.js comparison of `tabtune bench kernels` (Node only, optional): the LoRA linear layer's
 * forward + backward written as TF.js matMuls on its WebGPU backend (the same Dawn adapter, given
 * to TF.js as navigator.gpu), timed round-robin with tabtune's layer with tuned kernels in the same
 * process, so the ratio holds on a loaded machine. Both use f32 weights (TF.js has no bf16).
 * The math is the engine's (src/kernels/linear.ts), with the gradients written out (no autodiff
 * overhead on TF.js's side):
 *   S = X·Aᵀ, Y = X·Wᵀ + s·S·Bᵀ; dS = s·dY·B, dB = s·dYᵀ·S, dA = dSᵀ·X, dX = dY·W + dS·A.
 * Needs the devDependencies @tensorflow/tfjs-core and @tensorflow/tfjs-backend-webgpu; without
 * them, or when TF.js gets no WebGPU backend, it returns why and nothing is timed.
 */
import type { Gpu, Recorder } from '../gpu/context';
import { nodeNavigatorGpu } from '../gpu/node';
import type { Tensor } from '../gpu/tensor';
import { Workspace } from '../gpu/workspace';
import { type FrozenLinear, type LoraParams, recordLinearBackward, recordLinearForward } from '../kernels/linear';
import { tuneMatmul } from '../kernels/matmul/tune';
import { randomValues } from '../reference/check';

export interface TfjsBench {
  shape: string;
  r: number;
  tfjs_version: string;
  /** Median ms of one forward + backward, each side, and tabtune's speed-up over TF.js. */
  tfjs_ms: number;
  tabtune_ms: number;
  speedup: number;
  rounds: number;
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

type Tf = typeof import('@tensorflow/tfjs-core');

/** TF.js on the WebGPU backend, or why not. */
async function loadTf(): Promise<Tf | string> {
  // The backend registers itself at import only where navigator.gpu exists.
  const nav = ((globalThis as { navigator?: object }).navigator ??= {}) as { gpu?: unknown };
  if (!nav.gpu) Object.defineProperty(nav, 'gpu', { value: nodeNavigatorGpu(), configurable: true });
  let tf: Tf;
  try {
    tf = await import('@tensorflow/tfjs-core');
    await import('@tensorflow/tfjs-backend-webgpu');
  } catch (e) {
    return `TF.js is not installed (${(e as Error).message.split('\n')[0]}); run npm ci`;
  }
  if (!(await tf.setBackend('webgpu').catch(() => false))) return 'TF.js found no WebGPU adapter';
  return tf;
}

export async function benchTfjs(
  gpu: Gpu,
  o: { M: number; K: number; N: number; r: number; budgetMs: number; log: (l: string) => void },
): Promise<TfjsBench | { skipped: string }> {
  const { M, K, N, r } = o;
  const scale = 2;
  const tf = await loadTf();
  if (typeof tf === 'string') {
    o.log(`TF.js comparison skipped: ${tf}`);
    return { skipped: tf };
  }
  const data = {
    x: randomValues(M * K, 1, 1),
    w: randomValues(N * K, 2, 0.05),
    a: randomValues(r * K, 4, 1 / Math.sqrt(K)),
    b: randomValues(N * r, 5, 0.01),
    dy: randomValues(M * N, 3, 0.01),
  };
  // TF.js's side.
  const tx = tf.tensor2d(data.x, [M, K]);
  const tw = tf.tensor2d(data.w, [N, K]);
  const ta = tf.tensor2d(data.a, [r, K]);
  const tb = tf.tensor2d(data.b, [N, r]);
  const tdy = tf.tensor2d(data.dy, [M, N]);
  // Flushed as TF.js flushes before a read-back (its pass ended, its queue submitted), without reading.
  const backend = tf.backend() as unknown as { endComputePassEncoder(): void; submitQueue(): void; device: GPUDevice };
  const tfStep = async () => {
    const outs = tf.tidy(() => {
      const s = tf.matMul(tx, ta, false, true);
      const y = tf.add(tf.matMul(tx, tw, false, true), tf.mul(tf.matMul(s, tb, false, true), scale));
      const ds = tf.mul(tf.matMul(tdy, tb), scale);
      const db = tf.mul(tf.matMul(tdy, s, true, false), scale);
      const da = tf.matMul(ds, tx, true, false);
      const dx = tf.add(tf.matMul(tdy, tw), tf.matMul(ds, ta));
      return [y, dx, da, db];
    });
    backend.endComputePassEncoder();
    backend.submitQueue();
    await backend.device.queue.onSubmittedWorkDone();
    tf.dispose(outs);
  };
  // Tabtune's side, f32 W, with its shape classes tuned as a first training step would.
  const owned: Tensor[] = [];
  const t = (label: string, shape: number[], v?: Float32Array) => {
    const x = gpu.tensor(label, shape, 'f32', 'scratch', v);
    owned.push(x);
    return x;
  };
  const ws = new Workspace(gpu);
  try {
    const x = t('x', [M, K], data.x);
    const lin: FrozenLinear = { w: t('w', [N, K], data.w), bias: null, inF: K, outF: N, transposed: false };
    const lora: LoraParams = { a: t('A', [r, K], data.a), b: t('B', [N, r], data.b), r, scale, dropout: 0 };
    const dy = t('dy', [M, N], data.dy);
    const [y, s, dx, dA, dB] = [t('y', [M, N]), t('S', [M, r]), t('dx', [M, K]), t('dA', [r, K]), t('dB', [N, r])];
    const record = (rec: Recorder) => {
      recordLinearForward(gpu, rec, { x, M, lin, lora, y, s });
      recordLinearBackward(gpu, rec, { dy, x, M, lin, lora, s, dx, dA, dB, ws });
    };
    const ours = async () => {
      const rec = gpu.recorder('bench tfjs: tabtune');
      record(rec);
      rec.submit();
      await gpu.sync();
    };
    await ours(); // notes the shape classes
    await tuneMatmul(gpu);
    await ours();
    await tfStep(); // TF.js compiles its programs
    const times = { tfjs: [] as number[], tabtune: [] as number[] };
    const t0 = performance.now();
    for (let i = 0; i < 9 && (i < 3 || performance.now() - t0 < o.budgetMs); i++) {
      for (const [side, run] of [
        ['tabtune', ours],
        ['tfjs', tfStep],
      ] as const) {
        const s0 = performance.now();
        await run();
        times[side].push(performance.now() - s0);
      }
    }
    const res: TfjsBench = {
      shape: `${M}x${K}x${N}`,
      r,
      tfjs_version: tf.version_core,
      tfjs_ms: median(times.tfjs),
      tabtune_ms: median(times.tabtune),
      speedup: median(times.tfjs) / median(times.tabtune),
      rounds: times.tfjs.length,
    };
    o.log(
      `lora-linear fwd+bwd ${res.shape} r=${r}, f32 W: TF.js ${res.tfjs_version} WebGPU ${res.tfjs_ms.toFixed(1)} ms, ` +
        `tabtune tuned ${res.tabtune_ms.toFixed(1)} ms (${res.speedup.toFixed(2)}x TF.js, ${res.rounds} rounds alternately)`,
    );
    return res;
  } finally {
    gpu.kernels.choices.clear();
    gpu.kernels.seen.clear();
    tf.dispose([tx, tw, ta, tb, tdy]);
    ws.dispose();
    for (const x of owned) gpu.free(x);
  }
}
