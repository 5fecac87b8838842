/**
 * Text generation with a KV cache: the prompt is run through the model in chunks (prefill), then
 * one token at a time. Works with or without a LoRA adapter over the same base weights.
 *
 * Two ways to choose each token, the same ids:
 *   - greedy without a repetition penalty (the default): on the GPU. Each step ends with the
 *     argmax of its logits (shaders/argmax.wgsl), written straight into the next step's token id,
 *     and a 16-byte copy of it for the CPU; the next step is submitted before that copy is read, so
 *     the GPU always has a step queued while the CPU reads, checks stop conditions and records.
 *     A step computed past a stop (an EOS id the CPU had not read yet) is dropped.
 *   - sampling or a repetition penalty (or `gpuPick: false`): each step reads its row of logits
 *     back and samples on the CPU (sampling.ts), one step at a time.
 *
 * The cache outlives a call: it remembers the tokens whose keys and values it holds (the last
 * prompt and the reply tokens fed back), and the next prompt with the same adapter starts after
 * their common prefix instead of at 0 (a chat's next turn re-reads only the new messages). A key or
 * value at position i depends only on tokens 0..i, so the rows of a common prefix are what a fresh
 * prefill would write; `forget()` drops them (the weights changed).
 */

import type { Gpu } from '../gpu/context';
import { GpuError } from '../gpu/errors';
import type { GpuLora } from '../lora/gpu-lora';
import type { GpuModel } from '../model/gpu-model';
import { ModelRunner } from '../model/runner';
import { Rng } from '../lora/init';
import { NO_NON_FINITE } from '../kernels/argmax';
import type { Tensor } from '../gpu/tensor';
import { GREEDY, type SamplingOptions, applyRepetitionPenalty, sampleToken } from './sampling';

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  seed: number;
  /** Token ids that end generation (the model's EOS ids). */
  stopIds: number[];
  /** Called with each new token id as it is produced (streaming). Return false to stop. */
  onToken?: (id: number) => boolean | void;
  /** Checked between tokens; when it returns true generation stops. */
  shouldStop?: () => boolean;
  /**
   * Greedy decoding picks tokens on the GPU, a step ahead (default true); false reads every row of
   * logits back and picks on the CPU (the benchmark's before / after; the ids are the same).
   */
  gpuPick?: boolean;
}

export interface GenerateResult {
  ids: number[];
  stopReason: 'eos' | 'length' | 'stopped' | 'context';
  /** Prompt tokens whose keys and values came from the previous call's cache (not prefilled again). */
  reused: number;
}

export class Generator {
  readonly runner: ModelRunner;
  /** The tokens whose keys and values the KV cache holds, at positions 0.., and the adapter they were made with. */
  private cached: number[] = [];
  private cachedWith: GpuLora | null | undefined = undefined;
  /** u32 [4]: the last greedy pick on the GPU (see ModelRunner.recordGreedyPick). */
  private readonly pick: Tensor;

  constructor(
    readonly gpu: Gpu,
    readonly model: GpuModel,
    opts: { maxContext: number; prefillChunk?: number },
  ) {
    const ctx = Math.min(opts.maxContext, model.config.maxPositions || opts.maxContext);
    this.runner = new ModelRunner(gpu, model, {
      mode: 'infer',
      maxTokens: Math.min(opts.prefillChunk ?? 64, ctx),
      maxContext: ctx,
    });
    this.pick = gpu.tensor('generate.pick', [4], 'u32', 'io');
  }

  async generate(
    promptIds: number[],
    lora: GpuLora | null,
    o: Partial<GenerateOptions> & { maxNewTokens: number },
  ): Promise<GenerateResult> {
    const opts: GenerateOptions = { ...GREEDY, seed: 0, stopIds: [], ...o };
    if (promptIds.length === 0) throw new GpuError('Generation needs a prompt of at least one token.');
    const ctx = this.runner.maxContext;
    if (promptIds.length >= ctx) {
      throw new GpuError(`The prompt has ${promptIds.length} tokens; this model/session allows at most ${ctx - 1}.`);
    }
    const rand = new Rng(opts.seed);
    const chunk = this.runner.maxTokens;
    // Prompt / prefix tuning: P virtual rows before the prompt (src/train/virtual-rows.ts); the
    // first chunk holds them all, and the KV cache keeps them (a prefix's keys and values) for
    // every token after.
    const P = lora?.virtual()?.P ?? 0;
    if (P > chunk) {
      throw new GpuError(`The adapter's ${P} virtual tokens do not fit one prefill chunk of ${chunk} tokens.`);
    }
    if (P + promptIds.length >= ctx) {
      throw new GpuError(
        `The prompt has ${promptIds.length} tokens and the adapter ${P} virtual ones; this model/session allows at most ${ctx - 1} in all.`,
      );
    }
    const fed = P ? [...new Array<number>(P).fill(0), ...promptIds] : promptIds;
    // The common prefix with what the cache holds (an adapter with virtual rows always starts
    // over); at least the last prompt token is fed again, for its logits.
    let past = 0;
    if (P === 0 && this.cachedWith === lora)
      while (past < fed.length - 1 && past < this.cached.length && this.cached[past] === fed[past]) past++;
    const reused = past;
    this.cached.length = past;
    this.cachedWith = lora;
    // Every row of the LM head is a candidate, as in transformers' generate(): also the ids past
    // the tokenizer's vocabulary where config.json's vocab_size is larger (they decode to no text).
    const vocab = this.model.config.vocabSize;
    const penalty = opts.repetitionPenalty !== undefined && opts.repetitionPenalty !== 1;
    const onGpu = opts.temperature <= 0 && !penalty && opts.gpuPick !== false;
    const usage = GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ;
    const slots = onGpu
      ? [0, 1].map((i) => this.gpu.device.createBuffer({ label: `generate.pick${i}`, size: 16, usage }))
      : [];
    const out: number[] = [];
    const end = (stopReason: GenerateResult['stopReason']): GenerateResult => ({ ids: out, stopReason, reused });
    try {
      // Prefill in chunks; the logits of the last prompt token come from the last chunk (and, on
      // the GPU path, its greedy pick: token 0, into slots[0]).
      while (past < fed.length) {
        const n = Math.min(chunk, fed.length - past);
        const last = past + n === fed.length;
        this.runner.setBatch(Uint32Array.from(fed.slice(past, past + n)), positionsFrom(past, n));
        this.submitStep(n, past, lora, last, last && onGpu ? slots[0]! : null);
        this.cached.push(...fed.slice(past, past + n));
        if (!last) await this.gpu.sync();
        past += n;
      }
      // Stop pressed during the prefill: no token at all.
      if (opts.shouldStop?.()) return end('stopped');
      if (onGpu) return await this.greedyOnGpu(out, past, lora, opts, slots, end);
      for (;;) {
        const logits = await this.gpu.read(this.runner.logits!);
        for (let i = 0; i < vocab; i++) {
          if (!Number.isFinite(logits[i]!)) throw nonFinite(out.length + 1, logits[i]!, i);
        }
        if (penalty) applyRepetitionPenalty(logits, [...promptIds, ...out], opts.repetitionPenalty!);
        const id = sampleToken(logits, opts, rand, vocab);
        out.push(id);
        const stop = this.stopReason(out, opts, past);
        if (stop) return end(stop);
        this.runner.setBatch(Uint32Array.of(id), positionsFrom(past, 1));
        this.submitStep(1, past, lora, true, null);
        this.cached.push(id);
        past += 1;
      }
    } catch (e) {
      this.forget();
      throw e;
    } finally {
      for (const s of slots) s.destroy();
    }
  }

