/**
 * Records the whole model's forward and backward passes on the GPU.
 *
 * Shape legend: B batch, S sequence length, T = B*S tokens, H hidden, nH / nKV query / key-value
 * heads, hd head dim, I MLP width, V vocab, r LoRA rank.
 *
 * One layer, llama family (flags: qkvBias, qkNorm for qwen3, GQA when nKV < nH):
 *   h1 = RMSNorm(x) -> q,k,v = LoRALinear(h1) -> [qk-norm] -> RoPE -> attention -> x += o_proj(o)
 *   h2 = RMSNorm(x) -> g,u = LoRALinear(h2) -> a = silu(g)*u -> x += down(a)
 * GPT-2: LayerNorm, fused c_attn (split into q,k,v), learned positions, GELU(tanh) MLP, Conv1D weights.
 *
 * In 'train' mode every layer keeps what backward needs (inputs of each norm and linear, q/k/v after
 * RoPE, the attention output and logsumexp, the LoRA intermediates S). In 'infer' mode one set of
 * buffers serves every layer and keys/values go into a KV cache for generation.
 *
 * Only LoRA parameters get gradients. Embeddings, norms and base linears are frozen, so backward
 * computes dX through them and nothing else, and stops above the first layer's input.
 */

import type { Gpu, Recorder } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { Workspace } from '../gpu/workspace';
import { recordSwiGlu, recordSwiGluBackward, recordGelu, recordGeluBackward } from '../kernels/activation';
import { recordAttention, recordAttentionBackward, recordAttentionDecode } from '../kernels/attention';
import { recordCrossEntropy, recordLogits } from '../kernels/cross_entropy';
import { recordEmbedding } from '../kernels/embedding';
import { recordCopyRows, recordFill } from '../kernels/elementwise';
import { type LoraParams, recordLinearBackward, recordLinearForward } from '../kernels/linear';
import { recordLayerNorm, recordLayerNormBackward, recordRmsNorm, recordRmsNormBackward } from '../kernels/norm';
import { recordRope, ropeInvFreq } from '../kernels/rope';
import type { GpuLora } from '../lora/gpu-lora';
import type { GpuModel } from './gpu-model';
import type { LinearModule } from './registry';

/** train: keeps every layer's activations for backward; eval: forward + loss only, one buffer set
 * shared by all layers; infer: like eval plus a KV cache for generation (batch 1). */
/** The LoRA dropout seed of module `moduleIndex` (index in GpuModel.linears) in micro-step `base`. */
export function dropoutSeed(base: number, moduleIndex: number): number {
  return (Math.imul(base + 1, 0x9e3779b1) + Math.imul(moduleIndex + 1, 0x85ebca6b)) >>> 0;
}

export type RunnerMode = 'train' | 'eval' | 'infer';

export interface RunnerOptions {
  mode: RunnerMode;
  /** Largest B*S (train) or largest prompt chunk (infer) this runner records. */
  maxTokens: number;
  /** infer: KV cache length (prompt + generated tokens). */
  maxContext?: number;
  /** Vocabulary chunk of the cross-entropy (tests force tiny chunks). */
  ceChunk?: number;
  /**
   * train: keep only each layer's input and recompute the layer just before its backward
   * (activation checkpointing). Same results bit for bit; activation memory drops from
   * ~layers x (everything a layer saves) to layers x T x H plus one layer's set.
   */
  checkpointActivations?: boolean;
}

interface NormSave {
  y: Tensor; // [T, H] normalised output (input of the next linear)
  rstd: Tensor; // [T]
  mean: Tensor | null; // [T] LayerNorm only
}

interface LayerActs {
  xIn: Tensor; // [T, H] residual stream entering the layer
  n1: NormSave;
  qkv: Tensor | null; // [T, 3H] GPT-2 fused projection output
  qPre: Tensor | null; // [T, nH*hd] before qk-norm (qwen3)
  kPre: Tensor | null;
  qRstd: Tensor | null; // [T*nH]
  kRstd: Tensor | null; // [T*nKV]
  q: Tensor; // [T, nH*hd] after RoPE
  k: Tensor; // [T, nKV*hd]
  v: Tensor; // [T, nKV*hd]
  o: Tensor; // [T, nH*hd] attention output
  lse: Tensor; // [T*nH]
  xMid: Tensor; // [T, H] residual after attention
  n2: NormSave;
  g: Tensor; // [T, I] gate (llama) or fc output (gpt2)
  u: Tensor | null; // [T, I] up (llama)
  a: Tensor; // [T, I] MLP activation
  s: Map<string, Tensor>; // LoRA S per module path [T, r]
}

