// @vitest-environment jsdom
/**
 * The Chat view in jsdom on the fake engine, driven as a user would: the model's
 * generation_config.json defaults, a system prompt, a multi-turn conversation streamed in, the
 * adapter switched between replies (each labelled), Stop (also before the request went out), Regenerate, plain completion, and a
 * failed reply that says why and is left out of the next prompt.
 */
import { act, fireEvent, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { FakeEngine } from './fake-engine';
import { makeApp } from './helpers';
import { appTestSetup, mountApp as mount } from './app-harness';

appTestSetup();

const turns = () => screen.queryAllByTestId('chat-turn');
const who = (el: HTMLElement) => el.querySelector('.chat-who')?.textContent;

async function send(text: string) {
  fireEvent.change(screen.getByLabelText(/Message|Text to continue/), { target: { value: text } });
  await act(async () => {
    fireEvent.keyDown(screen.getByLabelText(/Message|Text to continue/), { key: 'Enter' });
  });
  await waitFor(() => expect(screen.getByTestId('chat').getAttribute('data-status')).toBe('idle'));
}

describe('Chat view', () => {
  it("starts from generation_config.json's sampling and the chat template, and talks to the base model and an adapter in turn", async () => {
    const engine = new FakeEngine();
    engine.generationDefaults = { temperature: 0.7, topK: 20, topP: 0.8, repetitionPenalty: 1.05, maxNewTokens: 300 };
    const { c } = await makeApp({ engine });
    c.setTrain({ steps: 2 });
    await c.startTraining();
    const adapter = c.state.library.adapters[0]!;
    mount(c);
    fireEvent.click(
      within(screen.getByRole('navigation', { name: 'Steps' })).getByRole('button', { name: /7 · Chat/ }),
    );
    expect(screen.getByRole('heading', { level: 2 }).textContent).toBe('7 · Chat');
    expect((screen.getByLabelText('Temperature') as HTMLInputElement).value).toBe('0.7');
    expect((screen.getByLabelText('Top-k') as HTMLInputElement).value).toBe('20');
    expect((screen.getByLabelText('Top-p') as HTMLInputElement).value).toBe('0.8');
    expect((screen.getByLabelText('Repetition penalty') as HTMLInputElement).value).toBe('1.05');
    expect((screen.getByLabelText('Max new tokens') as HTMLInputElement).value).toBe('300');
    expect((screen.getByLabelText('Prompt format') as HTMLSelectElement).value).toBe('chat');
    // Nothing to regenerate yet.
    expect((screen.getByTestId('chat-regenerate') as HTMLButtonElement).disabled).toBe(true);

    fireEvent.change(screen.getByLabelText('System prompt'), { target: { value: 'Be brief.' } });
    await send('Tell me about the rain.');
    expect(turns()).toHaveLength(2);
    expect(who(turns()[0]!)).toBe('You');
    expect(who(turns()[1]!)).toBe('Base · stories260K');
    expect(turns()[1]!.querySelector('pre')!.textContent).toBe('[base] reply 1 about the rain.');
    expect(engine.chats[0]).toMatchObject({
      mode: 'chat',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Tell me about the rain.' },
      ],
      sampling: { temperature: 0.7, topK: 20, topP: 0.8, repetitionPenalty: 1.05, maxNewTokens: 300 },
    });
    expect((screen.getByLabelText('Message') as HTMLTextAreaElement).value).toBe('');

    // The adapter changes between replies: the next reply is the adapter's, the first keeps its label.
    fireEvent.change(screen.getByLabelText('Answer with'), { target: { value: adapter.id } });
    await send('And now?');
    expect(turns().map(who)).toEqual(['You', 'Base · stories260K', 'You', adapter.name]);
    expect(turns()[3]!.querySelector('pre')!.textContent).toBe(`[${adapter.id}] reply 2 about the rain.`);
    expect(engine.chats[1]!.messages.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'user']);
    expect(engine.chats[1]!.messages[2]!.content).toBe('[base] reply 1 about the rain.');
    expect(engine.calls.filter((x) => x.startsWith('chat:'))).toEqual(['chat:base', `chat:${adapter.id}`]);
    // Each reply draws with the next seed.
    expect(engine.chats.map((r) => r.sampling.seed)).toEqual([0, 1]);

    // Regenerate replaces the last reply, with whichever adapter is chosen now and a new seed.
    fireEvent.change(screen.getByLabelText('Answer with'), { target: { value: 'base' } });
    await act(async () => {
      fireEvent.click(screen.getByTestId('chat-regenerate'));
    });
    await waitFor(() => expect(screen.getByTestId('chat').getAttribute('data-status')).toBe('idle'));
    expect(turns().map(who)).toEqual(['You', 'Base · stories260K', 'You', 'Base · stories260K']);
    expect(engine.chats[2]!.messages).toEqual(engine.chats[1]!.messages);
    expect(engine.chats[2]!.sampling.seed).toBe(2);

    // A new conversation keeps the system prompt and the settings.
    fireEvent.click(screen.getByTestId('chat-clear'));
    expect(turns()).toHaveLength(0);
    expect((screen.getByLabelText('System prompt') as HTMLTextAreaElement).value).toBe('Be brief.');
  });

  it('streams a reply word by word, and Stop ends it where it is', async () => {
    const engine = new FakeEngine();
    engine.chatDelayMs = 40;
    const { c } = await makeApp({ engine });
    c.go('chat');
    mount(c);
    fireEvent.change(screen.getByLabelText('Message'), { target: { value: 'Hello' } });
    fireEvent.click(screen.getByTestId('chat-send'));
    await waitFor(() => expect(turns()[1]?.querySelector('pre')?.textContent).toMatch(/^\[base\] reply/));
    expect(turns()[1]!.getAttribute('data-status')).toBe('streaming');
    expect(screen.getByTestId('chat-send').getAttribute('aria-disabled')).toBe('true');
    fireEvent.click(screen.getByTestId('chat-stop'));
    await waitFor(() => expect(screen.getByTestId('chat').getAttribute('data-status')).toBe('idle'));
    const reply = turns()[1]!;
    expect(reply.getAttribute('data-status')).toBe('done');
    expect(reply.textContent).toContain('(stopped)');
    expect(reply.querySelector('pre')!.textContent!.length).toBeLessThan('[base] reply 1 about the rain.'.length);
    expect(screen.queryByTestId('chat-stop')).toBeNull();
  });

  it('Stop pressed before the request went out (the adapter still being read) sends nothing and ends the reply', async () => {
    const engine = new FakeEngine();
    const { c } = await makeApp({ engine });
    c.go('chat');
    mount(c);
    fireEvent.change(screen.getByLabelText('Message'), { target: { value: 'Hello' } });
    fireEvent.click(screen.getByTestId('chat-send'));
    fireEvent.click(screen.getByTestId('chat-stop'));
    await waitFor(() => expect(screen.getByTestId('chat').getAttribute('data-status')).toBe('idle'));
    expect(engine.chats).toHaveLength(0);
    const reply = turns()[1]!;
    expect(reply.getAttribute('data-status')).toBe('done');
    expect(reply.textContent).toContain('(stopped)');
    // The next message is answered as usual.
    await send('Hello again');
    expect(engine.chats).toHaveLength(1);
    expect(turns()[3]!.querySelector('pre')!.textContent).toBe('[base] reply 1 about the rain.');
  });

  it('plain completion for base models, and a failed reply says why and is left out of the next prompt', async () => {
    const engine = new FakeEngine();
    const { c } = await makeApp({ engine });
    c.go('chat');
    mount(c);
    fireEvent.change(screen.getByLabelText('Prompt format'), { target: { value: 'completion' } });
    engine.failNext.chat = Object.assign(
      new Error(
        'The prompt is 300 tokens long, but model "stories260K" reads at most 256 (max_position_embeddings = 256 in config.json).',
      ),
      { name: 'GenerationError' },
    );
    await send('Once upon a time');
    expect(turns()).toHaveLength(2);
    expect(turns()[1]!.getAttribute('data-status')).toBe('error');
    expect(turns()[1]!.textContent).toMatch(/reads at most 256/);
    expect(screen.getByTestId('chat').textContent).toMatch(/reads at most 256/);
    await send(', there was');
    expect(engine.chats.at(-1)).toMatchObject({
      mode: 'completion',
      messages: [
        { role: 'user', content: 'Once upon a time' },
        { role: 'user', content: ', there was' },
      ],
    });
    expect(turns()[3]!.getAttribute('data-status')).toBe('done');
  });
});
