/**
 * The recipe folder (src/recipe) without Python: which files are written, how Tabtune's settings map
 * to TrainingArguments / LoraConfig names in tabtune_run.json, the data lines (ids, mask, counts), the
 * init adapter and the 4-bit config; and `tabtune export-recipe` from the command line (model folder
 * and Hub id, the same split as training, errors). test/python/recipe.py-test.ts runs the folder.
 */
import { createServer } from 'node:http';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_TRAIN } from '../../src/engine/defaults';
import type { TrainSettings } from '../../src/engine/types';
import { createTokenizer } from '../../src/model/tokenizer';
import { type RecipeInput, buildRecipe } from '../../src/recipe/recipe';
import { PreparedDataset } from '../../src/train/data/prepared';
import { textSource } from '../../src/train/data/source';
import { makeTinyModel, makeTinyModelInMemory, writeTinyModel, tinyCorpusJsonl } from '../fixtures/tiny-model';
import { toBnbCheckpoint } from '../helpers/bnb';
import { runCommand } from '../helpers/proc';

const ROOT = join(import.meta.dirname, '..', '..');
let dir = '';

const text = (data: string | Uint8Array | undefined) =>
  typeof data === 'string' ? data : new TextDecoder().decode(data);

function input(over: Partial<RecipeInput> = {}, train: Partial<TrainSettings> = {}): RecipeInput {
  return {
    model: 'org/model',
    modelType: 'llama',
    fanInFanOut: false,
    lora: { r: 8, lora_alpha: 16, lora_dropout: 0.05, target_modules: [], use_rslora: false },
    train: { ...DEFAULT_TRAIN, ...train },
    data: {
      fileName: 'd.jsonl',
      format: 'alpaca',
      train: [
        { ids: [5, 6, 7, 8], counted: [true, false, true, true], line: 1 },
        { ids: new Uint16Array([9, 10, 11]), counted: new Uint8Array([0, 1, 1]), line: 3 },
      ],
      val: [{ ids: [1, 2], counted: [false, true], line: 2 }],
    },
    decode: (ids) => ids.join(' '),
    ...over,
  };
}

function files(i: RecipeInput): Map<string, string | Uint8Array> {
  return new Map(buildRecipe(i).map((f) => [f.path, f.data]));
}

function run(i: RecipeInput): Record<string, Record<string, unknown>> {
  return JSON.parse(text(files(i).get('tabtune_run.json')));
}

