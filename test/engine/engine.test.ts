/**
 * The engine end to end on tiny models: training lowers the loss, the same seed gives the same
 * adapter, a run resumed from a checkpoint ends exactly where the uninterrupted run ends, PEFT
 * export -> import gives the same outputs, greedy generation matches the float64 reference,
 * evaluating again makes no bind groups and gives the same losses.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine';
import type { DatasetProgress, FrozenWeightsSettings, LoraSettings } from '../../src/engine/types';
import { parseConfig } from '../../src/model/config';
import { parseSafetensors } from '../../src/model/safetensors';
import { estimateCost } from '../../src/ui/cost';
import { argmax } from '../../src/generate/sampling';
import { exportVirtual, standardNormal, virtualShape, virtualWidth } from '../../src/lora/virtual';
import { type RefLoraModule, type RefVirtual, modelForwardRef, modelLogitsRef } from '../../src/reference/model';
import { type TinyModelType, writeTinyModel, tinyCorpusJsonl } from '../fixtures/tiny-model';
import { getGpu } from '../helpers/gpu';
import { useTinyModelDirs } from '../helpers/tiny-dirs';
import { TINY_TRAIN, tinyEngine } from '../helpers/tiny-engine';
import { tinyGpuModel } from '../helpers/tiny-gpu-model';

const dirs = useTinyModelDirs('tabtune-engine-', ['llama', 'gpt2', 'qwen3', 'mistral', 'qwen2'], {
  dtype: 'BF16',
  seed: 1,
});

const DATA = tinyCorpusJsonl();

const LORA: LoraSettings = { r: 8, lora_alpha: 16, lora_dropout: 0, target_modules: 'all-linear', use_rslora: false };
const TRAIN = TINY_TRAIN;

const engineWith = (type: TinyModelType, frozen: FrozenWeightsSettings = {}) => tinyEngine(dirs, type, frozen);

describe('engine', () => {
  for (const type of ['llama', 'gpt2'] as const) {
    it(`${type}: training lowers the loss substantially and the same seed gives the same adapter`, async () => {
      const engine = await engineWith(type);
      try {
        const a = await engine.train(LORA, TRAIN);
        const losses = a.history.map((h) => h.loss).filter((l): l is number => l !== null);
        expect(losses.length).toBe(TRAIN.steps);
        const first = losses[0]!;
        const last = losses.slice(-3).reduce((x, y) => x + y, 0) / 3;
        expect(last).toBeLessThan(0.6 * first);
        const b = await engine.train(LORA, TRAIN);
        expect(Buffer.from(b.adapter.adapterModel).equals(Buffer.from(a.adapter.adapterModel))).toBe(true);
        expect(b.adapter.adapterConfig).toBe(a.adapter.adapterConfig);
        // the adapter reached the files: B is no longer zero
        const st = parseSafetensors(a.adapter.adapterModel);
        const bKey = [...st.tensors.keys()].find((k) => k.endsWith('lora_B.weight'))!;
        expect(new Float32Array(st.tensors.get(bKey)!.data.slice().buffer).some((v) => v !== 0)).toBe(true);
        // evaluation with the adapter beats the base model on the training text
        await engine.loadDataset('corpus.jsonl', DATA, { maxLen: TRAIN.maxLen, valFraction: 0, seed: 0 });
        const base = await engine.evaluate(null, 'all');
        const tuned = await engine.evaluate({ key: 'a', files: a.adapter }, 'all');
        expect(tuned.tokens).toBe(base.tokens);
        expect(tuned.loss).toBeLessThan(base.loss);
        // evaluate keeps its runner: again, base and adapter make no bind groups and the same
        // losses; forgetting the adapter frees it, and a fresh one gives the same loss too
        const groups = engine.gpu.counters.bindGroups;
        expect([
          await engine.evaluate(null, 'all'),
          await engine.evaluate({ key: 'a', files: a.adapter }, 'all'),
        ]).toEqual([base, tuned]);
        expect(engine.gpu.counters.bindGroups).toBe(groups);
        engine.forgetAdapter('a');
        expect(await engine.evaluate({ key: 'a', files: a.adapter }, 'all')).toEqual(tuned);
      } finally {
        engine.unload();
      }
    });
  }

  for (const type of ['llama', 'gpt2'] as const) {
    it(`${type}: packed batches give the same losses and adapter as unpacked ones`, async () => {
      const engine = await engineWith(type);
      try {
        // Lines of very different lengths, 5 per micro-batch, 2 micro-batches per step.
        const settings = { ...TRAIN, steps: 4, batch: 5, gradAccum: 2, lr: 5e-3 };
        const steps: number[] = [];
        const padded = await engine.train(LORA, settings);
        const packed = await engine.train(
          LORA,
          { ...settings, packing: true },
          {
            onProgress: (p) => void steps.push(p.step),
          },
        );
        expect(steps).toEqual([1, 2, 3, 4]);
        expect(packed.tokens).toBe(padded.tokens);
        const lossesOf = (r: typeof padded) => r.history.map((h) => h.loss!);
        expect(lossesOf(packed).length).toBe(4);
        lossesOf(packed).forEach((l, i) => expect(Math.abs(l - lossesOf(padded)[i]!) / l).toBeLessThan(2e-5));
        // The trained adapters agree too (the gradients are the same).
        const weights = (r: typeof padded) => {
          const st = parseSafetensors(r.adapter.adapterModel);
          return [...st.tensors.keys()].sort().map((k) => new Float32Array(st.tensors.get(k)!.data.slice().buffer));
        };
        const [a, b] = [weights(padded), weights(packed)];
        let maxDiff = 0;
        let maxAbs = 0;
        a.forEach((t, i) =>
          t.forEach((v, j) => {
            maxDiff = Math.max(maxDiff, Math.abs(v - b[i]![j]!));
            maxAbs = Math.max(maxAbs, Math.abs(v));
          }),
        );
        expect(maxDiff).toBeLessThan(1e-3 * maxAbs);
      } finally {
        engine.unload();
      }
    });
  }

  it('packing gives the unpacked loss in the families whose attention or positions differ', async () => {
    // sliding window, ALiBi (by key position: a constant per query within an example), learned
    // positions with an offset
    const cases: { type: TinyModelType; overrides?: Record<string, unknown> }[] = [
      { type: 'mistral', overrides: { sliding_window: 4 } },
      { type: 'bloom' },
      { type: 'opt' },
    ];
    for (const c of cases) {
      const path = join(dirs.root(), `packing-${c.type}`);
      await writeTinyModel(path, { modelType: c.type, seed: 2, overrides: c.overrides });
      const engine = new Engine(await getGpu());
      try {
        await engine.loadModel({ kind: 'dir', id: c.type, path });
        await engine.loadDataset('corpus.jsonl', DATA, { maxLen: TRAIN.maxLen, valFraction: 0, seed: 0 });
        const settings = { ...TRAIN, steps: 1, batch: 6, shuffle: false };
        const plain = await engine.train(LORA, settings);
        const packed = await engine.train(LORA, { ...settings, packing: true });
        const [a, b] = [plain.history[0]!.loss!, packed.history[0]!.loss!];
        expect(Math.abs(a - b) / a, `${c.type}: ${a} unpacked vs ${b} packed`).toBeLessThan(2e-5);
      } finally {
        engine.unload();
      }
    }
  });

  it('resuming from a checkpoint ends exactly where the uninterrupted run ends', async () => {
    const engine = await engineWith('llama');
    try {
      const settings = { ...TRAIN, steps: 8, checkpointEvery: 3, shuffle: true, lora_dropout: 0.1 };
      const lora = { ...LORA, lora_dropout: 0.1 };
      const blobs: { step: number; blob: Uint8Array }[] = [];
      const full = await engine.train(lora, settings, {
        onCheckpoint: (blob, step) => void blobs.push({ step, blob }),
      });
      expect(blobs.map((b) => b.step)).toEqual([3, 6, 8]);
      const resumed = await engine.train(lora, settings, { resumeFrom: blobs[1]!.blob });
      expect(resumed.steps).toBe(8);
      expect(Buffer.from(resumed.adapter.adapterModel).equals(Buffer.from(full.adapter.adapterModel))).toBe(true);
      // --init-from: continuing from the trained adapter keeps its r/alpha/targets
      const cont = await engine.train(
        { ...LORA, r: 2 },
        { ...settings, steps: 2, checkpointEvery: 0 },
        { initFrom: full.adapter },
      );
      expect(JSON.parse(cont.adapter.adapterConfig).r).toBe(8);
    } finally {
      engine.unload();
    }
  });

  it('a diverging run stops with what happened and what to change, and writes no checkpoint after it', async () => {
    const engine = await engineWith('llama');
    try {
      // AdamW moves each weight by about lr per step whatever the gradient: 1e30 overflows the
      // next forward (B was zero, so step 1's loss is still finite).
      const settings = { ...TRAIN, steps: 6, lr: 1e30, maxGradNorm: 0, checkpointEvery: 1 };
      const saved: number[] = [];
      const run = engine.train(LORA, settings, { onCheckpoint: (_blob, step) => void saved.push(step) });
      await expect(run).rejects.toThrow(
        /^Training diverged at step 2: the training loss is (NaN|-?Infinity)\. .*lower learning rate \(now 1e\+30\)/,
      );
      expect(saved).toEqual([1]);
      // The engine is usable again afterwards.
      const ok = await engine.train(LORA, { ...TRAIN, steps: 2 });
      expect(ok.steps).toBe(2);
      expect(Number.isFinite(ok.finalLoss)).toBe(true);
    } finally {
      engine.unload();
    }
  });

  it('greedy generation with an adapter matches the float64 reference token by token (qwen3)', async () => {
    const gpu = await getGpu();
    const engine = await engineWith('qwen3');
    try {
      const trained = await engine.train(LORA, { ...TRAIN, steps: 10 });
      const prompt = 'The cat';
      const out = await engine.generate(
        prompt,
        { key: 't', files: trained.adapter },
        {
          maxNewTokens: 6,
          temperature: 0,
          topK: 0,
          topP: 1,
          seed: 0,
          repetitionPenalty: 1,
          chat: false,
        },
      );
      expect(out.tokens).toBeGreaterThan(0);
      // reference: the same model and adapter in float64, argmax at each step
      const tiny = await tinyGpuModel(gpu, { modelType: 'qwen3', dtype: 'BF16', seed: 1 });
      tiny.model.dispose();
      expect(out.text).toBe((await referenceGreedy(tiny, trained.adapter, prompt, 6)).text);
    } finally {
      engine.unload();
    }
  });

  it('greedy generation with a prefix on a sliding-window model matches the reference, ids past the tokenizer included (mistral)', async () => {
    // PEFT passes the prefix as past_key_values at cache positions 0..P-1, so with a window shorter
    // than prefix + prompt + reply the prefix falls out of the later tokens' windows; and a greedy id
    // may be an LM-head row past the tokenizer's vocabulary (config vocab_size 320, tokenizer 299),
    // which transformers' generate() picks like any other.
    const gpu = await getGpu();
    const o = { modelType: 'mistral' as const, overrides: { sliding_window: 4 }, seed: 1 };
    const path = join(dirs.root(), 'mistral-window4');
    await writeTinyModel(path, o);
    const tiny = await tinyGpuModel(gpu, o);
    tiny.model.dispose();
    const c = tiny.loaded.config;
    const P = 3;
    const shape = virtualShape('prefix', c);
    const adapter = exportVirtual({
      config: { ...shape, num_virtual_tokens: P, prefix_projection: false, encoder_hidden_size: c.hiddenSize },
      kind: 'prefix',
      baseModel: 'tiny-mistral-window4',
      table: standardNormal(P * virtualWidth('prefix', shape), 10), // as PEFT initialises a prefix: N(0, 1)
    });
    const steps = 8;
    const ref = await referenceGreedy(tiny, adapter, 'The cat', steps);
    const window = Math.min(...c.layers.map((l) => l.window ?? Infinity));
    expect(window).toBe(4);
    expect(P + 2 + ref.ids.length, 'prefix + prompt + reply outgrow the window').toBeGreaterThan(window + 4);
    expect(
      ref.ids.filter((id) => id >= ref.tokenizerVocab).length,
      `reference ids ${ref.ids.join(',')}`,
    ).toBeGreaterThan(0);
    const engine = new Engine(gpu);
    try {
      await engine.loadModel({ kind: 'dir', id: 'tiny-mistral-window4', path });
      const out = await engine.generate(
        'The cat',
        { key: 'prefix', files: adapter },
        { maxNewTokens: steps, temperature: 0, topK: 0, topP: 1, seed: 0, repetitionPenalty: 1, chat: false },
      );
      expect(out.promptTokens).toBe(2);
      expect(out.tokens).toBe(ref.ids.length);
      expect(out.text).toBe(ref.text);
    } finally {
      engine.unload();
    }
  });
});

/**
 * Greedy tokens of the float64 reference model (its weights as `tiny.ref` gives them) with a PEFT
 * adapter: LoRA, or prompt / prefix tuning (its P virtual rows at positions 0..P-1, before the
 * prompt). As transformers' generate() does, every row of the LM head is a candidate, also the
 * ids past the tokenizer's vocabulary (they decode to no text).
 */
