/**
 * A run's hold on its stored record while it trains: the lease renewed every HEARTBEAT_MS and the
 * checkpoints saved under it. When another tab has taken the run over (a renewal or a save finds
 * the lease lost) the engine is stopped and the user told, once; a checkpoint that cannot be saved
 * for another reason warns once and training goes on.
 */
import type { HistoryPoint, RunRecord } from '../../store/types';
import { HEARTBEAT_MS, RunLeaseLostError, type RunStore } from '../../store/runs';
import { type AppContext, patch } from '../context';
import { describeError } from '../errors';

export class RunLease {
  private lost = false;
  private warnedStorage = false;
  private readonly heartbeat: ReturnType<typeof setInterval>;

  constructor(
    private readonly ctx: AppContext,
    private readonly runs: RunStore,
    readonly run: RunRecord,
  ) {
    this.heartbeat = setInterval(() => {
      runs.renew(run.id).catch((e: unknown) => {
        if (e instanceof RunLeaseLostError) this.takenOver(e);
      });
    }, HEARTBEAT_MS);
  }

  /** Saves a checkpoint with the history up to its step (and the run's step count), and shows it. */
  async saveCheckpoint(
    blob: Uint8Array,
    step: number,
    history: readonly HistoryPoint[],
    totalSteps: number | null,
  ): Promise<void> {
    try {
      await this.runs.saveCheckpoint(
        this.run.id,
        step,
        blob,
        history.filter((h) => h.step <= step),
        totalSteps,
      );
      patch(this.ctx, 'run', { checkpoint: { step, at: new Date().toISOString() } });
    } catch (e) {
      if (e instanceof RunLeaseLostError) {
        this.takenOver(e);
      } else if (!this.warnedStorage) {
        this.warnedStorage = true;
        this.ctx.notify({
          level: 'warning',
          ...describeError(e, 'Saving a checkpoint'),
          action: 'Training goes on; the finished adapter is still kept.',
        });
      }
    }
  }

  /** Stops renewing (the run's end, whatever it was). */
  end(): void {
    clearInterval(this.heartbeat);
  }

  private takenOver(e: RunLeaseLostError): void {
    if (this.lost) return;
    this.lost = true;
    this.ctx.engine.stop();
    this.ctx.notify({ level: 'error', title: 'Another tab took over this run', detail: e.message });
  }
}
