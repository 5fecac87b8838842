/**
 * The merged model as one zip (the app's "Merge into model" download): the files of
 * src/lora/merge.ts under one folder, stored uncompressed (weights do not compress) and streamed:
 * each tensor's bytes go into a Blob as they are made, so the page never holds the model twice.
 */

import { Zip, ZipPassThrough } from 'fflate';
import type { ModelSource } from '../model/source';
import { type MergeOptions, type MergeSink, mergeAdapter } from '../lora/merge';

/** The zip format without its 64-bit extension (which fflate does not write) stops at 4 GiB. */
const ZIP_LIMIT = 2 ** 32 - 1;

export class MergeTooLargeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MergeTooLargeError';
  }
}

export async function mergeToZip(
  source: ModelSource,
  adapter: { adapterConfig: string | Uint8Array; adapterModel: Uint8Array },
  folder: string,
  opts: MergeOptions = {},
): Promise<{ zip: Blob; files: string[] }> {
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
      if (written > ZIP_LIMIT)
        throw new MergeTooLargeError(
          `The merged model is over 4 GiB, more than one zip can hold here; merge it with the command line instead (tabtune merge).`,
        );
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
  const r = await mergeAdapter(source, adapter, sink, opts);
  zip.end();
  flush();
  if (failed) throw failed;
  return { zip: new Blob(blobs, { type: 'application/zip' }), files: r.files };
}
