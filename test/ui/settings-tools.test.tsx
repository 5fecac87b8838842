// @vitest-environment jsdom
/**
 * The Settings view's helpers in jsdom on the fake engine: help for every setting and warnings far
 * outside the typical ranges, presets (built in, saved, shared as JSON, imported with checks), and
 * "Show as command", whose train line the CLI's own parser reads back as the app's settings.
 */
import { act, fireEvent, screen, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { parseFlags } from '../../src/cli/args';
import { TRAIN_FLAGS, applySettingFlags, baseTrainSettings, loraFromFlags } from '../../src/cli/run-flags';
import { DEFAULT_LORA, DEFAULT_TRAIN } from '../../src/engine/defaults';
import { methodSettingsLabel } from '../../src/ui/format';
import { HELP, settingWarnings } from '../../src/ui/help';
import { BUILT_IN_PRESETS, PresetError, parsePreset, presetJson } from '../../src/ui/presets';
import { makeApp } from './helpers';
import { appTestSetup, mountApp as mount } from './app-harness';

appTestSetup();

/** A shown command line's flags (after `node bin/tabtune.mjs train`; no quoting: the demo's paths have no spaces). */
function argsOf(line: string): string[] {
  expect(line).not.toMatch(/['"]/);
  return line.split(' ').slice(3);
}

describe('Settings: help and warnings', () => {
  it('every setting field says what it does and its typical values', async () => {
    const { c } = await makeApp();
    c.go('settings');
    mount(c);
    const inputs = [
      ...document.querySelectorAll<HTMLInputElement>('.view input[type="text"][name], .view select[name]'),
    ];
    const named = inputs.filter((i) => !['preset-pick', 'preset-name'].includes(i.id));
    expect(named.length).toBeGreaterThan(15);
    for (const i of named) {
      const hint = (i.getAttribute('aria-describedby') ?? '')
        .split(' ')
        .map((id) => document.getElementById(id)?.textContent ?? '')
        .join(' ');
      expect(hint, `help for ${i.name}`).toContain(HELP[i.name]!.slice(0, 20));
    }
  });

  it('warns far outside the typical ranges, not inside them', async () => {
    expect(settingWarnings(DEFAULT_LORA, DEFAULT_TRAIN)).toEqual({});
    const w = settingWarnings(
      { ...DEFAULT_LORA, r: 512, lora_alpha: 16 },
      { ...DEFAULT_TRAIN, lr: 0.05, epochs: 40, steps: 0, weightDecay: 0.5, valFraction: 0.45 },
    );
    expect(Object.keys(w).sort()).toEqual(['epochs', 'lora_alpha', 'lr', 'r', 'valFraction', 'weightDecay']);
    expect(w.lr).toMatch(/far above LoRA's usual 1e-4 – 5e-4/);
    expect(settingWarnings(DEFAULT_LORA, { ...DEFAULT_TRAIN, lr: 1e-8 }).lr).toMatch(/barely move/);
    // a field with a validation error is left to it
    expect(settingWarnings(DEFAULT_LORA, { ...DEFAULT_TRAIN, lr: 5 }, { lr: 'too big' }).lr).toBeUndefined();

    const { c } = await makeApp();
    c.go('settings');
    c.setTrain({ lr: 2e-4 });
    mount(c);
    expect(screen.queryByTestId('warn-lr')).toBeNull();
    fireEvent.change(screen.getByLabelText('Learning rate'), { target: { value: '0.05' } });
    expect(screen.getByTestId('warn-lr').textContent).toMatch(/may jump or diverge/);
    // the warning is part of the field's description, and the run is not blocked
    const lr = screen.getByLabelText('Learning rate');
    expect(lr.getAttribute('aria-invalid')).toBeNull();
    fireEvent.change(lr, { target: { value: '0.0003' } });
    expect(screen.queryByTestId('warn-lr')).toBeNull();
  });
});

describe('Settings: presets', () => {
  it('applies a built-in preset, saves, deletes and keeps the settings a preset does not name', async () => {
    const storage = new Map<string, string>();
    const { c } = await makeApp({ settingsStorage: storage });
    c.go('settings');
    mount(c);
    c.setTrain({ seed: 1234 });
    const card = within(screen.getByTestId('presets'));
    fireEvent.change(card.getByLabelText('Preset'), { target: { value: BUILT_IN_PRESETS[2]!.name } });
    fireEvent.click(card.getByRole('button', { name: 'Apply' }));
    expect(c.state.lora.r).toBe(32);
    expect(c.state.lora.target_modules).toBe('all-linear');
    expect(c.state.train.epochs).toBe(2);
    expect(c.state.train.seed).toBe(1234);
    expect((screen.getByLabelText('Rank r') as HTMLInputElement).value).toBe('32');

    c.setLora({ r: 12 });
    fireEvent.change(card.getByLabelText('Save these settings as'), { target: { value: 'my run' } });
    fireEvent.click(card.getByRole('button', { name: 'Save preset' }));
    expect((card.getByLabelText('Preset') as HTMLSelectElement).value).toBe('my run');
    expect(card.getByRole('option', { name: 'my run (saved)' })).toBeTruthy();
    // kept across a reload (the same storage)
    const again = await makeApp({ settingsStorage: storage });
    expect(again.c.presets().map((p) => p.name)).toContain('my run');
    c.setLora({ r: 4 });
    fireEvent.click(card.getByRole('button', { name: 'Apply' }));
    expect(c.state.lora.r).toBe(12);
    fireEvent.click(card.getByRole('button', { name: 'Delete' }));
    expect(card.queryByRole('option', { name: 'my run (saved)' })).toBeNull();
  });

  it('a shared preset file round-trips; a bad one names the file and the field', async () => {
    const p = { name: 'shared', lora: { r: 16, target_modules: ['q_proj'] }, train: { lr: 1e-4, packing: true } };
    expect(parsePreset(presetJson(p), 'shared.json')).toEqual(p);
    expect(() => parsePreset('{"tabtune_preset": 1, "name": "x", "train": {"lr": "fast"}}', 'x.json')).toThrow(
      'x.json: "train.lr" must be a number, got "fast".',
    );
    expect(() => parsePreset('{"tabtune_preset": 1, "name": "x", "lora": {"method": "adapters"}}', 'x.json')).toThrow(
      'x.json: "lora.method" must be one of lora, dora, ia3, prompt-tuning, prefix-tuning, got "adapters".',
    );
    expect(() => parsePreset('{"tabtune_preset": 1, "name": "x", "lora": {"rank": 8}}', 'x.json')).toThrow(
      /x\.json: "lora\.rank" is not a setting Tabtune knows; expected one of method, r, lora_alpha/,
    );
    expect(() => parsePreset('{"name": "x"}', 'y.json')).toThrow(PresetError);
    const { c } = await makeApp({ settingsStorage: new Map() });
    expect(c.importPreset('not json', 'bad.json')).toBeNull();
    expect(c.state.notices.at(-1)!.detail).toMatch(/bad\.json: not valid JSON/);
    expect(c.importPreset(presetJson(p), 'shared.json')?.name).toBe('shared');
    c.applyPreset(c.presets().find((x) => x.name === 'shared')!);
    expect(c.state.lora.r).toBe(16);
    expect(c.state.train.packing).toBe(true);
  });
});

describe('Settings: show as command', () => {
  it("the shown train line parses back, with the CLI's flags, to the app's settings", async () => {
    const { c } = await makeApp();
    c.go('settings');
    mount(c);
    act(() => {
      c.setLora({ r: 16, lora_alpha: 32, target_modules: 'all-linear', use_rslora: true });
      c.setTrain({ lr: 3e-4, steps: 40, batch: 2, gradAccum: 3, packing: true, shuffle: false, evalEvery: 7 });
    });
    fireEvent.click(screen.getByText('Show as command'));
    const line = screen.getByTestId('train-command').textContent!;
    expect(line).toMatch(
      /^node bin\/tabtune\.mjs train --model public\/models\/stories260K --data public\/data\/demo-qa\.jsonl/,
    );
    const args = argsOf(line);
    const f = parseFlags(args, TRAIN_FLAGS, 'train');
    const train = baseTrainSettings(f, f['max-len'] as number);
    applySettingFlags(f, train);
    expect(train).toEqual(c.state.train);
    const info = c.state.model.info!;
    expect(loraFromFlags(f, info, undefined, 'train')).toEqual({ ...c.state.lora, init_lora_weights: undefined });
    const recipe = screen.getByTestId('recipe-command').textContent!;
    expect(recipe).toMatch(/^node bin\/tabtune\.mjs export-recipe --model public\/models\/stories260K /);
    expect(recipe.split(' --data ')[1]).toBe(line.split(' --data ')[1]!.replace('./adapter', './recipe'));
  });
});

describe('Settings: the PEFT method', () => {
  it("(IA)³: PEFT's default modules, or the user's targets and feed-forward modules (a subset, as PEFT requires)", async () => {
    const { c } = await makeApp();
    c.go('settings');
    mount(c);
    fireEvent.change(screen.getByLabelText('PEFT method'), { target: { value: 'ia3' } });
    const card = within(screen.getByTestId('ia3-modules'));
    const defaults = card.getByRole('checkbox', {
      name: /^PEFT's defaults for llama: k_proj, v_proj, down_proj \(its input\)$/,
    });
    expect((defaults as HTMLInputElement).checked).toBe(true);
    const box = (name: string) => card.getByRole('checkbox', { name }) as HTMLInputElement;
    expect([
      box('scale k_proj').checked,
      box('scale q_proj').checked,
      box('scale the input of down_proj').checked,
    ]).toEqual([true, false, true]);
    expect(box('scale q_proj').disabled).toBe(true);
    // Own modules start from the defaults
    fireEvent.click(defaults);
    expect(c.state.lora).toMatchObject({
      target_modules: ['k_proj', 'v_proj', 'down_proj'],
      feedforward_modules: ['down_proj'],
    });
    fireEvent.click(box('scale the input of up_proj'));
    expect(screen.getByTestId('ia3-error').textContent).toMatch(
      /feedforward_modules \["up_proj"\] are not in target_modules .*PEFT requires them to be a subset/,
    );
    fireEvent.click(box('scale up_proj'));
    expect(screen.queryByTestId('ia3-error')).toBeNull();
    expect(c.state.lora).toMatchObject({
      target_modules: ['k_proj', 'v_proj', 'up_proj', 'down_proj'],
      feedforward_modules: ['up_proj', 'down_proj'],
    });
    expect(await screen.findByText(/^IA³: [\d.,KM]+ trainable parameters with these settings\.$/)).toBeTruthy();
    // the summaries name the method's own settings, not LoRA's rank
    expect(screen.getByRole('navigation', { name: 'Steps' }).textContent).toMatch(/3 · SettingsIA³ · lr /);
    expect(methodSettingsLabel(c.state.lora)).toBe('IA³ on k_proj, v_proj, up_proj, down_proj');
    expect(methodSettingsLabel({ ...c.state.lora, method: 'prefix-tuning', num_virtual_tokens: 5 })).toBe(
      'Prefix tuning, 5 virtual tokens',
    );
    expect(methodSettingsLabel({ ...c.state.lora, method: 'dora', r: 4, target_modules: ['q_proj'] })).toBe(
      'DoRA r 4, alpha 16, q_proj',
    );
    // The command line carries them; train's parser reads them back
    fireEvent.click(screen.getByText('Show as command'));
    const args = argsOf(screen.getByTestId('train-command').textContent!);
    expect(args.join(' ')).toMatch(
      /--method ia3 --targets k_proj,v_proj,up_proj,down_proj --feedforward-modules up_proj,down_proj /,
    );
    expect(args).not.toContain('--r');
    const f = parseFlags(args, TRAIN_FLAGS, 'train');
    expect(loraFromFlags(f, c.state.model.info!, undefined, 'train')).toMatchObject({
      method: 'ia3',
      target_modules: ['k_proj', 'v_proj', 'up_proj', 'down_proj'],
      feedforward_modules: ['up_proj', 'down_proj'],
    });
    // No targets but a feed-forward module: named; back to the defaults
    for (const m of ['k_proj', 'v_proj', 'up_proj', 'down_proj']) fireEvent.click(box(`scale ${m}`));
    expect(screen.getByTestId('ia3-error').textContent).toMatch(/Choose at least one module to scale/);
    fireEvent.click(defaults);
    expect(c.state.lora).toMatchObject({ target_modules: [], feedforward_modules: [] });
    expect(screen.queryByTestId('ia3-error')).toBeNull();
  });

  it('is the first choice with its options and parameter count', async () => {
    const { c } = await makeApp();
    c.go('settings');
    mount(c);
    const method = screen.getByLabelText('PEFT method') as HTMLSelectElement;
    expect(method.value).toBe('lora');
    expect(document.querySelector('.view select[name], .view input[name]:not([id^="preset"])')).toBe(method);
    expect(await screen.findByText(/^LoRA: [\d.,KM]+ trainable parameters with these settings\.$/)).toBeTruthy();
    fireEvent.change(method, { target: { value: 'dora' } });
    expect(c.state.lora.method).toBe('dora');
    expect(screen.queryByTestId('method-error')).toBeNull();
    expect(screen.getByLabelText('Rank r')).toBeTruthy(); // DoRA keeps LoRA's options
    fireEvent.change(screen.getByLabelText('Initialisation'), { target: { value: 'pissa' } });
    expect(c.state.lora.init_lora_weights).toBe('pissa');
    // the other methods have their own options and no LoRA card
    fireEvent.change(screen.getByLabelText('PEFT method'), { target: { value: 'ia3' } });
    expect(c.state.lora).toMatchObject({ method: 'ia3', target_modules: [], feedforward_modules: [] });
    expect(screen.queryByTestId('method-error')).toBeNull();
    expect(screen.queryByLabelText('Rank r')).toBeNull();
    fireEvent.change(screen.getByLabelText('PEFT method'), { target: { value: 'prompt-tuning' } });
    fireEvent.change(screen.getByLabelText('Virtual tokens'), { target: { value: '12' } });
    expect(c.state.lora.num_virtual_tokens).toBe(12);
    expect(
      await screen.findByText(/^Prompt tuning: [\d.,KM]+ trainable parameters with these settings\.$/),
    ).toBeTruthy();
    // prefix tuning: the projection MLP and its hidden size (PEFT prefix_projection, encoder_hidden_size)
    fireEvent.change(screen.getByLabelText('PEFT method'), { target: { value: 'prefix-tuning' } });
    expect(screen.queryByLabelText('Encoder hidden size')).toBeNull();
    fireEvent.click(screen.getByRole('checkbox', { name: /prefix encoder MLP/ }));
    expect(c.state.lora.prefix_projection).toBe(true);
    const hidden = screen.getByLabelText('Encoder hidden size') as HTMLInputElement;
    expect(hidden.value).toBe(String(c.state.model.info!.hiddenSize));
    fireEvent.change(hidden, { target: { value: '24' } });
    expect(c.state.lora.encoder_hidden_size).toBe(24);
    expect(
      await screen.findByText(/^Prefix tuning: [\d.,KM]+ trainable parameters with these settings\.$/),
    ).toBeTruthy();
    fireEvent.change(screen.getByLabelText('PEFT method'), { target: { value: 'lora' } });
    fireEvent.change(screen.getByLabelText('Initialisation'), { target: { value: 'gaussian' } });
    expect(c.state.lora.init_lora_weights).toBe('gaussian');
    expect(screen.queryByTestId('method-error')).toBeNull();
  });

  it('LoftQ: offered with 16-bit frozen weights with its iterations; 4-bit weights and DoRA say what it needs', async () => {
    const { c } = await makeApp();
    c.go('settings');
    mount(c);
    expect(screen.queryByLabelText('LoftQ iterations')).toBeNull();
    fireEvent.change(screen.getByLabelText('Initialisation'), { target: { value: 'loftq' } });
    expect(c.state.lora.init_lora_weights).toBe('loftq');
    expect(screen.queryByTestId('init-error')).toBeNull();
    fireEvent.change(screen.getByLabelText('LoftQ iterations'), { target: { value: '3' } });
    expect(c.state.lora.loftq_config).toEqual({ loftq_bits: 4, loftq_iter: 3 });
    expect(screen.getByLabelText('Initialisation').getAttribute('aria-describedby')).toBeTruthy();
    // the shown command carries it to the CLI
    fireEvent.click(screen.getByText('Show as command'));
    expect(screen.getByTestId('train-command').textContent).toMatch(/--init loftq --loftq-iter 3/);
    fireEvent.change(screen.getByLabelText('PEFT method'), { target: { value: 'dora' } });
    expect(screen.getByTestId('init-error').textContent).toMatch(/plain LoRA only/);
    fireEvent.change(screen.getByLabelText('PEFT method'), { target: { value: 'lora' } });
    await act(async () => void (await c.setFrozen({ quantize: 'nf4' })));
    expect(c.state.model.info!.quantization).not.toBeNull();
    expect(screen.getByTestId('init-error').textContent).toMatch(
      /makes the 4-bit NF4 backbone itself from the 16-bit weights: set Frozen weights to 16-bit/,
    );
    await act(async () => void (await c.setFrozen({ quantize: null })));
    expect(screen.queryByTestId('init-error')).toBeNull();
  });
});
