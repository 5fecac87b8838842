/**
 * Training runs and their checkpoints in IndexedDB, safe against two tabs working on one run.
 *
 * A tab owns a run while it holds the run's lease (`RunRecord.lease`: owner tab id + expiry, renewed
 * by a heartbeat) and, where the browser has Web Locks, the lock named runLockName(id), which the
 * browser releases the moment the tab closes or crashes. Every write to a run or its checkpoint
 * checks the lease inside the same IndexedDB transaction, so a tab that lost the run cannot
 * overwrite what the new owner wrote. IndexedDB transactions on a store are serialised across tabs,
 * which makes "check the lease, then write" atomic.
 *
 * A finished adapter is saved together with the run's final state in one transaction (adapters,
 * adapterFiles, runs, checkpoints), so it is either fully there or the run can still be resumed
 * from its last checkpoint.
 */
import type { PeftFiles } from '../engine/types';
import { AdapterLibrary, type NewAdapter } from './adapters';
import { type TabtuneDb, newId } from './db';
import { guardQuota } from './errors';
import type { AdapterRecord, CheckpointRecord, HistoryPoint, RunRecord, RunStatus } from './types';

/** How long a lease lasts without a heartbeat. */
export const LEASE_MS = 60_000;
/** How often the owner renews it. */
export const HEARTBEAT_MS = 10_000;

export class RunLeaseLostError extends Error {
  constructor(runId: string) {
    super(
      `Another tab has taken over training run ${runId}, so this tab stopped writing to it. ` +
        'Continue in the other tab, or close it and resume the run here.',
    );
    this.name = 'RunLeaseLostError';
  }
}

export function runLockName(id: string): string {
  return `tabtune-run-${id}`;
}

export type NewRun = Pick<RunRecord, 'name' | 'model' | 'dataset' | 'lora' | 'train' | 'frozen'>;

export class RunStore {
  constructor(
    readonly db: TabtuneDb,
    /** This tab's id. */
    readonly owner: string,
    private readonly now: () => number = () => Date.now(),
  ) {}

  private lease() {
    return { owner: this.owner, until: this.now() + LEASE_MS };
  }

  /** True when no other live tab holds the run's lease. */
  isFree(run: RunRecord): boolean {
    return !run.lease || run.lease.owner === this.owner || run.lease.until < this.now();
  }

  async create(init: NewRun): Promise<RunRecord> {
    const at = new Date(this.now()).toISOString();
    const run: RunRecord = {
      ...init,
      id: newId(),
      createdAt: at,
      updatedAt: at,
      status: 'running',
      totalSteps: null,
      step: 0,
      history: [],
      checkpointStep: null,
      adapterId: null,
      lease: this.lease(),
      error: null,
    };
    await guardQuota('the training run', () => this.db.put('runs', run));
    return run;
  }

  get(id: string): Promise<RunRecord | undefined> {
    return this.db.get('runs', id);
  }

  /** Newest first. */
  async list(): Promise<RunRecord[]> {
    return (await this.db.getAllFromIndex('runs', 'updatedAt')).reverse();
  }

  /**
   * Runs that stopped without saving an adapter (the tab was closed or crashed, the GPU was lost)
   * and that no other live tab holds.
   */
  async resumable(): Promise<RunRecord[]> {
    const runs = await this.list();
    return runs.filter(
      (r) => r.adapterId === null && r.status !== 'finished' && r.status !== 'stopped' && this.isFree(r),
    );
  }

  /**
   * Claims a run for this tab. `force` (the caller holds the run's Web Lock, so no other tab is
   * alive on it) takes it even from an unexpired lease. Returns null when another tab has it.
   */
  async acquire(id: string, opts: { force?: boolean } = {}): Promise<RunRecord | null> {
    const tx = this.db.transaction('runs', 'readwrite');
    const run = await tx.store.get(id);
    if (!run) {
      await tx.done;
      throw new Error(`Training run ${id} no longer exists.`);
    }
    if (!opts.force && !this.isFree(run)) {
      await tx.done;
      return null;
    }
    const next: RunRecord = {
      ...run,
      lease: this.lease(),
      status: 'running',
      error: null,
      updatedAt: new Date(this.now()).toISOString(),
    };
    await Promise.all([tx.store.put(next), tx.done]);
    return next;
  }

  /** Changes a run this tab owns; throws RunLeaseLostError when another tab has taken it. */
  async update(
    id: string,
    patch: Partial<Pick<RunRecord, 'status' | 'step' | 'history' | 'totalSteps' | 'error' | 'name'>>,
    opts: { release?: boolean } = {},
  ): Promise<RunRecord> {
    return guardQuota('the training run', async () => {
      const tx = this.db.transaction('runs', 'readwrite');
      const run = await tx.store.get(id);
      if (!run) {
        await tx.done;
        throw new Error(`Training run ${id} no longer exists.`);
      }
      if (run.lease && run.lease.owner !== this.owner && run.lease.until >= this.now()) {
        await tx.done;
        throw new RunLeaseLostError(id);
      }
      const next: RunRecord = {
        ...run,
        ...patch,
        lease: opts.release ? null : this.lease(),
        updatedAt: new Date(this.now()).toISOString(),
      };
      await Promise.all([tx.store.put(next), tx.done]);
      return next;
    });
  }

