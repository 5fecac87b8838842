/**
 * From tokenized examples to the micro-batches the trainer runs.
 *
 * Shapes (B rows, S positions, row-major [B, S]):
 *   ids[b, t]        token ids, rows right-padded with padId
 *   targets[b, t]    ids[b, t+1] when that token counts in the loss, else IGNORE_INDEX (0xFFFFFFFF):
 *                    the last real position and all padding are ignored
 *   positions[b, t]  t (0..S-1 in every row; right padding leaves real positions untouched)
 *   counted          number of targets that are not IGNORE_INDEX
 * S is the longest example of the micro-batch rounded up to a multiple of `padMultiple` (8 by
 * default), but never above maxLen.
 *
 * Packing (`packing: true`, TRL's padding-free packing): the micro-batch's examples are laid end to
 * end in one row (B = 1) with no padding between them, S = their total rounded up to `padMultiple`
 * (never more than the same examples unpacked; S may pass maxLen, no example does). positions restart at 0 for each example (TRL's
 * position_ids), keyStart[t] is the index of the first token of t's example (attention sees only
 * its own example: the padding tail is one more segment), and targets stop at each example's end.
 * The counted targets are the same as unpacked, so the loss is the same; only padding goes.
 *
 * Schedule: an epoch is one pass over the training examples in a fixed order (the file order, or
 * a permutation drawn from the seed and the epoch number when shuffling). It is cut into
 * micro-batches of B examples (the last may be smaller), and an optimizer step takes G consecutive
 * micro-batches (gradient accumulation; an epoch's last step may have fewer). A step never spans
 * two epochs. The step's total counted tokens are known before its first micro-batch runs, so the
 * loss is normalised by the tokens of the whole step: a token-weighted mean, as HF trainers do.
 *
 * The position in the data (`DataPosition`) is plain JSON: epoch, steps done in it, steps done in
 * all, plus what the order depends on. Because each epoch's order is derived from (seed, epoch)
 * rather than from a running generator, restoring a position resumes exactly.
 */

import { Rng, deriveSeed } from '../lora/init';

export const IGNORE_INDEX = 0xffffffff;

/** One micro-batch (same shape as the trainer's MicroBatch). */
export interface Batch {
  B: number;
  S: number;
  ids: Uint32Array; // [B*S]
  targets: Uint32Array; // [B*S], IGNORE_INDEX = not counted
  positions: Uint32Array; // [B*S]
  counted: number;
  /** Packed rows only: [B*S], the index (in its row) of each token's example's first token. */
  keyStart?: Uint32Array;
}

/** What batching needs from a tokenized example. */
export interface SequenceLike {
  ids: ArrayLike<number>;
  /** counted[t]: does predicting token t count in the loss (true or 1). */
  counted: ArrayLike<boolean | number>;
}

export interface BatchShapeOptions {
  maxLen: number;
  /** Round S up to a multiple of this (default 8), capped at maxLen. */
  padMultiple?: number;
  /** Id written into padding positions (default 0; never a target). */
  padId?: number;
  /** Lay the examples end to end in one row, each attending only to itself (see the header). */
  packing?: boolean;
}

export class BatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BatchError';
  }
}

/** S for a batch whose longest example has `longest` tokens. */
export function paddedLength(longest: number, maxLen: number, padMultiple = 8): number {
  if (longest > maxLen)
    throw new BatchError(`An example has ${longest} tokens, more than maxLen ${maxLen}; truncate examples first.`);
  const m = Math.max(1, Math.floor(padMultiple));
  return Math.max(1, Math.min(maxLen, Math.ceil(longest / m) * m));
}

/** Puts examples into one micro-batch: right-padded rows, or one packed row with `packing`. */
export function makeBatch(seqs: readonly SequenceLike[], opts: BatchShapeOptions): Batch {
  if (seqs.length === 0) throw new BatchError('A micro-batch needs at least one example.');
  if (opts.packing) return packedBatch(seqs, opts);
  const B = seqs.length;
  let longest = 0;
  for (const s of seqs) longest = Math.max(longest, s.ids.length);
  const S = paddedLength(longest, opts.maxLen, opts.padMultiple ?? 8);
  const padId = opts.padId ?? 0;
  const ids = new Uint32Array(B * S).fill(padId);
  const targets = new Uint32Array(B * S).fill(IGNORE_INDEX);
  const positions = new Uint32Array(B * S);
  let counted = 0;
  seqs.forEach((seq, b) => {
    const row = b * S;
    counted += writeExample(seq, ids, targets, row);
    for (let t = 0; t < S; t++) positions[row + t] = t;
  });
  return { B, S, ids, targets, positions, counted };
}

