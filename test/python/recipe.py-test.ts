/**
 * The recipe (`tabtune export-recipe`) run by Hugging Face's stack (transformers + PEFT + TRL's
 * SFTTrainer on CPU torch) against `tabtune train` with the same flags, on tiny models:
 *   - one plain-SGD step from the same init adapter over the same batch (several accumulated
 *     micro-batches of unequal token counts, so the token weighting across them matters) gives the
 *     same first loss and the same adapter update within 2% of the update's size, for text (llama),
 *     Alpaca in the Stanford template (gpt2, Conv1D) and chat in ChatML (qwen2, two assistant turns);
 *   - the same step on two processes (torchrun, DDP over gloo on the CPU), the batch divided between
 *     them, gives the same update: the token weighting holds across processes;
 *   - a few AdamW steps lower the loss on both sides;
 *   - the adapter train.py writes imports into `tabtune eval` and gives Python's loss on the same
 *     examples (the round trip);
 *   - the other methods: PiSSA and OLoRA (saved converted) and (IA)³ after one SGD step give Tabtune's
 *     adapter; prompt and prefix tuning (also through PEFT's projection MLP, prefix_projection) train
 *     in train.py and its adapter gives Python's loss in Tabtune; prompt and prefix --init-from;
 *   - requirements.txt pins the versions this Python has; accelerate reads the four launcher configs.
 * Run by `npm test` after the vitest suite, or alone by `npm run test:peft` (the Python stack of
 * scripts/peft-venv.mjs).
 */
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acceleratorConfigs } from '../../src/recipe/docs';
import { parseSafetensors, tensorToF32 } from '../../src/model/safetensors';
import { TINY_CORPUS, type TinyModelType, writeTinyModel } from '../fixtures/tiny-model';
import { PYTHON, ROOT, closePython, lastJson as lastJsonOf, pyScript, tabtune as tabtuneOf } from '../helpers/interop';

let dir = '';

type Json = Record<string, unknown>;

const lastJson = (cmd: string, args: string[]) => lastJsonOf<Json>(cmd, args);
const tabtune = (args: string[]) => tabtuneOf<Json>(args);
const helper = (args: string[]) => pyScript<Json>('peft_interop.py', args);
// The exported train.py runs as a user runs it: its own Python process.
const trainPy = (recipe: string, out: string) => lastJson(PYTHON, [join(recipe, 'train.py'), '--output_dir', out]);

const ALPACA = [
  { instruction: 'What did the cat watch?', input: '', output: 'The cat watched the rain.' },
  { instruction: 'Where did the children play?', input: '', output: 'The children played in the garden.' },
  { instruction: 'What color was the sea?', input: 'Think of the book.', output: 'The sea was deep and blue.' },
  { instruction: 'Where did the cat sleep?', input: '', output: 'On the warm mat.' },
  { instruction: 'What sang in the tree?', input: 'The tallest tree.', output: 'A bird sang.' },
  { instruction: 'When did the sun come out?', input: '', output: 'In the morning.' },
  { instruction: 'What did the family do in the evening?', input: '', output: 'They ate dinner together.' },
];

const CHAT = [
  {
    messages: [
      { role: 'system', content: 'You answer questions about the story.' },
      { role: 'user', content: 'What did the cat watch?' },
      { role: 'assistant', content: 'The rain.' },
      { role: 'user', content: 'And the bird?' },
      { role: 'assistant', content: 'The bird sang in the tallest tree.' },
    ],
  },
  {
    messages: [
      { role: 'user', content: 'Where did the children play?' },
      { role: 'assistant', content: 'In the garden, between the trees.' },
    ],
  },
  {
    messages: [
      { role: 'user', content: 'What color was the sea?' },
      { role: 'assistant', content: 'Deep and blue.' },
    ],
  },
  {
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Who slept on the mat?' },
      { role: 'assistant', content: 'The small cat.' },
    ],
  },
  {
    messages: [
      { role: 'user', content: 'What did the family do?' },
      { role: 'assistant', content: 'They ate dinner and talked about the day.' },
    ],
  },
];

const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-recipe-'));
  await writeFile(
    join(dir, 'text.jsonl'),
    jsonl(
      TINY_CORPUS.trim()
        .split('\n')
        .map((text) => ({ text })),
    ),
  );
  await writeFile(join(dir, 'alpaca.jsonl'), jsonl(ALPACA));
  await writeFile(join(dir, 'chat.jsonl'), jsonl(CHAT));
});

