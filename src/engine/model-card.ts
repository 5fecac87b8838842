/**
 * The model card (README.md) of an adapter pushed to the Hugging Face Hub, with the YAML metadata
 * PEFT's own cards carry (base_model, library_name: peft, pipeline_tag, tags with
 * "base_model:adapter:<base>" and the method), the dataset, the settings, the final losses and the
 * loss plot, and a PNG of that plot drawn here (training loss in blue, validation in orange; no
 * fonts, so the card's text gives the numbers). Pure functions: the CLI and the app both push what
 * they return (hub-push.ts).
 */

import { zlibSync } from 'fflate';
import { hubIdProblem } from '../model/source';
import type { TrainSettings } from '../train/types';

export interface CardHistoryPoint {
  step: number;
  loss: number | null;
  valLoss: number | null;
}

/** What is known of the run that trained the adapter (absent for an adapter without its run). */
export interface CardRun {
  datasetName: string | null;
  train: TrainSettings | null;
  finalLoss: number | null;
  finalValLoss: number | null;
  steps: number | null;
  seconds: number | null;
  history: CardHistoryPoint[];
}

export interface CardInput {
  /** The repo it is pushed to ("owner/name"). */
  repo: string;
  /** adapter_config.json's text. */
  adapterConfig: string;
  run: CardRun | null;
  /** Whether loss.png is pushed beside the card. */
  plot: boolean;
}

/** The file name of the plot in the repo. */
export const LOSS_PLOT = 'loss.png';

/** The Hub dataset a dataset name came from ("owner/name/data/train.parquet" -> "owner/name"), or null. */
export function hubDatasetOf(name: string | null): string | null {
  const parts = name?.split('/') ?? [];
  if (parts.length < 3) return null;
  const id = `${parts[0]}/${parts[1]}`;
  return hubIdProblem(id) ? null : id;
}

function yamlString(s: string): string {
  return /^[\w./:-]+$/.test(s) && !/^(true|false|null|yes|no|[\d.]+)$/i.test(s) ? s : JSON.stringify(s);
}

function num(x: number | null | undefined, digits = 4): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(digits);
}