export interface ForwardArgs {
  B: number;
  S: number;
  lora: GpuLora | null;
  /** Dropout seed for this micro-step (train mode only; dropout is off in infer mode). */
  seed?: number;
  /** Apply LoRA dropout (training). */
  dropout?: boolean;
}

export class ModelRunner {
  readonly ids: Tensor; // u32 [maxT]
  readonly positions: Tensor; // u32 [maxT]
  readonly targets: Tensor; // u32 [maxT]
  readonly lossSum: Tensor; // f32 [1] running sum of token losses
  readonly countSum: Tensor; // f32 [1] running count of counted tokens
  private readonly lossOut: Tensor; // f32 [2]: (sum, count) copied out for one readback
  readonly rowLoss: Tensor; // f32 [maxT]
  readonly logits: Tensor | null; // f32 [V] (infer)
  private readonly acts: LayerActs[];
  private readonly xFinal: Tensor;
  private readonly nf: NormSave;
  private readonly ws: Workspace;
  private readonly kCache: Tensor[] = [];
  private readonly vCache: Tensor[] = [];
  private readonly lastHidden: Tensor | null;
  private readonly owned: Tensor[] = [];
  /** RoPE frequencies when the config scales them (llama3 / linear); undefined = plain theta. */
  private readonly invFreq: Float32Array | undefined;

  constructor(
    readonly gpu: Gpu,
    readonly model: GpuModel,
    readonly opts: RunnerOptions,
  ) {
    const c = model.config;
    const T = opts.maxTokens;
    const cat = opts.mode === 'train' ? 'activations' : 'scratch';
    const mk = (label: string, shape: number[], dtype: 'f32' | 'u32' = 'f32', category = cat) => {
      const t = gpu.tensor(label, shape, dtype, category as 'activations');
      this.owned.push(t);
      return t;
    };
    this.ws = new Workspace(gpu);
    this.invFreq = c.rope?.scaling ? ropeInvFreq(c.rope.rotaryDim, c.rope.theta, c.rope.scaling) : undefined;
    this.ids = mk('ids', [T], 'u32', 'io');
    this.positions = mk('positions', [T], 'u32', 'io');
    this.targets = mk('targets', [T], 'u32', 'io');
    this.lossSum = mk('lossSum', [1], 'f32', 'io');
    this.countSum = mk('countSum', [1], 'f32', 'io');
    this.lossOut = mk('lossOut', [2], 'f32', 'io');
    this.rowLoss = mk('rowLoss', [T], 'f32', 'io');
    const H = c.hiddenSize;
    const qW = c.numHeads * c.headDim;
    const kvW = c.numKvHeads * c.headDim;
    const I = c.intermediateSize;
    const gpt2 = c.arch === 'gpt2';
    const norm = (l: string): NormSave => ({
      y: mk(`${l}.y`, [T, H]),
      rstd: mk(`${l}.rstd`, [T]),
      mean: c.norm === 'layer' ? mk(`${l}.mean`, [T]) : null,
    });
    const layerActs = (l: string): LayerActs => ({
      xIn: mk(`${l}.xIn`, [T, H]),
      n1: norm(`${l}.n1`),
      qkv: gpt2 ? mk(`${l}.qkv`, [T, qW + 2 * kvW]) : null,
      qPre: c.qkNorm ? mk(`${l}.qPre`, [T, qW]) : null,
      kPre: c.qkNorm ? mk(`${l}.kPre`, [T, kvW]) : null,
      qRstd: c.qkNorm ? mk(`${l}.qRstd`, [T * c.numHeads]) : null,
      kRstd: c.qkNorm ? mk(`${l}.kRstd`, [T * c.numKvHeads]) : null,
      q: mk(`${l}.q`, [T, qW]),
      k: mk(`${l}.k`, [T, kvW]),
      v: mk(`${l}.v`, [T, kvW]),
      o: mk(`${l}.o`, [T, qW]),
      lse: mk(`${l}.lse`, [T * c.numHeads]),
      xMid: mk(`${l}.xMid`, [T, H]),
      n2: norm(`${l}.n2`),
      g: mk(`${l}.g`, [T, I]),
      u: gpt2 ? null : mk(`${l}.u`, [T, I]),
      a: mk(`${l}.a`, [T, I]),
      s: new Map(),
    });
    if (opts.mode === 'train' && !opts.checkpointActivations) {
      this.acts = Array.from({ length: c.numLayers }, (_, i) => layerActs(`L${i}`));
    } else if (opts.mode === 'train') {
      // One shared set of layer activations; each layer keeps only its own input.
      const shared = layerActs('L*');
      this.acts = Array.from({ length: c.numLayers }, (_, i) =>
        i === 0 ? shared : { ...shared, xIn: mk(`L${i}.xIn`, [T, H]) },
      );
    } else {
      const shared = layerActs('L*');
      this.acts = Array.from({ length: c.numLayers }, () => shared);
      const ctx = opts.maxContext ?? T;
      for (let i = 0; i < c.numLayers && opts.mode === 'infer'; i++) {
        this.kCache.push(mk(`L${i}.kCache`, [ctx, kvW], 'f32', 'activations'));
        this.vCache.push(mk(`L${i}.vCache`, [ctx, kvW], 'f32', 'activations'));
      }
    }
    this.xFinal = mk('xFinal', [T, H]);
    this.nf = norm('final');
    this.lastHidden = opts.mode === 'infer' ? mk('lastHidden', [1, H]) : null;
    this.logits = opts.mode === 'infer' ? mk('logits', [c.vocabSize]) : null;
  }

