/**
 * "Show as command" (src/engine/command-line.ts): the `tabtune train` and `tabtune export-recipe`
 * lines of a run's settings parse back, with the CLI's own flag table, to exactly those settings;
 * and running the train line gives the very adapter the engine trains in-process with them.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseFlags } from '../../src/cli/args';
import {
  TRAIN_FLAGS,
  applySettingFlags,
  baseTrainSettings,
  checkStepsOrEpochs,
  loraFromFlags,
} from '../../src/cli/run-flags';
import { commandText, recipeArgs, shellQuote, trainArgs } from '../../src/engine/command-line';
import { DEFAULT_LORA, DEFAULT_TRAIN } from '../../src/engine/defaults';
import { Engine } from '../../src/engine/engine';
import type { LoraSettings, TrainSettings } from '../../src/engine/types';
import { writeTinyModel, tinyCorpusJsonl } from '../fixtures/tiny-model';
import { getGpu } from '../helpers/gpu';
import { runCommand } from '../helpers/proc';

const MODULES = {
  modelType: 'llama',
  linearModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  defaultTargets: ['q_proj', 'v_proj'],
};

/** What the CLI makes of a line's arguments (after the command name). */
function parsed(args: string[]): { lora: LoraSettings; train: TrainSettings } {
  const [command, ...rest] = args;
  const f = parseFlags(rest, TRAIN_FLAGS, command!);
  checkStepsOrEpochs(f, command!);
  const train = baseTrainSettings(f, f['max-len'] as number);
  applySettingFlags(f, train);
  return { lora: loraFromFlags(f, MODULES, undefined, command!), train };
}

const CASES: { lora: LoraSettings; train: TrainSettings }[] = [
  { lora: { ...DEFAULT_LORA, target_modules: ['q_proj', 'v_proj'] }, train: { ...DEFAULT_TRAIN, valFraction: 0.1 } },
  {
    lora: { method: 'lora', r: 64, lora_alpha: 128, lora_dropout: 0, target_modules: 'all-linear', use_rslora: true },
    train: {
      ...DEFAULT_TRAIN,
      optimizer: 'sgd',
      lr: 3.5e-5,
      weightDecay: 0.01,
      steps: 123,
      epochs: 0,
      batch: 3,
      gradAccum: 7,
      maxLen: 1000,
      scheduler: 'cosine',
      warmup: 12,
      maxGradNorm: 0,
      shuffle: false,
      seed: 99,
      lossEvery: 5,
      evalEvery: 20,
      checkpointEvery: 40,
      valFraction: 0.25,
      activationCheckpointing: true,
      packing: true,
    },
  },
  {
    lora: { ...DEFAULT_LORA, r: 4, lora_alpha: 4, target_modules: ['o_proj', 'down_proj', 'gate_proj'] },
    train: { ...DEFAULT_TRAIN, epochs: 2.5, steps: 0, valFraction: 0, evalEvery: 0 },
  },
];

