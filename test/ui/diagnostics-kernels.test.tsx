// @vitest-environment jsdom
/**
 * Diagnostics' matmul kernels card in jsdom on the fake engine: the tuning mode (auto / off / a
 * pinned member) is kept in the browser's storage and given to the engine at start-up and on every
 * change; the saved choices are listed per device, this GPU's marked, and Forget drops one device's.
 * The attention kernels card: auto / tiled / direct kept and given to the engine the same way, saying
 * which set the choice runs on this device and why (a pinned direct without subgroups: tiled).
 */
import { fireEvent, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { ATTENTION_MODE_KEY, KERNEL_MODE_KEY, parseAttentionMode, parseKernelMode } from '../../src/ui/kernels';
import { FakeEngine } from './fake-engine';
import { makeApp } from './helpers';
import { appTestSetup, mountApp as mount } from './app-harness';

appTestSetup();

async function openDiagnostics(): Promise<HTMLElement> {
  fireEvent.click(
    within(screen.getByRole('navigation', { name: 'Steps' })).getByRole('button', { name: /Diagnostics/ }),
  );
  return waitFor(() => screen.getByTestId('kernel-tuning'));
}

describe('Diagnostics: matmul kernels', () => {
  it('the mode is kept in the browser, given to the engine at start-up and on a change', async () => {
    const storage = new Map([[KERNEL_MODE_KEY, 'off']]);
    const engine = new FakeEngine();
    const { c } = await makeApp({ engine, settingsStorage: storage });
    expect(engine.kernelMode).toBe('off');
    mount(c);
    const card = await openDiagnostics();
    const select = within(card).getByRole('combobox', { name: /Kernel tuning/ }) as HTMLSelectElement;
    expect(select.value).toBe('off');
    expect([...select.options].map((o) => o.value)).toEqual(
      expect.arrayContaining(['auto', 'off', 'pin:tile64', 'pin:direct8x4']),
    );
    fireEvent.change(select, { target: { value: 'pin:direct4x4' } });
    await waitFor(() => expect(engine.kernelMode).toEqual({ pin: 'direct4x4' }));
    expect(storage.get(KERNEL_MODE_KEY)).toBe('pin:direct4x4');
    fireEvent.change(select, { target: { value: 'auto' } });
    await waitFor(() => expect(engine.kernelMode).toBe('auto'));
    expect(storage.get(KERNEL_MODE_KEY)).toBe('auto');
  });

  it('an unknown or missing kept mode is auto', () => {
    expect(parseKernelMode(null)).toBe('auto');
    expect(parseKernelMode('pin:fastest')).toBe('auto');
    expect(parseKernelMode('pin:rows')).toEqual({ pin: 'rows' });
  });

  it('lists the saved choices per device, this GPU first-class, and forgets one device', async () => {
    const engine = new FakeEngine();
    engine.savedKernels = [
      { deviceKey: 'fake-gpu', choices: { nt_bf16_mm_nl_kl: 'direct8x4', nt_f32_mxs_nl_kl: 'rows' }, savedAt: 1 },
      { deviceKey: 'nvidia|ampere|||vulkan|f16|32', choices: { nt_bf16_mm_nl_kl: 'tile64' }, savedAt: 2 },
    ];
    const { c } = await makeApp({ engine });
    mount(c);
    const card = await openDiagnostics();
    const list = await waitFor(() => within(card).getByTestId('kernel-choices'));
    const items = within(list).getAllByRole('listitem');
    expect(items).toHaveLength(2);
    expect(items[0]!.textContent).toMatch(/^This GPU: /);
    expect(items[0]!.textContent).toMatch(/nt_bf16_mm_nl_kl\s*direct8x4/);
    expect(items[1]!.textContent).toMatch(/nvidia · ampere \(shader-f16\)/);
    fireEvent.click(within(items[1]!).getByRole('button', { name: /Forget nvidia/ }));
    await waitFor(() => expect(within(list).getAllByRole('listitem')).toHaveLength(1));
    expect(engine.calls).toContain('forgetKernelChoices');
    expect(engine.savedKernels.map((d) => d.deviceKey)).toEqual(['fake-gpu']);
    fireEvent.click(within(card).getByRole('button', { name: /Forget/ }));
    await waitFor(() => expect(within(card).getByText(/No choices saved yet/)).toBeTruthy());
  });
});

describe('Diagnostics: attention kernels', () => {
  it('the mode is kept in the browser, given to the engine at start-up and on a change; says what runs and why', async () => {
    const storage = new Map([[ATTENTION_MODE_KEY, 'tiled']]);
    const engine = new FakeEngine();
    engine.attentionSets = {
      auto: { set: 'direct', why: 'this device is a CPU driver with subgroups, where workgroup memory is slow' },
      tiled: { set: 'tiled', why: 'pinned' },
      direct: { set: 'direct', why: 'pinned' },
    };
    const { c } = await makeApp({ engine, settingsStorage: storage });
    expect(engine.attentionMode).toBe('tiled');
    mount(c);
    await openDiagnostics();
    const card = screen.getByTestId('attention-kernels');
    const select = within(card).getByRole('combobox', { name: /Attention kernels/ }) as HTMLSelectElement;
    expect(select.value).toBe('tiled');
    // auto names the set it picks on this device.
    expect([...select.options].map((o) => [o.value, o.textContent])).toEqual([
      ['auto', 'auto: direct on this device'],
      ['tiled', 'tiled: workgroup-memory tiles (GPUs)'],
      ['direct', 'direct: subgroup kernels (CPU drivers)'],
    ]);
    const runs = within(card).getByTestId('attention-runs');
    expect(runs.textContent).toBe('Runs tiled: pinned.');
    fireEvent.change(select, { target: { value: 'auto' } });
    await waitFor(() => expect(engine.attentionMode).toBe('auto'));
    expect(storage.get(ATTENTION_MODE_KEY)).toBe('auto');
    expect(runs.textContent).toMatch(
      /^Runs direct: this device is a CPU driver with subgroups, .*\. A model whose head dim/,
    );
    fireEvent.change(select, { target: { value: 'direct' } });
    await waitFor(() => expect(engine.attentionMode).toBe('direct'));
    expect(storage.get(ATTENTION_MODE_KEY)).toBe('direct');
    expect(runs.getAttribute('data-set')).toBe('direct');
    expect(runs.className).toBe('');
  });

  it('a pinned direct on a device without the subgroups it needs says the tiled kernels run', async () => {
    // The fake adapter has no subgroups (as SwiftShader without them would).
    const engine = new FakeEngine();
    const { c } = await makeApp({ engine, settingsStorage: new Map([[ATTENTION_MODE_KEY, 'direct']]) });
    mount(c);
    await openDiagnostics();
    const card = screen.getByTestId('attention-kernels');
    expect((within(card).getByRole('option', { name: /^auto/ }) as HTMLOptionElement).textContent).toBe(
      'auto: tiled on this device',
    );
    const runs = within(card).getByTestId('attention-runs');
    expect(runs.getAttribute('data-set')).toBe('tiled');
    expect(runs.className).toBe('note');
    expect(runs.textContent).toBe(
      'Runs tiled: pinned, but this device has no subgroups, which the direct kernels need, so the tiled kernels run instead.',
    );
  });

  it('an unknown or missing kept mode is auto', () => {
    expect(parseAttentionMode(null)).toBe('auto');
    expect(parseAttentionMode('flash')).toBe('auto');
    expect(parseAttentionMode('direct')).toBe('direct');
  });
});

describe('Diagnostics: Benchmark this device', () => {
  it('runs the kernel bench in the engine at the chosen size, shows lines as they come and the summary, copies the text', async () => {
    const engine = new FakeEngine();
    const { c } = await makeApp({ engine });
    mount(c);
    await openDiagnostics();
    const card = screen.getByTestId('kernel-bench');
    expect(card.getAttribute('data-status')).toBe('idle');
    fireEvent.change(within(card).getByRole('combobox', { name: /Problem size/ }), { target: { value: 'tiny' } });
    const button = within(card).getByRole('button', { name: 'Benchmark this device' });
    await waitFor(() => expect((button as HTMLButtonElement).disabled).toBe(false));
    fireEvent.click(button);
    await waitFor(() => expect(card.getAttribute('data-status')).toBe('done'));
    expect(engine.lastBench).toMatchObject({ M: 64, K: 128, N: 128, r: 8 });
    const text = within(card).getByTestId('bench-result').textContent ?? '';
    expect(text).toMatch(/^Tabtune kernel bench · .* · 64x128x128 r=8\n/);
    expect(text).toMatch(/device ceilings: FMA 75\.0 GFLOP\/s, copy 4\.50 GB\/s/);
    expect(text).toMatch(/\nattention kernels: tiled \(this device is a CPU driver but has no subgroups, /);
    expect(within(card).getByTestId('bench-attention').textContent).toMatch(/^Attention kernels: tiled \(this device/);
    expect(text).toMatch(/direct8x4: 6\.00 GFLOP\/s \(3\.00x tile64\)/);
    const rows = within(within(card).getByTestId('bench-summary')).getAllByRole('row');
    expect(rows.map((r) => r.textContent)).toContainEqual(expect.stringMatching(/direct8x4\s*6\.00\s*8\.0%\s*3\.00x/));
    let copiedText = '';
    Object.defineProperty(navigator, 'clipboard', {
      value: { writeText: async (t: string) => void (copiedText = t) },
      configurable: true,
    });
    fireEvent.click(within(card).getByRole('button', { name: 'Copy result' }));
    await waitFor(() => expect(within(card).getByRole('button', { name: 'Copied' })).toBeTruthy());
    expect(copiedText).toBe(text);
    // A size chosen after the run is for the next one: the result still names the size it was measured at.
    fireEvent.change(within(card).getByRole('combobox', { name: /Problem size/ }), { target: { value: 'quick' } });
    expect(within(card).getByTestId('bench-result').textContent).toBe(text);
  });
});