  get maxTokens(): number {
    return this.opts.maxTokens;
  }

  get maxContext(): number {
    return this.opts.maxContext ?? this.opts.maxTokens;
  }

  /** Uploads token ids, positions and targets of a batch (queue writes, ordered before the next submit). */
  setBatch(ids: Uint32Array, positions: Uint32Array, targets?: Uint32Array): void {
    if (ids.length > this.opts.maxTokens) {
      throw new GpuError(`Batch of ${ids.length} tokens exceeds this runner's capacity of ${this.opts.maxTokens}.`);
    }
    this.gpu.write(this.ids, ids);
    this.gpu.write(this.positions, positions);
    if (targets) this.gpu.write(this.targets, targets);
  }

  /** Zeroes the loss and token-count accumulators. */
  recordResetLoss(rec: Recorder): void {
    recordFill(this.gpu, rec, { out: this.lossSum, n: 1, value: 0 });
    recordFill(this.gpu, rec, { out: this.countSum, n: 1, value: 0 });
  }

  /**
   * Reads the accumulated loss sum and counted-token count in one submit and one readback; with
   * `reset` the same submit zeroes them.
   */
  async readLoss(reset = false): Promise<{ sum: number; count: number }> {
    const rec = this.gpu.recorder(reset ? 'read-reset-loss' : 'read-loss');
    rec.copy(this.lossSum, this.lossOut, 4, 0, 0);
    rec.copy(this.countSum, this.lossOut, 4, 0, 4);
    if (reset) this.recordResetLoss(rec);
    rec.submit();
    const [sum, count] = await this.gpu.read(this.lossOut);
    return { sum: sum!, count: count! };
  }

  // ------------------------------------------------------------------ forward

  private sFor(L: LayerActs, path: string, r: number, T: number): Tensor {
    const key = `${path}#${r}`;
    let s = L.s.get(key);
    if (!s) {
      s = this.gpu.tensor(
        `${path}.S`,
        [this.opts.maxTokens, r],
        'f32',
        this.opts.mode === 'train' ? 'activations' : 'scratch',
      );
      this.owned.push(s);
      L.s.set(key, s);
    }
    void T;
    return s;
  }

  private loraFor(lora: GpuLora | null, m: LinearModule, dropout: boolean): LoraParams | null {
    const p = lora?.get(m.path) ?? null;
    if (!p) return null;
    return dropout ? p : { ...p, dropout: 0 };
  }

  private seedFor(base: number, moduleIndex: number): number {
    return dropoutSeed(base, moduleIndex);
  }

  private linear(
    rec: Recorder,
    L: LayerActs,
    m: LinearModule,
    x: Tensor,
    y: Tensor,
    T: number,
    f: ForwardArgs,
    accumulate = false,
  ): void {
    const lora = this.loraFor(f.lora, m, !!f.dropout);
    recordLinearForward(this.gpu, rec, {
      x,
      M: T,
      lin: this.model.frozen(m),
      lora,
      seed: this.seedFor(f.seed ?? 0, this.model.linears.indexOf(m)),
      y,
      s: lora ? this.sFor(L, m.path, lora.r, T) : undefined,
      accumulate,
    });
  }