describe('buildRecipe', () => {
  it('writes train.py, the settings, both splits, requirements, accelerate configs, sbatch and README', () => {
    const f = files(input());
    expect([...f.keys()].sort()).toEqual(
      [
        'README.md',
        'accelerate/deepspeed_zero3.yaml',
        'accelerate/fsdp.yaml',
        'accelerate/multi_gpu.yaml',
        'accelerate/single_gpu.yaml',
        'data/train.jsonl',
        'data/validation.jsonl',
        'requirements.txt',
        'slurm.sbatch',
        'tabtune_run.json',
        'train.py',
      ].sort(),
    );
    expect(text(f.get('train.py'))).toContain('SFTTrainer(');
    expect(text(f.get('requirements.txt'))).toMatch(/^trl==1\.13\.0$/m);
    expect(text(f.get('requirements.txt'))).not.toContain('bitsandbytes>=');
    expect(text(f.get('accelerate/fsdp.yaml'))).toMatch(/^distributed_type: FSDP$/m);
    expect(text(f.get('accelerate/deepspeed_zero3.yaml'))).toMatch(/^ {2}zero_stage: 3$/m);
    expect(text(f.get('accelerate/multi_gpu.yaml'))).toMatch(/^distributed_type: MULTI_GPU$/m);
    expect(text(f.get('slurm.sbatch'))).toContain('srun accelerate launch');
    const readme = text(f.get('README.md'));
    expect(readme).toContain('python train.py --output_dir adapter');
    expect(readme).toContain('accelerate launch --config_file accelerate/deepspeed_zero3.yaml train.py');
  });

  it('writes each example as its ids and loss mask (never the first token), with line and text', () => {
    const f = files(input());
    const rows = text(f.get('data/train.jsonl'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rows).toEqual([
      { line: 1, text: '5 6 7 8', input_ids: [5, 6, 7, 8], completion_mask: [0, 0, 1, 1] },
      { line: 3, text: '9 10 11', input_ids: [9, 10, 11], completion_mask: [0, 1, 1] },
    ]);
    const d = run(input()).data!;
    expect(d).toMatchObject({
      format: 'alpaca',
      train_examples: 2,
      train_tokens: 7,
      train_counted_tokens: 4,
      validation_examples: 1,
      validation_counted_tokens: 1,
      validation: 'data/validation.jsonl',
    });
    const noVal = input();
    noVal.data.val = [];
    expect(files(noVal).has('data/validation.jsonl')).toBe(false);
    expect(run(noVal).data!.validation).toBeNull();
  });

  it("maps Tabtune's settings to TrainingArguments and LoraConfig names", () => {
    const r = run(
      input(
        {},
        {
          optimizer: 'sgd',
          lr: 0.05,
          weightDecay: 0.01,
          steps: 7,
          batch: 3,
          gradAccum: 5,
          maxLen: 99,
          scheduler: 'constant',
          warmup: 2,
          maxGradNorm: 0,
          shuffle: false,
          seed: 11,
          lossEvery: 4,
          checkpointEvery: 6,
          evalEvery: 3,
          activationCheckpointing: true,
          packing: true,
        },
      ),
    );
    expect(r.training).toEqual({
      optim: 'sgd',
      learning_rate: 0.05,
      weight_decay: 0.01,
      adam_beta1: 0.9,
      adam_beta2: 0.999,
      adam_epsilon: 1e-8,
      lr_scheduler_type: 'constant_with_warmup',
      warmup_steps: 2,
      max_grad_norm: 0,
      max_steps: 7,
      num_train_epochs: 1,
      per_device_train_batch_size: 3,
      gradient_accumulation_steps: 5,
      max_length: 99,
      shuffle: false,
      seed: 11,
      eval_every: 3,
      logging_steps: 4,
      save_steps: 6,
      gradient_checkpointing: true,
      padding_free: true,
    });
    const epochs = run(input({}, { steps: 0, epochs: 2.5, scheduler: 'cosine', warmup: 0 })).training!;
    expect(epochs).toMatchObject({
      max_steps: -1,
      num_train_epochs: 2.5,
      lr_scheduler_type: 'cosine',
      optim: 'adamw_torch',
    });
    expect(run(input({}, { scheduler: 'constant', warmup: 0 })).training!.lr_scheduler_type).toBe('constant');
    // LoRA: the family's default targets for an empty list; all-linear and rsLoRA as PEFT spells them.
    expect(run(input()).lora).toEqual({
      r: 8,
      lora_alpha: 16,
      lora_dropout: 0.05,
      target_modules: ['q_proj', 'v_proj'],
      use_rslora: false,
      fan_in_fan_out: false,
      use_dora: false,
      init_lora_weights: true,
    });
    const gpt2 = run(
      input({
        modelType: 'gpt2',
        fanInFanOut: true,
        lora: { r: 4, lora_alpha: 32, lora_dropout: 0, target_modules: 'all-linear', use_rslora: true },
      }),
    );
    expect(gpt2.lora).toMatchObject({
      r: 4,
      lora_alpha: 32,
      target_modules: 'all-linear',
      use_rslora: true,
      fan_in_fan_out: true,
    });
    expect(gpt2.init_adapter).toBeNull();
    expect(gpt2.quantization).toBeNull();
  });

  it('ships the --init-from adapter and takes its LoRA shape; --quantize nf4 adds the bitsandbytes config', () => {
    const adapterConfig = JSON.stringify({
      r: 3,
      lora_alpha: 6,
      lora_dropout: 0.1,
      target_modules: ['c_attn'],
      use_rslora: true,
      fan_in_fan_out: true,
    });
    const adapterModel = new Uint8Array([1, 2, 3]);
    const i = input({ initFrom: { adapterConfig, adapterModel }, quantize: { doubleQuant: false } });
    const f = files(i);
    expect(f.get('init_adapter/adapter_config.json')).toBe(adapterConfig);
    expect(f.get('init_adapter/adapter_model.safetensors')).toEqual(adapterModel);
    const r = run(i);
    expect(r.init_adapter).toBe('init_adapter');
    expect(r.lora).toMatchObject({
      r: 3,
      lora_alpha: 6,
      lora_dropout: 0.1,
      target_modules: ['c_attn'],
      use_rslora: true,
    });
    expect(r.quantization).toEqual({ method: 'nf4', config: 'bnb_4bit.json' });
    expect(JSON.parse(text(f.get('bnb_4bit.json')))).toEqual({
      load_in_4bit: true,
      bnb_4bit_quant_type: 'nf4',
      bnb_4bit_use_double_quant: false,
    });
    expect(text(f.get('requirements.txt'))).toMatch(/^bitsandbytes>=/m);
  });

  it('a bitsandbytes 4-bit base model is 4-bit as stored: no bnb_4bit.json, its own quantization_config', () => {
    const i = input({ quantize: { doubleQuant: true, stored: true } });
    const f = files(i);
    expect(f.has('bnb_4bit.json')).toBe(false);
    expect(run(i).quantization).toEqual({ method: 'nf4', config: null, stored: true, double_quant: true });
    expect(text(f.get('README.md'))).toMatch(/bitsandbytes 4-bit NF4 checkpoint: transformers loads it in 4 bits/);
    expect(text(f.get('requirements.txt'))).toMatch(/^bitsandbytes>=/m);
  });

  it("carries a LoftQ init as PEFT's LoftQConfig (train.py saves the backbone); refuses it with 4-bit weights", () => {
    const lora = {
      r: 8,
      lora_alpha: 16,
      lora_dropout: 0,
      target_modules: [],
      use_rslora: false,
      init_lora_weights: 'loftq' as const,
      loftq_config: { loftq_bits: 4, loftq_iter: 3 },
    };
    const f = files(input({ lora }));
    expect(run(input({ lora })).lora).toMatchObject({
      init_lora_weights: 'loftq',
      loftq_config: { loftq_bits: 4, loftq_iter: 3 },
    });
    expect(text(f.get('requirements.txt'))).toMatch(/^bitsandbytes>=/m);
    expect(text(f.get('requirements.txt'))).toMatch(/^scipy$/m);
    expect(text(f.get('README.md'))).toMatch(/OUTPUT_DIR\/loftq-base/);
    expect(() => buildRecipe(input({ lora, quantize: { doubleQuant: true } }))).toThrow(
      /"loftq" quantizes the 16-bit weights itself.*without 4-bit frozen weights/,
    );
  });

  it('a prefix through the projection MLP: encoder_hidden_size as given, else the kv width of the config, else refused', () => {
    const prefix = (extra: Partial<RecipeInput['lora']>, over: Partial<RecipeInput> = {}) =>
      input({ lora: { ...input().lora, method: 'prefix-tuning', ...extra }, ...over });
    const peftOf = (i: RecipeInput) => run(i).peft;
    expect(peftOf(prefix({ num_virtual_tokens: 4 }))).toEqual({
      peft_type: 'PREFIX_TUNING',
      num_virtual_tokens: 4,
      prefix_projection: false,
      encoder_hidden_size: null,
    });
    expect(peftOf(prefix({ prefix_projection: true, encoder_hidden_size: 24 }))).toMatchObject({
      prefix_projection: true,
      encoder_hidden_size: 24,
    });
    // llama with 8 heads of 16 and 2 kv heads: the kv width 32
    const config = {
      modelType: 'llama',
      hiddenSize: 128,
      numLayers: 2,
      numHeads: 8,
      numKvHeads: 2,
      headDim: 16,
      embedDim: 128,
      raw: { num_key_value_heads: 2 },
    };
    expect(peftOf(prefix({ prefix_projection: true }, { config }))).toMatchObject({ encoder_hidden_size: 32 });
    expect(() => buildRecipe(prefix({ prefix_projection: true }))).toThrow(
      /encoder_hidden_size.*--encoder-hidden-size/,
    );
  });

  it('refuses an empty training split', () => {
    const i = input();
    i.data.train = [];
    expect(() => buildRecipe(i)).toThrow(/no training examples/);
  });
});

// ----------------------------------------------------------------------------------- the CLI

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-recipe-cli-'));
  await writeTinyModel(join(dir, 'model'), { modelType: 'qwen2' });
  await writeFile(join(dir, 'text.jsonl'), tinyCorpusJsonl());
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

function cli(args: string[], env?: Record<string, string>) {
  return runCommand(process.execPath, [join(ROOT, 'bin', 'tabtune.mjs'), 'export-recipe', ...args], ROOT, env);
}

const base = () => ['--model', join(dir, 'model'), '--data', join(dir, 'text.jsonl')];

describe('tabtune export-recipe', () => {
  it("writes the folder with training's split of the data (seeded validation, file order)", async () => {
    const out = join(dir, 'recipe');
    const args = [...base(), '--out', out, '--val-fraction', '0.25', '--seed', '9', '--max-len', '32'];
    const r = await cli([...args, '--targets', 'all-linear', '--no-shuffle', '--epochs', '2', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(summary.files).toContain('data/validation.jsonl');
    expect((await stat(join(out, 'train.py'))).mode & 0o111).not.toBe(0);

    // The same examples, in the same splits, as the engine's loadDataset makes for training.
    const m = makeTinyModel({ modelType: 'qwen2' });
    const tok = await createTokenizer(m.tokenizerJson, m.tokenizerConfig);
    const data = await PreparedDataset.open(
      textSource(await readFile(join(dir, 'text.jsonl'), 'utf8')),
      'text.jsonl',
      tok,
      {
        maxLen: 32,
        valFraction: 0.25,
        seed: 9,
      },
    );
    const want = { train: await data.examples(data.train), val: await data.examples(data.val) };
    const read = async (name: string) =>
      (await readFile(join(out, 'data', name), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { line: number; input_ids: number[]; completion_mask: number[] });
    for (const [name, exs] of [
      ['train.jsonl', want.train],
      ['validation.jsonl', want.val],
    ] as const) {
      const rows = await read(name);
      expect(rows.map((x) => x.line)).toEqual(exs.map((e) => e.line));
      expect(rows.map((x) => x.input_ids)).toEqual(exs.map((e) => Array.from(e.ids)));
      expect(rows.map((x) => x.completion_mask)).toEqual(
        exs.map((e) => Array.from(e.counted, (c, t) => (c && t > 0 ? 1 : 0))),
      );
    }
    const runJson = JSON.parse(await readFile(join(out, 'tabtune_run.json'), 'utf8'));
    expect(runJson.model).toBe(join(dir, 'model'));
    expect(runJson.training).toMatchObject({
      shuffle: false,
      num_train_epochs: 2,
      max_steps: -1,
      max_length: 32,
      seed: 9,
    });
    expect(runJson.lora.target_modules).toBe('all-linear');

    // Exporting again replaces the folder (nothing of the first export is left).
    await writeFile(join(out, 'data', 'stale.jsonl'), 'x');
    const again = await cli([...args, '--steps', '3']);
    expect(again.code, again.stderr).toBe(0);
    expect(await readdir(join(out, 'data'))).toEqual(['train.jsonl', 'validation.jsonl']);
    expect(JSON.parse(await readFile(join(out, 'tabtune_run.json'), 'utf8')).training.max_steps).toBe(3);
  });

  it('reads config.json and the tokenizer of a Hub id from HF_ENDPOINT (no weights needed)', async () => {
    const requested: string[] = [];
    const server = createServer(async (req, res) => {
      requested.push(req.url ?? '');
      const m = /^\/org\/tiny\/resolve\/main\/(.+)$/.exec(req.url ?? '');
      try {
        if (!m || m[1]!.endsWith('.safetensors')) throw new Error('not served');
        res.end(await readFile(join(dir, 'model', decodeURIComponent(m[1]!))));
      } catch {
        res.statusCode = 404;
        res.end('not found');
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as { port: number }).port;
      const out = join(dir, 'hub-recipe');
      const r = await cli(['--model', 'org/tiny', '--data', join(dir, 'text.jsonl'), '--out', out, '--steps', '2'], {
        HF_ENDPOINT: `http://127.0.0.1:${port}`,
      });
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(await readFile(join(out, 'tabtune_run.json'), 'utf8')).model).toBe('org/tiny');
      expect(requested.some((u) => u.endsWith('.safetensors'))).toBe(false);
    } finally {
      server.close();
    }
  });

  it("--quantize nf4 (train's flag, one definition) writes bitsandbytes' 4-bit config; a ...-bnb-4bit model stays as stored", async () => {
    const nf4 = join(dir, 'recipe-nf4');
    const r = await cli([...base(), '--out', nf4, '--steps', '2', '--quantize', 'nf4']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(await readFile(join(nf4, 'bnb_4bit.json'), 'utf8'))).toEqual({
      load_in_4bit: true,
      bnb_4bit_quant_type: 'nf4',
      bnb_4bit_use_double_quant: true,
    });
    const bnbDir = join(dir, 'model-bnb-4bit');
    await mkdir(bnbDir);
    const m = makeTinyModelInMemory({ modelType: 'qwen2' });
    for (const [name, bytes] of toBnbCheckpoint(m, { doubleQuant: false })) await writeFile(join(bnbDir, name), bytes);
    const stored = join(dir, 'recipe-stored');
    const s = await cli(['--model', bnbDir, '--data', join(dir, 'text.jsonl'), '--out', stored, '--steps', '2']);
    expect(s.code, s.stderr).toBe(0);
    expect(existsSync(join(stored, 'bnb_4bit.json'))).toBe(false);
    expect(JSON.parse(await readFile(join(stored, 'tabtune_run.json'), 'utf8')).quantization).toEqual({
      method: 'nf4',
      config: null,
      stored: true,
      double_quant: false,
    });
    const none = await cli([
      '--model',
      bnbDir,
      '--data',
      join(dir, 'text.jsonl'),
      '--out',
      stored,
      '--quantize',
      'none',
    ]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(
      /bitsandbytes 4-bit checkpoint: its weights are stored in 4 bits and cannot be widened/,
    );
  });

  it("(IA)³ and prompt tuning: PEFT's config of the method in tabtune_run.json's peft section", async () => {
    const runOf = async (name: string, flags: string[]) => {
      const r = await cli([...base(), '--out', join(dir, name), ...flags]);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(await readFile(join(dir, name, 'tabtune_run.json'), 'utf8')) as Record<string, unknown>;
    };
    // without --targets: PEFT's (IA)³ defaults for qwen2
    expect(await runOf('ia3', ['--method', 'ia3'])).toMatchObject({
      lora: null,
      peft: {
        peft_type: 'IA3',
        target_modules: ['q_proj', 'v_proj', 'down_proj'],
        feedforward_modules: ['down_proj'],
        fan_in_fan_out: false,
        init_ia3_weights: true,
      },
    });
    const prompt = ['--method', 'prompt-tuning', '--num-virtual-tokens', '5', '--prompt-init-text', 'Answer:'];
    expect((await runOf('prompt', prompt)).peft).toEqual({
      peft_type: 'PROMPT_TUNING',
      num_virtual_tokens: 5,
      prompt_tuning_init: 'TEXT',
      prompt_tuning_init_text: 'Answer:',
      tokenizer_name_or_path: join(dir, 'model'),
    });
  });

  it('refuses what it cannot export, naming the flag', async () => {
    const cases: [string[], RegExp][] = [
      [['--resume'], /--resume continues a Tabtune checkpoint/],
      [['--no-double-quant'], /applies to 4-bit frozen weights; add --quantize nf4/],
      [['--targets', 'nope'], /--targets "nope" is not a linear module name/],
      [['--steps', '2', '--epochs', '1'], /either --steps or --epochs/],
      [['--max-len', '100000'], /--max-len 100000 is longer than the model allows/],
    ];
    for (const [extra, message] of cases) {
      const r = await cli([...base(), '--out', join(dir, 'bad'), ...extra]);
      expect(r.code, extra.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    const busy = join(dir, 'busy');
    await runCommand('mkdir', ['-p', busy]);
    await writeFile(join(busy, 'notes.txt'), 'mine');
    const r = await cli([...base(), '--out', busy]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/already holds other files/);
    expect(await readdir(busy)).toEqual(['notes.txt']);
    const hub = await cli(['--model', 'not a model', '--data', join(dir, 'text.jsonl'), '--out', join(dir, 'x')]);
    expect(hub.stderr).toMatch(/neither a folder nor a Hugging Face Hub id/);
  });
});
