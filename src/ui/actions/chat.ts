/**
 * Chat: a conversation with the base model or any saved adapter, one reply at a time, generated in
 * the GPU worker (EngineApi.chat) and streamed into the last message. The adapter can change
 * between replies; each reply keeps the name of the one that made it. Stop ends a reply after its
 * current token, or before it starts when pressed while the request waits (its adapter read, the
 * GPU worker busy); Regenerate replaces the last reply with a new sample (the seed is counted up per
 * reply, so the same settings replay the same conversation).
 */
import type { AdapterRef, ChatMessage, ModelInfo, SamplingSettings } from '../../engine/types';
import { type AppContext, patch } from '../context';
import { describeError } from '../errors';
import { type ChatSlice, type ChatTurn, runBusy } from '../state';
import { hasErrors, validateSampling } from '../validate';
import { gpuBlocker } from './training';

/** Replies longer than this are cut when generation_config.json asks for more (the form allows up to 4096). */
const DEFAULT_MAX_NEW = 256;

/** The mode and sampling a newly loaded model starts with: its chat template if it has one, generation_config.json's sampling. */
export function chatDefaults(info: ModelInfo, current: SamplingSettings): Pick<ChatSlice, 'mode' | 'sampling'> {
  const d = info.generationDefaults;
  return {
    mode: info.hasChatTemplate ? 'chat' : 'completion',
    sampling: {
      ...current,
      temperature: d.temperature,
      topK: d.topK,
      topP: d.topP,
      repetitionPenalty: d.repetitionPenalty,
      maxNewTokens: Math.min(d.maxNewTokens ?? DEFAULT_MAX_NEW, 4096),
    },
  };
}

export function chatBlocker(ctx: AppContext): string | null {
  const s = ctx.store.get();
  const gpu = gpuBlocker(s.gpu.status);
  if (gpu) return gpu;
  if (!s.model.info) return 'Load a model first.';
  if (runBusy(s.run.status)) return 'Wait for training to finish.';
  if (s.compare.status === 'running' || s.compare.evalStatus === 'running') return 'A comparison is running.';
  if (s.chat.status !== 'idle') return 'A reply is being written.';
  return null;
}

let nextTurnId = 1;

function updateTurn(ctx: AppContext, id: number, p: Partial<ChatTurn> | ((t: ChatTurn) => Partial<ChatTurn>)): void {
  ctx.store.update((s) => ({
    ...s,
    chat: {
      ...s.chat,
      turns: s.chat.turns.map((t) => (t.id === id ? { ...t, ...(typeof p === 'function' ? p(t) : p) } : t)),
    },
  }));
}

/** Who answers: the base model or an adapter from the library (its files read from IndexedDB). */
async function responder(ctx: AppContext): Promise<{ ref: AdapterRef | null; by: NonNullable<ChatTurn['by']> }> {
  const s = ctx.store.get();
  const key = s.chat.adapterKey;
  if (key === 'base')
    return { ref: null, by: { key, label: `Base · ${s.model.info?.id.split('/').pop() ?? 'model'}` } };
  const rec = s.library.adapters.find((a) => a.id === key);
  if (!rec || !ctx.stores)
    throw new Error('The chosen adapter is no longer in the library: choose another or the base model.');
  return { ref: { key, files: await ctx.stores.adapters.files(key) }, by: { key, label: rec.name } };
}

/** The conversation the model reads: the system prompt, then every message except failed replies. */
function messagesOf(chat: ChatSlice): ChatMessage[] {
  const turns: ChatMessage[] = chat.turns
    .filter((t) => t.status !== 'error')
    .map((t) => ({ role: t.role, content: t.content }));
  return chat.system.trim() ? [{ role: 'system', content: chat.system }, ...turns] : turns;
}

/** Writes the next reply to the conversation as it stands (its last message is the user's). */
async function reply(ctx: AppContext): Promise<void> {
  const s0 = ctx.store.get();
  const messages = messagesOf(s0.chat);
  const sampling = { ...s0.chat.sampling, seed: s0.chat.sampling.seed + s0.chat.seedOffset };
  patch(ctx, 'chat', { status: 'generating', error: null, seedOffset: s0.chat.seedOffset + 1 });
  const id = nextTurnId++;
  let turnAdded = false;
  try {
    const { ref, by } = await responder(ctx);
    ctx.store.update((s) => ({
      ...s,
      chat: { ...s.chat, turns: [...s.chat.turns, { id, role: 'assistant', content: '', by, status: 'streaming' }] },
    }));
    turnAdded = true;
    // Stop pressed while the adapter's files were read: the request is not sent at all.
    if (ctx.store.get().chat.status === 'stopping') {
      updateTurn(ctx, id, { status: 'done', stopReason: 'stopped', tokens: 0 });
      return;
    }
    const res = await ctx.engine.chat({ messages, mode: s0.chat.mode, sampling }, ref, (delta) =>
      updateTurn(ctx, id, (t) => ({ content: t.content + delta })),
    );
    updateTurn(ctx, id, { content: res.text, status: 'done', stopReason: res.stopReason, tokens: res.tokens });
  } catch (e) {
    const err = describeError(e, 'Writing the reply');
    if (turnAdded) updateTurn(ctx, id, { status: 'error', error: err.detail });
    patch(ctx, 'chat', { error: err });
  } finally {
    patch(ctx, 'chat', { status: 'idle' });
  }
}

function cannot(ctx: AppContext, detail: string): void {
  patch(ctx, 'chat', { error: { title: 'Cannot send', detail } });
}

/** Sends the draft as the user's message and writes the reply. */
export async function sendChat(ctx: AppContext): Promise<void> {
  const s = ctx.store.get();
  const text = s.chat.draft;
  const blocker = chatBlocker(ctx);
  if (blocker) return cannot(ctx, blocker);
  if (!text.trim()) return cannot(ctx, 'Write a message first.');
  if (hasErrors(validateSampling(s.chat.sampling))) return cannot(ctx, 'Fix the sampling settings.');
  ctx.store.update((st) => ({
    ...st,
    chat: { ...st.chat, draft: '', turns: [...st.chat.turns, { id: nextTurnId++, role: 'user', content: text }] },
  }));
  await reply(ctx);
}

/** Replaces the last reply (or a failed one) with a new one, from the adapter chosen now. */
export async function regenerateChat(ctx: AppContext): Promise<void> {
  const blocker = chatBlocker(ctx);
  if (blocker) return cannot(ctx, blocker);
  const s = ctx.store.get();
  if (hasErrors(validateSampling(s.chat.sampling))) return cannot(ctx, 'Fix the sampling settings.');
  const turns = s.chat.turns.slice();
  while (turns.length && turns[turns.length - 1]!.role === 'assistant') turns.pop();
  if (turns.length === 0) return cannot(ctx, 'There is no message to answer yet.');
  patch(ctx, 'chat', { turns });
  await reply(ctx);
}

export function stopChat(ctx: AppContext): void {
  if (ctx.store.get().chat.status !== 'generating') return;
  patch(ctx, 'chat', { status: 'stopping' });
  ctx.engine.stopGeneration();
}

/** A new conversation (the system prompt and settings stay). */
export function clearChat(ctx: AppContext): void {
  if (ctx.store.get().chat.status !== 'idle') return;
  patch(ctx, 'chat', { turns: [], error: null, seedOffset: 0 });
}
