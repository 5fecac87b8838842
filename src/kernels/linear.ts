/**
 * The frozen linear layer with an optional LoRA adapter, forward and backward, on the matmul
 * template (src/kernels/matmul.ts, shaders/matmul.wgsl). Shapes: X [M, inF], W [outF, inF]
 * (nn.Linear) or [inF, outF] (GPT-2 Conv1D, `transposed`), A [r, inF], B [outF, r], s = scale,
 * drop(X) = X ∘ mask / (1 - p) with mask = hash(seed, row, col) (src/numerics/dropout.ts).
 *
 * Forward, 2 dispatches (W + s·B·A is never materialised):
 *   S = drop(X)·Aᵀ                          [M, r], saved for backward
 *   Y (+)= X·Wᵀ + b + s·S·Bᵀ                one GEMM whose K loop runs inF + r columns
 * Backward (no dW, W is frozen):
 *   dS = s·dY·B                             [M, r] (workspace)
 *   dB (+)= s·dYᵀ·S                         split-K over M, fixed-order second pass
 *   dA (+)= dSᵀ·drop(X)                     split-K over M, mask regenerated in the loader
 *   dX (+)= dY·W + drop'(dS·A)              one GEMM with K = outF + r; the LoRA part passes back
 *                                           through the same dropout mask (per output element)
 * Nothing is reduced with atomics, so dA / dB are bit-identical from run to run.
 *
 * (IA)³ instead of LoRA (PEFT's IA3 Linear, shaders/ia3.wgsl for the scaling): a vector l scales
 * the input of a feed-forward module or the output (bias included) of any other:
 *   input:  Xs = X ∘ l (saved in `ia3Save` [M, inF]);  Y (+)= Xs·Wᵀ + b
 *           backward: dXs = dY·W;  dl (+)= Σ_rows X ∘ dXs;  dX (+)= dXs ∘ l
 *   output: Yb = X·Wᵀ + b (saved in `ia3Save` [M, outF]);  Y (+)= Yb ∘ l
 *           backward: dl (+)= Σ_rows dY ∘ Yb;  dX (+)= (dY ∘ l)·W
 * DoRA (`lora.dora`, PEFT's use_dora; src/kernels/dora.ts has the algebra): before the forward,
 * PT = A·Wᵀ [r, outF] (the frozen weight's own GEMM with A as the rows) and G = A·Aᵀ [r, r] give
 * g = m / ||W + s·B·A|| per output row; after it, Z = drop(X)·Wᵀ + s·S·Bᵀ (saved in `z`) and
 * Y += (g - 1)∘Z. Backward: dm = Σ_t dY∘Z / n; the LoRA part sees g∘dY instead of dY; dX is
 * dY·W + drop'((g - 1)∘dY·W + dS·A) (one GEMM, (g∘dY)·W + dS·A, without dropout).
 * A 4-bit NF4 W (QLoRA) is read by both W GEMMs (forward X·Wᵀ, backward dY·W, and the small-M
 * decode kernel) through the matmul's dequantizing loader: it is never widened into a copy.
 */
import type { Gpu, Recorder } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import type { Workspace } from '../gpu/workspace';
import { recordIa3Grad, recordIa3Scale } from './ia3';
import { type DoraParams, recordDoraColScale, recordDoraMagGrad, recordDoraNorm } from './dora';
import { recordDropout } from './dropout';
import { recordAdd } from './elementwise';
import { type DropoutSpec, type MatmulExtra, recordMatmul } from './matmul';
import type { Nf4Tensor } from './nf4';

export interface FrozenLinear {
  /**
   * f32|f16|bf16 [outF, inF] (nn.Linear) or [inF, outF] when transposed=true (GPT-2 Conv1D), or a
   * 4-bit NF4 weight (src/kernels/nf4.ts, always [outF, inF]), dequantized as the matmuls load it.
   */
  w: Tensor | Nf4Tensor;
  bias: Tensor | null; // f32|f16|bf16 [outF]
  inF: number;
  outF: number;
  transposed: boolean;
}