  private norm(rec: Recorder, x: Tensor, w: { w: string; b: string | null }, save: NormSave, rows: number): void {
    const c = this.model.config;
    if (c.norm === 'rms') {
      recordRmsNorm(this.gpu, rec, {
        x,
        w: this.model.weight(w.w),
        y: save.y,
        rstd: save.rstd,
        rows,
        dim: c.hiddenSize,
        eps: c.normEps,
      });
    } else {
      if (!w.b || !save.mean) throw new GpuError('LayerNorm needs a bias and a mean buffer.');
      recordLayerNorm(this.gpu, rec, {
        x,
        w: this.model.weight(w.w),
        b: this.model.weight(w.b),
        y: save.y,
        mean: save.mean,
        rstd: save.rstd,
        rows,
        dim: c.hiddenSize,
        eps: c.normEps,
      });
    }
  }

  private normBackward(
    rec: Recorder,
    dy: Tensor,
    x: Tensor,
    w: { w: string; b: string | null },
    save: NormSave,
    dx: Tensor,
    rows: number,
    accumulate: boolean,
  ): void {
    const c = this.model.config;
    if (c.norm === 'rms') {
      recordRmsNormBackward(this.gpu, rec, {
        dy,
        x,
        w: this.model.weight(w.w),
        rstd: save.rstd,
        dx,
        rows,
        dim: c.hiddenSize,
        accumulate,
      });
    } else {
      recordLayerNormBackward(this.gpu, rec, {
        dy,
        x,
        w: this.model.weight(w.w),
        mean: save.mean!,
        rstd: save.rstd,
        dx,
        rows,
        dim: c.hiddenSize,
        accumulate,
      });
    }
  }

  /**
   * Records the forward pass of T = B*S tokens up to the final norm (train), or of one chunk of
   * B = 1 tokens at positions past..past+S-1 through the KV cache (infer, `past` given).
   */
  recordForward(rec: Recorder, f: ForwardArgs, past = 0): void {
    const gpu = this.gpu;
    const c = this.model.config;
    const arch = this.model.arch;
    const T = f.B * f.S;
    if (T > this.opts.maxTokens) throw new GpuError(`Forward of ${T} tokens exceeds capacity ${this.opts.maxTokens}.`);
    const infer = this.opts.mode === 'infer';
    if (infer && (f.B !== 1 || past + f.S > this.maxContext)) {
      throw new GpuError(`Generation context of ${past + f.S} tokens exceeds the KV cache (${this.maxContext}).`);
    }
    const H = c.hiddenSize;
    const x0 = this.acts[0]!.xIn;
    recordEmbedding(gpu, rec, { table: this.model.weight(arch.embed), ids: this.ids, out: x0, T, H });
    if (arch.posEmbed) {
      recordEmbedding(gpu, rec, {
        table: this.model.weight(arch.posEmbed),
        ids: this.positions,
        out: x0,
        T,
        H,
        accumulate: true,
      });
    }
    for (let l = 0; l < c.numLayers; l++) {
      const next = l + 1 < c.numLayers ? this.acts[l + 1]!.xIn : this.xFinal;
      this.recordLayer(rec, l, f, T, past, next);
    }
    this.norm(rec, this.xFinal, arch.finalNorm, this.nf, T);
  }

