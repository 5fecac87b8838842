/**
 * --method and --init (src/cli/run-flags.ts over src/lora/methods.ts): the method comes from the
 * methods table; a method or init not implemented yet, or a flag of another method, is refused by
 * name before anything loads, never trained as plain LoRA.
 */
import { describe, expect, it } from 'vitest';
import { UsageError, parseFlags } from '../../src/cli/args';
import { TRAIN_FLAGS, adapterShape, checkLoraFlags, loraFromFlags } from '../../src/cli/run-flags';
import { trainArgs } from '../../src/engine/command-line';
import { DEFAULT_LORA, DEFAULT_TRAIN } from '../../src/engine/defaults';

const MODULES = { modelType: 'llama', linearModules: ['q_proj', 'v_proj'], defaultTargets: ['q_proj', 'v_proj'] };
const BASE = ['--model', 'm', '--data', 'd', '--out', 'o'];
const lora = (...args: string[]) =>
  loraFromFlags(parseFlags([...BASE, ...args], TRAIN_FLAGS, 'train'), MODULES, undefined, 'train');

describe('tabtune train --method / --init', () => {
  it('defaults to LoRA and carries the init', () => {
    expect(lora().method).toBe('lora');
    expect(lora('--method', 'lora', '--init', 'gaussian')).toMatchObject({
      method: 'lora',
      init_lora_weights: 'gaussian',
    });
    expect(lora('--init', 'default').init_lora_weights).toBe(true);
  });

  it('carries the options of (IA)³, prompt and prefix tuning under PEFT names', () => {
    // (IA)³ without --targets: PEFT's (IA)³ defaults for the model type (not LoRA's)
    expect(lora('--method', 'ia3')).toMatchObject({ method: 'ia3', target_modules: [] });
    expect(lora('--method', 'ia3', '--targets', 'q_proj,v_proj', '--feedforward-modules', 'v_proj')).toMatchObject({
      method: 'ia3',
      target_modules: ['q_proj', 'v_proj'],
      feedforward_modules: ['v_proj'],
    });
    expect(() => lora('--method', 'ia3', '--feedforward-modules', 'up_proj')).toThrow(/not a linear module name/);
    expect(
      lora('--method', 'prompt-tuning', '--num-virtual-tokens', '12', '--prompt-init-text', 'Classify:'),
    ).toMatchObject({ method: 'prompt-tuning', num_virtual_tokens: 12, prompt_tuning_init_text: 'Classify:' });
    expect(lora('--method', 'prefix-tuning', '--num-virtual-tokens', '5')).toMatchObject({
      method: 'prefix-tuning',
      num_virtual_tokens: 5,
    });
    expect(() => lora('--method', 'ia3', '--num-virtual-tokens', '5')).toThrow(UsageError);
  });

  it("prompt tuning's init in PEFT's form (--prompt-init text|random) or the short one (--prompt-init-text)", () => {
    const pt = ['--method', 'prompt-tuning', '--num-virtual-tokens', '6'];
    const peftForm = lora(...pt, '--prompt-init', 'text', '--prompt-init-text', 'Classify:');
    expect(peftForm).toMatchObject({ method: 'prompt-tuning', prompt_tuning_init_text: 'Classify:' });
    expect(peftForm).toEqual(lora(...pt, '--prompt-init-text', 'Classify:'));
    // random: no init text (the engine draws N(0, 1)), as without either flag or with an empty text
    expect(lora(...pt, '--prompt-init', 'random').prompt_tuning_init_text).toBe('');
    expect(lora(...pt).prompt_tuning_init_text).toBeUndefined();
    expect(lora(...pt, '--prompt-init-text', '').prompt_tuning_init_text).toBe('');
    expect(() => lora(...pt, '--prompt-init', 'text')).toThrow(
      "train: --prompt-init text starts the prompt from a text's token embeddings, but no text is given; " +
        'add --prompt-init-text "..." (PEFT\'s prompt_tuning_init_text) or use --prompt-init random.',
    );
    expect(() => lora(...pt, '--prompt-init', 'text', '--prompt-init-text', '  ')).toThrow(/no text is given/);
    expect(() => lora(...pt, '--prompt-init', 'random', '--prompt-init-text', 'Classify:')).toThrow(
      'train: --prompt-init random starts the prompt from N(0, 1) values and reads no text, but --prompt-init-text ' +
        '"Classify:" is given; leave it out, or use --prompt-init text to start from it.',
    );
    expect(() => lora(...pt, '--prompt-init', 'sample_vocab')).toThrow(/--prompt-init must be one of text, random/);
    expect(() => lora('--method', 'prefix-tuning', '--prompt-init', 'random')).toThrow(
      'train: --prompt-init applies to --method prompt-tuning, not prefix-tuning; leave it out or choose one of those methods.',
    );
  });

  it('refuses an unknown method by name', () => {
    expect(() => parseFlags([...BASE, '--method', 'adapters'], TRAIN_FLAGS, 'train')).toThrow(
      /--method must be one of lora, dora, ia3, prompt-tuning, prefix-tuning/,
    );
  });

  it('refuses a flag of another method, and unknown or unimplemented inits', () => {
    expect(() => lora('--num-virtual-tokens', '20')).toThrow(
      'train: --num-virtual-tokens applies to --method prompt-tuning or prefix-tuning, not lora; leave it out or choose one of those methods.',
    );
    expect(() => lora('--init', 'eva')).toThrow(
      /--init must be one of default, gaussian, pissa, olora, loftq or pissa_niter_N; got "eva"/,
    );
  });

  it('--init loftq carries LoftQConfig; --loftq-iter / --loftq-bits only with it, 4 bits only', () => {
    expect(lora('--init', 'loftq')).toMatchObject({
      init_lora_weights: 'loftq',
      loftq_config: { loftq_bits: 4, loftq_iter: 1 },
    });
    expect(lora('--init', 'loftq', '--loftq-iter', '5').loftq_config).toEqual({ loftq_bits: 4, loftq_iter: 5 });
    expect(() => lora('--loftq-iter', '2')).toThrow(/--loftq-iter and --loftq-bits apply to --init loftq only/);
    expect(() => lora('--init', 'loftq', '--loftq-bits', '8')).toThrow(/loftq_bits must be 4.*int8.*not implemented/);
    expect(() => lora('--method', 'ia3', '--loftq-iter', '2')).toThrow(/applies to --method lora or dora/);
  });

  it('a continued adapter keeps its method', () => {
    const files = {
      adapterConfig: JSON.stringify({ peft_type: 'LORA', r: 4, lora_alpha: 8 }),
      adapterModel: new Uint8Array(),
    };
    const shape = adapterShape(files, 'adapter');
    expect(shape.method).toBe('lora');
    const f = parseFlags([...BASE, '--method', 'dora'], TRAIN_FLAGS, 'train');
    expect(() => checkLoraFlags(f, shape, '--init-from adapter', 'train')).toThrow(
      /--method dora conflicts with --init-from adapter, which is a LoRA adapter/,
    );
  });

  it('Show as command writes the method and a non-default init', () => {
    const args = trainArgs(
      { ...DEFAULT_LORA, init_lora_weights: 'gaussian', target_modules: ['q_proj'] },
      DEFAULT_TRAIN,
      {
        model: 'm',
        data: 'd',
      },
    );
    expect(args.join(' ')).toMatch(/--method lora --targets q_proj .* --init gaussian/);
  });
});