  /**
   * Why generation ends after the token just pushed onto `out` (null: go on); `past` is the number
   * of positions fed so far (the new token is not fed yet).
   */
  private stopReason(out: number[], opts: GenerateOptions, past: number): GenerateResult['stopReason'] | null {
    const id = out[out.length - 1]!;
    if (opts.onToken?.(id) === false) return 'stopped';
    if (opts.stopIds.includes(id)) return 'eos';
    if (out.length >= opts.maxNewTokens) return 'length';
    if (opts.shouldStop?.()) return 'stopped';
    if (past + 1 >= this.runner.maxContext) return 'context';
    return null;
  }

  /**
   * The decode loop of greedy decoding on the GPU (see the file comment), after the prefill put
   * token 0 into slots[0]. Token t is copied to slots[t % 2]; the step that feeds token t back in
   * (and computes token t + 1) is submitted before token t is read, whenever token t + 1 could still
   * be wanted. `past`: positions fed by the prefill.
   */
  private async greedyOnGpu(
    out: number[],
    past: number,
    lora: GpuLora | null,
    opts: GenerateOptions,
    slots: GPUBuffer[],
    end: (stopReason: GenerateResult['stopReason']) => GenerateResult,
  ): Promise<GenerateResult> {
    let fedBack = 0; // decode steps submitted: tokens 0 .. fedBack - 1 are (being) fed back in
    try {
      for (;;) {
        const t = out.length;
        if (t + 1 < opts.maxNewTokens && past + t + 1 < this.runner.maxContext) {
          // Token t is in the ids buffer already (its step's pick copied it there).
          this.runner.setPositions(positionsFrom(past + t, 1));
          this.submitStep(1, past + t, lora, true, slots[(t + 1) % 2]!);
          fedBack++;
        }
        const [id, bad, bits] = new Uint32Array(await this.gpu.mapRead(slots[t % 2]!, 12));
        if (bad !== NO_NON_FINITE) throw nonFinite(t + 1, new Float32Array(Uint32Array.of(bits!).buffer)[0]!, bad!);
        out.push(id!);
        const stop = this.stopReason(out, opts, past + t);
        if (stop) return end(stop);
      }
    } finally {
      // The KV cache holds the tokens fed back (a step queued past the stop included).
      this.cached.push(...out.slice(0, fedBack));
    }
  }

  /**
   * Records and submits one forward of n tokens at `past` (ids and positions already set); with
   * `logits`, the last token's logits, and with `slot` also its greedy pick, copied into `slot`.
   */
  private submitStep(n: number, past: number, lora: GpuLora | null, logits: boolean, slot: GPUBuffer | null): void {
    const rec = this.gpu.recorder('generate');
    this.runner.recordForward(rec, { B: 1, S: n, lora }, past);
    if (logits) this.runner.recordLogitsAt(rec, n - 1);
    if (slot) {
      this.runner.recordGreedyPick(rec, this.model.config.vocabSize, this.pick);
      rec.copy(this.pick, slot, 16);
    }
    rec.submit();
  }

  /** Drops what the KV cache holds: the next call prefills its whole prompt (call when weights change). */
  forget(): void {
    this.cached = [];
    this.cachedWith = undefined;
  }

  dispose(): void {
    this.runner.dispose();
    this.gpu.free(this.pick);
  }
}

/** Positions past .. past + n - 1. */
function positionsFrom(past: number, n: number): Uint32Array {
  return Uint32Array.from({ length: n }, (_, i) => past + i);
}

function nonFinite(token: number, value: number, id: number): GpuError {
  return new GpuError(
    `Generation stopped: the logits of new token ${token} hold ${value} (token id ${id}), so no token can be chosen. ` +
      'The model or adapter weights give non-finite values (e.g. an adapter with a huge lora_alpha).',
  );
}
