/**
 * The engine's text generation, shared by Compare (`Engine.generate`: one prompt) and Chat
 * (`Engine.chat`: a conversation rendered by src/generate/chat.ts): the context check, one
 * Generator (src/generate/generator.ts: KV cache, prefill, one token at a time) kept while it is
 * large enough (its KV cache reused across calls where the new prompt starts like the last one),
 * streaming of decoded text as it grows, and Stop between tokens, or before the first one: a Stop
 * that arrives while a call is still getting ready (reading its adapter, prefilling) ends it before
 * its first token.
 */

import type { Gpu } from '../gpu/context';
import { Generator } from '../generate/generator';
import type { GpuLora } from '../lora/gpu-lora';
import { positionLimitText } from '../model/config';
import type { LoadedModelState } from './loaded-model';
import type { GenerationResult, SamplingSettings } from './types';

export class GenerationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GenerationError';
  }
}

/** One call's Stop flag (reply() takes it before the call's first await). */
interface GenerationTicket {
  stopped: boolean;
}

export class TextGeneration {
  private generator: Generator | null = null;
  private active: GenerationTicket | null = null;

  /**
   * One call: its Stop ticket is taken before `ready` (the prompt's ids, the adapter on the GPU) is
   * awaited, so a Stop while it gets ready ends it; a Stop after it ends is not carried to the next.
   */
  async reply(
    gpu: Gpu,
    m: LoadedModelState,
    s: SamplingSettings,
    eos: number[],
    onText: ((delta: string) => void) | undefined,
    ready: () => Promise<{ ids: number[]; lora: GpuLora | null }>,
  ): Promise<GenerationResult> {
    const ticket: GenerationTicket = { stopped: false };
    this.active = ticket;
    try {
      const { ids, lora } = await ready();
      return await this.run(ticket, gpu, m, ids, lora, s, eos, onText);
    } finally {
      if (this.active === ticket) this.active = null;
    }
  }

  /** Ends the generation in progress after its current token (or before its first). */
  stop(): void {
    if (this.active) this.active.stopped = true;
  }

  /** The weights may have changed (training): the next call prefills its whole prompt. */
  forgetContext(): void {
    this.generator?.forget();
  }

  /**
   * New text after `ids` (the rendered prompt) from the model with `lora` (or none), decoded as it
   * comes: `onText` gets each piece once it decodes to whole characters.
   */
  private async run(
    ticket: GenerationTicket,
    gpu: Gpu,
    m: LoadedModelState,
    ids: number[],
    lora: GpuLora | null,
    s: SamplingSettings,
    eos: number[],
    onText?: (delta: string) => void,
  ): Promise<GenerationResult> {
    if (ticket.stopped) return { text: '', tokens: 0, promptTokens: ids.length, stopReason: 'stopped' };
    const tok = m.tokenizer;
    const need = ids.length + s.maxNewTokens + 1;
    const maxPos = m.config.maxPositions > 0 ? m.config.maxPositions : need;
    if (ids.length >= maxPos) {
      throw new GenerationError(
        `The prompt is ${ids.length} tokens long, but model "${m.id}" reads at most ${maxPos} (${positionLimitText(m.config)}) ` +
          'and needs room for the reply: shorten it (in Chat: clear the conversation or shorten the system prompt).',
      );
    }
    const ctx = Math.min(maxPos, Math.max(256, 2 ** Math.ceil(Math.log2(need))));
    if (!this.generator || this.generator.runner.maxContext < Math.min(need, maxPos)) {
      this.generator?.dispose();
      this.generator = null;
      this.generator = new Generator(gpu, m.gpuModel, { maxContext: ctx });
    }
    const out: number[] = [];
    let emitted = '';
    const res = await this.generator.generate(ids, lora, {
      maxNewTokens: s.maxNewTokens,
      temperature: s.temperature,
      topK: s.topK,
      topP: s.topP,
      repetitionPenalty: s.repetitionPenalty,
      seed: s.seed,
      stopIds: eos,
      shouldStop: () => ticket.stopped,
      onToken: (id) => {
        if (eos.includes(id)) return;
        out.push(id);
        const text = tok.decode(out, { skipSpecialTokens: true });
        if (text.length > emitted.length && !text.endsWith('\uFFFD') && text.startsWith(emitted)) {
          onText?.(text.slice(emitted.length));
          emitted = text;
        }
      },
    });
    const text = tok.decode(out, { skipSpecialTokens: true });
    if (text.length > emitted.length && text.startsWith(emitted)) onText?.(text.slice(emitted.length));
    return {
      text,
      tokens: res.ids.length,
      promptTokens: ids.length,
      reusedTokens: res.reused,
      stopReason: res.stopReason,
    };
  }

  dispose(): void {
    this.generator?.dispose();
    this.generator = null;
  }
}
