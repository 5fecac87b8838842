import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { GpuLimitError, GpuValidationError, params } from '../src/gpu';
import { guardMappings, mappingBudget } from '../src/gpu/node';
import { getGpu } from './helpers/gpu';

const ADD = /* wgsl */ `
struct P { n: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x < p.n) { out[g.x] = out[g.x] + p.scale * a[g.x]; }
}`;

describe('gpu runtime', () => {
  it('records several dispatches into one submit, in order, with per-dispatch uniforms', async () => {
    const gpu = await getGpu();
    const n = 37;
    const a = gpu.tensorF32(
      'a',
      [n],
      'scratch',
      Array.from({ length: n }, (_, i) => i),
    );
    const out = gpu.tensorF32('out', [n], 'scratch', new Array(n).fill(1));
    const pipe = gpu.pipeline('add', ADD);
    const rec = gpu.recorder('t');
    rec.dispatch(pipe, [a, out], [Math.ceil(n / 64)], params(n, { f: 2 }));
    rec.dispatch(pipe, [a, out], [Math.ceil(n / 64)], params(n, { f: -0.5 }));
    rec.submit();
    const got = await gpu.read(out);
    for (let i = 0; i < n; i++) expect(got[i]).toBeCloseTo(1 + 1.5 * i, 5);
    expect(gpu.memory().byCategory.scratch).toBe(2 * 160); // 37 · 4 bytes, rounded up to 16
    gpu.free(a);
    gpu.free(out);
    expect(gpu.memory().byCategory.scratch).toBe(0);
  });

  it('submits of the same recorder label reuse uniforms and bind groups without mixing their values', async () => {
    const gpu = await getGpu();
    const n = 37;
    const a = gpu.tensorF32(
      'a',
      [n],
      'scratch',
      Array.from({ length: n }, (_, i) => i),
    );
    const pipe = gpu.pipeline('add', ADD);
    for (const enabled of [true, false]) {
      gpu.submitCache.enabled = enabled;
      const out = gpu.tensorF32('out', [n], 'scratch', new Array(n).fill(1));
      // Three submits queued back to back on one label, each with its own scales (the third
      // records more dispatches, so the kept uniform buffer grows), read once at the end.
      const scales = [[2], [-0.5, 0.25], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -18]];
      for (const group of scales) {
        const rec = gpu.recorder('same-label');
        for (const f of group) rec.dispatch(pipe, [a, out], [Math.ceil(n / 64)], params(n, { f }));
        rec.submit();
      }
      const got = await gpu.read(out);
      for (let i = 0; i < n; i++) expect(got[i]).toBeCloseTo(1 + 2.75 * i, 4);
      gpu.free(out);
    }
    gpu.submitCache.enabled = true;
    gpu.free(a);
  });

  it('makes a bind group once per pipeline and buffers, shares it across labels with one reuse key, and forgets it with the buffer', async () => {
    const gpu = await getGpu();
    const n = 5;
    const pipe = gpu.pipeline('add', ADD);
    const a = gpu.tensorF32('a', [n], 'scratch', [1, 2, 3, 4, 5]);
    const out = gpu.tensorF32('out', [n], 'scratch', new Array(n).fill(0));
    const kept = gpu.submitCache.size;
    const made = gpu.counters.bindGroups;
    // Labels that change every submit (a step number) with one reuse key: one uniform buffer,
    // so the same bind group every time.
    for (let step = 0; step < 5; step++) {
      gpu
        .recorder(`step${step}`, 'steps')
        .dispatch(pipe, [a, out], [1], params(n, { f: step }))
        .submit();
    }
    expect(gpu.counters.bindGroups - made).toBe(1);
    expect(gpu.submitCache.size - kept).toBe(1);
    expect(Array.from(await gpu.read(out))).toEqual([10, 20, 30, 40, 50]);
    gpu.free(out);
    expect(gpu.submitCache.size).toBe(kept);
    gpu.free(a);
  });

  it('stops a submit that would make more new bind groups than the budget, with what to do, and stays usable', async () => {
    const gpu = await getGpu();
    const n = 5;
    const pipe = gpu.pipeline('add', ADD);
    const a = gpu.tensorF32('a', [n], 'scratch', [1, 2, 3, 4, 5]);
    const outs = Array.from({ length: 4 }, (_, i) => gpu.tensorF32(`out${i}`, [n], 'scratch', new Array(n).fill(0)));
    const record = () => {
      const rec = gpu.recorder('many-groups');
      for (const out of outs) rec.dispatch(pipe, [a, out], [1], params(n, { f: 1 }));
      return rec;
    };
    const before = gpu.submitCache.budget;
    try {
      gpu.submitCache.budget = 3; // four dispatches on four buffers: four new groups
      const made = gpu.counters.bindGroups;
      let err: unknown = null;
      try {
        record().submit();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(GpuLimitError);
      expect(String((err as Error).message)).toMatch(/more than 3 new GPU bind groups.*vm\.max_map_count.*sysctl/s);
      expect(gpu.counters.bindGroups - made).toBe(4); // it stopped at the first group over
      // The groups made so far are kept: the same submit now makes none and runs.
      record().submit();
      expect(gpu.counters.bindGroups - made).toBe(4);
      for (const out of outs) expect(Array.from(await gpu.read(out))).toEqual([1, 2, 3, 4, 5]);
    } finally {
      gpu.submitCache.budget = before;
      for (const out of outs) gpu.free(out);
      gpu.free(a);
    }
  });

  it('runs the garbage collector when the bind-group cache is full and drops its groups', async () => {
    const gpu = await getGpu();
    const n = 5;
    const pipe = gpu.pipeline('add', ADD);
    const a = gpu.tensorF32('a', [n], 'scratch', [1, 2, 3, 4, 5]);
    const outs = Array.from({ length: 3 }, (_, i) => gpu.tensorF32(`out${i}`, [n], 'scratch', new Array(n).fill(0)));
    const cache = gpu.submitCache;
    const [maxGroups, collect] = [cache.maxGroups, cache.collectGarbage];
    // Node's gc, exposed at run time by guardMappings (createNodeGpu calls it).
    expect(typeof collect).toBe('function');
    let collected = 0;
    try {
      cache.maxGroups = cache.size + 2;
      cache.collectGarbage = () => {
        collected++;
        collect?.();
      };
      for (const out of outs)
        gpu
          .recorder('fill')
          .dispatch(pipe, [a, out], [1], params(n, { f: 1 }))
          .submit();
      expect(collected).toBe(1); // the third group found the cache full
      expect(cache.size).toBe(1);
      for (const out of outs) expect(Array.from(await gpu.read(out))).toEqual([1, 2, 3, 4, 5]);
    } finally {
      cache.maxGroups = maxGroups;
      cache.collectGarbage = collect;
      for (const out of outs) gpu.free(out);
      gpu.free(a);
    }
  });

  it('sets the bind-group budget from vm.max_map_count on lavapipe only', async () => {
    const gpu = await getGpu();
    const before = gpu.submitCache.budget;
    try {
      expect(mappingBudget(65530)).toBe(65530 - 16384 - 8192);
      expect(mappingBudget(20000)).toBe(1024);
      gpu.submitCache.budget = null;
      guardMappings(gpu, 262144);
      // The test machines run lavapipe (docs: PLATFORM); a GPU's adapter would leave it unset.
      const lavapipe = /llvmpipe|lavapipe/i.test(JSON.stringify(gpu.info));
      expect(gpu.submitCache.budget).toBe(lavapipe ? 262144 - 16384 - 8192 : null);
      gpu.submitCache.budget = null;
      guardMappings(gpu, null); // not Linux: no budget
      expect(gpu.submitCache.budget).toBe(null);
    } finally {
      gpu.submitCache.budget = before;
    }
  });

  it("leaves JavaScript's setImmediate as it was while Dawn's polls wait on a timer", async () => {
    await getGpu();
    const seen: number[] = [];
    await new Promise<void>((done) =>
      setImmediate(
        (x: number, y: number) => {
          seen.push(x, y);
          done();
        },
        4,
        5,
      ),
    );
    expect(seen).toEqual([4, 5]);
    expect(await promisify(setImmediate)('v')).toBe('v');
    const order: string[] = [];
    await new Promise<void>((done) => {
      setTimeout(() => (order.push('timeout'), done()), 5);
      setImmediate(() => order.push('immediate'));
    });
    expect(order).toEqual(['immediate', 'timeout']);
  });

  it('turns a shader error into a typed error with the line number', async () => {
    const gpu = await getGpu();
    await expect(gpu.compileCheck('broken', 'fn main() { let x: f32 = 1u; }')).rejects.toThrow(GpuValidationError);
    await expect(gpu.compileCheck('broken', 'fn main() { let x: f32 = 1u; }')).rejects.toThrow(/broken:1:/);
  });

  it('surfaces a validation error from a bad dispatch at the next sync', async () => {
    const gpu = await getGpu();
    const pipe = gpu.pipeline('add', ADD);
    const a = gpu.tensorF32('a', [4], 'scratch', [1, 2, 3, 4]);
    const rec = gpu.recorder('bad');
    rec.dispatch(pipe, [a], [1], params(4, { f: 1 })); // missing binding 2
    rec.submit();
    await expect(gpu.sync()).rejects.toThrow(GpuValidationError);
    gpu.free(a);
  });
});
