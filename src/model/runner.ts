/**
 * Records the whole model's forward and backward passes on the GPU.
 *
 * Shape legend: B batch, S sequence length, T = B*S tokens, H hidden, nH / nKV query / key-value
 * heads, hd head dim, I MLP width, V vocab, r LoRA rank.
 *
 * One layer, for every family, as the config's flags say (src/model/config.ts; the float64 twin is
 * src/reference/model-layer.ts):
 *   a_in = norm_attn(x)            (no norm: OLMo 2; after the residual instead: OPT post-norm)
 *   q,k,v = LoRALinear(a_in)       separate, or one fused projection split by its qkvGroups layout
 *   -> [q/k norm] -> [RoPE: rotate-half or interleaved, partial, per-layer base] -> attention
 *      (scale, sliding window, soft-cap, ALiBi) -> attn = o_proj(o) -> [norm_attn_out(attn)]
 *   sequential: x_mid = x + rs·attn;  m_in = norm_mlp(x_mid);   out = x_mid + rs·mlp(m_in)
 *   parallel:   m_in = norm_mlp(x) or a_in;                      out = x + rs·attn + rs·mlp(m_in)
 *   mlp(m) = down(act(gate(m))·up(m)) (or one fused gate_up) | fc_out(act(fc_in(m))), [norm_mlp_out]
 * Around the layers: embedding·scale -> [project_in] -> [+ learned positions] -> [embedding norm];
 * final norm -> [project_out] -> LM head (bias, logit scale, soft-cap) -> cross-entropy.
 * Where nothing sits between a sublayer and its residual, its output accumulates straight into a
 * copy of the residual (no extra pass).
 *
 * In 'train' mode every layer keeps what backward needs (inputs of each norm and linear, q/k/v after
 * RoPE, the attention output and logsumexp, the LoRA intermediates S). In 'infer' mode one set of
 * buffers serves every layer and keys/values go into a KV cache for generation.
 *
 * Only LoRA parameters get gradients. Embeddings, norms and base linears are frozen, so backward
 * computes dX through them and nothing else, and stops above the first layer's input (below it only
 * when OPT's project_in has an adapter).
 *
 * The parts: runner-buffers.ts (what is allocated, per mode), runner-forward.ts (embeddings, layers,
 * loss / logits), runner-backward.ts (layers in reverse to the LoRA gradients). This class owns the
 * buffers and is the interface the trainer, the engine and the generator use.
 */

import type { Gpu, Recorder } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { recordArgmax } from '../kernels/argmax';
import { recordFill } from '../kernels/elementwise';
import type { GpuModel } from './gpu-model';
import { type RunnerOptions, type RunnerState, createRunnerState } from './runner-buffers';
import { recordBackward } from './runner-backward';
import { recordForward, recordLogitsAt, recordLoss } from './runner-forward';
import type { ForwardArgs } from './runner-linear';

export class ModelRunner {
  private readonly st: RunnerState;

  constructor(
    readonly gpu: Gpu,
    readonly model: GpuModel,
    readonly opts: RunnerOptions,
  ) {
    this.st = createRunnerState(gpu, model, opts);
  }

  /** f32 [1] running sum of token losses. */
  get lossSum(): Tensor {
    return this.st.lossSum;
  }

  /** f32 [1] running count of counted tokens. */
  get countSum(): Tensor {
    return this.st.countSum;
  }

  /** infer: f32 [V], written by recordLogitsAt. */
  get logits(): Tensor | null {
    return this.st.logits;
  }

  get maxTokens(): number {
    return this.opts.maxTokens;
  }

  get maxContext(): number {
    return this.opts.maxContext ?? this.opts.maxTokens;
  }

  /**
   * Uploads token ids, positions and targets of a batch (queue writes, ordered before the next
   * submit), and for packed rows each token's example start (used by forwards with `packed`).
   */
  setBatch(ids: Uint32Array, positions: Uint32Array, targets?: Uint32Array, keyStart?: Uint32Array): void {
    if (ids.length > this.opts.maxTokens) {
      throw new GpuError(`Batch of ${ids.length} tokens exceeds this runner's capacity of ${this.opts.maxTokens}.`);
    }
    this.gpu.write(this.st.ids, ids);
    this.setPositions(positions, targets, keyStart);
  }