/** The targets of example `seq` written at offset `at` of `targets`; returns how many count. */
function writeExample(seq: SequenceLike, ids: Uint32Array, targets: Uint32Array, at: number): number {
  const n = seq.ids.length;
  if (seq.counted.length !== n)
    throw new BatchError(`An example has ${n} ids but ${seq.counted.length} loss-mask entries.`);
  let counted = 0;
  for (let t = 0; t < n; t++) ids[at + t] = seq.ids[t]!;
  for (let t = 0; t + 1 < n; t++) {
    if (seq.counted[t + 1]) {
      targets[at + t] = seq.ids[t + 1]!;
      counted++;
    }
  }
  return counted;
}

/** The examples end to end in one row (packing; see the header). */
function packedBatch(seqs: readonly SequenceLike[], opts: BatchShapeOptions): Batch {
  let total = 0;
  let longest = 0;
  for (const s of seqs) {
    total += s.ids.length;
    longest = Math.max(longest, s.ids.length);
  }
  // Never more tokens than the same examples unpacked (what the trainer allocates for).
  const unpacked = seqs.length * paddedLength(longest, opts.maxLen, opts.padMultiple ?? 8);
  const m = Math.max(1, Math.floor(opts.padMultiple ?? 8));
  const S = Math.max(1, Math.min(unpacked, Math.ceil(total / m) * m));
  const ids = new Uint32Array(S).fill(opts.padId ?? 0);
  const targets = new Uint32Array(S).fill(IGNORE_INDEX);
  const positions = new Uint32Array(S);
  const keyStart = new Uint32Array(S);
  let counted = 0;
  let at = 0;
  for (const seq of [...seqs, null]) {
    // (null: the padding tail, a segment of its own)
    const n = seq ? seq.ids.length : S - total;
    if (seq) counted += writeExample(seq, ids, targets, at);
    for (let t = 0; t < n; t++) {
      positions[at + t] = t;
      keyStart[at + t] = at;
    }
    at += n;
  }
  return { B: 1, S, ids, targets, positions, counted, keyStart };
}

/** Micro-batches of `batchSize` examples in the given order (for evaluation: no shuffling). */
export function evalBatches(seqs: readonly SequenceLike[], batchSize: number, opts: BatchShapeOptions): Batch[] {
  checkPositiveInt('batchSize', batchSize);
  const out: Batch[] = [];
  for (let i = 0; i < seqs.length; i += batchSize) out.push(makeBatch(seqs.slice(i, i + batchSize), opts));
  return out;
}

function checkPositiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0) throw new BatchError(`${name} must be a positive integer, got ${v}.`);
}

const SPLIT_STREAM = 0x5b1e7;
const SHUFFLE_STREAM = 0x5a0f1e;

/**
 * Splits items into training and validation sets: a seeded random choice of `valCount` items (or
 * round(valFraction · n)), each set kept in file order. Training always keeps at least one item;
 * with a fraction > 0 and at least two items, validation gets at least one.
 */
/** How many of n items a validation fraction f draws (at least one when f > 0 and n >= 2; training keeps at least one). */
export function valCountFor(n: number, f: number): number {
  if (!(f >= 0 && f < 1)) throw new BatchError(`valFraction must be in [0, 1), got ${f}.`);
  let k = Math.round(f * n);
  if (f > 0 && n >= 2) k = Math.max(1, k);
  return Math.min(k, Math.max(0, n - 1));
}

export function splitTrainVal<T>(
  items: readonly T[],
  opts: { valFraction?: number; valCount?: number; seed: number },
): { train: T[]; val: T[] } {
  const n = items.length;
  let k: number;
  if (opts.valCount !== undefined) {
    if (!Number.isInteger(opts.valCount) || opts.valCount < 0)
      throw new BatchError(`valCount must be a non-negative integer, got ${opts.valCount}.`);
    k = Math.min(opts.valCount, Math.max(0, n - 1)); // training keeps at least one item
  } else {
    k = valCountFor(n, opts.valFraction ?? 0);
  }
  const order = new Rng(deriveSeed(opts.seed, SPLIT_STREAM)).shuffle([...Array(n).keys()]);
  const isVal = new Uint8Array(n);
  for (let i = 0; i < k; i++) isVal[order[i]!] = 1;
  const train: T[] = [];
  const val: T[] = [];
  items.forEach((x, i) => (isVal[i] ? val : train).push(x));
  return { train, val };
}

