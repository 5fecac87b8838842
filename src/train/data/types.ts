/** The dataset types the data pipeline produces and the engine's interface passes on to the UI and CLI. */

export type DatasetFormat = 'text' | 'alpaca' | 'chat';

/** A record that was skipped, and why (1-based line of the file). */
export interface DatasetIssue {
  line: number;
  message: string;
}

export interface ExamplePreview {
  line: number;
  /** Token pieces with whether each counts in the loss. */
  pieces: { text: string; counted: boolean }[];
  tokens: number;
  countedTokens: number;
  truncated: boolean;
  /** A window of a long text record split at max length: which one (1-based) of how many. */
  part?: { index: number; of: number };
}

/** What the engine reports about a loaded dataset (the Data view, the CLI). */
export interface DatasetSummary {
  fileName: string;
  format: DatasetFormat;
  /** Usable records (parsed and checked in one pass over the file). */
  records: number;
  /** Training / validation items: examples when the dataset is tokenized whole, else records. */
  trainRecords: number;
  valRecords: number;
  trainTokens: number;
  countedTokens: number;
  /**
   * True for a large dataset tokenized lazily (src/train/data/prepared.ts): the token counts are
   * estimated from its first records, and records that cannot be rendered are found while training.
   */
  tokensEstimated: boolean;
  /** The first issues, in line order (at most 1,000)... */
  issues: DatasetIssue[];
  /** ...and how many there are in all. */
  issueCount: number;
  preview: ExamplePreview[];
  /**
   * Examples longer than max length, cut to it (their end is not learned), and the first lines
   * they come from; in a lazily read dataset, counted in its first records (the sample).
   */
  truncated: { examples: number; lines: number[] };
}

/**
 * A dataset's summary before its index pass ends: the first records' preview (rendered as the final
 * summary's is, so it is the same examples), and the records and issues found in the bytes read so
 * far (at most the final counts).
 */
export interface DatasetProvisional {
  format: DatasetFormat;
  /** Usable records so far. */
  records: number;
  /** The first issues so far, in line order... */
  issues: DatasetIssue[];
  /** ...and how many so far. */
  issueCount: number;
  preview: ExamplePreview[];
  bytesRead: number;
  bytesTotal: number;
}
