/**
 * A conversation as the model reads it. Two ways, as in transformers:
 * - 'chat': the messages (system first, if any) rendered by the model's chat template with the
 *   generation prompt added (apply_chat_template(..., add_generation_prompt=True)), then tokenized
 *   without adding special tokens again (the template writes them);
 * - 'completion': for base models without a template, the conversation is one text (the system
 *   prompt, then every message as written, run together) tokenized as a plain prompt (with the
 *   tokenizer's BOS), and the model continues it.
 * The template runs in the tokenizer's bounded interpreter (src/model/tokenizer.ts: step, size and
 * time budgets), so a looping template stops with an error instead of hanging the worker.
 */

import { type TextTokenizer, TokenizerError } from '../model/tokenizer';

export type ChatRole = 'system' | 'user' | 'assistant';

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

export type PromptMode = 'chat' | 'completion';

export class ChatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ChatError';
  }
}

/** The text the model is given for `messages` (see the file comment for the two modes). */
export function conversationText(
  tok: TextTokenizer,
  messages: ChatMessage[],
  mode: PromptMode,
  modelId: string,
): string {
  if (messages.length === 0) throw new ChatError('The conversation is empty: write a message first.');
  if (mode === 'completion') return messages.map((m) => m.content).join('');
  if (!tok.hasChatTemplate) {
    throw new ChatError(
      `Model "${modelId}" has no chat template (no chat_template in tokenizer_config.json and no chat_template.jinja): ` +
        'switch to plain completion, or load an instruct/chat variant of the model.',
    );
  }
  try {
    return tok.applyChatTemplate(messages, { addGenerationPrompt: true });
  } catch (e) {
    if (e instanceof TokenizerError) {
      throw new ChatError(
        `Model "${modelId}": ${e.message.replace(/\.?$/, '.')} ` +
          'The template (chat_template in tokenizer_config.json) decides which roles and orders it accepts; ' +
          'some refuse a system prompt or two messages of the same role in a row. Clear the system prompt or switch to plain completion.',
      );
    }
    throw e;
  }
}

/** The token ids the model is given for `messages`. */
export function conversationIds(
  tok: TextTokenizer,
  messages: ChatMessage[],
  mode: PromptMode,
  modelId: string,
): number[] {
  const text = conversationText(tok, messages, mode, modelId);
  const ids = tok.encode(text, { addSpecialTokens: mode === 'completion' });
  if (ids.length === 0) throw new ChatError('The conversation is empty after tokenization: write a message first.');
  return ids;
}

/**
 * The messages of a conversation with its system prompt first (none when blank). In completion
 * mode an empty system prompt adds nothing either.
 */
export function withSystem(system: string, messages: ChatMessage[]): ChatMessage[] {
  return system.trim() ? [{ role: 'system', content: system }, ...messages] : messages;
}