  /**
   * Uploads positions (and targets / example starts) and keeps the token ids on the GPU: a greedy
   * generation step whose id recordGreedyPick wrote there.
   */
  setPositions(positions: Uint32Array, targets?: Uint32Array, keyStart?: Uint32Array): void {
    if (positions.length > this.opts.maxTokens) {
      throw new GpuError(
        `Batch of ${positions.length} tokens exceeds this runner's capacity of ${this.opts.maxTokens}.`,
      );
    }
    this.gpu.write(this.st.positions, positions);
    const offset = this.model.config.learnedPositions?.offset ?? 0;
    if (this.st.posIds)
      this.gpu.write(
        this.st.posIds,
        positions.map((p) => p + offset),
      );
    if (targets) this.gpu.write(this.st.targets, targets);
    if (keyStart) this.gpu.write(this.st.keyStart, keyStart);
  }

  /** Zeroes the loss and token-count accumulators. */
  recordResetLoss(rec: Recorder): void {
    recordFill(this.gpu, rec, { out: this.st.lossSum, n: 1, value: 0 });
    recordFill(this.gpu, rec, { out: this.st.countSum, n: 1, value: 0 });
  }

  /**
   * Reads the accumulated loss sum and counted-token count in one submit and one readback; with
   * `reset` the same submit zeroes them.
   */
  async readLoss(reset = false): Promise<{ sum: number; count: number }> {
    const rec = this.gpu.recorder(reset ? 'read-reset-loss' : 'read-loss');
    rec.copy(this.st.lossSum, this.st.lossOut, 4, 0, 0);
    rec.copy(this.st.countSum, this.st.lossOut, 4, 0, 4);
    if (reset) this.recordResetLoss(rec);
    rec.submit();
    const [sum, count] = await this.gpu.read(this.st.lossOut);
    return { sum: sum!, count: count! };
  }

  /**
   * Records the forward pass of T = B*S tokens up to the final norm (train), or of one chunk of
   * B = 1 tokens at positions past..past+S-1 through the KV cache (infer, `past` given).
   */
  recordForward(rec: Recorder, f: ForwardArgs, past = 0): void {
    recordForward(this.st, rec, f, past);
  }

  /**
   * Records the LM-head cross-entropy over the last forward's tokens (targets from setBatch),
   * adding into lossSum / countSum. With `gradScale` it also writes dLoss/dHidden for backward.
   */
  recordLoss(rec: Recorder, T: number, gradScale: number | null): void {
    recordLoss(this.st, rec, T, gradScale);
  }

  /** infer: records the logits of token `index` (0-based within the last forward) into `logits`. */
  recordLogitsAt(rec: Recorder, index: number): void {
    recordLogitsAt(this.st, rec, index);
  }

  /**
   * infer, after recordLogitsAt: records the greedy pick among the first `n` logits into `pick`
   * (u32 [4], shaders/argmax.wgsl) and copies the chosen id into token 0 of the next forward, so a
   * greedy step feeds the next without reading anything back.
   */
  recordGreedyPick(rec: Recorder, n: number, pick: Tensor): void {
    if (!this.st.logits) throw new GpuError('recordGreedyPick needs a runner in infer mode.');
    recordArgmax(this.gpu, rec, { logits: this.st.logits, n, pick });
    rec.copy(pick, this.st.ids, 4, 0, 0);
  }

  /**
   * Records backward from the loss (recordLoss with a gradScale must precede it in the same
   * micro-step) to every LoRA gradient. `accumulateGrads` adds into the gradients (micro-batches
   * after the first of a step) instead of overwriting them.
   */
  recordBackward(rec: Recorder, f: ForwardArgs, accumulateGrads: boolean): void {
    recordBackward(this.st, rec, f, accumulateGrads);
  }

  /** Frees scratch replaced during recording; call after the submit completed. */
  collect(): void {
    this.st.ws.collect();
  }

  dispose(): void {
    for (const t of this.st.owned) this.gpu.free(t);
    this.st.owned.length = 0;
    this.st.ws.dispose();
  }
}
