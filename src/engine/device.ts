/**
 * The engine's device: the summary of it the app and the CLI show, and the matmul kernels tuned for
 * it. Tuning keeps its choices in a KernelChoiceStore (IndexedDB in the app, a cache file for the
 * CLI): a run loads the saved choices, and between its steps times the kernels of the shapes it
 * met without one (src/kernels/matmul/tune.ts), about a second per gap (all that are left after the
 * last step), so training goes on with the current kernels and switches class by class (a class
 * not tuned yet runs the device class's likely best member: gpu.kernels.prior). No store, or the
 * mode 'off' or a pin: no tuning, the baseline kernels (or the pinned one).
 */

import type { Gpu } from '../gpu/context';
import { attentionSet } from '../kernels/attention-variants';
import { applyChoices, currentChoices, deviceKey, pinMember, tuneMatmul, untunedClasses } from '../kernels/matmul/tune';
import type { GpuSummary, KernelChoiceStore, KernelMode, SavedKernelChoices } from './types';

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
    attention: {
      auto: attentionSet(g, null),
      tiled: attentionSet(g, 'tiled'),
      direct: attentionSet(g, 'direct'),
    },
  };
}

export class KernelTuning {
  private store: KernelChoiceStore | null = null;
  private mode: KernelMode = 'auto';
  private loaded = false;
  /** The classes tuned and to tune since tuning started (progress across steps). */
  private progress: { done: number; total: number } | null = null;
  /**
   * Time for tuning between two steps: gapMs, or `gapShare` times the training since the last gap
   * when more (so a slow device, whose steps take seconds, tunes more per gap); at least one
   * class per gap.
   */
  gapMs = 1000;
  gapShare = 1;
  private lastGap = 0;

  setStore(store: KernelChoiceStore | null): void {
    this.store = store;
    this.loaded = false;
  }

  /**
   * Sets the mode for the runs to come: a pin applies at once; 'off' drops the choices in use (the
   * baseline kernels run); 'auto' loads the saved choices again on the next run.
   */
  setMode(gpu: Gpu, mode: KernelMode): void {
    pinMember(gpu, typeof mode === 'object' ? mode.pin : null);
    this.mode = mode;
    gpu.kernels.prior = false; // until the next run loads its choices
    gpu.kernels.choices.clear();
    this.loaded = false;
    this.progress = null;
  }

  private get tuning(): KernelChoiceStore | null {
    return this.mode === 'auto' ? this.store : null;
  }

  /** Applies the choices saved for this device (once per store and mode). */
  async load(gpu: Gpu): Promise<void> {
    this.progress = null; // a run's tuning progress counts from its start
    this.lastGap = performance.now();
    const store = this.tuning;
    // Classes not tuned yet run the device class's likely best member, not the baseline (tune.ts).
    gpu.kernels.prior = !!store;
    if (!store || this.loaded) return;
    this.loaded = true;
    const saved = await store.load(deviceKey(gpu)).catch(() => null);
    if (saved) applyChoices(gpu, saved);
  }

  /**
   * Between two steps: tunes shape classes met without a choice for about gapMs (at least one;
   * after a run's last step, `last`, all of them, so the next run on the device tunes nothing),
   * calling `onStage` before each with how many are done of how many since tuning began, and
   * once more when all are done; saves the choices. Returns the classes tuned.
   */
  async tune(gpu: Gpu, onStage: (p: { done: number; total: number }) => void, last = false): Promise<number> {
    const store = this.tuning;
    const classes = store ? untunedClasses(gpu) : [];
    const t0 = performance.now();
    const budget = last ? Infinity : Math.max(this.gapMs, this.gapShare * (t0 - this.lastGap));
    this.lastGap = t0;
    if (!store || classes.length === 0) return 0;
    const p = this.progress ?? { done: 0, total: 0 };
    this.progress = p;
    p.total = p.done + classes.length; // classes first met since the last gap join
    let n = 0;
    for (const cls of classes) {
      onStage({ ...p });
      await tuneMatmul(gpu, { only: [cls] });
      p.done++;
      n++;
      if (performance.now() - t0 >= budget) break;
    }
    this.lastGap = performance.now();
    if (p.done === p.total) {
      onStage({ ...p });
      this.progress = null;
    }
    await store.save(deviceKey(gpu), currentChoices(gpu)).catch(() => undefined);
    return n;
  }

  /** Every device's saved choices (none without a store that lists), this device's marked. */
  async list(gpu: Gpu): Promise<SavedKernelChoices[]> {
    const all = (await this.store?.list?.().catch(() => [])) ?? [];
    const key = deviceKey(gpu);
    return all.map((c) => ({ ...c, current: c.deviceKey === key }));
  }

  /** Forgets a device's saved choices; this device's also stop applying (its next run tunes again). */
  async forget(gpu: Gpu, key: string): Promise<void> {
    await this.store?.forget?.(key);
    if (key === deviceKey(gpu)) gpu.kernels.choices.clear();
  }
}
