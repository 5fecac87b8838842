/**
 * The engine's device: the summary of it the app and the CLI show, and the matmul kernels tuned for
 * it. Tuning keeps its choices in a KernelChoiceStore (IndexedDB in the app, a cache file for the
 * CLI): a run loads the saved choices, and after its first step times the kernels of every shape it
 * met without one (src/kernels/matmul/tune.ts). No store: no tuning, the baseline kernels (or a
 * pinned one).
 */

import type { Gpu } from '../gpu/context';
import { applyChoices, currentChoices, deviceKey, tuneMatmul, untunedClasses } from '../kernels/matmul/tune';
import type { GpuSummary, KernelChoiceStore } from './types';

export function gpuSummary(g: Gpu): GpuSummary {
  return {
    vendor: g.info.vendor,
    architecture: g.info.architecture,
    device: g.info.device,
    description: g.info.description,
    runtime: g.info.runtime,
    f16: g.features.f16,
    subgroups: g.features.subgroups,
    subgroupLanes: g.features.subgroupLanes,
    maxBufferSize: g.limits.maxBufferSize,
    maxStorageBufferBindingSize: g.limits.maxStorageBufferBindingSize,
    maxComputeWorkgroupStorageSize: g.limits.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: g.limits.maxComputeInvocationsPerWorkgroup,
    bytesInUse: g.memory().total,
  };
}

export class KernelTuning {
  private store: KernelChoiceStore | null = null;
  private loaded = false;

  setStore(store: KernelChoiceStore | null): void {
    this.store = store;
    this.loaded = false;
  }

  /** Applies the choices saved for this device (once per store). */
  async load(gpu: Gpu): Promise<void> {
    if (!this.store || this.loaded) return;
    this.loaded = true;
    const saved = await this.store.load(deviceKey(gpu)).catch(() => null);
    if (saved) applyChoices(gpu, saved);
  }

  /** Tunes the shapes met without a choice (calling `onStage` first) and saves the choices. */
  async tune(gpu: Gpu, onStage: () => void): Promise<void> {
    if (!this.store || untunedClasses(gpu).length === 0) return;
    onStage();
    await tuneMatmul(gpu);
    await this.store.save(deviceKey(gpu), currentChoices(gpu)).catch(() => undefined);
  }
}
