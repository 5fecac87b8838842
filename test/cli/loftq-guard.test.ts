/**
 * A LoftQ adapter only fits its NF4 backbone: the grid check on weights (an NF4 round trip in
 * float32, bf16 or f16 storage, also stored transposed, passes; an original weight fails), and
 * `tabtune merge`, `eval`, `generate`, `chat` (--adapter and /adapter) and `train --init-from` with
 * a LoftQ adapter onto the original tiny model stop with one `tabtune:` line naming the weight and
 * the loftq-base folder, run onto loftq-base, and go on with --any-base; a plain adapter is never
 * checked.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { roundThroughHalf } from '../../src/gpu/half';
import { loftqQuantize } from '../../src/lora/loftq';
import { isLoftqAdapterConfig, weightGridMiss } from '../../src/lora/loftq-grid';
import { tinyCorpusJsonl, writeTinyModel } from '../fixtures/tiny-model';
import { type ProcResult, runCommand } from '../helpers/proc';

const ROOT = join(import.meta.dirname, '..', '..');

function run(args: string[], input?: string): Promise<ProcResult> {
  return runCommand(process.execPath, [join(ROOT, 'bin', 'tabtune.mjs'), ...args], ROOT, undefined, input);
}

/** A deterministic pseudo-random weight [out, in]. */
function weight(outF: number, inF: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: outF * inF }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s / 2 ** 32 - 0.5) * 0.2;
  });
}

describe('NF4 grid check', () => {
  const [outF, inF] = [24, 40]; // 960 values: 15 blocks of 64
  const w = weight(outF, inF, 7);
  const q = loftqQuantize(w, outF, inF, 4, null);

  it('passes an NF4 round trip in float32, bf16 and f16, and one stored transposed', () => {
    expect(weightGridMiss(q, outF, inF, 'F32')).toBeNull();
    expect(weightGridMiss(Float32Array.from(roundThroughHalf(q, 'bf16')), outF, inF, 'BF16')).toBeNull();
    expect(weightGridMiss(Float32Array.from(roundThroughHalf(q, 'f16')), outF, inF, 'F16')).toBeNull();
    const t = new Float32Array(q.length); // GPT-2 Conv1D: stored [in, out]
    for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) t[i * outF + o] = q[o * inF + i]!;
    expect(weightGridMiss(t, inF, outF, 'F32')).toBeNull();
  });

  it('finds the original weight off the grid in its first block, also with the 16-bit tolerance', () => {
    for (const dtype of ['F32', 'BF16']) {
      const miss = weightGridMiss(w, outF, inF, dtype);
      expect(miss).not.toBeNull();
      expect(miss!.block).toBe(0);
      expect(miss!.distinct).toBeGreaterThan(16);
      expect(miss!.distance).toBeGreaterThan(0.01);
    }
    // a block with values between codes but only 16 distinct ones is still off the grid
    const few = Float32Array.from({ length: 64 }, (_, i) => (i % 2 ? 1 : 0.03));
    expect(weightGridMiss(few, 1, 64, 'F32')?.distinct).toBe(2);
  });

  it('recognises a LoftQ adapter by init_lora_weights or a loftq_config', () => {
    expect(isLoftqAdapterConfig({ init_lora_weights: 'loftq' })).toBe(true);
    expect(isLoftqAdapterConfig({ init_lora_weights: true, loftq_config: { loftq_bits: 4, loftq_iter: 1 } })).toBe(
      true,
    );
    expect(isLoftqAdapterConfig({ init_lora_weights: true, loftq_config: {} })).toBe(false);
    expect(isLoftqAdapterConfig({ init_lora_weights: 'pissa' })).toBe(false);
  });
});

