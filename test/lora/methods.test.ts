import { describe, expect, it } from 'vitest';
import {
  METHOD_IDS,
  MethodError,
  PEFT_METHODS,
  initUsesWeights,
  methodOfAdapterConfig,
  methodSpec,
  parseLoraInit,
  requireImplemented,
  requireInitImplemented,
} from '../../src/lora/methods';
import { loraConfigFromSettings } from '../../src/lora/targets';
import { LoraConfigError, loraParameterCount } from '../../src/lora/config';
import { DEFAULT_LORA } from '../../src/engine/defaults';

describe('PEFT methods table', () => {
  it('reads the method from peft_type and use_dora', () => {
    expect(methodOfAdapterConfig({ peft_type: 'LORA' }).id).toBe('lora');
    expect(methodOfAdapterConfig({}).id).toBe('lora');
    expect(methodOfAdapterConfig({ peft_type: 'LORA', use_dora: true }).id).toBe('dora');
    expect(methodOfAdapterConfig({ peft_type: 'IA3' }).id).toBe('ia3');
    expect(methodOfAdapterConfig({ peft_type: 'PROMPT_TUNING' }).id).toBe('prompt-tuning');
    expect(methodOfAdapterConfig({ peft_type: 'PREFIX_TUNING' }).id).toBe('prefix-tuning');
    expect(() => methodOfAdapterConfig({ peft_type: 'LOHA' }, 'x/adapter_config.json')).toThrow(
      /^x\/adapter_config\.json: peft_type "LOHA" is not a method Tabtune knows/,
    );
  });

  it('has one row per method, each with a distinct peft_type/use_dora pair', () => {
    expect(METHOD_IDS).toEqual(['lora', 'dora', 'ia3', 'prompt-tuning', 'prefix-tuning']);
    const keys = PEFT_METHODS.map((m) => `${m.peftType}/${m.useDora}`);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('refuses a method not implemented yet, naming where it was asked for', () => {
    for (const m of PEFT_METHODS.filter((x) => !x.implemented)) {
      expect(() => requireImplemented(m, '--method')).toThrow(MethodError);
      expect(() => requireImplemented(m, '--method')).toThrow(new RegExp(`^--method: .*\\(${m.id}, peft_type`));
    }
    expect(() => requireImplemented(methodSpec('lora'), 'x')).not.toThrow();
  });

  it('never turns an unimplemented method into a LoRA config', () => {
    for (const m of PEFT_METHODS.filter((x) => !x.implemented)) {
      expect(() =>
        loraConfigFromSettings({ ...DEFAULT_LORA, method: m.id, target_modules: ['q_proj'] }, 'llama'),
      ).toThrow(LoraConfigError);
    }
    expect(loraConfigFromSettings({ ...DEFAULT_LORA, target_modules: ['q_proj'] }, 'llama').use_dora).toBe(false);
  });

  it('parses --init names as PEFT init_lora_weights', () => {
    expect(parseLoraInit('default')).toBe(true);
    expect(parseLoraInit(true)).toBe(true);
    expect(parseLoraInit('gaussian')).toBe('gaussian');
    expect(parseLoraInit('pissa')).toBe('pissa');
    expect(parseLoraInit('pissa_niter_4')).toBe('pissa_niter_4');
    expect(parseLoraInit('pissa_niter_0')).toBeNull();
    expect(parseLoraInit('eva')).toBeNull();
    expect(initUsesWeights('olora')).toBe(true);
    expect(initUsesWeights('gaussian')).toBe(false);
    expect(() => requireInitImplemented('gaussian', '--init')).not.toThrow();
  });

  it('counts trainable parameters as PEFT does (DoRA adds one magnitude per output row)', () => {
    const mods = [
      { path: 'a.q_proj', inF: 16, outF: 8 },
      { path: 'a.v_proj', inF: 16, outF: 4 },
    ];
    expect(loraParameterCount({ r: 2 }, mods)).toBe(2 * 24 + 2 * 20);
    expect(loraParameterCount({ r: 2, use_dora: true }, mods)).toBe(2 * 24 + 2 * 20 + 12);
  });
});