export interface LoraParams {
  a: Tensor; // f32 [r, inF]
  b: Tensor; // f32 [outF, r]
  r: number;
  scale: number; // lora_alpha / r (or / sqrt(r) for rsLoRA) — computed by the caller
  dropout: number; // probability p in [0,1); kept elements are scaled by 1/(1-p)
  /** DoRA's magnitude and norms (PEFT use_dora); absent for plain LoRA. */
  dora?: DoraParams | null;
}

/** An (IA)³ vector: f32 [inF] scaling the input (feed-forward modules) or [outF] scaling the output. */
export interface Ia3Params {
  l: Tensor;
  input: boolean;
}

export interface LinearForwardArgs {
  x: Tensor; // f32 [M, inF]
  M: number;
  lin: FrozenLinear;
  lora?: LoraParams | null;
  ia3?: Ia3Params | null;
  /** (IA)³: f32 [M, inF] (input) or [M, outF] (output) the forward writes and backward reads. */
  ia3Save?: Tensor;
  /** u32 dropout seed; the mask is a pure hash of (seed, row, col) so backward regenerates it. */
  seed?: number;
  y: Tensor; // f32 [M, outF]
  /** f32 [M, r] saved S = drop(x)·Aᵀ (required when lora given). */
  s?: Tensor;
  /** y += result instead of y = result. */
  accumulate?: boolean;
  /** DoRA: f32 [M, outF] saved Z = drop(x)·Wᵀ + s·S·Bᵀ, and the workspace for PT and G. */
  z?: Tensor;
  ws?: Workspace;
  /** Lower the per-binding byte limit (tests of the chunked weight path). */
  maxBindingBytes?: number;
}

export interface LinearBackwardArgs {
  dy: Tensor; // f32 [M, outF]
  x: Tensor; // f32 [M, inF]
  M: number;
  lin: FrozenLinear;
  lora?: LoraParams | null;
  ia3?: Ia3Params | null;
  /** (IA)³: the forward's `ia3Save` (read for an output vector's gradient). */
  ia3Save?: Tensor;
  /** (IA)³ gradient, f32 like `ia3.l`. */
  dl?: Tensor;
  seed?: number;
  /** Saved S from forward. */
  s?: Tensor;
  /** f32 [M, inF]; null = do not compute dX. */
  dx: Tensor | null;
  /** dx += ... (for q/k/v sharing one input). */
  accumulateDx?: boolean;
  dA?: Tensor; // f32 [r, inF]
  dB?: Tensor; // f32 [outF, r]
  /** DoRA: the magnitude's gradient f32 [outF], and the Z the forward saved. */
  dM?: Tensor;
  z?: Tensor;
  /** dA += ..., dB += ... (gradient accumulation). */
  accumulateGrads?: boolean;
  /** For dS [M, r] and the split-K partial sums. */
  ws: Workspace;
  /** Lower the per-binding byte limit (tests of the chunked weight path). */
  maxBindingBytes?: number;
}

function activeLora(lora: LoraParams | null | undefined, lin: FrozenLinear): LoraParams | null {
  if (!lora) return null;
  if (!Number.isInteger(lora.r) || lora.r < 1)
    throw new GpuError(`LoRA rank must be a positive integer, got ${lora.r}.`);
  if (!(lora.dropout >= 0 && lora.dropout < 1)) {
    throw new GpuError(`LoRA dropout must be in [0, 1), got ${lora.dropout}.`);
  }
  if (lora.a.dtype !== 'f32' || lora.b.dtype !== 'f32') throw new GpuError('LoRA A and B must be f32 tensors.');
  const need = (t: Tensor, n: number, what: string) => {
    if (t.buffer.size < n * 4) {
      throw new GpuError(
        `LoRA ${what} "${t.label}" has ${t.buffer.size} bytes; [${what === 'A' ? `${lora.r}, ${lin.inF}` : `${lin.outF}, ${lora.r}`}] needs ${n * 4}.`,
      );
    }
  };
  need(lora.a, lora.r * lin.inF, 'A');
  need(lora.b, lin.outF * lora.r, 'B');
  return lora;
}

