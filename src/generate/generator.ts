/**
 * Text generation with a KV cache: the prompt is run through the model in chunks (prefill), then
 * one token at a time; each step reads one row of logits back and samples on the CPU. Works with
 * or without a LoRA adapter over the same base weights.
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
    try {
      // Prefill in chunks; the logits of the last prompt token come from the last chunk.
      while (past < fed.length) {
        const n = Math.min(chunk, fed.length - past);
        await this.feed(fed.slice(past, past + n), past, lora, past + n === fed.length);
        past += n;
      }
      const out: number[] = [];
      // Every row of the LM head is a candidate, as in transformers' generate(): also the ids past
      // the tokenizer's vocabulary where config.json's vocab_size is larger (they decode to no text).
      const vocab = this.model.config.vocabSize;
      const stop = new Set(opts.stopIds);
      const end = (stopReason: GenerateResult['stopReason']): GenerateResult => ({ ids: out, stopReason, reused });
      // Stop pressed during the prefill: no token at all.
      if (opts.shouldStop?.()) return end('stopped');
      for (;;) {
        const logits = await this.gpu.read(this.runner.logits!);
        for (let i = 0; i < vocab; i++) {
          if (!Number.isFinite(logits[i]!)) {
            throw new GpuError(
              `Generation stopped: the logits of new token ${out.length + 1} hold ${logits[i]} (token id ${i}), so no token can be chosen. ` +
                'The model or adapter weights give non-finite values (e.g. an adapter with a huge lora_alpha).',
            );
          }
        }
        if (opts.repetitionPenalty !== undefined && opts.repetitionPenalty !== 1) {
          applyRepetitionPenalty(logits, [...promptIds, ...out], opts.repetitionPenalty);
        }
        const id = sampleToken(logits, opts, rand, vocab);
        out.push(id);
        if (opts.onToken?.(id) === false) return end('stopped');
        if (stop.has(id)) return end('eos');
        if (out.length >= opts.maxNewTokens) return end('length');
        if (opts.shouldStop?.()) return end('stopped');
        if (past + 1 >= ctx) return end('context');
        await this.feed([id], past, lora, true);
        past += 1;
      }
    } catch (e) {
      this.forget();
      throw e;
    }
  }

  /** Drops what the KV cache holds: the next call prefills its whole prompt (call when weights change). */
  forget(): void {
    this.cached = [];
    this.cachedWith = undefined;
  }

  private async feed(ids: number[], past: number, lora: GpuLora | null, wantLogits: boolean): Promise<void> {
    const n = ids.length;
    const positions = new Uint32Array(n);
    for (let i = 0; i < n; i++) positions[i] = past + i;
    this.runner.setBatch(Uint32Array.from(ids), positions);
    const rec = this.gpu.recorder('generate');
    this.runner.recordForward(rec, { B: 1, S: n, lora }, past);
    if (wantLogits) this.runner.recordLogitsAt(rec, n - 1);
    rec.submit();
    this.cached.push(...ids);
    if (!wantLogits) await this.gpu.sync();
  }

  dispose(): void {
    this.runner.dispose();
  }
}
