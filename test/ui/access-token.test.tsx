// @vitest-environment jsdom
/**
 * The Hugging Face access token (jsdom, fake engine): entered once and checked, kept in the
 * browser's storage, sent only to huggingface.co (the model check's requests and the worker's
 * download spec), removable; without it nothing carries a token.
 */
import { fireEvent, screen, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { makeTinyModel } from '../fixtures/tiny-model';
import { fakeFetch, makeApp } from './helpers';
import { appTestSetup, mountApp as mount } from './app-harness';

appTestSetup();

const TOKEN = 'hf_abcdefghijklmnopqrstuvwxyz012345';
const ID = 'meta-llama/Llama-3.2-1B';

/** A Hub that serves a tiny model and records each request's URL and Authorization header. */
function recordingHub(seen: { url: string; auth: string | null }[]): typeof fetch {
  const page = fakeFetch();
  const files = makeTinyModel({ modelType: 'llama' }).files;
  return (async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    seen.push({ url, auth: new Headers(init?.headers).get('authorization') });
    if (!url.startsWith('https://huggingface.co/')) return page(input, init);
    const name = url.split('/').pop()!;
    const bytes = files.get(name);
    if (url.includes('/api/models/')) return new Response(JSON.stringify([]), { status: 200 });
    return bytes ? new Response(bytes.slice(), { status: 200 }) : new Response('', { status: 404 });
  }) as typeof fetch;
}

describe('Hugging Face access token', () => {
  it('is checked, kept, sent only to the Hub, and removable', async () => {
    const storage = new Map<string, string>();
    const seen: { url: string; auth: string | null }[] = [];
    const { c, engine } = await makeApp({ settingsStorage: storage, fetch: recordingHub(seen) });
    mount(c);
    const box = within(screen.getByTestId('access-token'));
    fireEvent.change(box.getByLabelText('Access token'), { target: { value: 'not a token' } });
    fireEvent.click(box.getByRole('button', { name: 'Save token' }));
    expect(box.getByText(/no spaces inside/)).toBeTruthy();
    expect(c.hasHubToken()).toBe(false);
    fireEvent.change(box.getByLabelText('Access token'), { target: { value: ` ${TOKEN} ` } });
    fireEvent.click(box.getByRole('button', { name: 'Save token' }));
    expect(box.getByText(/kept in this browser and sent only to huggingface\.co/)).toBeTruthy();
    expect(storage.get('tabtune-hf-token')).toBe(TOKEN);
    // the page never shows it again
    expect(document.body.innerHTML).not.toContain(TOKEN);

    seen.length = 0;
    await c.chooseModel({ kind: 'hub', id: ID });
    const hubCalls = seen.filter((r) => r.url.startsWith('https://huggingface.co/'));
    expect(hubCalls.length).toBeGreaterThan(0);
    expect(hubCalls.every((r) => r.auth === `Bearer ${TOKEN}`)).toBe(true);
    expect(seen.filter((r) => !r.url.startsWith('https://huggingface.co/')).every((r) => r.auth === null)).toBe(true);
    await c.loadModel();
    expect(engine.lastSource).toMatchObject({ kind: 'hub', id: ID, token: TOKEN });

    fireEvent.click(box.getByRole('button', { name: 'Remove token' }));
    expect(c.hasHubToken()).toBe(false);
    expect(storage.get('tabtune-hf-token') ?? '').toBe('');
    seen.length = 0;
    await c.chooseModel({ kind: 'hub', id: `${ID}-Instruct` });
    expect(seen.every((r) => r.auth === null)).toBe(true);
  });
});
