/**
 * `tabtune push` against a local server standing in for the Hub (HF_ENDPOINT): the token checked,
 * the repo created (or found, and updated), one commit holding the PEFT files, the model card
 * built from training_run.json and the loss plot, every request with the Bearer token. Errors: no
 * token, a read-only token, no write access, an invalid repo name.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeHub, type HubRequest, json, startFakeHub } from '../helpers/fake-hub';
import { type ProcResult, runCommand } from '../helpers/proc';

const ROOT = join(import.meta.dirname, '..', '..');
const TOKEN = 'hf_writeTokenForTheCliTest0123456789';
let dir = '';
let hub: FakeHub;
const existing = new Set<string>();

const CONFIG = JSON.stringify({
  peft_type: 'LORA',
  base_model_name_or_path: 'tiny-org/tiny-llama',
  r: 4,
  lora_alpha: 8,
  target_modules: ['q_proj'],
});
const WEIGHTS = new Uint8Array([7, 7, 7, 1, 2, 3]);

function run(args: string[], env: Record<string, string> = {}): Promise<ProcResult> {
  return runCommand(process.execPath, [join(ROOT, 'bin', 'tabtune.mjs'), 'push', ...args], ROOT, {
    HF_ENDPOINT: hub.url,
    HF_TOKEN: TOKEN,
    ...env,
  });
}

/** The files of a commit request (NDJSON: a header line, then one line per file). */
function committed(r: HubRequest): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const line of r.body.toString('utf8').split('\n')) {
    const o = JSON.parse(line) as { key: string; value: { path: string; content: string } };
    if (o.key === 'file') out.set(o.value.path, Buffer.from(o.value.content, 'base64'));
  }
  return out;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-push-'));
  await writeFile(join(dir, 'adapter_config.json'), CONFIG);
  await writeFile(join(dir, 'adapter_model.safetensors'), WEIGHTS);
  await writeFile(
    join(dir, 'training_run.json'),
    JSON.stringify({
      datasetName: 'qa.jsonl',
      train: null,
      finalLoss: 0.5,
      finalValLoss: null,
      steps: 3,
      seconds: 2,
      history: [1, 2, 3].map((step) => ({ step, loss: 2 / step, valLoss: null })),
    }),
  );
  hub = await startFakeHub();
  hub.on('GET', '/api/whoami-v2', (req, res) => {
    const auth = req.headers.authorization;
    if (auth === 'Bearer hf_readOnlyToken0123456789abcdef')
      return json(res, 200, {
        type: 'user',
        name: 'me',
        auth: { type: 'access_token', accessToken: { role: 'read' } },
      });
    if (auth !== `Bearer ${TOKEN}`) return json(res, 401, { error: 'Invalid credentials in Authorization header' });
    json(res, 200, { type: 'user', name: 'me', auth: { type: 'access_token', accessToken: { role: 'write' } } });
  });
  hub.on('POST', '/api/repos/create', (req, res) => {
    const body = JSON.parse(req.body.toString('utf8')) as { name: string; organization: string };
    const id = `${body.organization}/${body.name}`;
    if (body.organization !== 'me')
      return json(res, 403, { error: "You don't have the rights to create a model under this namespace" });
    if (existing.has(id)) return json(res, 409, { error: 'You already created this model repo' });
    existing.add(id);
    json(res, 200, { url: `${hub.url}/${id}`, name: id, id: 'x' });
  });
  for (const id of ['me/adapter', 'me/locked']) {
    hub.on('POST', `/api/models/${id}/preupload/main`, (req, res) => {
      const body = JSON.parse(req.body.toString('utf8')) as { files: { path: string }[] };
      json(res, 200, { files: body.files.map((f) => ({ path: f.path, uploadMode: 'regular' })) });
    });
    hub.on('POST', `/api/models/${id}/commit/main`, (_req, res) =>
      id === 'me/locked'
        ? json(res, 403, { error: 'You are not authorized to push to this repo' })
        : json(res, 200, { commitOid: 'abc123def4567890', commitUrl: `${hub.url}/${id}/commit/abc123` }),
    );
  }
});

afterAll(async () => {
  await hub?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('tabtune push', () => {
  it('creates the repo and commits the adapter, its model card and loss plot; a second push updates it', async () => {
    const first = await run(['--adapter', dir, '--repo', 'me/adapter', '--private', '--json']);
    expect(first.code, first.stderr).toBe(0);
    const r = JSON.parse(first.stdout.trim().split('\n').at(-1)!);
    expect(r).toMatchObject({ url: `${hub.url}/me/adapter`, created: true, commit: 'abc123def4567890' });
    const create = hub.requests.find((q) => q.url === '/api/repos/create')!;
    expect(JSON.parse(create.body.toString())).toMatchObject({
      name: 'adapter',
      organization: 'me',
      type: 'model',
      visibility: 'private',
    });
    const commit = hub.requests.find((q) => q.url === '/api/models/me/adapter/commit/main')!;
    const files = committed(commit);
    expect([...files.keys()]).toEqual(['adapter_config.json', 'adapter_model.safetensors', 'README.md', 'loss.png']);
    expect(files.get('adapter_config.json')!.toString()).toBe(CONFIG);
    expect(new Uint8Array(files.get('adapter_model.safetensors')!)).toEqual(WEIGHTS);
    const card = files.get('README.md')!.toString();
    expect(card).toMatch(/^---\nbase_model: tiny-org\/tiny-llama\nlibrary_name: peft\n/);
    expect(card).toContain('| Dataset | qa.jsonl |');
    expect(card).toContain('| Final training loss | 0.5000 |');
    expect([...files.get('loss.png')!.subarray(1, 4)]).toEqual([0x50, 0x4e, 0x47]);
    expect(hub.requests.every((q) => q.headers.authorization === `Bearer ${TOKEN}`)).toBe(true);

    const again = await run(['--adapter', dir, '--repo', 'me/adapter']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(
      /^updated http:\/\/127\.0\.0\.1:\d+\/me\/adapter \(adapter_config\.json, adapter_model\.safetensors, README\.md, loss\.png; commit abc123def4\)/,
    );
  });

  it('says what is wrong: no token, a read-only token, a bad token, no write access, an invalid name', async () => {
    const none = await run(['--adapter', dir, '--repo', 'me/adapter'], { HF_TOKEN: '' });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no access token: set HF_TOKEN to a Hugging Face token with write access/);
    const read = await run(['--adapter', dir, '--repo', 'me/adapter'], {
      HF_TOKEN: 'hf_readOnlyToken0123456789abcdef',
    });
    expect(read.code).toBe(1);
    expect(read.stderr).toMatch(/access token of me is read-only: pushing needs a token with write access/);
    const bad = await run(['--adapter', dir, '--repo', 'me/adapter'], { HF_TOKEN: 'hf_revoked' });
    expect(bad.stderr).toMatch(/refused the access token \(HTTP 401\)/);
    const org = await run(['--adapter', dir, '--repo', 'someone-else/adapter']);
    expect(org.code).toBe(1);
    expect(org.stderr).toMatch(/No write access to create someone-else\/adapter \(HTTP 403\)/);
    const locked = await run(['--adapter', dir, '--repo', 'me/locked']);
    expect(locked.code).toBe(1);
    expect(locked.stderr).toMatch(/No write access to me\/locked \(HTTP 403\)/);
    const name = await run(['--adapter', dir, '--repo', 'me/bad name']);
    expect(name.code).toBe(2);
    expect(name.stderr).toMatch(/--repo "me\/bad name" is not a valid repo name: "bad name" may hold only letters/);
  });
});
