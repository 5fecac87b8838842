/**
 * Pushing an adapter to the Hugging Face Hub with @huggingface/hub (the Hugging Face JS library):
 * check the token (whoAmI: a read-only token is refused before anything is sent), create the model
 * repo (public or private; one that exists is updated), then one commit with the PEFT files, the
 * model card (model-card.ts) and the loss plot. Used by `tabtune push` (hubUrl from HF_ENDPOINT)
 * and the app's adapter library (the page's fetch, so the Hub can be played in tests).
 */

import { HF_ENDPOINT, hubIdProblem } from '../model/source';
import type { PeftFiles } from '../lora/peft';
import { type CardRun, LOSS_PLOT, lossPlotPng, modelCard } from './model-card';

export class HubPushError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HubPushError';
  }
}

export interface PushOptions {
  /** "owner/name" of the model repo. */
  repo: string;
  /** A Hugging Face access token with write access. */
  token: string | null;
  private?: boolean;
  files: PeftFiles;
  run: CardRun | null;
  /** Defaults to https://huggingface.co */
  hubUrl?: string;
  fetch?: typeof fetch;
  onPhase?: (phase: string) => void;
}

export interface PushResult {
  url: string;
  /** True when the repo was made by this push. */
  created: boolean;
  commit: string | null;
  /** The paths committed. */
  paths: string[];
}

/** The README.md, loss.png and PEFT files a push commits (the plot only with two points or more). */
export function pushFiles(
  repo: string,
  files: PeftFiles,
  run: CardRun | null,
): { path: string; content: Uint8Array }[] {
  if (files.loftqBackbone) {
    throw new HubPushError(
      'A LoftQ adapter only works on its quantized backbone, which pushing the adapter alone would leave behind: ' +
        'download it with "Adapter + LoftQ backbone (.zip)" and upload that folder (adapter and loftq-base/) to the Hub instead.',
    );
  }
  const plot = run ? lossPlotPng(run.history) : null;
  const card = modelCard({ repo, adapterConfig: files.adapterConfig, run, plot: !!plot });
  const enc = new TextEncoder();
  return [
    { path: 'adapter_config.json', content: enc.encode(files.adapterConfig) },
    { path: 'adapter_model.safetensors', content: files.adapterModel },
    { path: 'README.md', content: enc.encode(card) },
    ...(plot ? [{ path: LOSS_PLOT, content: plot }] : []),
  ];
}

function statusOf(e: unknown): number | null {
  const s = (e as { statusCode?: unknown }).statusCode;
  return typeof s === 'number' ? s : null;
}

function reached(e: unknown, hubUrl: string): HubPushError {
  return new HubPushError(
    `Could not reach the Hub (${hubUrl}): ${(e as Error).message}. Check the network connection.`,
  );
}

/** Creates or updates the repo and commits the adapter, its card and plot. Errors are HubPushErrors saying what to do. */
export async function pushAdapter(o: PushOptions): Promise<PushResult> {
  const hubUrl = (o.hubUrl ?? HF_ENDPOINT).replace(/\/+$/, '');
  const problem = hubIdProblem(o.repo);
  if (problem) throw new HubPushError(`"${o.repo}" is not a valid repo name: ${problem}`);
  if (!o.token)
    throw new HubPushError(
      'Pushing to the Hub needs an access token with write access: create one at https://huggingface.co/settings/tokens (type "Write") and give it (the app: the access token in the Model step; the command line: HF_TOKEN).',
    );
  const hub = await import('@huggingface/hub');
  const creds = { accessToken: o.token, hubUrl, fetch: o.fetch };
  o.onPhase?.('checking the token');
  let who: Awaited<ReturnType<typeof hub.whoAmI>>;
  try {
    who = await hub.whoAmI(creds);
  } catch (e) {
    if (statusOf(e) === 401)
      throw new HubPushError(
        'The Hub refused the access token (HTTP 401): it is invalid or was revoked. Create a new one with write access.',
      );
    throw statusOf(e)
      ? new HubPushError(`Checking the access token failed: ${(e as Error).message}`)
      : reached(e, hubUrl);
  }
  const role = (who as { auth?: { accessToken?: { role?: string } } }).auth?.accessToken?.role;
  if (role === 'read')
    throw new HubPushError(
      `The access token of ${who.name} is read-only: pushing needs a token with write access (https://huggingface.co/settings/tokens).`,
    );
  const repo = { type: 'model' as const, name: o.repo };
  let created = true;
  o.onPhase?.('creating the repo');
  try {
    await hub.createRepo({ ...creds, repo, private: o.private ?? false });
  } catch (e) {
    const status = statusOf(e);
    if (status === 409) created = false;
    else if (status === 401 || status === 403)
      throw new HubPushError(
        `No write access to create ${o.repo} (HTTP ${status}): the token of ${who.name} cannot create repos under "${o.repo.split('/')[0]}". Use your own name or an organization the token can write to.`,
      );
    else if (status === 400 || status === 422)
      throw new HubPushError(`The Hub refused the repo name ${o.repo} (HTTP ${status}): ${(e as Error).message}`);
    else throw status ? new HubPushError(`Creating ${o.repo} failed: ${(e as Error).message}`) : reached(e, hubUrl);
  }
  const files = pushFiles(o.repo, o.files, o.run);
  o.onPhase?.('uploading');
  let commit: string | null;
  try {
    const out = await hub.uploadFiles({
      ...creds,
      repo,
      files: files.map((f) => ({ path: f.path, content: new Blob([f.content as BlobPart]) })),
      commitTitle: created ? 'Add a PEFT adapter trained with Tabtune' : 'Update the PEFT adapter (Tabtune)',
    });
    commit = out?.commit.oid ?? null;
  } catch (e) {
    const status = statusOf(e);
    if (status === 401 || status === 403)
      throw new HubPushError(
        `No write access to ${o.repo} (HTTP ${status}): the token of ${who.name} cannot write to it. Use a repo of your own or ask its owner for access.`,
      );
    throw status ? new HubPushError(`Uploading to ${o.repo} failed: ${(e as Error).message}`) : reached(e, hubUrl);
  }
  return { url: `${hubUrl}/${o.repo}`, created, commit, paths: files.map((f) => f.path) };
}
