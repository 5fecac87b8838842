/**
 * The data path at scale (`tabtune bench data`): a synthetic Alpaca JSON Lines set of N records
 * read the way training reads it, next to the in-memory path it replaced, in one process.
 *
 *  - index: the one pass over the bytes (records/s, index bytes per record)
 *  - first batch: indexing + split + the first step's records tokenized (what training waits for)
 *  - tokenize: records/s of rendering + tokenizing (the lazy path and the in-memory path), and of
 *    the lazy path with its tokenizing spread over 1, 2, ... worker threads (src/train/data/pool.ts)
 *  - held tokens: bytes per record of the compact examples (typed arrays) and of the in-memory
 *    path's number[] / boolean[] examples (heap measured around them, when gc can be forced)
 */

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { nodeTokenizerWorker, tokenizerThreadCount } from '../train/data/node-threads';
import { parseConfig } from '../model/config';
import { createTokenizer } from '../model/tokenizer';
import { BatchSchedule } from '../train/batch';
import { TokenizerPool } from '../train/data/pool';
import { PreparedDataset } from '../train/data/prepared';
import { parseDataset } from '../train/data/records';
import { tokenizeRecords } from '../train/data/render';
import { scanDataset } from '../train/data/scan';
import { textSource } from '../train/data/source';
import { syntheticJsonl } from './synthetic-data';

export interface DataBenchResult {
  records: number;
  file_bytes: number;
  index_records_per_s: number;
  index_bytes_per_record: number;
  first_batch_ms: number;
  lazy_tokenize_records_per_s: number;
  /** Lazy path with k worker threads: records/s, by k. */
  pool_records_per_s: Record<string, number>;
  in_memory_records_per_s: number;
  compact_bytes_per_record: number;
  in_memory_bytes_per_record: number | null;
}

function forceGc(): (() => void) | null {
  try {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  } catch {
    return null;
  }
}

export async function benchData(opts: {
  records: number;
  /** Records tokenized for the per-record rates (both paths). */
  sample: number;
  modelDir: string;
  log: (line: string) => void;
}): Promise<DataBenchResult> {
  const { log } = opts;
  const files = {
    tokenizerJson: JSON.parse(await readFile(join(opts.modelDir, 'tokenizer.json'), 'utf8')) as object,
    tokenizerConfig: JSON.parse(await readFile(join(opts.modelDir, 'tokenizer_config.json'), 'utf8')) as object,
    config: parseConfig(JSON.parse(await readFile(join(opts.modelDir, 'config.json'), 'utf8'))),
  };
  const tok = await createTokenizer(files.tokenizerJson, files.tokenizerConfig, files.config);
  const text = syntheticJsonl(opts.records);
  const bytes = new TextEncoder().encode(text);
  log(`data: ${opts.records} synthetic Alpaca records, ${(bytes.length / 2 ** 20).toFixed(1)} MB of JSON Lines`);

  let t0 = performance.now();
  const index = await scanDataset(textSource(text), 'bench.jsonl');
  const indexMs = performance.now() - t0;
  log(
    `data index: ${Math.round(index.count / (indexMs / 1000))} records/s, ${(index.bytes / index.count).toFixed(1)} bytes/record held`,
  );

  const settings = { maxLen: 256, valFraction: 0, seed: 42, previewCount: 0 };
  t0 = performance.now();
  const data = await PreparedDataset.open(textSource(text), 'bench.jsonl', tok, settings);
  const schedule = new BatchSchedule(data.train.length, { batchSize: 4, gradAccum: 1, shuffle: true, seed: 42 });
  await data.stepBatches(schedule.next()!, { batchSize: 4, maxLen: 256 });
  const firstMs = performance.now() - t0;
  log(`data first batch: ${firstMs.toFixed(0)} ms (index, split, first step's records tokenized)`);

  // Tokenizing rates and held bytes: the lazy path on the first `sample` records, the in-memory
  // path on the next `sample`. Not the same records twice: the tokenizer keeps an LRU cache of
  // short pre-tokenized pieces, and with a Metaspace tokenizer (Llama 2's, stories260K's) a piece
  // is a whole text, so a second pass over the same records mostly hits that cache.
  const n = Math.min(opts.sample, Math.floor(index.count / 2));
  const items = [...Array(n).keys()];
  const gc = forceGc();
  t0 = performance.now();
  const compact = await data.examples(items);
  const lazyMs = performance.now() - t0;
  let compactBytes = 0;
  for (const ex of compact) compactBytes += ex.ids.byteLength + ex.counted.byteLength;

  // The same records through worker threads (started and warmed up before the clock starts).
  const poolRates: Record<string, number> = {};
  for (const k of [...new Set([1, 2, Math.max(2, tokenizerThreadCount())])]) {
    const pool = new TokenizerPool(nodeTokenizerWorker, files, k);
    try {
      const pooled = await PreparedDataset.open(textSource(text), 'bench.jsonl', tok, {
        ...settings,
        workers: () => pool,
      });
      while (!pool.ready) await new Promise((r) => setTimeout(r, 10));
      t0 = performance.now();
      await pooled.examples(items);
      poolRates[k] = n / ((performance.now() - t0) / 1000);
    } finally {
      pool.close();
    }
  }

  const sampleText = text.slice(nthNewline(text, n), nthNewline(text, 2 * n));
  // What the in-memory path's records and examples hold: the heap while they are alive, less the
  // heap once they are gone (the tokenizer's cache grows meanwhile and is in both).
  const inMemory = () => {
    const start = performance.now();
    const parsed = parseDataset('bench.jsonl', sampleText);
    const examples = tokenizeRecords(tok, parsed.records, { maxLen: 256 });
    const ms = performance.now() - start;
    gc?.();
    return { ms, heapWith: process.memoryUsage().heapUsed, count: parsed.records.length + examples.examples.length };
  };
  const { ms: oldMs, heapWith } = inMemory();
  gc?.();
  const oldBytes = gc ? Math.max(0, heapWith - process.memoryUsage().heapUsed) : null;
  const result: DataBenchResult = {
    records: index.count,
    file_bytes: bytes.length,
    index_records_per_s: index.count / (indexMs / 1000),
    index_bytes_per_record: index.bytes / index.count,
    first_batch_ms: firstMs,
    lazy_tokenize_records_per_s: n / (lazyMs / 1000),
    pool_records_per_s: poolRates,
    in_memory_records_per_s: n / (oldMs / 1000),
    compact_bytes_per_record: compactBytes / n,
    in_memory_bytes_per_record: oldBytes === null ? null : oldBytes / n,
  };
  log(
    `data tokenize (${n} records): lazy ${Math.round(result.lazy_tokenize_records_per_s)} records/s, ` +
      `in-memory path ${Math.round(result.in_memory_records_per_s)} records/s, ` +
      Object.entries(poolRates)
        .map(([k, r]) => `${k} worker thread${k === '1' ? '' : 's'} ${Math.round(r)} records/s`)
        .join(', '),
  );
  log(
    `data held tokens: compact ${result.compact_bytes_per_record.toFixed(0)} bytes/record` +
      (result.in_memory_bytes_per_record === null
        ? ''
        : `, in-memory path ${result.in_memory_bytes_per_record.toFixed(0)} bytes/record (records and examples, ` +
          `${(result.in_memory_bytes_per_record / result.compact_bytes_per_record).toFixed(1)}x)`),
  );
  return result;
}

function nthNewline(text: string, n: number): number {
  let at = 0;
  for (let k = 0; k < n; k++) {
    const nl = text.indexOf('\n', at);
    if (nl < 0) return text.length;
    at = nl + 1;
  }
  return at;
}