  /**
   * One transformer layer: reads acts[l].xIn, writes the layer's saved activations and the
   * layer's output residual into `next`.
   */
  private recordLayer(rec: Recorder, l: number, f: ForwardArgs, T: number, past: number, next: Tensor): void {
    const gpu = this.gpu;
    const c = this.model.config;
    const arch = this.model.arch;
    const infer = this.opts.mode === 'infer';
    const H = c.hiddenSize;
    const qW = c.numHeads * c.headDim;
    const kvW = c.numKvHeads * c.headDim;
    const L = this.acts[l]!;
    const W = arch.layers[l]!;
    const byRole = (role: string) => W.linears.find((m) => m.role === role);
    this.norm(rec, L.xIn, W.inputNorm, L.n1, T);
    const qOut = L.qPre ?? L.q;
    const kOut = L.kPre ?? L.k;
    const qkvM = byRole('qkv');
    if (qkvM) {
      this.linear(rec, L, qkvM, L.n1.y, L.qkv!, T, f);
      const split = (dst: Tensor, col0: number, width: number) =>
        recordCopyRows(gpu, rec, {
          src: L.qkv!,
          dst,
          rows: T,
          width,
          srcStride: qW + 2 * kvW,
          srcCol0: col0,
          dstStride: width,
        });
      split(qOut, 0, qW);
      split(kOut, qW, kvW);
      split(L.v, qW + kvW, kvW);
    } else {
      this.linear(rec, L, byRole('q')!, L.n1.y, qOut, T, f);
      this.linear(rec, L, byRole('k')!, L.n1.y, kOut, T, f);
      this.linear(rec, L, byRole('v')!, L.n1.y, L.v, T, f);
    }
    if (c.qkNorm) {
      recordRmsNorm(gpu, rec, {
        x: L.qPre!,
        w: this.model.weight(W.qNorm!),
        y: L.q,
        rstd: L.qRstd!,
        rows: T * c.numHeads,
        dim: c.headDim,
        eps: c.normEps,
      });
      recordRmsNorm(gpu, rec, {
        x: L.kPre!,
        w: this.model.weight(W.kNorm!),
        y: L.k,
        rstd: L.kRstd!,
        rows: T * c.numKvHeads,
        dim: c.headDim,
        eps: c.normEps,
      });
    }
    if (c.rope) {
      const rope = {
        positions: this.positions,
        rows: T,
        headDim: c.headDim,
        theta: c.rope.theta,
        rotaryDim: c.rope.rotaryDim,
        invFreq: this.invFreq,
      };
      recordRope(gpu, rec, { ...rope, x: L.q, heads: c.numHeads });
      recordRope(gpu, rec, { ...rope, x: L.k, heads: c.numKvHeads });
    }
    if (infer) {
      rec.copy(L.k, this.kCache[l]!, T * kvW * 4, 0, past * kvW * 4);
      rec.copy(L.v, this.vCache[l]!, T * kvW * 4, 0, past * kvW * 4);
      recordAttentionDecode(gpu, rec, {
        q: L.q,
        kCache: this.kCache[l]!,
        vCache: this.vCache[l]!,
        o: L.o,
        qLen: T,
        past,
        heads: c.numHeads,
        kvHeads: c.numKvHeads,
        headDim: c.headDim,
      });
    } else {
      recordAttention(gpu, rec, {
        q: L.q,
        k: L.k,
        v: L.v,
        o: L.o,
        lse: L.lse,
        batch: f.B,
        seq: f.S,
        heads: c.numHeads,
        kvHeads: c.numKvHeads,
        headDim: c.headDim,
      });
    }
    rec.copy(L.xIn, L.xMid, T * H * 4);
    this.linear(rec, L, byRole('o')!, L.o, L.xMid, T, f, true);
    this.norm(rec, L.xMid, W.postAttnNorm, L.n2, T);
    if (c.arch === 'gpt2') {
      this.linear(rec, L, byRole('fc_in')!, L.n2.y, L.g, T, f);
      recordGelu(gpu, rec, { x: L.g, y: L.a, n: T * c.intermediateSize });
    } else {
      this.linear(rec, L, byRole('gate')!, L.n2.y, L.g, T, f);
      this.linear(rec, L, byRole('up')!, L.n2.y, L.u!, T, f);
      recordSwiGlu(gpu, rec, { g: L.g, u: L.u!, h: L.a, n: T * c.intermediateSize });
    }
    rec.copy(L.xMid, next, T * H * 4);
    this.linear(rec, L, byRole('down') ?? byRole('fc_out')!, L.a, next, T, f, true);
  }

  /**
   * Records the LM-head cross-entropy over the last forward's tokens (targets from setBatch),
   * adding into lossSum / countSum. With `gradScale` it also writes dLoss/dHidden for backward.
   */
  recordLoss(rec: Recorder, T: number, gradScale: number | null): void {
    const c = this.model.config;
    recordCrossEntropy(this.gpu, rec, {
      h: this.nf.y,
      w: this.model.weight(this.model.arch.lmHead),
      targets: this.targets,
      T,
      H: c.hiddenSize,
      V: c.vocabSize,
      gradScale: gradScale ?? 0,
      dh: gradScale === null ? null : this.ws.get('dFinal', [this.opts.maxTokens, c.hiddenSize]),
      rowLoss: this.rowLoss,
      lossSum: this.lossSum,
      countSum: this.countSum,
      ws: this.ws,
      chunk: this.opts.ceChunk,
    });
  }

