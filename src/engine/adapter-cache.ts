/**
 * The adapters the engine keeps on the GPU between evaluations and generations, one per
 * AdapterRef key. An adapter is the same while its key and its files' identity (the ref's
 * `version`, adapter_config.json's text and the files' sizes; no hashing of the weights) are: a
 * known key with other files loads them afresh and frees the old ones.
 *
 * Operations that use kept adapters run under `using`. `forget` (the app's library deleting an
 * adapter, sent to the worker out of turn, so possibly while a Compare evaluation or a Chat reply
 * with it runs) drops the key at once, so a later request loads it afresh, but frees its GPU
 * weights, and what `onFreed` frees with them, only when the operations in progress have ended.
 */
import { InUse } from '../gpu/in-use';
import type { GpuLora } from '../lora/gpu-lora';
import type { AdapterRef } from './types';

/** What tells the files behind a ref's key apart, cheaply (with the key). */
export function adapterIdentity(ref: AdapterRef): string {
  const f = ref.files;
  return JSON.stringify([
    ref.key,
    ref.version ?? null,
    f.adapterConfig,
    f.adapterModel.byteLength,
    f.loftqBackbone?.byteLength ?? null,
  ]);
}

export class AdapterCache {
  private readonly kept = new Map<string, { identity: string; lora: GpuLora }>();
  /** How many times each key was forgotten (an adapter forgotten while it loads is not kept). */
  private readonly forgets = new Map<string, number>();
  private readonly inUse = new InUse();

  /** `onFreed(identity)`: called once an adapter's weights are freed, to free what goes with them. */
  constructor(private readonly onFreed: (identity: string) => void) {}

  /** Runs an operation that may use kept adapters (get): none is freed before it ends. */
  using<T>(op: () => Promise<T>): Promise<T> {
    return this.inUse.during(op);
  }

  /** `ref`'s adapter on the GPU, kept or made by `load`; call it inside `using`. */
  async get(ref: AdapterRef, load: () => Promise<GpuLora>): Promise<GpuLora> {
    const identity = adapterIdentity(ref);
    const kept = this.kept.get(ref.key);
    if (kept?.identity === identity) return kept.lora;
    if (kept) this.forget(ref.key); // other files under this key: they replace the kept ones
    const forgets = this.forgets.get(ref.key) ?? 0;
    const lora = await load();
    if ((this.forgets.get(ref.key) ?? 0) === forgets) this.kept.set(ref.key, { identity, lora });
    else this.free(identity, lora); // forgotten while it loaded: this operation's only
    return lora;
  }

  /** Drops `key`; its weights are freed now, or when the operations in progress end. */
  forget(key: string): void {
    this.forgets.set(key, (this.forgets.get(key) ?? 0) + 1);
    const kept = this.kept.get(key);
    this.kept.delete(key);
    if (kept) this.free(kept.identity, kept.lora);
  }

  /** Frees every kept adapter now (the model goes; nothing may be running). */
  clear(): void {
    for (const { lora } of this.kept.values()) lora.dispose();
    this.kept.clear();
  }

  private free(identity: string, lora: GpuLora): void {
    this.inUse.whenIdle(() => {
      lora.dispose();
      this.onFreed(identity);
    });
  }
}
