/**
 * Named scratch tensors that are reused across steps. `get(name, shape)` returns the same buffer
 * every call while it is big enough; when a bigger one is needed the old buffer is retired (not
 * destroyed, since dispatches already recorded may still use it) and freed by `collect()`, which
 * callers run after a submit has completed (e.g. after `gpu.sync()`).
 */

import type { Gpu } from './context';
import { type DType, type MemoryCategory, type Tensor, tensorBytes } from './tensor';

export class Workspace {
  private readonly slots = new Map<string, Tensor>();
  private retired: Tensor[] = [];

  constructor(
    private readonly gpu: Gpu,
    private readonly category: MemoryCategory = 'scratch',
  ) {}

  /** A tensor view of at least `shape`'s bytes under `name` (contents undefined). */
  get(name: string, shape: readonly number[], dtype: DType = 'f32'): Tensor {
    const need = tensorBytes(shape, dtype);
    const have = this.slots.get(name);
    if (have && have.buffer.size >= need) {
      return have.dtype === dtype && sameShape(have.shape, shape) ? have : { ...have, shape: [...shape], dtype };
    }
    if (have) this.retired.push(have);
    const t = this.gpu.tensor(`ws:${name}`, shape, dtype, this.category);
    this.slots.set(name, t);
    return t;
  }

  /** Frees buffers replaced by bigger ones. Call only when no submitted work uses them. */
  collect(): void {
    for (const t of this.retired) this.gpu.free(t);
    this.retired = [];
  }

  /** Frees everything. */
  dispose(): void {
    this.collect();
    for (const t of this.slots.values()) this.gpu.free(t);
    this.slots.clear();
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