async function referenceGreedy(
  tiny: Awaited<ReturnType<typeof tinyGpuModel>>,
  adapter: { adapterConfig: string; adapterModel: Uint8Array },
  prompt: string,
  steps: number,
): Promise<{ text: string; ids: number[]; tokenizerVocab: number }> {
  const { importPeft } = await import('../../src/lora/peft-import');
  const { loraScaleInfo } = await import('../../src/lora/config');
  const { importVirtual } = await import('../../src/lora/virtual');
  const peftType = (JSON.parse(adapter.adapterConfig) as { peft_type: string }).peft_type;
  const lm = new Map<string, RefLoraModule>();
  let virtual: RefVirtual | null = null;
  if (peftType === 'PREFIX_TUNING' || peftType === 'PROMPT_TUNING') {
    const v = importVirtual(adapter, tiny.loaded.config);
    virtual = { kind: v.kind, P: v.config.num_virtual_tokens, table: Float64Array.from(v.table) };
  } else {
    const imp = importPeft(
      adapter,
      tiny.loaded.arch.layers.flatMap((l) => l.linears),
    );
    for (const m of imp.modules) {
      const s = loraScaleInfo(imp.config, m);
      lm.set(m.path, {
        a: Float64Array.from(m.a),
        b: Float64Array.from(m.b),
        r: s.r,
        scale: s.scale,
        dropout: 0,
        seed: 0,
      });
    }
  }
  const { createTokenizer } = await import('../../src/model/tokenizer');
  const tok = await createTokenizer(tiny.loaded.tokenizerJson, tiny.loaded.tokenizerConfig, tiny.loaded.config);
  const head = new Array<number>(virtual?.P ?? 0).fill(0);
  const ids = [...head, ...tok.encode(prompt, { addSpecialTokens: true })];
  const refIds: number[] = [];
  for (let i = 0; i < steps; i++) {
    const seq = [...ids, ...refIds];
    const T = seq.length;
    const batch = {
      B: 1,
      S: T,
      ids: seq,
      positions: seq.map((_, j) => j),
      targets: new Array(T).fill(0xffffffff),
      virtual,
    };
    const fwd = modelForwardRef(tiny.ref, lm, batch);
    const logits = modelLogitsRef(tiny.ref, fwd, T);
    const next = argmax(logits.subarray((T - 1) * tiny.ref.config.vocabSize));
    if (tok.eosTokenIds.includes(next)) break;
    refIds.push(next);
  }
  return { text: tok.decode(refIds, { skipSpecialTokens: true }), ids: refIds, tokenizerVocab: tok.vocabSize };
}

