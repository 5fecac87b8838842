/**
 * The model card of a pushed adapter (engine/model-card.ts): PEFT's YAML metadata, the dataset
 * (linked when it came from the Hub), settings, final losses, the plot; and the loss plot as a PNG
 * that decodes (chunk CRCs, size, curve pixels in the two colours).
 */
import { unzlibSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import { DEFAULT_TRAIN } from '../../src/engine/defaults';
import { type CardRun, hubDatasetOf, lossPlotPng, modelCard } from '../../src/engine/model-card';
import { pushFiles } from '../../src/engine/hub-push';

const CONFIG = JSON.stringify({
  peft_type: 'LORA',
  base_model_name_or_path: 'HuggingFaceTB/SmolLM2-135M',
  r: 8,
  lora_alpha: 16,
  lora_dropout: 0.05,
  target_modules: ['q_proj', 'v_proj'],
  use_rslora: false,
});

const RUN: CardRun = {
  datasetName: 'tiny-org/qa/data/train-00000-of-00001.parquet',
  train: { ...DEFAULT_TRAIN, lr: 2e-4, batch: 4, gradAccum: 2, maxLen: 256, seed: 42 },
  finalLoss: 1.23456,
  finalValLoss: 1.5,
  steps: 40,
  seconds: 95,
  history: Array.from({ length: 40 }, (_, i) => ({
    step: i + 1,
    loss: 3 - i * 0.05,
    valLoss: (i + 1) % 10 === 0 ? 3.1 - i * 0.04 : null,
  })),
};

/** The PNG's chunks, each CRC checked. */
function chunks(png: Uint8Array): Map<string, Uint8Array> {
  expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const out = new Map<string, Uint8Array>();
  const v = new DataView(png.buffer, png.byteOffset);
  for (let at = 8; at < png.length;) {
    const len = v.getUint32(at);
    const type = new TextDecoder().decode(png.subarray(at + 4, at + 8));
    let c = 0xffffffff;
    for (const b of png.subarray(at + 4, at + 8 + len)) {
      c ^= b;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    }
    expect((c ^ 0xffffffff) >>> 0, `${type} CRC`).toBe(v.getUint32(at + 8 + len));
    out.set(type, png.subarray(at + 8, at + 8 + len));
    at += 12 + len;
  }
  return out;
}

describe('model card', () => {
  it('carries the metadata PEFT and the Hub read, the dataset, settings, losses and the plot', () => {
    const card = modelCard({ repo: 'me/smol-qa', adapterConfig: CONFIG, run: RUN, plot: true });
    const yaml = card.split('---')[1]!;
    expect(yaml).toContain('base_model: HuggingFaceTB/SmolLM2-135M\n');
    expect(yaml).toContain('library_name: peft\n');
    expect(yaml).toContain('pipeline_tag: text-generation\n');
    expect(yaml).toContain('tags:\n- base_model:adapter:HuggingFaceTB/SmolLM2-135M\n- lora\n- peft\n- tabtune\n');
    expect(yaml).toContain('datasets:\n- tiny-org/qa\n');
    expect(card).toContain('# smol-qa');
    expect(card).toContain(
      '| Dataset | [tiny-org/qa/data/train-00000-of-00001.parquet](https://huggingface.co/datasets/tiny-org/qa) |',
    );
    expect(card).toContain('| Rank (r) | 8 |');
    expect(card).toContain('| Alpha | 16 |');
    expect(card).toContain('| Target modules | q_proj, v_proj |');
    expect(card).toContain('| Learning rate | 0.0002 |');
    expect(card).toContain('| Batch | 4 × 2 accumulation |');
    expect(card).toContain('| Steps | 40 |');
    expect(card).toContain('| Training time | 1 min 35 s |');
    expect(card).toContain('| Final training loss | 1.2346 |');
    expect(card).toContain('| Final validation loss | 1.5000 |');
    expect(card).toContain('![Loss over training steps](loss.png)');
    expect(card).toContain('PeftModel.from_pretrained(base, "me/smol-qa")');
  });

  it('names no Hub dataset for a local file, and says when the run is unknown', () => {
    expect(hubDatasetOf('train.jsonl')).toBeNull();
    expect(hubDatasetOf('a/b/c.csv')).toBe('a/b');
    const card = modelCard({ repo: 'me/x', adapterConfig: CONFIG, run: null, plot: false });
    expect(card).not.toContain('datasets:');
    expect(card).not.toContain('loss.png');
    expect(card).toContain('The run that trained it is not known here');
    expect(card).toContain('| Rank (r) | 8 |');
  });

  it('draws the loss plot as a PNG that decodes, with both curves', () => {
    const png = lossPlotPng(RUN.history, 200, 100)!;
    const c = chunks(png);
    const ihdr = new DataView(c.get('IHDR')!.buffer, c.get('IHDR')!.byteOffset);
    expect([ihdr.getUint32(0), ihdr.getUint32(4), c.get('IHDR')![8], c.get('IHDR')![9]]).toEqual([200, 100, 8, 2]);
    const raw = unzlibSync(c.get('IDAT')!);
    expect(raw.length).toBe(100 * (1 + 200 * 3));
    const colour = (r: number, g: number, b: number) => {
      let n = 0;
      for (let y = 0; y < 100; y++)
        for (let x = 0; x < 200; x++) {
          const at = y * 601 + 1 + x * 3;
          if (raw[at] === r && raw[at + 1] === g && raw[at + 2] === b) n++;
        }
      return n;
    };
    expect(colour(37, 99, 235)).toBeGreaterThan(100); // training, blue
    expect(colour(234, 88, 12)).toBeGreaterThan(50); // validation, orange
    expect(lossPlotPng([{ step: 1, loss: 2, valLoss: null }])).toBeNull();
  });

  it('pushes the PEFT files, the card and the plot', () => {
    const files = pushFiles('me/x', { adapterConfig: CONFIG, adapterModel: new Uint8Array([1, 2, 3]) }, RUN);
    expect(files.map((f) => f.path)).toEqual([
      'adapter_config.json',
      'adapter_model.safetensors',
      'README.md',
      'loss.png',
    ]);
    expect(files[1]!.content).toEqual(new Uint8Array([1, 2, 3]));
  });

  it('refuses a LoftQ adapter that carries its backbone (the push would leave the backbone behind)', () => {
    const files = { adapterConfig: CONFIG, adapterModel: new Uint8Array([1]), loftqBackbone: new Uint8Array([2]) };
    expect(() => pushFiles('me/x', files, RUN)).toThrow(
      /LoftQ adapter only works on its quantized backbone.*loftq-base/,
    );
  });
});
