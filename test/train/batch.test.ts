import { describe, expect, it } from 'vitest';
import {
  BatchError,
  BatchPlan,
  type DataPosition,
  IGNORE_INDEX,
  type SequenceLike,
  evalBatches,
  makeBatch,
  paddedLength,
  splitTrainVal,
} from '../../src/train/batch';

const X = IGNORE_INDEX;

/** Example i: ids 100*i+1 .. 100*i+len; the first `prompt` tokens do not count. */
function seq(i: number, len: number, prompt = 1): SequenceLike {
  return {
    ids: Array.from({ length: len }, (_, t) => 100 * i + t + 1),
    counted: Array.from({ length: len }, (_, t) => t >= prompt),
  };
}

function rowsOf(b: { B: number; S: number; ids: Uint32Array }): number[][] {
  return Array.from({ length: b.B }, (_, r) => Array.from(b.ids.subarray(r * b.S, (r + 1) * b.S)));
}

describe('makeBatch', () => {
  it('right-pads to the longest rounded up to 8; targets are next counted tokens', () => {
    const b = makeBatch([seq(0, 5, 2), seq(1, 11)], { maxLen: 32, padId: 7 });
    expect([b.B, b.S]).toEqual([2, 16]);
    expect(rowsOf(b)[0]).toEqual([1, 2, 3, 4, 5, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]);
    // Row 0: tokens 0,1 are prompt, so predicting token 1 (from position 0) does not count.
    expect(Array.from(b.targets.subarray(0, 16))).toEqual([X, 3, 4, 5, X, X, X, X, X, X, X, X, X, X, X, X]);
    expect(Array.from(b.targets.subarray(16, 32))).toEqual([
      102,
      103,
      104,
      105,
      106,
      107,
      108,
      109,
      110,
      111,
      X,
      X,
      X,
      X,
      X,
      X,
    ]);
    expect(b.counted).toBe(3 + 10);
    expect(Array.from(b.positions.subarray(16, 32))).toEqual([...Array(16).keys()]);
    expect(Array.from(b.positions.subarray(0, 4))).toEqual([0, 1, 2, 3]);
  });

  it('S never exceeds maxLen; examples longer than maxLen are refused', () => {
    expect(makeBatch([seq(0, 10)], { maxLen: 12 }).S).toBe(12);
    expect(makeBatch([seq(0, 9)], { maxLen: 64, padMultiple: 1 }).S).toBe(9);
    expect(paddedLength(17, 512)).toBe(24);
    expect(() => makeBatch([seq(0, 13)], { maxLen: 12 })).toThrow(/13 tokens, more than maxLen 12/);
    expect(() => makeBatch([{ ids: [1, 2], counted: [true] }], { maxLen: 12 })).toThrow(BatchError);
    expect(() => makeBatch([], { maxLen: 12 })).toThrow(BatchError);
  });

  it('packing lays examples end to end in one row: positions restart, keyStart marks each example', () => {
    const exs = [seq(0, 3, 2), seq(1, 4), seq(2, 2)];
    const b = makeBatch(exs, { maxLen: 8, padId: 9, packing: true });
    expect([b.B, b.S]).toEqual([1, 16]);
    expect(rowsOf(b)[0]).toEqual([1, 2, 3, 101, 102, 103, 104, 201, 202, 9, 9, 9, 9, 9, 9, 9]);
    // No target crosses an example's end; the counted targets are those of the unpacked batch.
    expect(Array.from(b.targets)).toEqual([X, 3, X, 102, 103, 104, X, 202, X, X, X, X, X, X, X, X]);
    expect(b.counted).toBe(makeBatch(exs, { maxLen: 8 }).counted);
    expect(Array.from(b.positions)).toEqual([0, 1, 2, 0, 1, 2, 3, 0, 1, 0, 1, 2, 3, 4, 5, 6]);
    // The padding tail is a segment of its own.
    expect(Array.from(b.keyStart!)).toEqual([0, 0, 0, 3, 3, 3, 3, 7, 7, 9, 9, 9, 9, 9, 9, 9]);
    // Never more tokens than unpacked: with maxLen 5 (no multiple of 8) that is 3 rows of 5, not 16.
    expect(makeBatch(exs, { maxLen: 5, packing: true }).S).toBe(15);
    expect(() => makeBatch([seq(0, 13)], { maxLen: 12, packing: true })).toThrow(/13 tokens, more than maxLen 12/);
    expect(makeBatch(exs, { maxLen: 8 }).keyStart).toBeUndefined();
  });

  it('eval batches keep order', () => {
    const bs = evalBatches([seq(0, 3), seq(1, 4), seq(2, 5)], 2, { maxLen: 8 });
    expect(bs.map((b) => b.B)).toEqual([2, 1]);
    expect(bs[1]!.ids[0]).toBe(201);
  });
});