describe('engine: QLoRA (4-bit NF4 frozen weights)', () => {
  for (const type of ['llama', 'mistral', 'qwen2', 'qwen3', 'gpt2'] as const) {
    const frozen: FrozenWeightsSettings = { quantize: 'nf4', doubleQuant: type !== 'mistral' };
    it(`${type}: training lowers the loss, the adapter beats the base in eval, greedy generation matches the reference`, async () => {
      const gpu = await getGpu();
      const engine = await engineWith(type, frozen);
      try {
        const info = engine.modelInfo();
        expect(info.quantization).toMatchObject({ format: 'nf4', doubleQuant: frozen.doubleQuant, source: 'load' });
        const run = await engine.train(LORA, { ...TRAIN, steps: 40 });
        const losses = run.history.map((h) => h.loss).filter((l): l is number => l !== null);
        expect(losses.slice(-3).reduce((x, y) => x + y, 0) / 3).toBeLessThan(0.85 * losses[0]!);
        const base = await engine.evaluate(null, 'all');
        const tuned = await engine.evaluate({ key: 'q', files: run.adapter }, 'all');
        expect(tuned.loss).toBeLessThan(base.loss);
        const sampling = {
          maxNewTokens: 4,
          temperature: 0,
          topK: 0,
          topP: 1,
          seed: 0,
          repetitionPenalty: 1,
          chat: false,
        };
        const out = await engine.generate('The cat', { key: 'q', files: run.adapter }, sampling);
        const tiny = await tinyGpuModel(gpu, { modelType: type, dtype: 'BF16', seed: 1 }, frozen);
        tiny.model.dispose();
        expect(out.text).toBe((await referenceGreedy(tiny, run.adapter, 'The cat', out.tokens)).text);
      } finally {
        engine.unload();
      }
    });
  }

  it('a checkpoint resumes only on the frozen weights it was trained on; a failed load keeps the model', async () => {
    const engine = await engineWith('llama', { quantize: 'nf4' });
    try {
      const blobs: Uint8Array[] = [];
      await engine.train(LORA, { ...TRAIN, steps: 2, checkpointEvery: 1 }, { onCheckpoint: (b) => void blobs.push(b) });
      await engine.loadModel({ kind: 'dir', id: 'tiny-llama', path: dirs.path('llama') });
      expect(engine.modelInfo().quantization).toBeNull();
      await engine.loadDataset('corpus.jsonl', DATA, { maxLen: TRAIN.maxLen, valFraction: 0, seed: 0 });
      await expect(engine.train(LORA, { ...TRAIN, steps: 2 }, { resumeFrom: blobs[0] })).rejects.toThrow(
        'The checkpoint was trained on 4-bit NF4 (double quantization) frozen weights, but the model is loaded with ' +
          '16-bit (as stored) ones; load it the same way to resume (CLI: --quantize nf4).',
      );
      await expect(
        engine.loadModel({ kind: 'dir', id: 'other', path: join(dirs.root(), 'missing') }, undefined, {
          quantize: 'nf4',
        }),
      ).rejects.toThrow();
      expect(engine.modelInfo().id).toBe('tiny-llama');
    } finally {
      engine.unload();
    }
  });
});

