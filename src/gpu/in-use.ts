/**
 * GPU resources that operations in progress may be using (an evaluation, a generation): freeing
 * them while one runs would destroy buffers its remaining submits still read ("buffer used while
 * destroyed", or another allocation's values). What is freed while any runs waits for the last to
 * end. The engine's adapters and its kept evaluation runner are freed this way.
 */
export class InUse {
  private running = 0;
  private pending: (() => void)[] = [];

  /** Runs `op`, counted as in progress until it settles. */
  async during<T>(op: () => Promise<T>): Promise<T> {
    this.running++;
    try {
      return await op();
    } finally {
      if (--this.running === 0) {
        const frees = this.pending;
        this.pending = [];
        for (const free of frees) free();
      }
    }
  }

  /** Runs `free` now when nothing is in progress, else when the last operation in progress ends. */
  whenIdle(free: () => void): void {
    if (this.running === 0) free();
    else this.pending.push(free);
  }
}
