/**
 * Step 7: chat — a conversation with the base model or any saved adapter. Replies stream in as the
 * GPU worker writes them; the adapter can change between replies (each reply is labelled with the
 * one that made it). The work is in ../actions/chat.ts.
 */
import { useEffect, useRef } from 'react';
import { useAppState, useController } from '../hooks';
import type { AppState, ChatTurn } from '../state';
import { MessageCard, SelectField } from './common';
import { SamplingFields } from './SamplingFields';

const STOP_NOTES: Record<string, string> = {
  stopped: 'stopped',
  length: 'max new tokens reached',
  context: "the model's context is full",
};

function Turn({ t }: { t: ChatTurn }) {
  const streaming = t.status === 'streaming';
  return (
    <li
      className={`chat-msg ${t.role}${t.status === 'error' ? ' failed' : ''}`}
      data-testid="chat-turn"
      data-role={t.role}
      data-status={t.status ?? 'done'}
      aria-busy={streaming || undefined}
    >
      <span className="chat-who" title={t.by?.label}>
        {t.role === 'user' ? 'You' : t.by?.label}
      </span>
      <pre className="gen-text">
        {t.content}
        {streaming && <span className="cursor" aria-hidden="true" />}
      </pre>
      {t.status === 'done' && !t.content && <p className="muted small">(no text: the model ended the reply at once)</p>}
      {t.status === 'done' && t.stopReason && STOP_NOTES[t.stopReason] && (
        <p className="muted small chat-note">({STOP_NOTES[t.stopReason]})</p>
      )}
      {t.status === 'error' && <p className="field-error">{t.error}</p>}
    </li>
  );
}

function Conversation({ s }: { s: AppState }) {
  const end = useRef<HTMLLIElement>(null);
  const last = s.chat.turns[s.chat.turns.length - 1];
  useEffect(() => {
    end.current?.scrollIntoView?.({ block: 'nearest' });
  }, [s.chat.turns.length, last?.content.length]);
  if (s.chat.turns.length === 0) {
    return (
      <p className="muted chat-empty">
        {s.chat.mode === 'chat'
          ? 'Write a message below. The model answers with its chat template, as transformers’ apply_chat_template renders it.'
          : 'Plain completion: the conversation is one text and the model continues it. Write the start of a text below.'}
      </p>
    );
  }
  return (
    <ol className="chat-log" aria-label="Conversation" aria-live="polite" data-testid="chat-log">
      {s.chat.turns.map((t) => (
        <Turn key={t.id} t={t} />
      ))}
      <li ref={end} className="chat-end" aria-hidden="true" />
    </ol>
  );
}

export function ChatView() {
  const s = useAppState();
  const c = useController();
  const ch = s.chat;
  const info = s.model.info;
  const blocker = c.chatBlocker();
  const busy = ch.status !== 'idle';
  const hasReply = ch.turns.some((t) => t.role === 'user');
  const adapterOptions = [
    { value: 'base', label: `Base model${info ? ` · ${info.id.split('/').pop()}` : ''}` },
    ...s.library.adapters.map((a) => ({
      value: a.id,
      label: info && a.baseModel !== info.id ? `${a.name} (trained on ${a.baseModel})` : a.name,
    })),
  ];
  const send = () => {
    if (!busy && !blocker && ch.draft.trim()) void c.sendChat();
  };
  return (
    <div className="view">
      <h2>7 · Chat</h2>
      <p className="lead">
        Talk to the base model or an adapter. Switch adapters between replies to see the difference: each reply says
        which one wrote it.
      </p>
      <div className="chat-layout">
        <section className="card chat-card" aria-labelledby="chat-h" data-testid="chat" data-status={ch.status}>
          <h3 id="chat-h">Conversation</h3>
          <Conversation s={s} />
          <div className="field chat-compose">
            <label htmlFor="chat-draft">{ch.mode === 'chat' ? 'Message' : 'Text to continue'}</label>
            <textarea
              id="chat-draft"
              rows={3}
              value={ch.draft}
              placeholder="Enter sends; Shift+Enter starts a new line."
              onChange={(e) => c.setChat({ draft: e.target.value })}
              onKeyDown={(e) => {
                if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
                  e.preventDefault();
                  send();
                }
              }}
            />
          </div>
          <div className="actions">
            {/* While a reply is written Send is aria-disabled, not disabled: a disabled button drops the keyboard focus. */}
            <button
              type="button"
              className="primary"
              disabled={(!!blocker && !busy) || !ch.draft.trim()}
              aria-disabled={busy || undefined}
              onClick={send}
              data-testid="chat-send"
            >
              {busy ? 'Writing…' : 'Send'}
            </button>
            {busy && (
              <button
                type="button"
                className="secondary"
                onClick={() => c.stopChat()}
                disabled={ch.status === 'stopping'}
                data-testid="chat-stop"
              >
                {ch.status === 'stopping' ? 'Stopping…' : 'Stop'}
              </button>
            )}
            <button
              type="button"
              className="secondary"
              disabled={busy || !!blocker || !hasReply}
              onClick={() => void c.regenerateChat()}
              data-testid="chat-regenerate"
            >
              Regenerate
            </button>
            <button
              type="button"
              className="link"
              disabled={busy || ch.turns.length === 0}
              onClick={() => c.clearChat()}
              data-testid="chat-clear"
            >
              New conversation
            </button>
            {blocker && !busy && <span className="muted">{blocker}</span>}
          </div>
          {ch.error && <MessageCard message={ch.error} />}
        </section>
        <section className="card" aria-labelledby="chat-settings-h">
          <h3 id="chat-settings-h">Model and settings</h3>
          <SelectField
            label="Answer with"
            name="chatAdapter"
            value={ch.adapterKey}
            options={adapterOptions}
            hint="The next reply uses this; earlier replies keep their label."
            onChange={(v) => c.setChat({ adapterKey: v })}
          />
          <SelectField
            label="Prompt format"
            name="chatMode"
            value={ch.mode}
            options={[
              {
                value: 'chat',
                label: info && !info.hasChatTemplate ? 'Chat template (this model has none)' : 'Chat template',
              },
              { value: 'completion', label: 'Plain completion (base models)' },
            ]}
            hint="Chat: messages rendered by the model's chat_template. Completion: the text is continued as written."
            onChange={(v) => c.setChat({ mode: v })}
          />
          <div className="field">
            <label htmlFor="chat-system">System prompt</label>
            <textarea
              id="chat-system"
              rows={2}
              value={ch.system}
              placeholder="Optional, e.g. You are a helpful assistant."
              onChange={(e) => c.setChat({ system: e.target.value })}
            />
          </div>
          <SamplingFields
            sampling={ch.sampling}
            onChange={(p) => c.setChatSampling(p)}
            seedHint="Counted up for each reply, so Regenerate draws a new one."
          />
          <p className="muted small">
            Defaults come from the model’s generation_config.json (greedy unless it sets do_sample), as in transformers.
          </p>
        </section>
      </div>
    </div>
  );
}
