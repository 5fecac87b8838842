/**
 * The merged model as one zip (the app's "Merge into model" download): the files of
 * src/lora/merge.ts under one folder, stored uncompressed (weights do not compress) and streamed:
 * each tensor's bytes go into a Blob as they are made, so the page never holds the model twice.
 */

import { Zip, ZipPassThrough } from 'fflate';
import type { ModelSource } from '../model/source';
import { type MergeOptions, type MergeSink, mergeAdapter, writeLoftqBackbone } from '../lora/merge';
import { decodeLoftqBackbone } from '../lora/loftq-backbone';
import { ADAPTER_CONFIG_NAME, ADAPTER_MODEL_NAME, type PeftFiles } from '../lora/peft';
import { pythonJsonDumps } from '../lora/python-json';

/** The zip format without its 64-bit extension (which fflate does not write) stops at 4 GiB. */
const ZIP_LIMIT = 2 ** 32 - 1;

export class MergeTooLargeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MergeTooLargeError';
  }
}

/** A zip made as its files are written: `sink` puts each file under `folder/`, `finish()` closes it. */
function zipWriter(folder: string, tooLarge: string): { sink: MergeSink; finish(): Blob } {
  const blobs: Blob[] = [];
  let pending: Uint8Array[] = [];
  let failed: Error | null = null;
  const zip = new Zip((err, chunk) => {
    if (err) failed = err;
    else pending.push(chunk);
  });
  // Chunks become Blobs as they come, so their arrays can go.
  const flush = () => {
    if (pending.length) blobs.push(new Blob(pending as BlobPart[]));
    pending = [];
  };
  let entry: ZipPassThrough | null = null;
  let written = 0;
  const sink: MergeSink = {
    open: async (name, size) => {
      written += size;
      if (written > ZIP_LIMIT) throw new MergeTooLargeError(tooLarge);
      entry = new ZipPassThrough(`${folder}/${name}`);
      zip.add(entry);
    },
    write: async (bytes) => {
      entry!.push(bytes.slice(), false);
      flush();
      if (failed) throw failed;
    },
    close: async () => {
      entry!.push(new Uint8Array(0), true);
      entry = null;
      flush();
    },
  };
  return {
    sink,
    finish() {
      zip.end();
      flush();
      if (failed) throw failed;
      return new Blob(blobs, { type: 'application/zip' });
    },
  };
}

export async function mergeToZip(
  source: ModelSource,
  adapter: { adapterConfig: string | Uint8Array; adapterModel: Uint8Array },
  folder: string,
  opts: MergeOptions = {},
): Promise<{ zip: Blob; files: string[] }> {
  const z = zipWriter(
    folder,
    'The merged model is over 4 GiB, more than one zip can hold here; merge it with the command line instead (tabtune merge).',
  );
  const r = await mergeAdapter(source, adapter, z.sink, opts);
  return { zip: z.finish(), files: r.files };
}

/** The folder, beside the adapter's files, that holds a LoftQ adapter's quantized backbone (as the CLI's OUT/loftq-base). */
export const LOFTQ_BASE_DIR = 'loftq-base';

/**
 * A LoftQ adapter as PEFT's LoftQ workflow keeps it (examples/loftq_finetuning): the PEFT files,
 * their base_model_name_or_path set to the backbone's folder, and under `loftq-base/` the base model
 * with every LoftQ weight replaced by its Q, as a Hugging Face model folder (sharded when large),
 * rebuilt tensor by tensor from the model's own files (src/lora/loftq-backbone.ts).
 */
export async function loftqToZip(
  source: ModelSource,
  adapter: PeftFiles & { loftqBackbone: Uint8Array },
  folder: string,
  onProgress?: (done: number, total: number) => void,
): Promise<{ zip: Blob; files: string[] }> {
  const spec = decodeLoftqBackbone(adapter.loftqBackbone);
  const z = zipWriter(
    folder,
    "The LoftQ backbone is over 4 GiB, more than one zip can hold here; train with the command line's tabtune train --init loftq instead.",
  );
  const put = async (name: string, bytes: Uint8Array) => {
    await z.sink.open(name, bytes.byteLength);
    await z.sink.write(bytes);
    await z.sink.close();
  };
  const config = adapter.adapterConfig.replace(
    `"base_model_name_or_path": ${pythonJsonDumps(spec.baseModel)}`,
    `"base_model_name_or_path": ${pythonJsonDumps(LOFTQ_BASE_DIR)}`,
  );
  await put(ADAPTER_CONFIG_NAME, new TextEncoder().encode(config));
  await put(ADAPTER_MODEL_NAME, adapter.adapterModel);
  const inner: MergeSink = { ...z.sink, open: (name, size) => z.sink.open(`${LOFTQ_BASE_DIR}/${name}`, size) };
  const files = await writeLoftqBackbone(source, spec, inner, { onProgress });
  return {
    zip: z.finish(),
    files: [ADAPTER_CONFIG_NAME, ADAPTER_MODEL_NAME, ...files.map((f) => `${LOFTQ_BASE_DIR}/${f}`)],
  };
}