export interface BatchPlanOptions extends BatchShapeOptions {
  /** Examples per micro-batch (B). */
  batchSize: number;
  /** Micro-batches per optimizer step (G). */
  gradAccum: number;
  /** false keeps the file order every epoch. */
  shuffle: boolean;
  seed: number;
  /** Optimizer steps to run; when > 0 it wins over epochs (epochs repeat as needed). */
  steps?: number;
  /** Passes over the data (may be fractional: the step count is rounded up). Default 1. */
  epochs?: number;
}

/** Where the plan is in the data; JSON-serialisable, stored in checkpoints. */
export interface DataPosition {
  version: 1;
  /** 0-based epoch of the next step. */
  epoch: number;
  /** Steps already taken in that epoch. */
  stepInEpoch: number;
  /** Steps taken in all. */
  stepsDone: number;
  /** What the order depends on, checked on restore. */
  seed: number;
  shuffle: boolean;
  examples: number;
  batchSize: number;
  gradAccum: number;
}

export interface PlannedStep {
  /** 1-based optimizer step. */
  step: number;
  /** 0-based epoch. */
  epoch: number;
  micro: Batch[];
  /** Counted tokens over all micro-batches of the step (the loss normaliser). */
  counted: number;
  /** Examples in the step. */
  examples: number;
}

/** One step of a schedule: the item indices of each of its micro-batches. */
export interface ScheduledStep {
  /** 1-based optimizer step. */
  step: number;
  /** 0-based epoch. */
  epoch: number;
  /** Item indices (0..items-1) per micro-batch, in the order they are used. */
  micro: number[][];
}

export type ScheduleOptions = Pick<
  BatchPlanOptions,
  'batchSize' | 'gradAccum' | 'shuffle' | 'seed' | 'steps' | 'epochs'
>;

/**
 * The training schedule over `items` items (examples, or records whose examples are made when
 * needed): which items form each micro-batch of each step. Deterministic given the seed.
 */
export class BatchSchedule {
  readonly batchSize: number;
  readonly gradAccum: number;
  readonly microPerEpoch: number;
  readonly stepsPerEpoch: number;
  readonly totalSteps: number;
  private epoch = 0;
  private stepInEpoch = 0;
  private stepsDone = 0;
  private orderCache: { epoch: number; order: number[] } | null = null;

  constructor(
    readonly items: number,
    private readonly opts: ScheduleOptions,
  ) {
    checkPositiveInt('batchSize', opts.batchSize);
    checkPositiveInt('gradAccum', opts.gradAccum);
    if (items === 0) throw new BatchError('There are no training examples to batch.');
    this.batchSize = opts.batchSize;
    this.gradAccum = opts.gradAccum;
    this.microPerEpoch = Math.ceil(items / opts.batchSize);
    this.stepsPerEpoch = Math.ceil(this.microPerEpoch / opts.gradAccum);
    const steps = opts.steps ?? 0;
    if (steps > 0) {
      checkPositiveInt('steps', steps);
      this.totalSteps = steps;
    } else {
      const epochs = opts.epochs ?? 1;
      if (!(epochs > 0) || !Number.isFinite(epochs))
        throw new BatchError(`epochs must be > 0 (or steps > 0), got ${epochs}.`);
      this.totalSteps = Math.ceil(epochs * this.stepsPerEpoch - 1e-9);
    }
  }

  /** Item indices of an epoch, in the order they are used. */
  orderOf(epoch: number): number[] {
    if (this.orderCache?.epoch === epoch) return this.orderCache.order;
    const order = [...Array(this.items).keys()];
    if (this.opts.shuffle) new Rng(deriveSeed(this.opts.seed, SHUFFLE_STREAM, epoch)).shuffle(order);
    this.orderCache = { epoch, order };
    return order;
  }

  get done(): boolean {
    return this.stepsDone >= this.totalSteps;
  }

  get position(): DataPosition {
    return {
      version: 1,
      epoch: this.epoch,
      stepInEpoch: this.stepInEpoch,
      stepsDone: this.stepsDone,
      seed: this.opts.seed,
      shuffle: this.opts.shuffle,
      examples: this.items,
      batchSize: this.batchSize,
      gradAccum: this.gradAccum,
    };
  }

