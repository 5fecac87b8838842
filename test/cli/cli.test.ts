/**
 * The `tabtune` CLI as a user runs it (`node bin/tabtune.mjs ...`, no build step) on tiny models of
 * every supported architecture: train writes PEFT files and prints a JSON summary, eval prints the
 * loss, generate prints text; bad input ends with a one-line error and a non-zero exit.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensors } from '../../src/model/safetensors';
import { type TinyModelType, writeTinyModel, tinyCorpusJsonl } from '../fixtures/tiny-model';
import { type ProcResult, runCommand } from '../helpers/proc';

const ROOT = join(import.meta.dirname, '..', '..');
let dir = '';

function run(args: string[]): Promise<ProcResult> {
  return runCommand(process.execPath, [join(ROOT, 'bin', 'tabtune.mjs'), ...args], ROOT);
}

/** Our own error lines (the Vulkan driver may print warnings of its own on stderr). */
function ownLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('tabtune:'));
}

function lastJson(stdout: string): Record<string, unknown> {
  const lines = stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-cli-'));
  await writeFile(join(dir, 'text.jsonl'), tinyCorpusJsonl());
  await writeFile(
    join(dir, 'alpaca.jsonl'),
    [
      { instruction: 'What did the cat watch?', input: '', output: 'The cat watched the rain.' },
      { instruction: 'Where did the children play?', input: '', output: 'In the garden.' },
      { instruction: 'What color was the sea?', input: 'Think of the book.', output: 'Deep and blue.' },
    ]
      .map((r) => JSON.stringify(r))
      .join('\n') + '\n{"instruction": broken json\n',
  );
  await writeFile(
    join(dir, 'chat.jsonl'),
    [
      {
        messages: [
          { role: 'user', content: 'Hello cat' },
          { role: 'assistant', content: 'The cat sat on the mat.' },
        ],
      },
      {
        messages: [
          { role: 'user', content: 'Rain?' },
          { role: 'assistant', content: 'The rain fell on the roof.' },
        ],
      },
    ]
      .map((r) => JSON.stringify(r))
      .join('\n'),
  );
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const ARCHS: { type: TinyModelType; data: string; format: string; targets: string; key: string }[] = [
  {
    type: 'llama',
    data: 'text.jsonl',
    format: 'auto',
    targets: 'q_proj,v_proj',
    key: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight',
  },
  {
    type: 'mistral',
    data: 'alpaca.jsonl',
    format: 'alpaca',
    targets: 'all-linear',
    key: 'base_model.model.model.layers.1.mlp.down_proj.lora_B.weight',
  },
  {
    type: 'qwen2',
    data: 'chat.jsonl',
    format: 'chat',
    targets: 'q_proj,k_proj,v_proj',
    key: 'base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight',
  },
  {
    type: 'qwen3',
    data: 'text.jsonl',
    format: 'text',
    targets: 'o_proj,up_proj',
    key: 'base_model.model.model.layers.1.mlp.up_proj.lora_A.weight',
  },
  {
    type: 'gpt2',
    data: 'text.jsonl',
    format: 'auto',
    targets: 'c_attn',
    key: 'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight',
  },
];

describe('tabtune CLI', () => {
  for (const a of ARCHS) {
    it(`${a.type}: train -> PEFT files, eval with and without the adapter, generate`, async () => {
      const model = join(dir, `model-${a.type}`);
      await writeTinyModel(model, {
        modelType: a.type,
        dtype: a.type === 'qwen3' ? 'BF16' : 'F32',
        seed: 2,
        gpt2Prefix: false,
      });
      const out = join(dir, `adapter-${a.type}`);
      const data = join(dir, a.data);
      const train = await run([
        'train',
        '--model',
        model,
        '--data',
        data,
        '--out',
        out,
        '--format',
        a.format,
        '--targets',
        a.targets,
        '--r',
        '4',
        '--alpha',
        '8',
        '--lr',
        '1e-2',
        '--steps',
        '12',
        '--batch',
        '2',
        '--max-len',
        '48',
        '--seed',
        '3',
        '--json',
      ]);
      expect(train.code, train.stderr).toBe(0);
      const summary = lastJson(train.stdout);
      expect(summary.steps).toBe(12);
      expect(typeof summary.finalLoss).toBe('number');
      expect(train.stderr).toMatch(/step 12\/12 loss \d/);
      if (a.data === 'alpaca.jsonl') expect(train.stderr).toMatch(/alpaca\.jsonl:4: .*skipped/);
      const cfg = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8'));
      expect(cfg.peft_type).toBe('LORA');
      expect(cfg.r).toBe(4);
      expect(cfg.lora_alpha).toBe(8);
      expect(cfg.fan_in_fan_out).toBe(a.type === 'gpt2');
      const st = parseSafetensors(new Uint8Array(await readFile(join(out, 'adapter_model.safetensors'))));
      expect(st.metadata).toEqual({ format: 'pt' });
      expect(st.tensors.has(a.key)).toBe(true);

      const base = await run([
        'eval',
        '--model',
        model,
        '--data',
        data,
        '--format',
        a.format,
        '--max-len',
        '48',
        '--json',
      ]);
      expect(base.code, base.stderr).toBe(0);
      const tuned = await run([
        'eval',
        '--model',
        model,
        '--adapter',
        out,
        '--data',
        data,
        '--format',
        a.format,
        '--max-len',
        '48',
        '--json',
      ]);
      expect(tuned.code, tuned.stderr).toBe(0);
      const b = lastJson(base.stdout) as { loss: number; tokens: number };
      const t = lastJson(tuned.stdout) as { loss: number; tokens: number };
      expect(t.tokens).toBe(b.tokens);
      expect(b.tokens).toBeGreaterThan(0);
      expect(t.loss).toBeLessThan(b.loss);

      const gen = await run([
        'generate',
        '--model',
        model,
        '--adapter',
        out,
        '--prompt',
        'The cat',
        '--max-new-tokens',
        '5',
      ]);
      expect(gen.code, gen.stderr).toBe(0);
      // The generated text without the newline the CLI ends it with (a tuned tiny model may well
      // generate only newlines or spaces, so the text is not trimmed).
      expect(gen.stdout.replace(/\n$/, '').length).toBeGreaterThan(0);
    });
  }

  // QLoRA: the same three commands on 4-bit NF4 frozen weights (every architecture goes through the
  // engine with NF4 weights in test/engine/engine.test.ts; here the flags, on a Linear and a Conv1D model).
  for (const a of ARCHS.filter((x) => x.type === 'llama' || x.type === 'gpt2')) {
    const noDq = a.type === 'gpt2';
    it(`${a.type}: --quantize nf4${noDq ? ' --no-double-quant' : ''} for train, eval and generate`, async () => {
      const model = join(dir, `model-nf4-${a.type}`);
      await writeTinyModel(model, { modelType: a.type, dtype: 'BF16', seed: 2, gpt2Prefix: false });
      const out = join(dir, `adapter-nf4-${a.type}`);
      const data = join(dir, a.data);
      const q = ['--quantize', 'nf4', ...(noDq ? ['--no-double-quant'] : [])];
      const common = ['--model', model, '--data', data, '--format', a.format, '--max-len', '48'];
      const train = await run([
        'train',
        ...common,
        '--out',
        out,
        '--targets',
        a.targets,
        '--r',
        '4',
        '--lr',
        '1e-2',
        '--steps',
        '8',
        '--batch',
        '2',
        ...q,
        '--json',
      ]);
      expect(train.code, train.stderr).toBe(0);
      expect(train.stderr).toMatch(
        noDq
          ? /frozen weights: 4-bit NF4 \(quantized at load\), /
          : /frozen weights: 4-bit NF4 \(quantized at load, double quantization\), /,
      );
      const st = parseSafetensors(new Uint8Array(await readFile(join(out, 'adapter_model.safetensors'))));
      expect(st.tensors.has(a.key)).toBe(true);
      const base = await run(['eval', ...common, ...q, '--json']);
      const tuned = await run(['eval', ...common, '--adapter', out, ...q, '--json']);
      expect(base.code, base.stderr).toBe(0);
      expect(tuned.code, tuned.stderr).toBe(0);
      const loss = (r: { stdout: string }) => (lastJson(r.stdout) as { loss: number }).loss;
      expect(loss(tuned)).toBeLessThan(loss(base));
      const gen = await run([
        'generate',
        '--model',
        model,
        '--adapter',
        out,
        '--prompt',
        'The cat',
        '--max-new-tokens',
        '4',
        ...q,
      ]);
      expect(gen.code, gen.stderr).toBe(0);
      expect(gen.stdout.trim().length).toBeGreaterThan(0);
    });
  }

  it('reports bad input with a one-line error and a non-zero exit', async () => {
    const missing = await run([
      'train',
      '--model',
      join(dir, 'nope'),
      '--data',
      join(dir, 'text.jsonl'),
      '--out',
      join(dir, 'o'),
    ]);
    expect(missing.code).toBe(2);
    expect(ownLines(missing.stderr)).toHaveLength(1);
    expect(missing.stderr).toMatch(/--model directory ".*nope" does not exist/);
    const badFlag = await run(['train', '--model', dir, '--data', 'x', '--out', 'y', '--lr', 'fast']);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toMatch(/--lr expects a number, got "fast"/);
    const unsupported = join(dir, 'model-unsupported');
    await writeTinyModel(unsupported, { modelType: 'llama', overrides: { model_type: 'mamba' } });
    const bad = await run(['eval', '--model', unsupported, '--data', join(dir, 'text.jsonl')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/model_type "mamba" is not supported/);
    expect(ownLines(bad.stderr)).toHaveLength(1);
    const flags = join(dir, 'model-flags');
    await writeTinyModel(flags, { modelType: 'llama' });
    const noQuant = await run(['eval', '--model', flags, '--data', join(dir, 'text.jsonl'), '--no-double-quant']);
    expect(noQuant.code).toBe(2);
    expect(noQuant.stderr).toMatch(/eval: --no-double-quant applies to 4-bit frozen weights; add --quantize nf4/);
    const badQuant = await run(['generate', '--model', flags, '--prompt', 'x', '--quantize', 'int8']);
    expect(badQuant.code).toBe(2);
    expect(badQuant.stderr).toMatch(/--quantize must be one of nf4, none; got "int8"/);
  });
});