  /** infer: records the logits of token `index` (0-based within the last forward) into `logits`. */
  recordLogitsAt(rec: Recorder, index: number): void {
    const c = this.model.config;
    rec.copy(this.nf.y, this.lastHidden!, c.hiddenSize * 4, index * c.hiddenSize * 4, 0);
    recordLogits(this.gpu, rec, {
      h: this.lastHidden!,
      w: this.model.weight(this.model.arch.lmHead),
      logits: this.logits!,
      T: 1,
      H: c.hiddenSize,
      V: c.vocabSize,
    });
  }

  // ------------------------------------------------------------------ backward

  private linearBackward(
    rec: Recorder,
    L: LayerActs,
    m: LinearModule,
    x: Tensor,
    dy: Tensor,
    dx: Tensor | null,
    T: number,
    f: ForwardArgs,
    accumulateDx: boolean,
    accumulateGrads: boolean,
  ): void {
    const slot = f.lora?.slot(m.path) ?? null;
    const lora = this.loraFor(f.lora, m, !!f.dropout);
    if (!lora && !dx) return;
    recordLinearBackward(this.gpu, rec, {
      dy,
      x,
      M: T,
      lin: this.model.frozen(m),
      lora,
      seed: this.seedFor(f.seed ?? 0, this.model.linears.indexOf(m)),
      s: lora ? this.sFor(L, m.path, lora.r, T) : undefined,
      dx,
      accumulateDx,
      dA: slot?.dA ?? undefined,
      dB: slot?.dB ?? undefined,
      accumulateGrads,
      ws: this.ws,
    });
  }