function duration(seconds: number): string {
  const s = Math.round(seconds);
  return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${(s / 3600).toFixed(1)} h`;
}

/** README.md for the adapter's repo. */
export function modelCard(input: CardInput): string {
  const cfg = JSON.parse(input.adapterConfig) as Record<string, unknown>;
  const base = typeof cfg.base_model_name_or_path === 'string' ? cfg.base_model_name_or_path : null;
  const method = typeof cfg.peft_type === 'string' ? cfg.peft_type.toLowerCase() : 'lora';
  const dataset = hubDatasetOf(input.run?.datasetName ?? null);
  const baseOnHub = base !== null && hubIdProblem(base) === null;
  const tags = [...(baseOnHub ? [`base_model:adapter:${base}`] : []), method, 'peft', 'tabtune'];
  const yaml = [
    '---',
    ...(baseOnHub ? [`base_model: ${yamlString(base)}`] : []),
    'library_name: peft',
    'pipeline_tag: text-generation',
    'tags:',
    ...tags.map((t) => `- ${yamlString(t)}`),
    ...(dataset ? ['datasets:', `- ${yamlString(dataset)}`] : []),
    '---',
  ];
  const name = input.repo.split('/').pop()!;
  const baseLink = base ? (baseOnHub ? `[${base}](https://huggingface.co/${base})` : `\`${base}\``) : 'its base model';
  const lines = [
    ...yaml,
    '',
    `# ${name}`,
    '',
    `A ${method === 'lora' ? 'LoRA' : method} adapter for ${baseLink}, trained with Tabtune (LoRA fine-tuning on WebGPU, in a browser tab or from the command line). It is a PEFT adapter: \`adapter_config.json\` and \`adapter_model.safetensors\`.`,
    '',
    '## Training',
    '',
  ];
  const run = input.run;
  const rows: [string, string][] = [];
  if (run?.datasetName)
    rows.push([
      'Dataset',
      dataset ? `[${run.datasetName}](https://huggingface.co/datasets/${dataset})` : run.datasetName,
    ]);
  rows.push(['Method', method]);
  for (const [key, label] of [
    ['r', 'Rank (r)'],
    ['lora_alpha', 'Alpha'],
    ['lora_dropout', 'Dropout'],
    ['use_rslora', 'rsLoRA'],
  ] as const)
    if (cfg[key] !== undefined) rows.push([label, String(cfg[key])]);
  if (cfg.target_modules !== undefined)
    rows.push([
      'Target modules',
      Array.isArray(cfg.target_modules) ? cfg.target_modules.join(', ') : String(cfg.target_modules),
    ]);
  const t = run?.train;
  if (t) {
    rows.push(
      ['Learning rate', String(t.lr)],
      ['Optimizer', t.optimizer],
      ['Scheduler', `${t.scheduler}, ${t.warmup} warmup steps`],
    );
    rows.push(['Batch', `${t.batch} × ${t.gradAccum} accumulation`], ['Max length', String(t.maxLen)]);
    rows.push(
      ['Weight decay', String(t.weightDecay)],
      ['Max grad norm', String(t.maxGradNorm)],
      ['Seed', String(t.seed)],
    );
    if (t.packing) rows.push(['Packing', 'yes']);
  }
  if (run?.steps !== null && run?.steps !== undefined) rows.push(['Steps', String(run.steps)]);
  if (run?.seconds) rows.push(['Training time', duration(run.seconds)]);
  if (run) {
    rows.push(['Final training loss', num(run.finalLoss)]);
    if (run.finalValLoss !== null) rows.push(['Final validation loss', num(run.finalValLoss)]);
  }
  lines.push('| | |', '| --- | --- |', ...rows.map(([k, v]) => `| ${k} | ${v.replace(/\|/g, '\\|')} |`), '');
  if (!run) lines.push('The run that trained it is not known here (an adapter without its training log).', '');
  if (input.plot)
    lines.push(
      `![Loss over training steps](${LOSS_PLOT})`,
      '',
      'Loss over the training steps: training in blue, validation in orange.',
      '',
    );
  lines.push(
    '## Use',
    '',
    '```python',
    'from peft import PeftModel',
    'from transformers import AutoModelForCausalLM, AutoTokenizer',
    '',
    `base = AutoModelForCausalLM.from_pretrained(${JSON.stringify(base ?? 'BASE_MODEL')})`,
    `model = PeftModel.from_pretrained(base, ${JSON.stringify(input.repo)})`,
    `tokenizer = AutoTokenizer.from_pretrained(${JSON.stringify(base ?? 'BASE_MODEL')})`,
    '```',
    '',
  );
  return lines.join('\n');
}

// ------------------------------------------------------------------ the loss plot

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  v.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** An RGB image as PNG (8-bit truecolour, no interlace). */
export function encodePng(width: number, height: number, rgb: Uint8Array): Uint8Array {
  const raw = new Uint8Array(height * (1 + width * 3));
  for (let y = 0; y < height; y++) raw.set(rgb.subarray(y * width * 3, (y + 1) * width * 3), y * (1 + width * 3) + 1);
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, width);
  v.setUint32(4, height);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const parts = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlibSync(raw)),
    chunk('IEND', new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * The loss curves as a PNG (`width` x `height`): a frame, faint horizontal grid lines, training
 * loss in blue and validation loss in orange, each over the same step and loss ranges. Null when
 * there are fewer than two points to draw.
 */
export function lossPlotPng(history: readonly CardHistoryPoint[], width = 640, height = 320): Uint8Array | null {
  const train = history.filter((h) => h.loss !== null && Number.isFinite(h.loss)).map((h) => [h.step, h.loss!]);
  const val = history.filter((h) => h.valLoss !== null && Number.isFinite(h.valLoss)).map((h) => [h.step, h.valLoss!]);
  if (train.length + val.length < 2) return null;
  const all = [...train, ...val];
  const [x0, x1] = [Math.min(...all.map((p) => p[0]!)), Math.max(...all.map((p) => p[0]!))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1]!)), Math.max(...all.map((p) => p[1]!))];
  if (y1 - y0 < 1e-9) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const rgb = new Uint8Array(width * height * 3).fill(255);
  const m = 24;
  const px = (step: number) => m + ((step - x0) / Math.max(1e-9, x1 - x0)) * (width - 2 * m);
  const py = (loss: number) => height - m - ((loss - y0) / (y1 - y0)) * (height - 2 * m);
  const set = (x: number, y: number, c: readonly number[]) => {
    const xi = Math.round(x);
    const yi = Math.round(y);
    if (xi < 0 || yi < 0 || xi >= width || yi >= height) return;
    rgb.set(c, (yi * width + xi) * 3);
  };
  const line = (ax: number, ay: number, bx: number, by: number, c: readonly number[], thick = 1) => {
    const n = Math.max(1, Math.ceil(Math.hypot(bx - ax, by - ay)));
    for (let k = 0; k <= n; k++) {
      const x = ax + ((bx - ax) * k) / n;
      const y = ay + ((by - ay) * k) / n;
      for (let d = -(thick >> 1); d <= thick >> 1; d++) {
        set(x, y + d, c);
        set(x + d, y, c);
      }
    }
  };
  for (let g = 0; g <= 4; g++) {
    const y = m + (g * (height - 2 * m)) / 4;
    line(m, y, width - m, y, [228, 228, 231]);
  }
  line(m, m, m, height - m, [113, 113, 122]);
  line(m, height - m, width - m, height - m, [113, 113, 122]);
  const curve = (pts: number[][], c: readonly number[]) => {
    if (pts.length === 1) line(px(pts[0]![0]!) - 3, py(pts[0]![1]!), px(pts[0]![0]!) + 3, py(pts[0]![1]!), c, 3);
    for (let k = 1; k < pts.length; k++)
      line(px(pts[k - 1]![0]!), py(pts[k - 1]![1]!), px(pts[k]![0]!), py(pts[k]![1]!), c, 3);
  };
  curve(train, [37, 99, 235]);
  curve(val, [234, 88, 12]);
  return encodePng(width, height, rgb);
}