/** The frozen weight as a matmul operand (a 4-bit one as it is: the matmul dequantizes it). */
function frozenWeight(lin: FrozenLinear): Tensor | Nf4Tensor {
  const w = lin.w;
  if (!('format' in w)) return w;
  if (lin.transposed) throw new GpuError(`NF4 weight "${w.label}" is [out, in]; it cannot be marked transposed.`);
  if (w.rows !== lin.outF || w.cols !== lin.inF) {
    throw new GpuError(`NF4 weight "${w.label}" is [${w.rows}, ${w.cols}]; the layer is [${lin.outF}, ${lin.inF}].`);
  }
  return w;
}

function dropSpec(lora: LoraParams, seed: number | undefined): DropoutSpec | null {
  return lora.dropout > 0 ? { seed: (seed ?? 0) >>> 0, p: lora.dropout } : null;
}

function activeIa3(args: { ia3?: Ia3Params | null; ia3Save?: Tensor; lora?: LoraParams | null }, what: string) {
  if (!args.ia3) return null;
  if (args.lora) throw new GpuError(`${what}: a module has a LoRA or an (IA)³ adapter, not both.`);
  if (!args.ia3Save) throw new GpuError(`${what}: an (IA)³ layer needs \`ia3Save\` (its scaled input or base output).`);
  return { ...args.ia3, save: args.ia3Save };
}

/** Records Y (+)= X·Wᵀ + b (+ s·drop(X)·Aᵀ·Bᵀ), saving S = drop(X)·Aᵀ; or the (IA)³-scaled layer. */
export function recordLinearForward(gpu: Gpu, rec: Recorder, args: LinearForwardArgs): void {
  const { lin, M } = args;
  const ia3 = activeIa3(args, 'recordLinearForward');
  if (ia3 && ia3.input) {
    recordIa3Scale(gpu, rec, { x: args.x, l: ia3.l, out: ia3.save, rows: M, cols: lin.inF });
    recordLinearForward(gpu, rec, { ...args, ia3: null, x: ia3.save });
    return;
  }
  if (ia3) {
    recordLinearForward(gpu, rec, { ...args, ia3: null, y: ia3.save, accumulate: false });
    recordIa3Scale(gpu, rec, {
      x: ia3.save,
      l: ia3.l,
      out: args.y,
      rows: M,
      cols: lin.outF,
      accumulate: args.accumulate,
    });
    return;
  }
  const lora = activeLora(args.lora, lin);
  let extra: MatmulExtra | null = null;
  if (lora?.dora) recordNormOf(gpu, rec, lin, lora, lora.dora, args);
  if (lora) {
    if (!args.s) throw new GpuError('recordLinearForward: a LoRA layer needs `s` (f32 [M, r]) to save S for backward.');
    // S [M, r] = drop(X) [M, inF] · A[r, inF]ᵀ
    recordMatmul(gpu, rec, {
      a: args.x,
      b: lora.a,
      c: args.s,
      M,
      N: lora.r,
      K: lin.inF,
      transB: true,
      dropoutA: dropSpec(lora, args.seed),
    });
    // ... + scale · S [M, r] · B[outF, r]ᵀ, in the same K loop as X·Wᵀ
    extra = { a: args.s, b: lora.b, K: lora.r, transB: true, alpha: lora.scale };
  }
  // Y [M, outF] = X [M, inF] · W[outF, inF]ᵀ (or X · W[inF, outF] for Conv1D) + bias
  recordMatmul(gpu, rec, {
    a: args.x,
    b: frozenWeight(lin),
    c: args.y,
    M,
    N: lin.outF,
    K: lin.inF,
    transB: !lin.transposed,
    bias: lin.bias,
    accumulate: args.accumulate,
    extra,
    maxBindingBytes: args.maxBindingBytes,
  });
  if (lora?.dora && extra) {
    // Z [M, outF] = drop(X)·Wᵀ + s·S·Bᵀ (PEFT's dropped base result without bias, plus the LoRA
    // output), then Y += (g - 1)∘Z.
    const z = args.z!;
    recordMatmul(gpu, rec, {
      a: args.x,
      b: frozenWeight(lin),
      c: z,
      M,
      N: lin.outF,
      K: lin.inF,
      transB: !lin.transposed,
      dropoutA: dropSpec(lora, args.seed),
      extra,
      maxBindingBytes: args.maxBindingBytes,
    });
    recordDoraColScale(gpu, rec, {
      x: z,
      gi: lora.dora.gi,
      out: args.y,
      rows: M,
      outF: lin.outF,
      shift: 1,
      accumulate: true,
    });
  }
}