describe('tabtune CLI: a LoftQ adapter meets the model it is given', () => {
  let dir = '';
  let model = '';
  let data = '';
  let loftq = '';
  let plain = '';
  const train = (out: string, extra: string[]) =>
    run([
      'train', '--model', model, '--data', data, '--out', out, '--r', '2', '--alpha', '2', '--targets', 'q_proj,v_proj',
      '--steps', '1', '--batch', '2', '--max-len', '16', '--json', ...extra,
    ]); // prettier-ignore

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tabtune-loftq-guard-'));
    model = join(dir, 'llama');
    await writeTinyModel(model, { modelType: 'llama', seed: 4, dtype: 'BF16' });
    data = join(dir, 'text.jsonl');
    await writeFile(data, tinyCorpusJsonl(6));
    loftq = join(dir, 'loftq');
    plain = join(dir, 'plain');
    const a = await train(loftq, ['--init', 'loftq']);
    expect(a.code, a.stderr).toBe(0);
    expect(existsSync(join(loftq, 'loftq-base', 'config.json'))).toBe(true);
    const b = await train(plain, []);
    expect(b.code, b.stderr).toBe(0);
  }, 240_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** The one `tabtune:` line of a refusal: command, adapter, model, the weight checked, loftq-base, --any-base. */
  function expectRefusal(stderr: string, command: string, flag = '--adapter'): void {
    const lines = stderr.split('\n').filter((l) => l.startsWith('tabtune:'));
    expect(lines, stderr).toHaveLength(1);
    expect(lines[0]).toContain(`tabtune: ${command}: ${flag} ${loftq} is a LoftQ adapter`);
    expect(lines[0]).toContain(`--model ${model} is not that backbone`);
    expect(lines[0]).toMatch(
      /weight "model\.layers\.0\.self_attn\.(q|v)_proj\.weight" \(model\.safetensors\) is not NF4/,
    );
    expect(lines[0]).toContain(`--model ${join(loftq, 'loftq-base')} (the loftq-base folder beside the adapter)`);
    expect(lines[0]).toContain('is a LoftQ adapter (adapter_config.json: a loftq_config)');
    expect(lines[0]).toContain('--any-base');
  }

  it('merge onto the original model stops, naming adapter, model, weight and loftq-base; onto loftq-base it merges', async () => {
    const r = await run(['merge', '--model', model, '--adapter', loftq, '--out', join(dir, 'm1')]);
    expect(r.code).toBe(2);
    expectRefusal(r.stderr, 'merge');
    expect(existsSync(join(dir, 'm1', 'model.safetensors'))).toBe(false);

    const ok = await run(['merge', '--model', join(loftq, 'loftq-base'), '--adapter', loftq, '--out', join(dir, 'm2')]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(existsSync(join(dir, 'm2', 'model.safetensors'))).toBe(true);
  }, 120_000);

  it('--any-base merges onto the original model anyway; a plain adapter is never checked', async () => {
    const any = await run(['merge', '--model', model, '--adapter', loftq, '--out', join(dir, 'm3'), '--any-base']);
    expect(any.code, any.stderr).toBe(0);
    expect(existsSync(join(dir, 'm3', 'model.safetensors'))).toBe(true);
    const p = await run(['merge', '--model', model, '--adapter', plain, '--out', join(dir, 'm4')]);
    expect(p.code, p.stderr).toBe(0);
  }, 120_000);

  it('train (and export-recipe) --init-from stop before any GPU work on the original model; train runs on loftq-base', async () => {
    const r = await train(join(dir, 't1'), ['--init-from', loftq]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/tabtune: train: --init-from .* is a LoftQ adapter.*is not NF4-dequantized.*--any-base/);
    expect(existsSync(join(dir, 't1'))).toBe(false);
    const recipe = await run([
      'export-recipe',
      '--model',
      model,
      '--data',
      data,
      '--out',
      join(dir, 'r1'),
      '--init-from',
      loftq,
    ]);
    expect(recipe.code).toBe(2);
    expect(recipe.stderr).toMatch(/tabtune: export-recipe: --init-from .* is a LoftQ adapter.*--any-base/);
    const ok = await run([
      'train', '--model', join(loftq, 'loftq-base'), '--data', data, '--out', join(dir, 't2'), '--init-from', loftq,
      '--steps', '1', '--batch', '2', '--max-len', '16', '--json',
    ]); // prettier-ignore
    expect(ok.code, ok.stderr).toBe(0);
    expect(existsSync(join(dir, 't2', 'adapter_model.safetensors'))).toBe(true);
  }, 120_000);

  it('eval, generate and chat --adapter stop on the original model, run on loftq-base and with --any-base', async () => {
    const base = join(loftq, 'loftq-base');
    const evalArgs = ['--adapter', loftq, '--data', data, '--max-len', '16', '--json'];
    const genArgs = ['--adapter', loftq, '--prompt', 'The cat', '--max-new-tokens', '2'];
    const chatArgs = ['--adapter', loftq, '--completion', '--max-new-tokens', '2'];
    for (const [command, args] of [
      ['eval', evalArgs],
      ['generate', genArgs],
      ['chat', chatArgs],
    ] as const) {
      const wrong = await run([command, '--model', model, ...args]);
      expect(wrong.code, wrong.stderr).toBe(2);
      expectRefusal(wrong.stderr, command);
    }
    const onBase = await run(['eval', '--model', base, ...evalArgs]);
    expect(onBase.code, onBase.stderr).toBe(0);
    const anyBase = await run(['eval', '--model', model, ...evalArgs, '--any-base']);
    expect(anyBase.code, anyBase.stderr).toBe(0);
    const [lossBase, lossAny] = [onBase, anyBase].map((r) => (JSON.parse(r.stdout) as { loss: number }).loss);
    expect(Number.isFinite(lossBase) && Number.isFinite(lossAny)).toBe(true);
    expect(lossAny, 'the same adapter on another base').not.toBe(lossBase);
    for (const m of [
      ['--model', base],
      ['--model', model, '--any-base'],
    ]) {
      const g = await run(['generate', ...m, ...genArgs]);
      expect(g.code, g.stderr).toBe(0);
      const c = await run(['chat', ...m, ...chatArgs], 'The cat\n');
      expect(c.code, c.stderr).toBe(0);
      expect(c.stdout).toMatch(/^loftq> /);
    }
  }, 180_000);

  it("chat's /adapter refuses a LoftQ adapter on the original model, and the conversation goes on", async () => {
    const input = [`/adapter ${loftq}`, `/adapter ${plain}`, 'The cat', ''].join('\n');
    const r = await run(['chat', '--model', model, '--completion', '--max-new-tokens', '2'], input);
    expect(r.code, 'a refused /adapter makes the exit code 1').toBe(1);
    expectRefusal(r.stderr, 'chat', '/adapter');
    expect(r.stdout).toMatch(/^plain> /);
  }, 120_000);
});
