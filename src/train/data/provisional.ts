/**
 * A dataset's summary while its index pass still runs (scan.ts's partial index after each chunk):
 * the first records rendered for the preview exactly as PreparedDataset renders them for the final
 * summary (same records, same render options, same examplePreview), and the records and issues
 * counted so far. So the preview seen early is the final one's first examples, and every count is
 * at most the final one: the records rendered here are among those the final summary renders (the
 * first `renderLimit`), and their issues are among its issues.
 */

import type { DatasetIssue, DatasetProvisional, ExamplePreview } from './types';
import { type RenderOptions, type TokenizerLike, examplePreview } from './render';
import type { PartialScan } from './scan';
import { tokenizeRecord } from './tokens';

/** Records rendered per step while the preview fills. */
const STEP = 32;

export class ProvisionalSummary {
  private readonly preview: ExamplePreview[] = [];
  private readonly renderIssues: DatasetIssue[] = [];
  private rendered = 0;
  private busy: Promise<void> | null = null;
  private last = -Infinity;
  private failed = false;

  /**
   * @param renderLimit records the final summary renders from the start of the file (its sample)
   * @param intervalMs the least time between two sends (the first is sent at once)
   */
  constructor(
    private readonly tok: TokenizerLike,
    private readonly render: (p: PartialScan) => RenderOptions,
    private readonly previewCount: number,
    private readonly renderLimit: number,
    private readonly send: (p: DatasetProvisional) => void,
    private readonly intervalMs = 250,
  ) {}

  /** A partial index from the scan: sends a summary of it unless one is being made or was just sent. */
  offer(p: PartialScan): void {
    if (this.busy || this.failed || Date.now() - this.last < this.intervalMs) return;
    this.busy = this.make(p)
      .catch(() => {
        // The final pass reports whatever went wrong; the early summary just stops.
        this.failed = true;
      })
      .finally(() => (this.busy = null));
  }

  /** Waits for a summary on its way (none is sent after this). */
  async settle(): Promise<void> {
    await this.busy;
    this.failed = true;
  }

  private async make(p: PartialScan): Promise<void> {
    const { index } = p;
    const limit = Math.min(index.count, this.renderLimit);
    const opts = this.render(p);
    while (this.preview.length < this.previewCount && this.rendered < limit) {
      const ids = Array.from({ length: Math.min(STEP, limit - this.rendered) }, (_, k) => this.rendered + k);
      for (const record of await index.read(ids)) {
        const { tokens, full } = tokenizeRecord(this.tok, record, opts, false);
        if (tokens.issue) this.renderIssues.push(tokens.issue);
        for (const ex of full)
          if (this.preview.length < this.previewCount) this.preview.push(examplePreview(this.tok, ex));
      }
      this.rendered += ids.length;
    }
    if (this.failed) return;
    const issues = [...index.issues, ...this.renderIssues].sort((a, b) => a.line - b.line);
    this.last = Date.now();
    this.send({
      format: index.format,
      records: index.count,
      issues,
      issueCount: index.issueCount + this.renderIssues.length,
      preview: [...this.preview],
      bytesRead: p.done,
      bytesTotal: p.total,
    });
  }
}