  /**
   * Records backward from the loss (recordLoss with a gradScale must precede it in the same
   * micro-step) to every LoRA gradient. `accumulateGrads` adds into the gradients (micro-batches
   * after the first of a step) instead of overwriting them.
   */
  recordBackward(rec: Recorder, f: ForwardArgs, accumulateGrads: boolean): void {
    if (this.opts.mode !== 'train') throw new GpuError('Backward needs a runner created in train mode.');
    const gpu = this.gpu;
    const c = this.model.config;
    const arch = this.model.arch;
    const T = f.B * f.S;
    const maxT = this.opts.maxTokens;
    const H = c.hiddenSize;
    const qW = c.numHeads * c.headDim;
    const kvW = c.numKvHeads * c.headDim;
    const I = c.intermediateSize;
    const ws = this.ws;
    const dres = ws.get('dres', [maxT, H]);
    const dh = ws.get('dh', [maxT, H]);
    const da = ws.get('da', [maxT, I]);
    const dg = ws.get('dg', [maxT, I]);
    const du = c.arch === 'gpt2' ? null : ws.get('du', [maxT, I]);
    const dO = ws.get('dO', [maxT, qW]);
    const dq = ws.get('dq', [maxT, qW]);
    const dk = ws.get('dk', [maxT, kvW]);
    const dv = ws.get('dv', [maxT, kvW]);
    const dqPre = c.qkNorm ? ws.get('dqPre', [maxT, qW]) : null;
    const dkPre = c.qkNorm ? ws.get('dkPre', [maxT, kvW]) : null;
    const dqkv = c.arch === 'gpt2' ? ws.get('dqkv', [maxT, qW + 2 * kvW]) : null;
    const dFinal = ws.get('dFinal', [maxT, H]);

    this.normBackward(rec, dFinal, this.xFinal, arch.finalNorm, this.nf, dres, T, false);
    for (let l = c.numLayers - 1; l >= 0; l--) {
      // With checkpointing the shared buffers hold the last layer's activations after the forward
      // pass; every other layer is recomputed from its saved input (same seeds, same values).
      if (this.opts.checkpointActivations && l < c.numLayers - 1) {
        this.recordLayer(rec, l, f, T, 0, ws.get('recompute.next', [maxT, H]));
      }
      const L = this.acts[l]!;
      const W = arch.layers[l]!;
      const byRole = (role: string) => W.linears.find((m) => m.role === role);
      const needDxBelow = l > 0;
      // MLP: x_out = x_mid + down(act(...(norm2(x_mid))))
      this.linearBackward(rec, L, byRole('down') ?? byRole('fc_out')!, L.a, dres, da, T, f, false, accumulateGrads);
      if (c.arch === 'gpt2') {
        recordGeluBackward(gpu, rec, { dy: da, x: L.g, dx: dg, n: T * I });
        this.linearBackward(rec, L, byRole('fc_in')!, L.n2.y, dg, dh, T, f, false, accumulateGrads);
      } else {
        recordSwiGluBackward(gpu, rec, { dh: da, g: L.g, u: L.u!, dg, du: du!, n: T * I });
        this.linearBackward(rec, L, byRole('gate')!, L.n2.y, dg, dh, T, f, false, accumulateGrads);
        this.linearBackward(rec, L, byRole('up')!, L.n2.y, du!, dh, T, f, true, accumulateGrads);
      }
      this.normBackward(rec, dh, L.xMid, W.postAttnNorm, L.n2, dres, T, true);
      // Attention: x_mid = x_in + o_proj(attn(rope(q(norm1(x_in))), ...))
      this.linearBackward(rec, L, byRole('o')!, L.o, dres, dO, T, f, false, accumulateGrads);
      recordAttentionBackward(gpu, rec, {
        q: L.q,
        k: L.k,
        v: L.v,
        o: L.o,
        lse: L.lse,
        dO,
        dq,
        dk,
        dv,
        batch: f.B,
        seq: f.S,
        heads: c.numHeads,
        kvHeads: c.numKvHeads,
        headDim: c.headDim,
        ws,
      });
      if (c.rope) {
        const rope = {
          positions: this.positions,
          rows: T,
          headDim: c.headDim,
          theta: c.rope.theta,
          rotaryDim: c.rope.rotaryDim,
          invFreq: this.invFreq,
          inverse: true,
        };
        recordRope(gpu, rec, { ...rope, x: dq, heads: c.numHeads });
        recordRope(gpu, rec, { ...rope, x: dk, heads: c.numKvHeads });
      }
      let dqIn = dq;
      let dkIn = dk;
      if (c.qkNorm) {
        recordRmsNormBackward(gpu, rec, {
          dy: dq,
          x: L.qPre!,
          w: this.model.weight(W.qNorm!),
          rstd: L.qRstd!,
          dx: dqPre!,
          rows: T * c.numHeads,
          dim: c.headDim,
        });
        recordRmsNormBackward(gpu, rec, {
          dy: dk,
          x: L.kPre!,
          w: this.model.weight(W.kNorm!),
          rstd: L.kRstd!,
          dx: dkPre!,
          rows: T * c.numKvHeads,
          dim: c.headDim,
        });
        dqIn = dqPre!;
        dkIn = dkPre!;
      }
      const dxAttn = needDxBelow ? dh : null;
      const qkvM = byRole('qkv');
      if (qkvM) {
        const merge = (src: Tensor, col0: number, width: number) =>
          recordCopyRows(gpu, rec, {
            src,
            dst: dqkv!,
            rows: T,
            width,
            srcStride: width,
            dstStride: qW + 2 * kvW,
            dstCol0: col0,
          });
        merge(dqIn, 0, qW);
        merge(dkIn, qW, kvW);
        merge(dv, qW + kvW, kvW);
        this.linearBackward(rec, L, qkvM, L.n1.y, dqkv!, dxAttn, T, f, false, accumulateGrads);
      } else {
        this.linearBackward(rec, L, byRole('q')!, L.n1.y, dqIn, dxAttn, T, f, false, accumulateGrads);
        this.linearBackward(rec, L, byRole('k')!, L.n1.y, dkIn, dxAttn, T, f, true, accumulateGrads);
        this.linearBackward(rec, L, byRole('v')!, L.n1.y, dv, dxAttn, T, f, true, accumulateGrads);
      }
      if (needDxBelow) this.normBackward(rec, dh, L.xIn, W.inputNorm, L.n1, dres, T, true);
    }
  }

  /** Frees scratch replaced during recording; call after the submit completed. */
  collect(): void {
    this.ws.collect();
  }

  dispose(): void {
    for (const t of this.owned) this.gpu.free(t);
    this.owned.length = 0;
    this.ws.dispose();
  }
}
