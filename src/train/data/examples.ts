/**
 * Training data, step 4: a file's usable examples, split into training and validation as a run
 * uses them (parse, render, drop records with nothing to learn, seeded split). The engine's
 * loadDataset and `tabtune export-recipe` (which needs the same split without a GPU) both call it.
 */

import type { DatasetFormat, DatasetIssue } from '../../engine/types';
import { splitTrainVal } from '../batch';
import { parseDataset } from './records';
import { type TokenizedExample, type TokenizerLike, tokenizeRecords } from './render';

export class NoUsableRecordsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NoUsableRecordsError';
  }
}

export interface SplitOptions {
  format?: DatasetFormat | 'auto';
  maxLen: number;
  valFraction: number;
  seed: number;
}

export interface SplitExamples {
  format: DatasetFormat;
  /** Records parsed (before rendering). */
  records: number;
  /** Parse and render issues, in line order. */
  issues: DatasetIssue[];
  /** Usable examples of each split, in file order. */
  train: TokenizedExample[];
  val: TokenizedExample[];
  /** Usable examples of both, in file order. */
  usable: TokenizedExample[];
}

/** Throws NoUsableRecordsError (naming the first problem) when no record can be trained on. */
export function splitExamples(tok: TokenizerLike, fileName: string, content: string, o: SplitOptions): SplitExamples {
  const format = o.format && o.format !== 'auto' ? o.format : undefined;
  const parsed = parseDataset(fileName, content, { format });
  const tokenized = tokenizeRecords(tok, parsed.records, {
    maxLen: o.maxLen,
    overflow: parsed.container === 'txt' ? 'chunk' : 'truncate',
  });
  const issues = [...parsed.issues, ...tokenized.issues];
  const usable: TokenizedExample[] = [];
  for (const ex of tokenized.examples) {
    if (ex.countedTokens > 0 && ex.ids.length >= 2) usable.push(ex);
    else
      issues.push({
        line: ex.line,
        message: 'no tokens of this record count in the loss (empty response or too short)',
      });
  }
  issues.sort((a, b) => a.line - b.line);
  if (usable.length === 0) {
    const first = issues[0] ? ` First problem: line ${issues[0].line}: ${issues[0].message}.` : '';
    throw new NoUsableRecordsError(`${fileName}: no usable records (${parsed.records.length} parsed).${first}`);
  }
  const { train, val } = splitTrainVal(usable, { valFraction: o.valFraction, seed: o.seed });
  return { format: parsed.format, records: parsed.records.length, issues, train, val, usable };
}
