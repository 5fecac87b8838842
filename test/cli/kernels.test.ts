/**
 * The CLI's kernel settings (src/cli/kernels.ts): TABTUNE_KERNELS pins a member, "baseline" turns
 * tuning off, an unknown name is a usage error naming the family; unset, the tuned choices are kept
 * per device in a cache file (written whole; an unreadable file only means tuning again);
 * TABTUNE_ATTENTION pins the attention kernels (with a note where a pinned set cannot run), and
 * `tabtune info` names the set that runs.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fileChoiceStore, kernelCachePath, kernelSetup } from '../../src/cli/kernels';
import { getGpu } from '../helpers/gpu';
import { runCommand } from '../helpers/proc';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('CLI kernel settings', () => {
  it('TABTUNE_KERNELS: a member, baseline, or an unknown name', async () => {
    const gpu = await getGpu();
    try {
      expect(kernelSetup(gpu, { TABTUNE_KERNELS: 'direct8x4' })).toBeNull();
      expect(gpu.kernels.pin).toBe('direct8x4');
      gpu.kernels.pin = null;
      expect(kernelSetup(gpu, { TABTUNE_KERNELS: 'baseline' })).toBeNull();
      expect(gpu.kernels.pin).toBeNull();
      expect(() => kernelSetup(gpu, { TABTUNE_KERNELS: 'fast' })).toThrow(
        /TABTUNE_KERNELS: Unknown matmul kernel "fast"; the family has tile64, .*"baseline"/,
      );
    } finally {
      gpu.kernels.pin = null;
    }
  });

  it('TABTUNE_ATTENTION pins the attention kernels; anything but tiled / direct is a usage error', async () => {
    const gpu = await getGpu();
    try {
      expect(kernelSetup(gpu, { TABTUNE_ATTENTION: 'tiled', TABTUNE_KERNELS: 'baseline' })).toBeNull();
      expect(gpu.kernels.attention).toBe('tiled');
      kernelSetup(gpu, { TABTUNE_ATTENTION: ' direct ', TABTUNE_KERNELS: 'baseline' });
      expect(gpu.kernels.attention).toBe('direct');
      expect(() => kernelSetup(gpu, { TABTUNE_ATTENTION: 'flash' })).toThrow(
        /TABTUNE_ATTENTION: "flash" is not an attention kernel set; use "tiled" or "direct"/,
      );
    } finally {
      gpu.kernels.attention = null;
    }
  });

  it('TABTUNE_ATTENTION=direct on a device without usable subgroups says that the tiled kernels run', async () => {
    const gpu = await getGpu();
    const lanes = gpu.features.subgroupLanes;
    const notes: string[] = [];
    try {
      kernelSetup(gpu, { TABTUNE_ATTENTION: 'direct', TABTUNE_KERNELS: 'baseline' }, (l) => notes.push(l));
      expect(notes).toEqual([]);
      gpu.features.subgroupLanes = 0;
      kernelSetup(gpu, { TABTUNE_ATTENTION: 'direct', TABTUNE_KERNELS: 'baseline' }, (l) => notes.push(l));
      expect(notes).toEqual([
        'TABTUNE_ATTENTION=direct: pinned, but this device has subgroups that do not form aligned runs of 4 or more ' +
          'lanes (none usable), which the direct kernels need, so the tiled kernels run instead.',
      ]);
    } finally {
      gpu.features.subgroupLanes = lanes;
      gpu.kernels.attention = null;
    }
  });

  it('unset: choices kept per device in kernels.json under the cache folder', async () => {
    const gpu = await getGpu();
    const dir = mkdtempSync(join(tmpdir(), 'tabtune-kcache-'));
    dirs.push(dir);
    expect(kernelCachePath({ TABTUNE_CACHE_DIR: dir })).toBe(join(dir, 'kernels.json'));
    expect(kernelCachePath({ XDG_CACHE_HOME: dir })).toBe(join(dir, 'tabtune', 'kernels.json'));
    const store = kernelSetup(gpu, { TABTUNE_CACHE_DIR: join(dir, 'sub') })!;
    expect(store).not.toBeNull();
    expect(await store.load('dev-a')).toBeNull();
    await store.save('dev-a', { cls1: 'direct4x4' });
    await store.save('dev-b', { cls2: 'tile64' });
    expect(await store.load('dev-a')).toEqual({ cls1: 'direct4x4' });
    const path = join(dir, 'sub', 'kernels.json');
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({
      'dev-a': { cls1: 'direct4x4' },
      'dev-b': { cls2: 'tile64' },
    });
    writeFileSync(path, '{ not json');
    expect(await fileChoiceStore(path).load('dev-a')).toBeNull(); // tuned again
  });

  it('`tabtune info` names the attention set that runs and why (TABTUNE_ATTENTION pins it)', async () => {
    const root = join(import.meta.dirname, '..', '..');
    const info = (env: Record<string, string>) =>
      runCommand(process.execPath, [join(root, 'bin', 'tabtune.mjs'), 'info'], root, env);
    const auto = await info({});
    expect(auto.code).toBe(0);
    expect(auto.stdout).toMatch(/\nattention kernels: direct \(this device is a CPU driver with subgroups, [^)]*\)\n/);
    const tiled = await info({ TABTUNE_ATTENTION: 'tiled' });
    expect(tiled.stdout).toMatch(/\nattention kernels: tiled \(pinned\)\n/);
  });
});