  /** Extends this tab's lease (the heartbeat). */
  renew(id: string): Promise<RunRecord> {
    return this.update(id, {});
  }

  /** Lets go of a run, leaving it resumable (e.g. status 'interrupted' or 'failed'). */
  release(id: string, status: RunStatus, error: string | null = null): Promise<RunRecord> {
    return this.update(id, { status, error }, { release: true });
  }

  /**
   * Stores a checkpoint (replacing the previous one) and the history up to it, in one transaction
   * that first checks this tab still owns the run.
   */
  /** `totalSteps`, when known, is kept with the run (the resume list and the start of a resume say "step 4 of 8"). */
  async saveCheckpoint(
    id: string,
    step: number,
    blob: Uint8Array,
    history: HistoryPoint[],
    totalSteps?: number | null,
  ): Promise<void> {
    await guardQuota(`the checkpoint at step ${step}`, async () => {
      const tx = this.db.transaction(['runs', 'checkpoints'], 'readwrite');
      const runs = tx.objectStore('runs');
      const run = await runs.get(id);
      if (!run) {
        tx.abort();
        await tx.done.catch(() => undefined);
        throw new Error(`Training run ${id} no longer exists.`);
      }
      if (run.lease && run.lease.owner !== this.owner && run.lease.until >= this.now()) {
        tx.abort();
        await tx.done.catch(() => undefined);
        throw new RunLeaseLostError(id);
      }
      const at = new Date(this.now()).toISOString();
      const ckpt: CheckpointRecord = { runId: id, step, savedAt: at, blob };
      await Promise.all([
        tx.objectStore('checkpoints').put(ckpt),
        runs.put({
          ...run,
          checkpointStep: step,
          step: Math.max(run.step, step),
          totalSteps: totalSteps ?? run.totalSteps,
          history,
          lease: this.lease(),
          updatedAt: at,
        }),
        tx.done,
      ]);
    });
  }

  checkpoint(id: string): Promise<CheckpointRecord | undefined> {
    return this.db.get('checkpoints', id);
  }

  /**
   * Saves the run's adapter and marks the run finished (or stopped), dropping its checkpoint, all
   * in one transaction. The adapter is saved even when another tab has meanwhile claimed the run:
   * a trained adapter is never thrown away; the run and its checkpoint are then left as the other
   * tab has them (it is training on them), so the two tabs do not overwrite each other.
   */
  async finish(
    id: string,
    adapter: NewAdapter,
    files: PeftFiles,
    final: { status: 'finished' | 'stopped'; step: number; history: HistoryPoint[] },
  ): Promise<AdapterRecord> {
    const { record, filesRecord } = AdapterLibrary.record({ ...adapter, runId: id }, files);
    await guardQuota(`adapter "${record.name}"`, async () => {
      const tx = this.db.transaction(['runs', 'checkpoints', 'adapters', 'adapterFiles'], 'readwrite');
      const runs = tx.objectStore('runs');
      const run = await runs.get(id);
      const writes: Promise<unknown>[] = [
        tx.objectStore('adapterFiles').put(filesRecord),
        tx.objectStore('adapters').put(record),
      ];
      const takenOver = !!run?.lease && run.lease.owner !== this.owner && run.lease.until >= this.now();
      if (run && !takenOver) {
        writes.push(
          runs.put({
            ...run,
            status: final.status,
            step: final.step,
            history: final.history,
            adapterId: record.id,
            checkpointStep: null,
            lease: null,
            error: null,
            updatedAt: new Date(this.now()).toISOString(),
          }),
          tx.objectStore('checkpoints').delete(id),
        );
      }
      await Promise.all([...writes, tx.done]);
    });
    return record;
  }

  /** Deletes a run and its checkpoint (its adapter, if any, stays in the library). */
  async discard(id: string): Promise<void> {
    const tx = this.db.transaction(['runs', 'checkpoints'], 'readwrite');
    await Promise.all([tx.objectStore('runs').delete(id), tx.objectStore('checkpoints').delete(id), tx.done]);
  }
}

/** Something that keeps a run's Web Lock until released. */
export interface HeldLock {
  release(): void;
}

/**
 * Takes the run's Web Lock if no other tab holds it. Returns null when another tab has it, and a
 * no-op lock when the browser has no Web Locks (the lease alone then guards the run).
 */
export async function tryRunLock(id: string): Promise<HeldLock | null> {
  const locks = (globalThis.navigator as Navigator | undefined)?.locks;
  if (!locks?.request) return { release() {} };
  return new Promise<HeldLock | null>((resolve, reject) => {
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    locks
      .request(runLockName(id), { ifAvailable: true }, async (lock) => {
        if (!lock) {
          resolve(null);
          return;
        }
        resolve({ release });
        await held;
      })
      .catch(reject);
  });
}

/** Names of run locks held by any tab of this origin; null when the browser has no Web Locks. */
export async function heldRunLocks(): Promise<Set<string> | null> {
  const locks = (globalThis.navigator as Navigator | undefined)?.locks;
  if (!locks?.query) return null;
  const snap = await locks.query();
  return new Set((snap.held ?? []).map((l) => l.name ?? '').filter((n) => n.startsWith('tabtune-run-')));
}