afterAll(async () => {
  closePython();
  if (dir && !process.env.TABTUNE_KEEP) await rm(dir, { recursive: true, force: true });
});

interface Case {
  name: string;
  type: TinyModelType;
  data: string;
  /** Drop the chat template, so Alpaca records use the Stanford prompt. */
  noChatTemplate?: boolean;
  targets: string;
  /** One step = these micro-batches (unequal token counts). */
  batch: number;
  gradAccum: number;
}

const CASES: Case[] = [
  { name: 'text', type: 'llama', data: 'text.jsonl', targets: 'q_proj,v_proj,down_proj', batch: 4, gradAccum: 4 },
  {
    name: 'alpaca',
    type: 'gpt2',
    data: 'alpaca.jsonl',
    noChatTemplate: true,
    targets: 'c_attn,c_fc',
    batch: 3,
    gradAccum: 3,
  },
  { name: 'chat', type: 'qwen2', data: 'chat.jsonl', targets: 'q_proj,k_proj,o_proj,up_proj', batch: 2, gradAccum: 3 },
];

async function makeModel(c: Case): Promise<string> {
  const model = join(dir, c.name, 'model');
  // GPT-2's tiny position table (64) is shorter than the Stanford Alpaca prompt.
  const overrides = c.type === 'gpt2' ? { n_positions: 320 } : undefined;
  await writeTinyModel(model, { modelType: c.type, addBos: c.type === 'llama', overrides });
  if (c.noChatTemplate) {
    const p = join(model, 'tokenizer_config.json');
    const cfg = JSON.parse(await readFile(p, 'utf8')) as Json;
    delete cfg.chat_template;
    await writeFile(p, JSON.stringify(cfg, null, 2));
  }
  return model;
}

/** |a - b| / |b| of two numbers from JSON summaries. */
const rel = (a: unknown, b: unknown) => Math.abs(Number(a) - Number(b)) / Math.abs(Number(b));

/** One plain-SGD step at lr 0.5 over 4 examples, unclipped at a constant rate. */
const ONE_SGD_STEP = [
  '--optimizer', 'sgd', '--lr', '0.5', '--steps', '1', '--batch', '4', '--max-grad-norm', '0', '--scheduler', 'constant',
]; // prettier-ignore

interface TextCase {
  model: string;
  data: string;
  /** Where the recipe's train.py wrote its adapter. */
  py: string;
  /** `tabtune train`'s summary and adapter (null with `train: false`). */
  here: Json | null;
  ours: string;
  there: Json;
}

/**
 * A case of its own on the text data: a fresh tiny llama, then with the same flags (plus these)
 * `tabtune train` (unless `train: false`) and the exported recipe's train.py.
 */
async function textCase(name: string, extra: string[], o: { train?: boolean } = {}): Promise<TextCase> {
  const model = await makeModel({ ...CASES[0]!, name });
  const base = join(dir, name);
  const data = join(dir, 'text.jsonl');
  const flags = ['--model', model, '--data', data, '--no-shuffle', '--json', ...extra];
  const ours = join(base, 'tabtune');
  const here = o.train === false ? null : await tabtune(['train', ...flags, '--out', ours]);
  await tabtune(['export-recipe', ...flags, '--out', join(base, 'recipe')]);
  const py = join(base, 'python');
  return { model, data, py, here, ours, there: await trainPy(join(base, 'recipe'), py) };
}

/**
 * Tabtune's and train.py's adapters from the same step, on the base model: train.py's gives Python's
 * loss in Tabtune, the step moved the model, and both adapters give the same loss. Returns the losses.
 */
