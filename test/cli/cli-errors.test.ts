/**
 * The `tabtune` CLI on the mistakes a user makes: each ends with one `tabtune:` line naming the
 * flag or file and what was expected, and a non-zero exit (2 for usage), most before any GPU work.
 * Also what a flag means when it meets an existing adapter or checkpoint (--init-from, --resume).
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportPeft } from '../../src/lora/peft';
import { writeTinyModel, tinyCorpusJsonl } from '../fixtures/tiny-model';
import { type ProcResult, runCommand } from '../helpers/proc';

const ROOT = join(import.meta.dirname, '..', '..');
let dir = '';
let llama = '';
let gpt2 = '';
let data = '';

function run(args: string[]): Promise<ProcResult> {
  return runCommand(process.execPath, [join(ROOT, 'bin', 'tabtune.mjs'), ...args], ROOT);
}

/** Our own lines (the Vulkan driver may print warnings of its own on stderr). */
function ownLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('tabtune:'));
}

/** Exit code and the single `tabtune:` line of a failed run. */
async function fails(args: string[]): Promise<{ code: number | null; line: string }> {
  const r = await run(args);
  const lines = ownLines(r.stderr);
  expect(lines, r.stderr).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  return { code: r.code, line: lines[0]! };
}

function lastJson(stdout: string): Record<string, unknown> {
  const lines = stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-cli-errors-'));
  llama = join(dir, 'llama');
  gpt2 = join(dir, 'gpt2');
  await writeTinyModel(llama, { modelType: 'llama', seed: 1 });
  await writeTinyModel(gpt2, { modelType: 'gpt2', seed: 1, gpt2Prefix: false });
  data = join(dir, 'text.jsonl');
  await writeFile(data, tinyCorpusJsonl(6));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('tabtune CLI: arguments and paths', () => {
  it('a flag given where a value belongs is reported, not used as the value', async () => {
    const r = await fails(['train', '--model', llama, '--data', data, '--out', '--json', '--steps', '1']);
    expect(r.code).toBe(2);
    expect(r.line).toBe('tabtune: train: --out needs a value, got the flag --json.');
  });

  it('`train --help` prints the usage', async () => {
    const r = await run(['train', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/tabtune train --model DIR --data FILE --out DIR/);
    expect(ownLines(r.stderr)).toEqual([]);
  });

  it('--data must be a file, --model and adapters folders, --out a folder that can be made', async () => {
    const dataDir = await fails(['eval', '--model', llama, '--data', dir]);
    expect(dataDir.code).toBe(2);
    expect(dataDir.line).toMatch(/--data file ".*" is a directory; expected a file\.$/);
    const modelFile = await fails(['eval', '--model', data, '--data', data]);
    expect(modelFile.code).toBe(2);
    expect(modelFile.line).toMatch(/--model directory ".*text\.jsonl" is a file; expected a directory\.$/);
    const adapterFile = await fails(['generate', '--model', llama, '--adapter', data, '--prompt', 'x']);
    expect(adapterFile.code).toBe(2);
    expect(adapterFile.line).toMatch(/--adapter directory ".*text\.jsonl" is a file; expected a directory\.$/);
    const outFile = await fails(['train', '--model', llama, '--data', data, '--out', data]);
    expect(outFile.code).toBe(2);
    expect(outFile.line).toMatch(/--out ".*text\.jsonl" is a file; expected a directory/);
    const outUnder = await fails(['train', '--model', llama, '--data', data, '--out', join(data, 'sub')]);
    expect(outUnder.code).toBe(2);
    expect(outUnder.line).toMatch(/--out ".*sub" cannot be created: ".*text\.jsonl" is a file/);
  });

  it('a data file that is not UTF-8 is named with its first bad line', async () => {
    const utf16 = join(dir, 'utf16.jsonl');
    await writeFile(utf16, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"text": "The cat"}\n', 'utf16le')]));
    const a = await fails(['eval', '--model', llama, '--data', utf16]);
    expect(a.code).toBe(1);
    expect(a.line).toBe(
      'tabtune: --data file "' +
        utf16 +
        '" is UTF-16 text (it starts with a UTF-16 byte order mark); expected UTF-8: save it as UTF-8.',
    );
    const latin1 = join(dir, 'latin1.txt');
    await writeFile(latin1, Buffer.from('The cat sat.\n\nLe caf\xe9.\n', 'latin1'));
    const b = await fails(['train', '--model', llama, '--data', latin1, '--out', join(dir, 'latin1-out')]);
    expect(b.code).toBe(1);
    expect(b.line).toBe(
      'tabtune: --data file "' +
        latin1 +
        '": line 3 is not UTF-8 text (it may be Windows-1252 or Latin-1); expected UTF-8 (save the file as UTF-8).',
    );
  });

  it('--max-len may not exceed the model positions; the default is capped to them', async () => {
    const cfg = JSON.parse(await readFile(join(gpt2, 'config.json'), 'utf8')) as { n_positions: number };
    const n = cfg.n_positions;
    const long = join(dir, 'long.jsonl');
    await writeFile(long, `${JSON.stringify({ text: 'the cat sat on the mat and watched the rain '.repeat(30) })}\n`);
    const over = await fails(['eval', '--model', gpt2, '--data', long, '--max-len', String(n + 1)]);
    expect(over.code).toBe(2);
    expect(over.line).toBe(
      `tabtune: eval: --max-len ${n + 1} is longer than the model allows (n_positions = ${n} in config.json).`,
    );
    const trainOver = await fails([
      'train',
      '--model',
      gpt2,
      '--data',
      long,
      '--out',
      join(dir, 'o'),
      '--max-len',
      '1000',
    ]);
    expect(trainOver.code).toBe(2);
    // Without --max-len the record is cut at the model's positions: n - 1 predicted tokens.
    const r = await run(['eval', '--model', gpt2, '--data', long, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(lastJson(r.stdout).tokens).toBe(n - 1);
  });

  it('--targets: a name the model does not have, or nothing, is an error', async () => {
    const out = join(dir, 'targets');
    const wrong = await fails([
      'train',
      '--model',
      llama,
      '--data',
      data,
      '--out',
      out,
      '--targets',
      'q_proj,bogus_proj',
      '--steps',
      '1',
    ]);
    expect(wrong.code).toBe(2);
    expect(wrong.line).toMatch(
      /--targets "bogus_proj" is not a linear module name; this model \(llama\) has q_proj, k_proj, v_proj, .*all-linear/,
    );
    const empty = await fails([
      'train',
      '--model',
      llama,
      '--data',
      data,
      '--out',
      out,
      '--targets',
      '',
      '--steps',
      '1',
    ]);
    expect(empty.code).toBe(2);
    expect(empty.line).toMatch(/--targets is empty/);
    // A dotted suffix of the module path is PEFT's matching too, and works.
    const dotted = await run([
      'train',
      '--model',
      llama,
      '--data',
      data,
      '--out',
      out,
      '--targets',
      'self_attn.q_proj',
      '--steps',
      '1',
      '--json',
    ]);
    expect(dotted.code, dotted.stderr).toBe(0);
    const cfg = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8'));
    expect(cfg.target_modules).toEqual(['self_attn.q_proj']);
  });
});

describe('tabtune CLI: continuing an adapter or a checkpoint', () => {
  it('--init-from keeps its r, alpha and targets; conflicting flags and missing folders fail before training', async () => {
    const first = join(dir, 'first');
    const t = await run([
      'train',
      '--model',
      llama,
      '--data',
      data,
      '--out',
      first,
      '--r',
      '4',
      '--alpha',
      '8',
      '--targets',
      'all-linear',
      '--steps',
      '1',
    ]);
    expect(t.code, t.stderr).toBe(0);
    const conflict = await fails([
      'train',
      '--model',
      llama,
      '--data',
      data,
      '--out',
      join(dir, 'second'),
      '--init-from',
      first,
      '--r',
      '16',
    ]);
    expect(conflict.code).toBe(2);
    expect(conflict.line).toMatch(/--r 16 conflicts with --init-from .*first, which has r 4/);
    const targets = await fails([
      'train',
      '--model',
      llama,
      '--data',
      data,
      '--out',
      join(dir, 'second'),
      '--init-from',
      first,
      '--targets',
      'q_proj',
    ]);
    expect(targets.code).toBe(2);
    expect(targets.line).toMatch(/--targets conflicts with --init-from/);
    const missing = await fails([
      'train',
      '--model',
      llama,
      '--data',
      data,
      '--out',
      join(dir, 'second'),
      '--init-from',
      join(dir, 'nope'),
    ]);
    expect(missing.code).toBe(2);
    expect(missing.line).toMatch(/--init-from directory ".*nope" does not exist/);
    // The same r as the adapter's is fine, and the printed trainable count is the adapter's (all-linear, r 4).
    const ok = await run([
      'train',
      '--model',
      llama,
      '--data',
      data,
      '--out',
      join(dir, 'second'),
      '--init-from',
      first,
      '--r',
      '4',
      '--steps',
      '1',
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    const base = await run(['train', '--model', llama, '--data', data, '--out', join(dir, 'third'), '--steps', '1']);
    const params = (s: string) => /trainable params: ([\d,]+)/.exec(s)?.[1];
    expect(params(ok.stdout)).toBe(params(t.stdout));
    expect(params(ok.stdout)).not.toBe(params(base.stdout));
  });

  it('--resume takes the run settings from the checkpoint and refuses other batching', async () => {
    const out = join(dir, 'resumed');
    const first = await run([
      'train',
      '--model',
      llama,
      '--data',
      data,
      '--out',
      out,
      '--steps',
      '4',
      '--checkpoint-every',
      '2',
      '--batch',
      '2',
      '--lr',
      '1e-2',
      '--r',
      '4',
      '--seed',
      '9',
    ]);
    expect(first.code, first.stderr).toBe(0);
    const other = await fails([
      'train',
      '--model',
      llama,
      '--data',
      data,
      '--out',
      out,
      '--steps',
      '6',
      '--resume',
      '--batch',
      '3',
    ]);
    expect(other.code).toBe(2);
    expect(other.line).toMatch(/--resume: --batch 3 differs from the checkpoint's 2/);
    const r8 = await fails([
      'train',
      '--model',
      llama,
      '--data',
      data,
      '--out',
      out,
      '--steps',
      '6',
      '--resume',
      '--r',
      '8',
    ]);
    expect(r8.code).toBe(2);
    expect(r8.line).toMatch(/--r 8 conflicts with the checkpoint .*which has r 4/);
    const resumed = await run([
      'train',
      '--model',
      llama,
      '--data',
      data,
      '--out',
      out,
      '--steps',
      '6',
      '--resume',
      '--json',
    ]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(lastJson(resumed.stdout).steps).toBe(6);
    // lr 1e-2 from the checkpoint, linear decay over 6 steps: step 5 runs at 1e-2 * 2/6.
    expect(resumed.stderr).toMatch(/step 5\/6 loss \d\S* lr 3\.33e-3 /);
    const none = await fails(['train', '--model', llama, '--data', data, '--out', join(dir, 'fresh'), '--resume']);
    expect(none.code).toBe(2);
    expect(none.line).toMatch(/no checkpoint at .*fresh.checkpoint\.safetensors/);
  });
});

describe('tabtune CLI: generate', () => {
  it('says when sampling flags do nothing and when the context is full', async () => {
    const r = await run(['generate', '--model', gpt2, '--prompt', 'The cat', '--max-new-tokens', '200', '--seed', '3']);
    expect(r.code, r.stderr).toBe(0);
    const lines = ownLines(r.stderr);
    expect(lines[0]).toMatch(/warning: --seed ignored: greedy decoding/);
    expect(lines[1]).toMatch(/generation stopped after \d+ tokens: the model's context \(64 positions\) is full\./);
    await mkdir(join(dir, 'empty-adapter'), { recursive: true });
    const bad = await fails(['generate', '--model', gpt2, '--adapter', join(dir, 'empty-adapter'), '--prompt', 'x']);
    expect(bad.code).toBe(2);
    expect(bad.line).toMatch(/must hold adapter_config\.json and adapter_model\.safetensors/);
  });

  it('an adapter made for another model is reported with its folder', async () => {
    // A llama-layout adapter (q_proj of hidden 24) on the GPT-2 model, which has no such module.
    const other = join(dir, 'llama-adapter');
    await mkdir(other, { recursive: true });
    const files = exportPeft({
      config: {
        r: 2,
        lora_alpha: 4,
        lora_dropout: 0,
        target_modules: ['q_proj'],
        use_rslora: false,
        bias: 'none',
        fan_in_fan_out: false,
        init_lora_weights: true,
      },
      baseModel: 'tiny-llama',
      modules: [
        {
          path: 'model.layers.0.self_attn.q_proj',
          r: 2,
          inF: 24,
          outF: 24,
          a: new Float32Array(48).fill(0.1),
          b: new Float32Array(48).fill(0.1),
        },
      ],
      fanInFanOut: false,
    });
    await writeFile(join(other, 'adapter_config.json'), files.adapterConfig);
    await writeFile(join(other, 'adapter_model.safetensors'), files.adapterModel);
    for (const cmd of [
      ['eval', '--model', gpt2, '--adapter', other, '--data', data],
      ['generate', '--model', gpt2, '--adapter', other, '--prompt', 'x'],
    ]) {
      const r = await fails(cmd);
      expect(r.code).toBe(1);
      expect(r.line.startsWith(`tabtune: --adapter ${other}: `), r.line).toBe(true);
    }
  });
});