/** DoRA's g = m / ||W + s·B·A|| per output row into dora.gi, from PT = A·Wᵀ and G = A·Aᵀ. */
function recordNormOf(
  gpu: Gpu,
  rec: Recorder,
  lin: FrozenLinear,
  lora: LoraParams,
  dora: DoraParams,
  args: LinearForwardArgs,
): void {
  if (!args.z || !args.ws)
    throw new GpuError('recordLinearForward: a DoRA layer needs `z` (f32 [M, outF]) and a workspace `ws`.');
  const pt = args.ws.get('dora.PT', [lora.r, lin.outF]);
  // PT [r, outF] = A [r, inF] · W[outF, inF]ᵀ: the layer's own forward GEMM with A's rows as tokens.
  recordMatmul(gpu, rec, {
    a: lora.a,
    b: frozenWeight(lin),
    c: pt,
    M: lora.r,
    N: lin.outF,
    K: lin.inF,
    transB: !lin.transposed,
    maxBindingBytes: args.maxBindingBytes,
  });
  const gram = args.ws.get('dora.G', [lora.r, lora.r]);
  recordMatmul(gpu, rec, { a: lora.a, b: lora.a, c: gram, M: lora.r, N: lora.r, K: lin.inF, transB: true });
  recordDoraNorm(gpu, rec, { dora, b: lora.b, pt, gram, outF: lin.outF, r: lora.r, scale: lora.scale });
}

/** Split-K slices for a reduction over M tokens: deterministic in M, about 256 tokens a slice. */
export function splitsFor(M: number): number {
  return Math.max(1, Math.min(16, Math.floor(M / 256)));
}