  /** Continues from a saved position. Throws when the data or batching no longer match it. */
  restore(pos: DataPosition): void {
    const p = pos as Partial<DataPosition> | null;
    if (!p || p.version !== 1 || ![p.epoch, p.stepInEpoch, p.stepsDone].every((v) => Number.isInteger(v) && v! >= 0)) {
      throw new BatchError(`Not a data position this build can resume from: ${JSON.stringify(pos)}.`);
    }
    const mismatch: string[] = [];
    const mine = this.position;
    for (const k of ['seed', 'shuffle', 'examples', 'batchSize', 'gradAccum'] as const) {
      if (p[k] !== mine[k]) mismatch.push(`${k} was ${JSON.stringify(p[k])}, now ${JSON.stringify(mine[k])}`);
    }
    if (mismatch.length) {
      throw new BatchError(
        `Cannot resume exactly: the data or batching changed since the checkpoint (${mismatch.join('; ')}).`,
      );
    }
    if (p.stepInEpoch! > this.stepsPerEpoch)
      throw new BatchError(`Saved position is step ${p.stepInEpoch} of an epoch that has ${this.stepsPerEpoch}.`);
    this.epoch = p.epoch!;
    this.stepInEpoch = p.stepInEpoch!;
    this.stepsDone = p.stepsDone!;
  }

  /** The next optimizer step's item indices per micro-batch, or null when the schedule is done. */
  next(): ScheduledStep | null {
    if (this.done) return null;
    if (this.stepInEpoch >= this.stepsPerEpoch) {
      this.epoch++;
      this.stepInEpoch = 0;
    }
    const order = this.orderOf(this.epoch);
    const B = this.batchSize;
    const firstMicro = this.stepInEpoch * this.gradAccum;
    const lastMicro = Math.min(firstMicro + this.gradAccum, this.microPerEpoch);
    const micro: number[][] = [];
    for (let j = firstMicro; j < lastMicro; j++) micro.push(order.slice(j * B, (j + 1) * B));
    const step: ScheduledStep = { step: this.stepsDone + 1, epoch: this.epoch, micro };
    this.stepInEpoch++;
    this.stepsDone++;
    return step;
  }

  /** The item indices of the next `steps` steps, without moving (what to prepare ahead). */
  peek(steps: number): number[] {
    let epoch = this.epoch;
    let inEpoch = this.stepInEpoch;
    const out: number[] = [];
    for (let s = 0; s < steps && this.stepsDone + s < this.totalSteps; s++) {
      if (inEpoch >= this.stepsPerEpoch) {
        epoch++;
        inEpoch = 0;
      }
      const order = this.orderOf(epoch);
      const from = inEpoch * this.gradAccum * this.batchSize;
      const to = Math.min(from + this.gradAccum * this.batchSize, this.items);
      for (let k = from; k < to; k++) out.push(order[k]!);
      inEpoch++;
    }
    return out;
  }
}

/** The training schedule over a fixed list of examples, as micro-batches. Deterministic given the seed. */
export class BatchPlan {
  readonly schedule: BatchSchedule;
  /** Upper bound of B·S over all micro-batches (what the trainer allocates for). */
  readonly maxTokens: number;

  constructor(
    private readonly examples: readonly SequenceLike[],
    private readonly opts: BatchPlanOptions,
  ) {
    this.schedule = new BatchSchedule(examples.length, opts);
    let longest = 0;
    for (const e of examples) longest = Math.max(longest, e.ids.length);
    this.maxTokens =
      Math.min(opts.batchSize, examples.length) * paddedLength(longest, opts.maxLen, opts.padMultiple ?? 8);
  }

  get microPerEpoch(): number {
    return this.schedule.microPerEpoch;
  }
  get stepsPerEpoch(): number {
    return this.schedule.stepsPerEpoch;
  }
  get totalSteps(): number {
    return this.schedule.totalSteps;
  }
  get done(): boolean {
    return this.schedule.done;
  }
  get position(): DataPosition {
    return this.schedule.position;
  }
  orderOf(epoch: number): number[] {
    return this.schedule.orderOf(epoch);
  }
  restore(pos: DataPosition): void {
    this.schedule.restore(pos);
  }

  /** The next optimizer step's micro-batches, or null when the plan is done. */
  next(): PlannedStep | null {
    const s = this.schedule.next();
    if (!s) return null;
    const micro = s.micro.map((idx) =>
      makeBatch(
        idx.map((i) => this.examples[i]!),
        this.opts,
      ),
    );
    return {
      step: s.step,
      epoch: s.epoch,
      micro,
      counted: micro.reduce((n, b) => n + b.counted, 0),
      examples: s.micro.reduce((n, m) => n + m.length, 0),
    };
  }

  /** The remaining steps. */
  *[Symbol.iterator](): IterableIterator<PlannedStep> {
    for (let s = this.next(); s; s = this.next()) yield s;
  }
}