describe('splitTrainVal', () => {
  const items = [...Array(20).keys()];

  it('seeded, disjoint, complete, each side in file order', () => {
    const a = splitTrainVal(items, { valFraction: 0.2, seed: 1 });
    expect(a.val).toHaveLength(4);
    expect(a.train).toHaveLength(16);
    expect([...a.train, ...a.val].sort((x, y) => x - y)).toEqual(items);
    expect(a.val).toEqual([...a.val].sort((x, y) => x - y));
    expect(splitTrainVal(items, { valFraction: 0.2, seed: 1 })).toEqual(a);
    expect(splitTrainVal(items, { valFraction: 0.2, seed: 2 }).val).not.toEqual(a.val);
  });

  it('counts, small sets and bounds', () => {
    expect(splitTrainVal(items, { valCount: 3, seed: 0 }).val).toHaveLength(3);
    expect(splitTrainVal(items, { valFraction: 0, seed: 0 }).val).toEqual([]);
    expect(splitTrainVal([1, 2], { valFraction: 0.1, seed: 0 }).val).toHaveLength(1);
    expect(splitTrainVal([1], { valFraction: 0.5, seed: 0 })).toEqual({ train: [1], val: [] });
    expect(() => splitTrainVal(items, { valFraction: 1, seed: 0 })).toThrow(/valFraction/);
  });
});

