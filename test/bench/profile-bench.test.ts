/**
 * `bench profile` (src/bench/profile-bench.ts, src/cli/bench-profile.ts) on a tiny model: the CLI's
 * JSON line parses, its families hold the matmuls and the attention, and every dispatch the step
 * and the decode recorded is in the profile exactly once; profiling leaves a step's losses (and its
 * update) bit for bit as they are without it; an adapter without timestamp queries is refused
 * with a clear message.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareTrainingStep } from '../../src/bench/model-bench';
import { shapeFromConfig } from '../../src/bench/memory-bench';
import { type ProfileSection, kernelFamily, requireTimestamps } from '../../src/bench/profile-bench';
import type { Gpu } from '../../src/gpu/context';
import { Profiler } from '../../src/gpu/profiler';
import { FAMILY_CONFIGS } from '../fixtures/tiny-families';
import { getGpu } from '../helpers/gpu';
import { runCommand } from '../helpers/proc';

const ROOT = join(import.meta.dirname, '..', '..');

/** The tiny Llama of the fixtures (every family's kernels at tiny sizes), as a config.json. */
const TINY = FAMILY_CONFIGS.llama({ dtype: 'bfloat16', tie: false, ids: { endoftext: 0, imStart: 1, imEnd: 2 } });
const LAYERS = TINY.num_hidden_layers as number;

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tabtune-profile-'));
  await writeFile(join(dir, 'config.json'), JSON.stringify(TINY));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const counted = (s: ProfileSection) => s.families.reduce((n, f) => n + f.count, 0);

describe('bench profile', () => {
  it('prints one JSON line: families with the matmuls and attention, every dispatch counted once', async () => {
    const tokens = 3;
    const args = ['--config', join(dir, 'config.json'), '--seq', '16', '--tokens', String(tokens), '--no-tune'];
    const r = await runCommand(
      process.execPath,
      [join(ROOT, 'bin', 'tabtune.mjs'), 'bench', 'profile', ...args, '--json'],
      ROOT,
    );
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const out = JSON.parse(lines[0]!) as Record<string, unknown> & {
      train_step: ProfileSection;
      decode: ProfileSection;
    };
    expect(out.model).toContain(`${LAYERS} layers`);
    for (const s of [out.train_step, out.decode]) {
      const names = s.families.map((f) => f.name);
      expect(names).toContain('matmul');
      expect(names).toContain('attention');
      expect(names).not.toContain('other'); // every kernel has its family
      expect(counted(s)).toBe(s.dispatches);
      expect(s.gpu_ms).toBeGreaterThan(0);
      expect(s.gpu_ms).toBeLessThanOrEqual(s.wall_ms);
      expect(s.families.reduce((p, f) => p + f.percent, 0)).toBeCloseTo(100, 6);
      const matmul = s.families.find((f) => f.name === 'matmul')!;
      expect(matmul.gflops).toBeGreaterThan(0);
      expect(matmul.kernels.every((k) => k.name.startsWith('matmul') || k.name === 'splitk_reduce')).toBe(true);
    }
    expect(out.train_step.submits).toBe(1);
    // Each decoded token is one submit of the same dispatches.
    expect(out.decode.submits).toBe(tokens);
    expect(out.decode.dispatches % tokens).toBe(0);
    // The human table went to stderr, with the families in it.
    expect(r.stderr).toMatch(/training step \(.*\): [\d.]+ ms of kernel time in \d+ dispatches/);
    expect(r.stderr).toMatch(/^\s+matmul\s+[\d.]+\s+[\d.]+%/m);
  });

  it("profiling leaves a step's losses and update as they are, and sees each of its dispatches once", async () => {
    const gpu = await getGpu();
    const shape = shapeFromConfig(TINY, 'tiny.json');
    const run = async (profileStep: number) => {
      const s = await prepareTrainingStep(gpu, {
        seq: 16,
        layers: 2,
        config: { config: shape.atDepth(2), name: 'tiny' },
      });
      const losses: number[] = [];
      let dispatches = 0;
      let profiled = 0;
      try {
        for (let i = 0; i < 3; i++) {
          const profiler = i === profileStep ? new Profiler(gpu.device) : null;
          const c0 = gpu.counters.dispatches;
          gpu.profiler = profiler;
          try {
            losses.push((await s.trainer.trainStep(s.micro, true)).loss!);
          } finally {
            gpu.profiler = null;
          }
          if (i === 1) dispatches = gpu.counters.dispatches - c0;
          if (profiler) profiled = (await profiler.report()).reduce((n, t) => n + t.count, 0);
        }
      } finally {
        s.dispose();
      }
      return { losses, dispatches, profiled };
    };
    const plain = await run(-1);
    const withProfile = await run(1);
    expect(withProfile.losses).toEqual(plain.losses); // step 1's loss, and step 2's after its update
    expect(plain.losses.every(Number.isFinite)).toBe(true);
    expect(plain.losses[2]).not.toBe(plain.losses[0]); // the steps did train
    expect(withProfile.profiled).toBe(plain.dispatches); // the step's submit plus its loss read's
    expect(withProfile.dispatches).toBe(plain.dispatches);
  });

  it('names every kernel family by its pipeline labels', () => {
    expect(kernelFamily('matmul_16x64_nt_bf16_seg2nt')).toBe('matmul');
    expect(kernelFamily('splitk_reduce')).toBe('matmul');
    expect(kernelFamily('attn_bwd_dq_direct8_c2_4x4')).toBe('attention');
    expect(kernelFamily('rms_fwd_bf16_wg8')).toBe('norm');
    expect(kernelFamily('rope_ip')).toBe('rope');
    expect(kernelFamily('ce_stats_ws8')).toBe('cross-entropy / LM head');
    expect(kernelFamily('adamw_clip')).toBe('optimizer');
    expect(kernelFamily('ew_fill')).toBe('element-wise');
    expect(kernelFamily('something_new')).toBe('other');
  });

  it('refuses an adapter without timestamp queries, saying what is missing and what to do', () => {
    const gpu = {
      features: { timestampQuery: false },
      info: { vendor: 'acme', architecture: 'gen1', description: 'Acme GPU' },
    } as unknown as Gpu;
    expect(() => requireTimestamps(gpu)).toThrow(/does not offer WebGPU's 'timestamp-query' feature.*Run it on/s);
    expect(() => requireTimestamps(gpu)).toThrow(/acme \/ gen1 \/ Acme GPU/);
  });
});
