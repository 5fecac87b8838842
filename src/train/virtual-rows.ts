/**
 * Prompt and prefix tuning put P virtual tokens at the head of every sequence (the runner fills
 * them: src/model/runner-virtual.ts). This lays a batch out for that: each row grows by P rows at
 * positions 0..P-1 (id 0, never a target), and the sequence's own tokens move to positions P.., as
 * transformers numbers them after PEFT's prompt or past key values. The virtual rows are not loss
 * targets, and neither is the first real token (no token is predicted from a virtual one), so the
 * loss counts exactly the tokens it counts without the adapter.
 */

import { GpuError } from '../gpu/errors';
import { type Batch, IGNORE_INDEX } from './batch';

export function withVirtualRows(b: Batch, P: number): Batch {
  if (P === 0) return b;
  if (b.keyStart) {
    throw new GpuError('Prompt and prefix tuning need one example per row; turn packing off for these methods.');
  }
  const S = b.S + P;
  const ids = new Uint32Array(b.B * S);
  const positions = new Uint32Array(b.B * S);
  const targets = new Uint32Array(b.B * S).fill(IGNORE_INDEX);
  for (let r = 0; r < b.B; r++) {
    for (let p = 0; p < P; p++) positions[r * S + p] = p;
    for (let t = 0; t < b.S; t++) {
      ids[r * S + P + t] = b.ids[r * b.S + t]!;
      positions[r * S + P + t] = b.positions[r * b.S + t]! + P;
      targets[r * S + P + t] = b.targets[r * b.S + t]!;
    }
  }
  return { B: b.B, S, ids, positions, targets, counted: b.counted };
}