describe('BatchPlan', () => {
  const examples = Array.from({ length: 10 }, (_, i) => seq(i, 3 + (i % 4), 1));
  const firstIds = (micro: { B: number; S: number; ids: Uint32Array }[]): number[] =>
    micro.flatMap((b) => rowsOf(b).map((r) => (r[0]! - 1) / 100));

  it('epochs, micro-batches and accumulation steps', () => {
    const plan = new BatchPlan(examples, {
      batchSize: 3,
      gradAccum: 2,
      maxLen: 16,
      shuffle: false,
      seed: 0,
      epochs: 2,
    });
    expect([plan.microPerEpoch, plan.stepsPerEpoch, plan.totalSteps]).toEqual([4, 2, 4]);
    const steps = [...plan];
    expect(steps.map((s) => [s.step, s.epoch, s.micro.length, s.examples])).toEqual([
      [1, 0, 2, 6],
      [2, 0, 2, 4],
      [3, 1, 2, 6],
      [4, 1, 2, 4],
    ]);
    expect(steps[1]!.micro.map((b) => b.B)).toEqual([3, 1]);
    expect(firstIds(steps[0]!.micro)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(firstIds(steps[1]!.micro)).toEqual([6, 7, 8, 9]);
    // The step's token count (loss normaliser) is known up front: sum over its micro-batches.
    for (const s of steps) expect(s.counted).toBe(s.micro.reduce((n, b) => n + b.counted, 0));
    const perEpoch = examples.reduce((n, e) => n + e.ids.length - 1, 0);
    expect(steps[0]!.counted + steps[1]!.counted).toBe(perEpoch);
    expect(plan.next()).toBeNull();
    expect(plan.done).toBe(true);
    expect(plan.maxTokens).toBe(3 * 8);
  });

  it('shuffles each epoch differently but deterministically, covering every example once', () => {
    const opts = { batchSize: 4, gradAccum: 1, maxLen: 16, shuffle: true, seed: 42, epochs: 2 };
    const a = [...new BatchPlan(examples, opts)];
    const b = [...new BatchPlan(examples, opts)];
    const orderA = a.map((s) => firstIds(s.micro));
    expect(b.map((s) => firstIds(s.micro))).toEqual(orderA);
    const e0 = orderA.slice(0, 3).flat();
    const e1 = orderA.slice(3).flat();
    expect([...e0].sort((x, y) => x - y)).toEqual([...Array(10).keys()]);
    expect([...e1].sort((x, y) => x - y)).toEqual([...Array(10).keys()]);
    expect(e0).not.toEqual(e1);
    expect(e0).not.toEqual([...Array(10).keys()]);
    const other = [...new BatchPlan(examples, { ...opts, seed: 43 })].map((s) => firstIds(s.micro));
    expect(other).not.toEqual(orderA);
  });

  it('steps mode repeats epochs; fractional epochs round up', () => {
    const plan = new BatchPlan(examples, {
      batchSize: 5,
      gradAccum: 1,
      maxLen: 16,
      shuffle: false,
      seed: 0,
      steps: 5,
      epochs: 1,
    });
    expect([...plan].map((s) => s.epoch)).toEqual([0, 0, 1, 1, 2]);
    expect(
      new BatchPlan(examples, { batchSize: 3, gradAccum: 1, maxLen: 16, shuffle: false, seed: 0, epochs: 1.5 })
        .totalSteps,
    ).toBe(6);
    expect(() => new BatchPlan([], { batchSize: 1, gradAccum: 1, maxLen: 8, shuffle: false, seed: 0 })).toThrow(
      /no training examples/,
    );
    expect(() => new BatchPlan(examples, { batchSize: 0, gradAccum: 1, maxLen: 8, shuffle: false, seed: 0 })).toThrow(
      /batchSize must be a positive integer/,
    );
  });

  it('resumes exactly from a serialised position', () => {
    const opts = { batchSize: 3, gradAccum: 2, maxLen: 16, shuffle: true, seed: 7, epochs: 3 };
    const full = [...new BatchPlan(examples, opts)].map((s) => ({
      step: s.step,
      epoch: s.epoch,
      ids: s.micro.map((b) => Array.from(b.ids)),
      targets: s.micro.map((b) => Array.from(b.targets)),
    }));
    expect(full).toHaveLength(6);
    for (let cut = 0; cut <= full.length; cut++) {
      const first = new BatchPlan(examples, opts);
      for (let k = 0; k < cut; k++) first.next();
      const saved: DataPosition = JSON.parse(JSON.stringify(first.position));
      const second = new BatchPlan(examples, opts);
      second.restore(saved);
      const rest = [...second].map((s) => ({
        step: s.step,
        epoch: s.epoch,
        ids: s.micro.map((b) => Array.from(b.ids)),
        targets: s.micro.map((b) => Array.from(b.targets)),
      }));
      expect(rest).toEqual(full.slice(cut));
    }
  });

  it('refuses to resume when the data or batching changed', () => {
    const opts = { batchSize: 3, gradAccum: 2, maxLen: 16, shuffle: true, seed: 7 };
    const plan = new BatchPlan(examples, opts);
    plan.next();
    const pos = plan.position;
    expect(() => new BatchPlan(examples.slice(1), opts).restore(pos)).toThrow(/examples was 10, now 9/);
    expect(() => new BatchPlan(examples, { ...opts, seed: 8 }).restore(pos)).toThrow(/seed was 7, now 8/);
    expect(() => new BatchPlan(examples, opts).restore({ version: 2 } as unknown as DataPosition)).toThrow(
      /Not a data position/,
    );
  });
});
