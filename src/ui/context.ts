/**
 * What the controller's parts (model, dataset, training, library, compare) share: the state
 * store, the engine (the worker client in the app, a fake in tests), the browser stores, and a
 * way to tell the user something. Injected so the whole controller runs in Node tests.
 */
import type { KernelBenchSize, KernelsBench } from '../bench/kernels-bench';
import type { EngineApi } from '../engine/types';
import type { AdapterLibrary } from '../store/adapters';
import type { ModelByteCache, ModelCacheIndex } from '../store/model-cache';
import type { HeldLock, RunStore } from '../store/runs';
import type { SettingsStorage } from './settings';
import type { AppState, Notice, Store } from './state';

/** EngineApi plus the worker client's extras (all optional, so a plain Engine fits too). */
export type AppEngine = EngineApi & {
  forgetAdapter?(key: string): void;
  /** The kernel bench in the GPU worker (Diagnostics); absent: not offered. */
  benchKernels?(size: KernelBenchSize, onLine?: (line: string) => void): Promise<KernelsBench>;
  lastCachedUrls?: string[];
  onFatal?: ((e: Error) => void) | null;
  onCacheWarning?: ((message: string) => void) | null;
};

export interface Platform {
  fetch: typeof fetch;
  /** The page URL (the demo model and dataset are relative to it). */
  pageUrl: string;
  /** Takes a run's Web Lock; null when another tab holds it. */
  lockRun(runId: string): Promise<HeldLock | null>;
  /** Names of run locks any tab holds; null when the browser has no Web Locks (leases decide). */
  heldRunLocks(): Promise<Set<string> | null>;
  persistStorage(): Promise<boolean>;
  storageEstimate(): Promise<{ usage: number; quota: number } | null>;
  isPersisted(): Promise<boolean>;
  /** Where the user's settings are kept between visits (localStorage); absent: not kept. */
  settingsStorage?: SettingsStorage;
}

export interface Stores {
  adapters: AdapterLibrary;
  runs: RunStore;
  models: ModelCacheIndex;
}

export interface AppContext {
  store: Store<AppState>;
  engine: AppEngine;
  platform: Platform;
  /** Null when IndexedDB is unavailable (the app works, nothing is kept). */
  stores: Stores | null;
  byteCache: ModelByteCache | null;
  notify(n: Omit<Notice, 'id'>): void;
}

/** Shallow-merges a patch into one slice of the state. */
export function patch<K extends keyof AppState>(ctx: AppContext, key: K, value: Partial<AppState[K]>): void {
  ctx.store.update((s) => ({ ...s, [key]: { ...(s[key] as object), ...(value as object) } }));
}

/** The newest request of each kind, per app store (see latestRequest). */
const newest = new WeakMap<object, Map<string, number>>();

/**
 * Starts a request of a kind whose newest one wins (a dataset choice, a read of the library):
 * the returned check says whether no later request of that kind has started since, so a slow
 * earlier answer is dropped instead of overwriting a later one's.
 */
export function latestRequest(
  ctx: AppContext,
  kind: 'dataset' | 'library',
  opts: { onlyFirst?: boolean } = {},
): () => boolean {
  let counts = newest.get(ctx.store);
  if (!counts) newest.set(ctx.store, (counts = new Map()));
  // A default (the demo dataset at start) yields to any request of the user's, even an earlier one.
  if (opts.onlyFirst && counts.get(kind)) return () => false;
  const n = (counts.get(kind) ?? 0) + 1;
  counts.set(kind, n);
  return () => counts.get(kind) === n;
}
