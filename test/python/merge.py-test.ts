/**
 * `tabtune merge` against Hugging Face's own code (transformers + peft in Python, CPU torch): an
 * adapter made by Python PEFT (random A and B; GPT-2 with fan_in_fan_out and rsLoRA) is merged by
 * Tabtune; the merged folder loads with AutoModelForCausalLM / AutoTokenizer, its loss equals the
 * base model with the adapter in PeftModel and PEFT's merge_and_unload(), and its weights equal
 * PEFT's merged ones. Once as one model.safetensors, once sharded (with the index file).
 * Run by `npm test` after the vitest suite, or alone by `npm run test:peft`.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TinyModelType, writeTinyModel, tinyCorpusJsonl } from '../fixtures/tiny-model';
import { closePython, pyScript, tabtune } from '../helpers/interop';

type Json = Record<string, number | string>;
let dir = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-merge-py-'));
  await writeFile(join(dir, 'eval.jsonl'), tinyCorpusJsonl(6));
});

afterAll(async () => {
  closePython();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const CASES: {
  type: TinyModelType;
  targets: string;
  rslora: boolean;
  shard?: string;
  dtype: string;
  dora?: boolean;
}[] = [
  { type: 'llama', targets: 'q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj', rslora: false, dtype: 'f32' },
  { type: 'gpt2', targets: 'c_attn,c_proj,c_fc', rslora: true, shard: '40KB', dtype: 'f32' },
  // DoRA: each merged row scaled by m / ||W + s·B·A|| as PEFT's merge does (Conv1D in its [in, out] layout).
  { type: 'llama', targets: 'q_proj,v_proj,down_proj', rslora: false, dtype: 'f32', dora: true },
  { type: 'gpt2', targets: 'c_attn,c_proj,c_fc', rslora: false, dtype: 'f32', dora: true },
];

describe.concurrent('tabtune merge in transformers', () => {
  for (const c of CASES) {
    it(`${c.type}${c.dora ? ' (DoRA)' : ''}: the merged folder loads in transformers with base + adapter's loss and PEFT's merged weights`, async () => {
      const model = join(dir, `${c.type}${c.dora ? '-dora' : ''}`);
      await writeTinyModel(model, { modelType: c.type, addBos: c.type === 'llama', dtype: 'BF16' });
      const adapter = `${model}-adapter`;
      const mk = [
        'make-adapter',
        '--model',
        model,
        '--out',
        adapter,
        '--r',
        '4',
        '--alpha',
        '8',
        '--targets',
        c.targets,
      ];
      if (c.rslora) mk.push('--rslora');
      if (c.dora) mk.push('--dora');
      await pyScript('peft_interop.py', mk);
      const merged = `${model}-merged`;
      const args = ['merge', '--model', model, '--adapter', adapter, '--out', merged, '--dtype', c.dtype, '--json'];
      if (c.shard) args.push('--max-shard-size', c.shard);
      const summary = await tabtune<Json>(args);
      if (c.shard) expect(JSON.stringify(summary.files)).toContain('model.safetensors.index.json');
      const r = await pyScript<Json>('peft_merge_check.py', [
        '--model',
        model,
        '--adapter',
        adapter,
        '--merged',
        merged,
        '--data',
        join(dir, 'eval.jsonl'),
      ]);
      console.log(`[tabtune] merge ${c.type}: ${JSON.stringify(r)}`);
      const rel = (x: number | string, y: number | string) => Math.abs(Number(x) - Number(y)) / Number(y);
      expect(rel(r.merged!, r.peft!), 'merged folder vs PeftModel').toBeLessThan(1e-5);
      expect(rel(r.merged!, r.peft_merged!), 'merged folder vs merge_and_unload').toBeLessThan(1e-5);
      expect(Number(r.max_weight_diff), `worst weight ${r.weight}`).toBeLessThan(1e-5);
    });
  }
});
