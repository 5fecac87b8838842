/**
 * `tabtune push --adapter DIR --repo owner/name [--private]`: the PEFT adapter in DIR, its model
 * card (base model, dataset, settings, final losses from the training_run.json `tabtune train`
 * writes beside the adapter) and loss plot, committed to a Hugging Face model repo, created when
 * new. HF_TOKEN is the access token (write access); HF_ENDPOINT points at another Hub.
 */

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HubPushError, pushAdapter } from '../engine/hub-push';
import type { CardRun } from '../engine/model-card';
import { type FlagSpec, UsageError, bool, parseFlags, str } from './args';
import { readAdapter } from './common';

/** The run log `tabtune train` writes beside the adapter. */
export const TRAINING_RUN = 'training_run.json';

const PUSH_FLAGS: Record<string, FlagSpec> = {
  adapter: { type: 'string', required: true },
  repo: { type: 'string', required: true },
  private: { type: 'bool' },
  json: { type: 'bool' },
};

async function readRun(dir: string): Promise<CardRun | null> {
  const path = join(dir, TRAINING_RUN);
  if (!existsSync(path)) return null;
  try {
    const run = JSON.parse(await readFile(path, 'utf8')) as CardRun;
    return Array.isArray(run.history) ? run : null;
  } catch {
    process.stderr.write(`tabtune: ${path} is not readable JSON; the model card leaves the run out\n`);
    return null;
  }
}

export async function push(argv: string[]): Promise<number> {
  const f = parseFlags(argv, PUSH_FLAGS, 'push');
  const dir = str(f, 'adapter')!;
  const repo = str(f, 'repo')!;
  const files = await readAdapter(dir);
  const run = await readRun(dir);
  if (!process.env.HF_TOKEN)
    throw new UsageError(
      'push: no access token: set HF_TOKEN to a Hugging Face token with write access (https://huggingface.co/settings/tokens).',
    );
  try {
    const r = await pushAdapter({
      repo,
      token: process.env.HF_TOKEN,
      private: bool(f, 'private') ?? false,
      files,
      run,
      hubUrl: process.env.HF_ENDPOINT || undefined,
      onPhase: (phase) => process.stderr.write(`tabtune: push: ${phase}\n`),
    });
    if (bool(f, 'json')) process.stdout.write(`${JSON.stringify(r)}\n`);
    else
      process.stdout.write(
        `${r.created ? 'created' : 'updated'} ${r.url} (${r.paths.join(', ')}${r.commit ? `; commit ${r.commit.slice(0, 10)}` : ''})\n`,
      );
    return 0;
  } catch (e) {
    if (e instanceof HubPushError && /not a valid repo name/.test(e.message))
      throw new UsageError(`push: --repo ${e.message}`);
    throw e;
  }
}