describe('Show as command', () => {
  it('the train and export-recipe lines parse back to exactly the settings', () => {
    for (const c of CASES) {
      const ctx = { model: './My Model', recipeModel: 'org/model', data: 'my data.jsonl', format: 'alpaca' as const };
      for (const args of [trainArgs(c.lora, c.train, ctx), recipeArgs(c.lora, c.train, ctx)]) {
        const back = parsed(args);
        expect(back.train).toEqual(c.train);
        expect(back.lora).toEqual(c.lora);
        expect(args).toContain('--format');
      }
      expect(trainArgs(c.lora, c.train, ctx).slice(0, 7)).toEqual([
        'train',
        '--model',
        './My Model',
        '--data',
        'my data.jsonl',
        '--out',
        './adapter',
      ]);
      expect(recipeArgs(c.lora, c.train, ctx)[2]).toBe('org/model');
    }
    expect(commandText(['train', '--model', "it's here", '--lr', '0.0002'])).toBe(
      `node bin/tabtune.mjs train --model 'it'\\''s here' --lr 0.0002`,
    );
    // 4-bit NF4 frozen weights (QLoRA) go on both lines, as train and export-recipe read them
    const nf4 = { model: 'm', data: 'd.jsonl', frozen: { quantize: 'nf4' as const, doubleQuant: false } };
    const c0 = CASES[0]!;
    for (const args of [trainArgs(c0.lora, c0.train, nf4), recipeArgs(c0.lora, c0.train, nf4)]) {
      const f = parseFlags(args.slice(1), TRAIN_FLAGS, args[0]!);
      expect([f.quantize, f['double-quant']]).toEqual(['nf4', false]);
    }
    expect(trainArgs(c0.lora, c0.train, { ...nf4, frozen: { quantize: null } })).not.toContain('--quantize');
    expect(shellQuote('q_proj,v_proj')).toBe('q_proj,v_proj');
    expect(shellQuote('a b')).toBe("'a b'");
  });

  it("each method's line carries only its own flags (train refuses another's) and parses back to its settings", () => {
    const methods: Partial<LoraSettings>[] = [
      { method: 'dora', r: 4, init_lora_weights: 'pissa', target_modules: ['q_proj'] },
      { method: 'ia3', target_modules: [] }, // PEFT's defaults (no --targets, no --feedforward-modules)
      { method: 'ia3', target_modules: ['k_proj', 'down_proj'], feedforward_modules: ['down_proj'] },
      { method: 'prompt-tuning', num_virtual_tokens: 7, prompt_tuning_init_text: 'Answer briefly:' },
      { method: 'prefix-tuning', num_virtual_tokens: 3 },
    ];
    for (const m of methods) {
      const args = trainArgs({ ...DEFAULT_LORA, ...m }, DEFAULT_TRAIN, { model: 'm', data: 'd.jsonl' });
      expect(parsed(args).lora, args.join(' ')).toMatchObject(m);
      if (m.method !== 'dora') expect(args).not.toContain('--r');
    }
  });

  describe('running the line', () => {
    let dir = '';
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'tabtune-cmd-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('tabtune train with the shown line trains the adapter the app would (byte for byte)', async () => {
      const model = join(dir, 'tiny model');
      await writeTinyModel(model, { modelType: 'llama', seed: 3 });
      const text = tinyCorpusJsonl();
      const data = join(dir, 'story.jsonl');
      await writeFile(data, text);
      const lora: LoraSettings = {
        r: 4,
        lora_alpha: 8,
        lora_dropout: 0.1,
        target_modules: ['q_proj', 'o_proj'],
        use_rslora: false,
      };
      const train: TrainSettings = {
        ...DEFAULT_TRAIN,
        lr: 5e-3,
        steps: 3,
        epochs: 0,
        batch: 3,
        gradAccum: 2,
        maxLen: 48,
        scheduler: 'cosine',
        warmup: 1,
        seed: 11,
        valFraction: 0.2,
        evalEvery: 2,
        packing: true,
      };
      const engine = new Engine(await getGpu());
      let here;
      try {
        await engine.loadModel({ kind: 'dir', id: 'tiny model', path: model });
        await engine.loadDataset('story.jsonl', text, {
          format: 'text',
          maxLen: train.maxLen,
          valFraction: train.valFraction,
          seed: train.seed,
        });
        here = await engine.train(lora, train);
      } finally {
        engine.unload();
      }
      const out = join(dir, 'out');
      const args = trainArgs(lora, train, { model, data, format: 'text', out });
      const bin = join(import.meta.dirname, '..', '..', 'bin', 'tabtune.mjs');
      const r = await runCommand(process.execPath, [bin, ...args.slice(0)], dir);
      expect(r.code, r.stderr).toBe(0);
      const there = new Uint8Array(await readFile(join(out, 'adapter_model.safetensors')));
      expect(Buffer.from(there).equals(Buffer.from(here.adapter.adapterModel))).toBe(true);
      const cfg = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8'));
      expect(cfg.r).toBe(4);
      expect(cfg.lora_dropout).toBe(0.1);
    });
  });
});