/** Records dA, dB (LoRA gradients) or dl ((IA)³) and dX of the layer; see the file comment. */
export function recordLinearBackward(gpu: Gpu, rec: Recorder, args: LinearBackwardArgs): void {
  const { lin, M } = args;
  const ia3 = activeIa3(args, 'recordLinearBackward');
  if (ia3 && ia3.input) {
    if (!args.dl && !args.dx) return;
    // dXs [M, inF] = dY · W, then dl (+)= Σ X ∘ dXs and dX (+)= dXs ∘ l
    const dxs = args.ws.get('linear.ia3.dx', [M, lin.inF]);
    recordLinearBackward(gpu, rec, { ...args, ia3: null, dx: dxs, accumulateDx: false });
    if (args.dl)
      recordIa3Grad(gpu, rec, {
        a: args.x,
        b: dxs,
        dl: args.dl,
        rows: M,
        cols: lin.inF,
        accumulate: args.accumulateGrads,
      });
    if (args.dx)
      recordIa3Scale(gpu, rec, {
        x: dxs,
        l: ia3.l,
        out: args.dx,
        rows: M,
        cols: lin.inF,
        accumulate: args.accumulateDx,
      });
    return;
  }
  if (ia3) {
    if (args.dl)
      recordIa3Grad(gpu, rec, {
        a: args.dy,
        b: ia3.save,
        dl: args.dl,
        rows: M,
        cols: lin.outF,
        accumulate: args.accumulateGrads,
      });
    if (!args.dx) return;
    const dyb = args.ws.get('linear.ia3.dy', [M, lin.outF]);
    recordIa3Scale(gpu, rec, { x: args.dy, l: ia3.l, out: dyb, rows: M, cols: lin.outF });
    recordLinearBackward(gpu, rec, { ...args, ia3: null, dy: dyb });
    return;
  }
  const lora = activeLora(args.lora, lin);
  let extra: MatmulExtra | null = null;
  // DoRA: the LoRA part (and, without dropout, the whole dX GEMM) sees dYg = g∘dY.
  let dyL = args.dy;
  if (lora?.dora) {
    if (!args.z) throw new GpuError('recordLinearBackward: a DoRA layer needs the `z` its forward saved.');
    const gi = lora.dora.gi;
    if (args.dM) {
      recordDoraMagGrad(gpu, rec, {
        dy: args.dy,
        z: args.z,
        gi,
        dm: args.dM,
        rows: M,
        outF: lin.outF,
        accumulate: args.accumulateGrads,
      });
    }
    dyL = args.ws.get('dora.dYg', [M, lin.outF]);
    recordDoraColScale(gpu, rec, { x: args.dy, gi, out: dyL, rows: M, outF: lin.outF, shift: 0 });
  }
  if (lora) {
    const drop = dropSpec(lora, args.seed);
    const wantDs = !!args.dA || !!args.dx;
    if (args.dB) {
      if (!args.s) throw new GpuError('recordLinearBackward: dB needs the S saved by the forward (`s`).');
      // dB [outF, r] (+)= scale · dY[M, outF]ᵀ · S [M, r]
      recordMatmul(gpu, rec, {
        a: dyL,
        b: args.s,
        c: args.dB,
        M: lin.outF,
        N: lora.r,
        K: M,
        transA: true,
        alpha: lora.scale,
        accumulate: args.accumulateGrads,
        splitK: splitsFor(M),
        ws: args.ws,
      });
    }
    if (wantDs) {
      // dS [M, r] = scale · dY [M, outF] · B [outF, r]
      const dS = args.ws.get('linear.dS', [M, lora.r]);
      recordMatmul(gpu, rec, { a: dyL, b: lora.b, c: dS, M, N: lora.r, K: lin.outF, alpha: lora.scale });
      if (args.dA) {
        // dA [r, inF] (+)= dS[M, r]ᵀ · drop(X) [M, inF]
        recordMatmul(gpu, rec, {
          a: dS,
          b: args.x,
          c: args.dA,
          M: lora.r,
          N: lin.inF,
          K: M,
          transA: true,
          dropoutB: drop,
          accumulate: args.accumulateGrads,
          splitK: splitsFor(M),
          ws: args.ws,
        });
      }
      // ... + drop'(dS [M, r] · A [r, inF]) in the dX GEMM
      extra = { a: dS, b: lora.a, K: lora.r, dropoutOut: drop };
    }
  }
  if (!args.dx) return;
  const dora = lora?.dora ? lora : null;
  const droppedDora = dora && extra?.dropoutOut ? extra : null;
  // dX [M, inF] (+)= dY [M, outF] · W [outF, inF] (or · W[inF, outF]ᵀ for Conv1D) + drop'(dS·A);
  // DoRA without dropout: (g∘dY)·W + dS·A; with dropout the dropped part follows below.
  recordMatmul(gpu, rec, {
    a: dora && !droppedDora ? dyL : args.dy,
    b: frozenWeight(lin),
    c: args.dx,
    M,
    N: lin.inF,
    K: lin.outF,
    transB: lin.transposed,
    accumulate: args.accumulateDx,
    extra: droppedDora ? null : extra,
    maxBindingBytes: args.maxBindingBytes,
  });
  if (dora && droppedDora) {
    // dX += drop'((g - 1)∘dY·W + dS·A): both parts of PEFT's dropped branch, through one mask.
    const dZ = args.ws.get('dora.dZ', [M, lin.outF]);
    recordDoraColScale(gpu, rec, { x: args.dy, gi: dora.dora!.gi, out: dZ, rows: M, outF: lin.outF, shift: 1 });
    const t = args.ws.get('dora.T', [M, lin.inF]);
    recordMatmul(gpu, rec, {
      a: dZ,
      b: frozenWeight(lin),
      c: t,
      M,
      N: lin.inF,
      K: lin.outF,
      transB: lin.transposed,
      extra: { ...droppedDora, dropoutOut: null },
      maxBindingBytes: args.maxBindingBytes,
    });
    const dropped = args.ws.get('dora.dropped', [M, lin.inF]);
    const d = droppedDora.dropoutOut!;
    recordDropout(gpu, rec, { x: t, y: dropped, rows: M, cols: lin.inF, seed: d.seed, p: d.p });
    recordAdd(gpu, rec, { a: args.dx, b: dropped, n: M * lin.inF });
  }
}