describe('engine: dataset summary and estimates', () => {
  it('reports bad records with line numbers, splits validation, previews counted tokens', async () => {
    const engine = new Engine(await getGpu());
    try {
      await engine.loadModel({ kind: 'dir', id: 'tiny-llama', path: dirs.path('llama') });
      const content = [
        JSON.stringify({ instruction: 'Say hi', input: '', output: 'Hi there.' }),
        '{"instruction": "oops"',
        JSON.stringify({ instruction: 'Name a color', input: '', output: 'Blue.' }),
        JSON.stringify({ instruction: 'Count', input: 'to three', output: 'One, two, three.' }),
        JSON.stringify({ instruction: 'Empty answer', input: '', output: '' }),
      ].join('\n');
      const ds = await engine.loadDataset('qa.jsonl', content, { maxLen: 64, valFraction: 0.34, seed: 1 });
      expect(ds.format).toBe('alpaca');
      expect(ds.issues.map((i) => i.line)).toContain(2);
      expect(ds.issues.find((i) => i.line === 2)!.message.length).toBeGreaterThan(5);
      expect(ds.trainRecords + ds.valRecords).toBe(3);
      expect(ds.valRecords).toBeGreaterThanOrEqual(1);
      const p = ds.preview[0]!;
      expect(p.countedTokens).toBeGreaterThan(0);
      expect(p.countedTokens).toBeLessThan(p.tokens); // the prompt does not count
      expect(p.pieces.some((x) => x.counted) && p.pieces.some((x) => !x.counted)).toBe(true);
      await expect(
        engine.loadDataset('bad.jsonl', '{"nope": 1}\n', { maxLen: 64, valFraction: 0, seed: 1 }),
      ).rejects.toThrow(/bad\.jsonl/);
    } finally {
      engine.unload();
    }
  });

  it('sends an early summary (first records previewed, counts so far) before the final one', async () => {
    const engine = new Engine(await getGpu());
    try {
      await engine.loadModel({ kind: 'dir', id: 'tiny-llama', path: dirs.path('llama') });
      const content = Array.from({ length: 50 }, (_, i) =>
        i === 3 ? '{"bad"' : JSON.stringify({ instruction: `Say ${i}`, input: '', output: `Hi ${i}.` }),
      ).join('\n');
      const early: DatasetProgress[] = [];
      let ended = false;
      let late = 0;
      const ds = await engine.loadDataset(
        'qa.jsonl',
        new Blob([content]),
        { maxLen: 64, valFraction: 0.1, seed: 1, previewCount: 8 },
        (p) => {
          if (p.provisional) early.push(p);
          if (ended) late++;
        },
      );
      ended = true;
      await new Promise((r) => setTimeout(r, 10));
      expect(late).toBe(0);
      expect(early.length).toBeGreaterThan(0);
      const p = early[0]!.provisional!;
      expect(early[0]!.phase).toBe('scan');
      expect(p.preview.length).toBeGreaterThan(0);
      expect(p.preview).toEqual(ds.preview.slice(0, p.preview.length));
      expect(p.records).toBeLessThanOrEqual(ds.records);
      expect(p.issueCount).toBeLessThanOrEqual(ds.issueCount);
      expect(p.issues[0]!.line).toBe(4);
      expect(p.bytesTotal).toBe(content.length);
    } finally {
      engine.unload();
    }
  });

  it('reads an uploaded file by range, and only once when just the settings change', async () => {
    /** A File that records the byte ranges read from it. */
    class CountingFile extends File {
      reads: [number, number][] = [];
      override slice(start?: number, end?: number, type?: string): Blob {
        this.reads.push([start ?? 0, end ?? this.size]);
        return super.slice(start, end, type);
      }
    }
    const lines = Array.from({ length: 3000 }, (_, i) =>
      JSON.stringify({ instruction: `Say ${i}`, input: '', output: `Number ${i}.` }),
    );
    const upload = () => new CountingFile([lines.join('\n')], 'big.jsonl', { lastModified: 1234 });
    const engine = new Engine(await getGpu());
    try {
      await engine.loadModel({ kind: 'dir', id: 'tiny-llama', path: dirs.path('llama') });
      const progress: string[] = [];
      const first = upload();
      const a = await engine.loadDataset('big.jsonl', first, { maxLen: 64, valFraction: 0.1, seed: 1 }, (p) =>
        progress.push(p.phase),
      );
      expect(a).toMatchObject({ records: 3000, trainRecords: 2700, valRecords: 300, tokensEstimated: true });
      expect(progress).toContain('scan');
      const head = Math.min(first.size, 1 << 20);
      // A 25-byte probe for Parquet's magic number (or a bundle of shards) comes first; then the index pass starts at the head.
      expect(first.reads[0]).toEqual([0, 25]);
      expect(first.reads[1]).toEqual([0, head]);
      // The same file again (a fresh clone, as the worker receives it) with another max length and seed.
      const second = upload();
      const b = await engine.loadDataset('big.jsonl', second, { maxLen: 48, valFraction: 0.1, seed: 2 });
      expect(b).toMatchObject({ records: 3000, trainRecords: 2700 });
      expect(second.reads.some(([s, e]) => s === 0 && e === head)).toBe(false);
      expect(second.reads.length).toBeLessThan(70); // the 64-record sample, no pass over the file
      const r = await engine.train(LORA, { ...TRAIN, maxLen: 48, steps: 1, epochs: 0, valFraction: 0.1 });
      expect(r.steps).toBe(1);
    } finally {
      engine.unload();
    }
  });

  it("refuses a max length past the model's positions (GPT-2 has no positions to read there)", async () => {
    const engine = new Engine(await getGpu());
    try {
      const info = await engine.loadModel({ kind: 'dir', id: 'tiny-gpt2', path: dirs.path('gpt2') });
      expect(info.maxPositions).toBeGreaterThan(0);
      const ok = await engine.loadDataset('corpus.jsonl', DATA, { maxLen: info.maxPositions, valFraction: 0, seed: 0 });
      expect(ok.trainRecords).toBeGreaterThan(0);
      await expect(
        engine.loadDataset('corpus.jsonl', DATA, { maxLen: info.maxPositions + 1, valFraction: 0, seed: 0 }),
      ).rejects.toThrow(
        new RegExp(
          `Max sequence length ${info.maxPositions + 1} is longer than tiny-gpt2 allows \\(n_positions = ${info.maxPositions} in config\\.json\\)`,
        ),
      );
    } finally {
      engine.unload();
    }
  });

  it('estimates trainable parameters like PEFT and less activation memory with checkpointing', async () => {
    const engine = new Engine(await getGpu());
    try {
      const info = await engine.loadModel({ kind: 'dir', id: 'tiny-llama', path: dirs.path('llama') });
      expect(info.defaultTargets).toEqual(['q_proj', 'v_proj']);
      expect(info.linearModules).toEqual(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
      await engine.loadDataset('corpus.jsonl', DATA, { maxLen: 32, valFraction: 0, seed: 0 });
      const lora = { ...LORA, target_modules: ['q_proj', 'v_proj'] };
      const est = await engine.estimate(lora, TRAIN);
      const c = { H: 24, q: 24, kv: 8, layers: 2 }; // tiny llama: hidden 24, 3 heads / 1 kv head of 8
      expect(est.trainableParams).toBe(c.layers * LORA.r * (c.H + c.q + c.H + c.kv));
      expect(est.trainablePercent).toBeCloseTo(
        (100 * est.trainableParams) / (est.totalParams + est.trainableParams),
        10,
      );
      expect(est.blocker).toBeNull();
      // The app's cost card, from config.json alone before the download, counts the same.
      const config = parseConfig(await readFile(join(dirs.path('llama'), 'config.json')));
      const card = estimateCost(config, lora, TRAIN, null);
      expect([card.trainableParams, card.loraBytes, card.activationBytes]).toEqual([
        est.trainableParams,
        est.loraBytes,
        est.activationBytes,
      ]);
      const ck = await engine.estimate(lora, { ...TRAIN, activationCheckpointing: true });
      expect(ck.activationBytes).toBeLessThan(est.activationBytes);
      await expect(engine.estimate({ ...LORA, target_modules: ['nope_proj'] }, TRAIN)).rejects.toThrow(/nope_proj/);
    } finally {
      engine.unload();
    }
  });
});
