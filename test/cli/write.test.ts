// The CLI's writes are all or nothing: a full disk while saving an adapter over a good one leaves the
// old adapter whole (it used to leave the new config beside the old weights, and a stray .tmp), removes
// every temporary file, and names the path that could not be written; the recipe export (a folder)
// likewise names the file it was writing.
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FolderIo, type WriteIo, writeFilesAtomic, writeFolderAtomic } from '../../src/cli/write';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-write-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const enospc = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });

/** Node's file operations, with writes failing once `budget` bytes have been written (a full disk). */
async function fullDiskAfter(budget: number): Promise<WriteIo> {
  const fs = await import('node:fs/promises');
  let used = 0;
  return {
    async writeFile(path, data) {
      const n = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
      if (used + n > budget) {
        await fs.writeFile(
          path,
          typeof data === 'string' ? data.slice(0, budget - used) : data.subarray(0, budget - used),
        );
        throw enospc();
      }
      used += n;
      await fs.writeFile(path, data);
    },
    rename: fs.rename,
    rm: fs.rm,
  };
}

/** The same for writing a folder (the recipe export). */
async function fullDiskFolderAfter(budget: number): Promise<FolderIo> {
  const fs = await import('node:fs/promises');
  return { ...(await fullDiskAfter(budget)), mkdir: fs.mkdir, chmod: fs.chmod, rm: fs.rm };
}

describe('writeFilesAtomic', () => {
  it('a full disk leaves the previous adapter untouched, removes temporaries and names the path', async () => {
    const out = join(dir, 'adapter');
    await (await import('node:fs/promises')).mkdir(out);
    await writeFile(join(out, 'adapter_model.safetensors'), 'old weights');
    await writeFile(join(out, 'adapter_config.json'), 'old config');
    const io = await fullDiskAfter(100);
    await expect(
      writeFilesAtomic(
        [
          { path: join(out, 'adapter_model.safetensors'), data: new Uint8Array(500) },
          { path: join(out, 'adapter_config.json'), data: '{"r": 8}' },
        ],
        io,
      ),
    ).rejects.toThrow(`cannot write ${join(out, 'adapter_model.safetensors')}: the disk is full. Nothing was replaced`);
    expect(await readFile(join(out, 'adapter_model.safetensors'), 'utf8')).toBe('old weights');
    expect(await readFile(join(out, 'adapter_config.json'), 'utf8')).toBe('old config');
    expect((await readdir(out)).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
  });

  it('the config is written and renamed last, so it never sits beside weights it does not describe', async () => {
    const out = join(dir, 'order');
    await (await import('node:fs/promises')).mkdir(out);
    const fs = await import('node:fs/promises');
    const log: string[] = [];
    const io: WriteIo = {
      writeFile: async (p, d) => {
        log.push(`write ${p.slice(out.length + 1).replace(/\.tmp-.*/, '.tmp')}`);
        await fs.writeFile(p, d);
      },
      rename: async (a, b) => {
        log.push(`rename ${b.slice(out.length + 1)}`);
        await fs.rename(a, b);
      },
      rm: fs.rm,
    };
    await writeFilesAtomic(
      [
        { path: join(out, 'adapter_model.safetensors'), data: 'w' },
        { path: join(out, 'adapter_config.json'), data: 'c' },
      ],
      io,
    );
    expect(log).toEqual([
      'write adapter_model.safetensors.tmp',
      'write adapter_config.json.tmp',
      'rename adapter_model.safetensors',
      'rename adapter_config.json',
    ]);
    expect((await readdir(out)).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
  });

  it('a failure writing the second part removes the first part too', async () => {
    const out = join(dir, 'second');
    await (await import('node:fs/promises')).mkdir(out);
    const io = await fullDiskAfter(10);
    await expect(
      writeFilesAtomic(
        [
          { path: join(out, 'a.bin'), data: new Uint8Array(8) },
          { path: join(out, 'b.json'), data: 'x'.repeat(20) },
        ],
        io,
      ),
    ).rejects.toThrow(`cannot write ${join(out, 'b.json')}: the disk is full`);
    expect(await readdir(out)).toEqual([]);
  });
});

describe('writeFolderAtomic (the recipe export)', () => {
  it('a full disk names the file it was writing, keeps the earlier recipe and leaves no partial folder', async () => {
    const out = join(dir, 'recipe');
    await writeFolderAtomic(out, [
      { path: 'tabtune_run.json', data: 'old run' },
      { path: 'train.py', data: 'old', executable: true },
    ]);
    const io = await fullDiskFolderAfter(100);
    await expect(
      writeFolderAtomic(
        out,
        [
          { path: 'tabtune_run.json', data: '{}' },
          { path: 'data/train.jsonl', data: 'x'.repeat(500) },
          { path: 'train.py', data: 'new' },
        ],
        io,
      ),
    ).rejects.toThrow(`cannot write ${join(out, 'data', 'train.jsonl')}: the disk is full. Nothing was replaced`);
    expect(await readFile(join(out, 'tabtune_run.json'), 'utf8')).toBe('old run');
    expect((await readdir(out)).sort()).toEqual(['tabtune_run.json', 'train.py']);
    expect((await readdir(dir)).filter((n) => n.includes('partial'))).toEqual([]);
    // With room, the new recipe replaces the old one whole.
    await writeFolderAtomic(out, [
      { path: 'tabtune_run.json', data: 'new run' },
      { path: 'data/train.jsonl', data: '{}' },
    ]);
    expect((await readdir(out)).sort()).toEqual(['data', 'tabtune_run.json']);
    expect((await readdir(dir)).filter((n) => n.startsWith('.recipe'))).toEqual([]);
  });
});