async function sameStep(c: TextCase) {
  const evalOf = (adapter?: string) =>
    tabtune(['eval', '--model', c.model, ...(adapter ? ['--adapter', adapter] : []), '--data', c.data, '--json']);
  const [plain, ours, theirs] = [await evalOf(), await evalOf(c.ours), await evalOf(c.py)];
  const examples = join(c.py, '..', 'recipe', 'data', 'train.jsonl');
  const theirsInPython = await helper(['eval-examples', '--model', c.model, '--adapter', c.py, '--data', examples]);
  expect(rel(theirs.loss, theirsInPython.loss)).toBeLessThan(1e-4);
  expect(Math.abs(Number(plain.loss) - Number(ours.loss)), 'the step moved the model').toBeGreaterThan(1e-4);
  expect(rel(theirs.loss, ours.loss), `Tabtune ${ours.loss} vs train.py ${theirs.loss}`).toBeLessThan(1e-4);
  const f = (j: Json) => Number(j.loss).toFixed(6);
  return { plain: f(plain), ours: f(ours), theirs: f(theirs), theirsInPython: f(theirsInPython) };
}

describe('the exported recipe (transformers + PEFT + TRL) against tabtune train', () => {
  for (const c of CASES) {
    it(`${c.name} (${c.type}): one SGD step gives Tabtune's loss and update; the adapter comes back`, async () => {
      const model = await makeModel(c);
      const base = join(dir, c.name);
      const init = join(base, 'init');
      await helper([
        'make-adapter',
        '--model',
        model,
        '--out',
        init,
        '--r',
        '4',
        '--alpha',
        '8',
        '--targets',
        c.targets,
        '--seed',
        '5',
      ]);
      const data = join(dir, c.data);
      const flags = [
        '--model', model, '--data', data, '--init-from', init, '--optimizer', 'sgd', '--lr', '0.5',
        '--steps', '1', '--batch', String(c.batch), '--grad-accum', String(c.gradAccum), '--no-shuffle',
        '--dropout', '0', '--max-grad-norm', '0', '--scheduler', 'constant', '--json',
      ]; // prettier-ignore
      const here = await tabtune(['train', ...flags, '--out', join(base, 'tabtune')]);
      const recipe = join(base, 'recipe');
      const exported = await tabtune(['export-recipe', ...flags, '--out', recipe]);
      const run = JSON.parse(await readFile(join(recipe, 'tabtune_run.json'), 'utf8')) as {
        data: { format: string; train_tokens: number; train_counted_tokens: number };
      };
      expect(run.data.format).toBe(c.name);
      expect(run.data.train_counted_tokens).toBe(exported.countedTokens);
      // Text counts every token but the first of each example; Alpaca and chat only the responses.
      if (c.name === 'text')
        expect(run.data.train_counted_tokens).toBe(run.data.train_tokens - Number(exported.trainExamples));
      else expect(run.data.train_counted_tokens).toBeLessThan(run.data.train_tokens / 2);
      const there = await trainPy(recipe, join(base, 'python'));

      expect(there.steps).toBe(1);
      const firstRel = Math.abs(Number(here.firstLoss) - Number(there.firstLoss)) / Number(here.firstLoss);
      expect(firstRel, `first loss ${here.firstLoss} vs ${there.firstLoss}`).toBeLessThan(1e-4);
      const diff = await helper([
        'update-diff',
        '--init',
        init,
        '--a',
        join(base, 'tabtune'),
        '--b',
        join(base, 'python'),
      ]);
      expect(Number(diff.update_norm)).toBeGreaterThan(1e-3);
      expect(Number(diff.rel), JSON.stringify(diff)).toBeLessThan(0.02);

      // The round trip: the adapter train.py saved, in Tabtune and in Python, on the same examples.
      const py = join(base, 'python');
      const backHere = await tabtune(['eval', '--model', model, '--adapter', py, '--data', data, '--json']);
      const backThere = await helper([
        'eval-examples',
        '--model',
        model,
        '--adapter',
        py,
        '--data',
        join(recipe, 'data', 'train.jsonl'),
      ]);
      expect(backHere.tokens).toBe(backThere.tokens);
      expect(Math.abs(Number(backHere.loss) - Number(backThere.loss)) / Number(backThere.loss)).toBeLessThan(1e-4);
      console.log(
        `[tabtune] recipe ${c.name} (${c.type}), ${c.batch}x${c.gradAccum} micro-batches, ${exported.countedTokens} counted tokens: ` +
          `first loss ${Number(here.firstLoss).toFixed(6)} | ${Number(there.firstLoss).toFixed(6)}; ` +
          `SGD update norm ${Number(diff.update_norm).toExponential(3)}, difference ${Number(diff.diff_norm).toExponential(3)} ` +
          `(${(100 * Number(diff.rel)).toExponential(2)}% of the update; worst tensor ${(100 * Number(diff.worst_rel)).toExponential(2)}%); ` +
          `adapter back in Tabtune ${Number(backHere.loss).toFixed(6)} | Python ${Number(backThere.loss).toFixed(6)}`,
      );
    }, 600_000);
  }

  it('two processes (DDP on CPU) with the batch divided between them give the same update', async () => {
    const model = join(dir, 'text', 'model');
    const base = join(dir, 'ddp');
    const init = join(dir, 'text', 'init');
    // 12 examples: 2 per process, 3 accumulated micro-batches, and no partial batch at the end (where
    // accelerate would repeat examples to give every process a full one).
    const data = join(dir, 'text12.jsonl');
    await writeFile(data, (await readFile(join(dir, 'text.jsonl'), 'utf8')).split('\n').slice(0, 12).join('\n'));
    const flags = [
      '--model', model, '--data', data, '--init-from', init, '--optimizer', 'sgd', '--lr', '0.5', '--steps', '1',
      '--batch', '4', '--grad-accum', '3', '--no-shuffle', '--dropout', '0', '--max-grad-norm', '0',
      '--scheduler', 'constant', '--json',
    ]; // prettier-ignore
    const here = await tabtune(['train', ...flags, '--out', join(base, 'tabtune')]);
    await tabtune(['export-recipe', ...flags, '--out', join(base, 'recipe')]);
    const there = await lastJson(PYTHON, [
      '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
      join(base, 'recipe', 'train.py'), '--output_dir', join(base, 'python'), '--use_cpu',
    ]); // prettier-ignore
    expect(Math.abs(Number(here.firstLoss) - Number(there.firstLoss)) / Number(here.firstLoss)).toBeLessThan(1e-4);
    const diff = await helper([
      'update-diff',
      '--init',
      init,
      '--a',
      join(base, 'tabtune'),
      '--b',
      join(base, 'python'),
    ]);
    expect(Number(diff.rel), JSON.stringify(diff)).toBeLessThan(0.02);
    console.log(
      `[tabtune] recipe on 2 processes (DDP, CPU): first loss ${Number(here.firstLoss).toFixed(6)} | ${Number(there.firstLoss).toFixed(6)}; ` +
        `update norm ${Number(diff.update_norm).toExponential(3)}, difference ${(100 * Number(diff.rel)).toExponential(2)}% of it`,
    );
  }, 600_000);

  for (const init of ['pissa', 'olora']) {
    it(`--init ${init}: train.py saves the adapter converted to a plain LoRA on the original base, as Tabtune does`, async () => {
      const c = await textCase(init, [
        ...ONE_SGD_STEP, '--targets', 'q_proj,v_proj,down_proj', '--r', '4', '--alpha', '8', '--init', init, '--dropout', '0',
      ]); // prettier-ignore
      expect(rel(c.here!.firstLoss, c.there.firstLoss)).toBeLessThan(1e-4);
      // PEFT's conversion: twice the rank and alpha, a plain LoRA init, no initial adapter left behind.
      const cfg = JSON.parse(await readFile(join(c.py, 'adapter_config.json'), 'utf8')) as Json;
      expect(cfg).toMatchObject({ r: 8, lora_alpha: 16, init_lora_weights: true });
      expect(await readdir(c.py)).not.toContain('initial_adapter');
      // Both adapters on the untouched base model: the same one SGD step from the same (deterministic) init.
      const l = await sameStep(c);
      console.log(
        `[tabtune] recipe --init ${init}, one SGD step, on the original base: no adapter ${l.plain}, ` +
          `Tabtune's converted adapter ${l.ours} | train.py's ${l.theirs} (Python ${l.theirsInPython})`,
      );
    }, 600_000);
  }

  it("--init loftq: train.py makes the adapter with PEFT's LoftQConfig and saves its backbone as Tabtune does", async () => {
    const model = await makeModel({ ...CASES[0]!, name: 'loftq' });
    const base = join(dir, 'loftq');
    const data = join(dir, 'text.jsonl');
    const flags = [
      '--model', model, '--data', data, '--targets', 'q_proj,v_proj,down_proj', '--r', '4', '--alpha', '8',
      '--init', 'loftq', '--loftq-iter', '2', '--optimizer', 'sgd', '--lr', '0.5', '--steps', '1', '--batch', '4',
      '--no-shuffle', '--dropout', '0', '--max-grad-norm', '0', '--scheduler', 'constant', '--json',
    ]; // prettier-ignore
    const ours = join(base, 'tabtune');
    const here = await tabtune(['train', ...flags, '--out', ours]);
    const recipe = join(base, 'recipe');
    await tabtune(['export-recipe', ...flags, '--out', recipe]);
    const run = JSON.parse(await readFile(join(recipe, 'tabtune_run.json'), 'utf8')) as { lora: Json };
    expect(run.lora).toMatchObject({ init_lora_weights: 'loftq', loftq_config: { loftq_bits: 4, loftq_iter: 2 } });
    expect(await readFile(join(recipe, 'requirements.txt'), 'utf8')).toMatch(/^scipy$/m);
    const py = join(base, 'python');
    // train.py unchanged, with the bitsandbytes stand-in of scripts/loftq_interop.py (no CUDA here)
    const there = await lastJson(PYTHON, [
      join(ROOT, 'scripts', 'loftq_interop.py'), 'train-py', join(recipe, 'train.py'), '--output_dir', py,
    ]); // prettier-ignore
    expect(Math.abs(Number(here.firstLoss) - Number(there.firstLoss)) / Number(here.firstLoss)).toBeLessThan(1e-4);
    const cfg = JSON.parse(await readFile(join(py, 'adapter_config.json'), 'utf8')) as Json;
    expect(cfg).toMatchObject({
      init_lora_weights: true,
      loftq_config: { loftq_bits: 4, loftq_iter: 2 },
      base_model_name_or_path: join(py, 'loftq-base'),
    });
    // the two backbones: the same Q in every adapted weight
    const qOf = async (folder: string) =>
      parseSafetensors(new Uint8Array(await readFile(join(folder, 'model.safetensors'))));
    const [qOurs, qTheirs] = [await qOf(join(ours, 'loftq-base')), await qOf(join(py, 'loftq-base'))];
    let adapted = 0;
    for (const [key, t] of qOurs.tensors) {
      if (!/(q_proj|v_proj|down_proj)\.weight$/.test(key)) continue;
      adapted++;
      const a = tensorToF32(t);
      const b = tensorToF32(qTheirs.tensors.get(key)!);
      expect(Array.from(a).filter((v, i) => Math.abs(v - b[i]!) > 1e-6 * Math.abs(v)).length, key).toBe(0);
    }
    expect(adapted).toBeGreaterThan(0);
    // each adapter on its own backbone after the same SGD step: the same loss, also in PEFT
    const evalOn = (folder: string) =>
      tabtune(['eval', '--model', join(folder, 'loftq-base'), '--adapter', folder, '--data', data, '--json']);
    const [lossOurs, lossTheirs] = [await evalOn(ours), await evalOn(py)];
    const theirsInPython = await helper(['eval-examples', '--model', join(py, 'loftq-base'), '--adapter', py, '--data', join(recipe, 'data', 'train.jsonl')]); // prettier-ignore
    expect(Math.abs(Number(lossTheirs.loss) - Number(theirsInPython.loss)) / Number(lossTheirs.loss)).toBeLessThan(
      1e-4,
    );
    const rel = Math.abs(Number(lossOurs.loss) - Number(lossTheirs.loss)) / Number(lossOurs.loss);
    expect(rel, `Tabtune ${lossOurs.loss} vs train.py ${lossTheirs.loss}`).toBeLessThan(1e-4);
    console.log(
      `[tabtune] recipe --init loftq (2 iterations), one SGD step: first loss ${Number(here.firstLoss).toFixed(6)} | ` +
        `${Number(there.firstLoss).toFixed(6)}; on each backbone ${Number(lossOurs.loss).toFixed(6)} | ` +
        `${Number(lossTheirs.loss).toFixed(6)} (Python ${Number(theirsInPython.loss).toFixed(6)}); Q equal in ${adapted} weights`,
    );
  }, 600_000);

  it("--method ia3: one SGD step by train.py gives Tabtune's first loss and the same adapter (both start at ones)", async () => {
    const c = await textCase('ia3', [...ONE_SGD_STEP, '--method', 'ia3']);
    expect(rel(c.here!.firstLoss, c.there.firstLoss)).toBeLessThan(1e-4);
    const cfg = JSON.parse(await readFile(join(c.py, 'adapter_config.json'), 'utf8')) as Json;
    expect(cfg).toMatchObject({ peft_type: 'IA3', feedforward_modules: ['down_proj'] });
    const l = await sameStep(c);
    console.log(
      `[tabtune] recipe --method ia3, one SGD step: first loss ${Number(c.here!.firstLoss).toFixed(6)} | ${Number(c.there.firstLoss).toFixed(6)}; ` +
        `no adapter ${l.plain}, Tabtune's adapter ${l.ours} | train.py's ${l.theirs} (Python ${l.theirsInPython})`,
    );
  }, 600_000);

  const virtualCases: { name: string; flags: string[]; config: Json }[] = [
    { name: 'prompt-tuning', flags: ['--method', 'prompt-tuning'], config: { peft_type: 'PROMPT_TUNING' } },
    { name: 'prefix-tuning', flags: ['--method', 'prefix-tuning'], config: { peft_type: 'PREFIX_TUNING' } },
    {
      // PEFT trains through its own projection MLP and saves the MLP's output table
      name: 'prefix-projection',
      flags: ['--method', 'prefix-tuning', '--prefix-projection', '--encoder-hidden-size', '6'],
      config: { peft_type: 'PREFIX_TUNING', prefix_projection: true, encoder_hidden_size: 6 },
    },
  ];
  for (const v of virtualCases) {
    it(`${v.flags.join(' ')}: train.py trains the virtual tokens and its adapter gives Python's loss in Tabtune`, async () => {
      const c = await textCase(
        v.name,
        [...v.flags, '--num-virtual-tokens', '4', '--lr', '0.3', '--steps', '3', '--batch', '4'],
        { train: false },
      );
      expect(c.there.steps).toBe(3);
      expect(Number(c.there.finalLoss), 'train.py trained').toBeLessThan(Number(c.there.firstLoss));
      const cfg = JSON.parse(await readFile(join(c.py, 'adapter_config.json'), 'utf8')) as Json;
      expect(cfg).toMatchObject({ ...v.config, num_virtual_tokens: 4 });
      const here = await tabtune(['eval', '--model', c.model, '--adapter', c.py, '--data', c.data, '--json']);
      const inPython = await helper(['eval', '--model', c.model, '--adapter', c.py, '--data', c.data]);
      expect(here.tokens).toBe(inPython.tokens);
      expect(rel(here.loss, inPython.loss)).toBeLessThan(1e-4);
      console.log(
        `[tabtune] recipe ${v.flags.join(' ')}, 3 steps: train.py ${Number(c.there.firstLoss).toFixed(4)} -> ${Number(c.there.finalLoss).toFixed(4)}; ` +
          `its adapter in Tabtune ${Number(here.loss).toFixed(6)} | Python ${Number(inPython.loss).toFixed(6)}`,
      );
    }, 600_000);
  }

  for (const method of ['prompt-tuning', 'prefix-tuning']) {
    it(`--method ${method} --init-from a Tabtune adapter: one SGD step by train.py gives Tabtune's first loss and adapter`, async () => {
      const base = join(dir, method);
      const model = await makeModel({ ...CASES[0]!, name: method });
      const data = join(dir, 'text.jsonl');
      const init = join(base, 'init');
      const common = ['--model', model, '--data', data, '--no-shuffle', '--json'];
      await tabtune(['train', ...common, '--method', method, '--num-virtual-tokens', '4', '--steps', '2', '--batch', '4', '--out', init]); // prettier-ignore
      const flags = [...common, '--init-from', init, ...ONE_SGD_STEP];
      const here = await tabtune(['train', ...flags, '--out', join(base, 'cont-tabtune')]);
      await tabtune(['export-recipe', ...flags, '--out', join(base, 'cont-recipe')]);
      const py = join(base, 'cont-python');
      const there = await trainPy(join(base, 'cont-recipe'), py);
      expect(rel(here.firstLoss, there.firstLoss)).toBeLessThan(1e-4);
      const evalOf = (adapter: string) =>
        tabtune(['eval', '--model', model, '--adapter', adapter, '--data', data, '--json']);
      const [start, ours, theirs] = [await evalOf(init), await evalOf(join(base, 'cont-tabtune')), await evalOf(py)];
      expect(Math.abs(Number(start.loss) - Number(ours.loss)), 'the step moved the tokens').toBeGreaterThan(1e-4);
      expect(rel(theirs.loss, ours.loss)).toBeLessThan(1e-4);
      console.log(
        `[tabtune] recipe --method ${method} --init-from, one SGD step: first loss ${Number(here.firstLoss).toFixed(6)} | ` +
          `${Number(there.firstLoss).toFixed(6)}; adapter ${Number(start.loss).toFixed(6)} -> Tabtune ${Number(ours.loss).toFixed(6)} | train.py ${Number(theirs.loss).toFixed(6)}`,
      );
    }, 600_000);
  }

  it('a few AdamW steps lower the loss on both sides (text, fresh adapter, validation split)', async () => {
    const model = join(dir, 'text', 'model');
    const base = join(dir, 'adamw');
    const flags = [
      '--model', model, '--data', join(dir, 'text.jsonl'), '--targets', 'all-linear', '--r', '4', '--alpha', '8',
      '--lr', '0.02', '--steps', '5', '--batch', '11', '--val-fraction', '0.15', '--no-shuffle', '--dropout', '0',
      '--warmup', '1', '--scheduler', 'cosine', '--json',
    ]; // prettier-ignore
    const here = await tabtune(['train', ...flags, '--out', join(base, 'tabtune')]);
    await tabtune(['export-recipe', ...flags, '--out', join(base, 'recipe')]);
    const there = await trainPy(join(base, 'recipe'), join(base, 'python'));
    expect(there.steps).toBe(5);
    // A fresh adapter starts with B = 0 on both sides: the first loss is the base model's.
    expect(Math.abs(Number(here.firstLoss) - Number(there.firstLoss)) / Number(here.firstLoss)).toBeLessThan(1e-4);
    expect(Number(here.finalLoss)).toBeLessThan(Number(here.firstLoss));
    expect(Number(there.finalLoss)).toBeLessThan(Number(there.firstLoss));
    expect(Number(there.finalValLoss)).toBeGreaterThan(0);
    console.log(
      `[tabtune] recipe AdamW, 5 steps: Tabtune ${Number(here.firstLoss).toFixed(4)} -> ${Number(here.finalLoss).toFixed(4)} ` +
        `(validation ${Number(here.finalValLoss).toFixed(4)}); train.py ${Number(there.firstLoss).toFixed(4)} -> ` +
        `${Number(there.finalLoss).toFixed(4)} (validation ${Number(there.finalValLoss).toFixed(4)})`,
    );
  }, 600_000);

  it("requirements.txt pins this Python's versions", async () => {
    const req = await readFile(join(dir, 'adamw', 'recipe', 'requirements.txt'), 'utf8');
    const pins = [...req.matchAll(/^([\w-]+)==(\S+)$/gm)].map((m) => [m[1]!, m[2]!] as const);
    expect(pins.length).toBeGreaterThanOrEqual(6);
    const code = `import importlib, json; print(json.dumps({n: importlib.import_module(n).__version__ for n in ${JSON.stringify(pins.map(([n]) => n))}}))`;
    const have = await lastJson(PYTHON, ['-c', code]);
    for (const [name, v] of pins) expect(String(have[name]).split('+')[0], name).toBe(v);
  });

  it('accelerate reads every launcher config as the intended kind', async () => {
    const cfgDir = join(dir, 'accelerate');
    await mkdir(cfgDir, { recursive: true });
    for (const [name, yaml] of Object.entries(acceleratorConfigs())) await writeFile(join(cfgDir, name), yaml);
    const code =
      'import json, sys\n' +
      'from accelerate.commands.config.config_args import load_config_from_file\n' +
      'print(json.dumps({f: str(load_config_from_file(f).distributed_type) for f in sys.argv[1:]}))';
    const names = ['single_gpu', 'multi_gpu', 'fsdp', 'deepspeed_zero3'];
    const got = await lastJson(PYTHON, ['-c', code, ...names.map((n) => join(cfgDir, `${n}.yaml`))]);
    expect(names.map((n) => got[join(cfgDir, `${n}.yaml`)])).toEqual([
      'DistributedType.NO',
      'DistributedType.MULTI_GPU',
      'DistributedType.FSDP',
      'DistributedType.DEEPSPEED',
    ]);
  });
});
