/**
 * WebGPU in Node through the `webgpu` npm package (Google's Dawn). Used by the tests, the CLI
 * and the benchmarks. Not imported by the browser bundle.
 *
 * Dawn needs a Vulkan driver. Without a GPU, Mesa's lavapipe (CPU Vulkan, `mesa-vulkan-drivers`
 * >= 25) works; it is selected automatically when present and VK_ICD_FILENAMES is not set.
 * Set TABTUNE_VK_ICD=system to use whatever driver the Vulkan loader finds (a real GPU).
 * TABTUNE_DUMP_WGSL=dir writes the WGSL of every pipeline compiled to dir/<label>.wgsl.
 *
 * Dawn rounds timestamp-query values down to 65.536 µs by default (a browser's guard against
 * timing attacks); a kernel profile (profiler.ts, `bench profile`) of kernels that take a few
 * microseconds on a GPU would read zeros, so that rounding is turned off here (it changes nothing
 * but timestamp values).
 *
 * Dawn's Node binding delivers GPU promises (mapAsync, onSubmittedWorkDone, async pipelines) by
 * polling its event queue from a setImmediate callback for as long as any is pending: a busy loop
 * on the JavaScript thread for the whole time the GPU works. On a CPU driver that loop takes a core
 * from the driver's own threads (lavapipe, 2 cores: greedy generation ran 1.9x faster without it,
 * timed alternately). So the binding's polls (setImmediate calls with a lone native function; no
 * JavaScript code schedules those) are delayed by 1 ms instead: at most a millisecond later per
 * wait. TABTUNE_DAWN_POLL=spin (or setDawnPolling('spin')) restores the binding's own loop.
 */

import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Gpu, type GpuOptions } from './context';
import { WebGpuUnavailableError } from './errors';
import { MAX_BIND_GROUPS } from './recorder';

const LAVAPIPE_ICD = '/usr/share/vulkan/icd.d/lvp_icd.json';

export const INSTALL_HINT =
  'Tabtune needs a WebGPU adapter. In Node it uses the `webgpu` package (Dawn) on a Vulkan driver. ' +
  'Without a GPU install Mesa lavapipe >= 25 (Debian bookworm: `apt-get install -t bookworm-backports ' +
  'mesa-vulkan-drivers`, or run `bash scripts/setup-system.sh` as root); with a GPU install its Vulkan driver.';

let navigatorGpu: GPU | null = null;

function prepareEnv(): void {
  if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = mkdtempSync(join(tmpdir(), 'tabtune-xdg-'));
  if (process.env.TABTUNE_VK_ICD === 'system') return;
  if (process.env.TABTUNE_VK_ICD) {
    process.env.VK_ICD_FILENAMES = process.env.TABTUNE_VK_ICD;
    return;
  }
  if (!process.env.VK_ICD_FILENAMES && !process.env.VK_DRIVER_FILES && existsSync(LAVAPIPE_ICD)) {
    process.env.VK_ICD_FILENAMES = LAVAPIPE_ICD;
  }
}

function nodeGpuObject(): GPU {
  if (navigatorGpu) return navigatorGpu;
  prepareEnv();
  let mod: { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
  try {
    const require = createRequire(import.meta.url);
    mod = require('webgpu');
  } catch (e) {
    throw new WebGpuUnavailableError(
      `Could not load the \`webgpu\` package (${(e as Error).message}). Run \`npm ci\`. ${INSTALL_HINT}`,
    );
  }
  Object.assign(globalThis, mod.globals);
  throttleDawnPolling();
  navigatorGpu = mod.create(['disable-dawn-features=timestamp_quantization']);
  return navigatorGpu;
}

/** Node's WebGPU entry point (Dawn), the object a browser has as navigator.gpu (for the TF.js comparison). */
export function nodeNavigatorGpu(): GPU {
  return nodeGpuObject();
}

let dawnPolling: 'timer' | 'spin' = process.env.TABTUNE_DAWN_POLL === 'spin' ? 'spin' : 'timer';

/** How Dawn's event polls run (see the file comment); the benchmark times both. */
export function setDawnPolling(mode: 'timer' | 'spin'): void {
  dawnPolling = mode;
}

const THROTTLED = Symbol.for('tabtune.dawnPollThrottle');

/** Routes Dawn's setImmediate polls through a 1 ms timer (once per process). */
function throttleDawnPolling(): void {
  const g = globalThis as unknown as Record<PropertyKey, unknown> & { setImmediate: typeof setImmediate };
  const immediate = g.setImmediate;
  if ((immediate as unknown as Record<symbol, unknown>)[THROTTLED]) return;
  const nativeSource = /\{\s*\[native code\]\s*\}\s*$/;
  const patched = function (this: unknown, fn: unknown, ...args: unknown[]) {
    if (
      dawnPolling === 'timer' &&
      args.length === 0 &&
      typeof fn === 'function' &&
      nativeSource.test(Function.prototype.toString.call(fn))
    ) {
      return setTimeout(fn as () => void, 1);
    }
    return (immediate as (...a: unknown[]) => unknown).call(this, fn, ...args);
  };
  Object.assign(patched, immediate, { [THROTTLED]: true, [promisify.custom]: promisify(immediate) });
  g.setImmediate = patched as unknown as typeof setImmediate;
}

/** Creates a Gpu in Node. Throws WebGpuUnavailableError with install instructions on failure. */
export async function createNodeGpu(opts: GpuOptions = {}): Promise<Gpu> {
  const gpu = nodeGpuObject();
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new WebGpuUnavailableError(`No WebGPU adapter was found. ${INSTALL_HINT}`);
  const g = await Gpu.fromAdapter(adapter, 'node', opts);
  guardMappings(g);
  const dump = process.env.TABTUNE_DUMP_WGSL;
  if (dump) g.onShader = shaderDumper(dump);
  return g;
}

/**
 * Bind groups on lavapipe (see SubmitCache.budget): their native sets are memory mappings freed
 * only when the garbage collector finalizes the JavaScript objects, and a process holds at most
 * vm.max_map_count mappings. So the submit cache runs the collector when it drops its groups
 * (full), and on lavapipe one submit may make at most the mappings left after what the cache and
 * the rest of the process hold (submitCache.budget), so a model too big for it gets an error that says
 * what to do instead of a crash.
 */
export function guardMappings(g: Gpu, maxMapCount: number | null = readMaxMapCount()): void {
  g.submitCache.collectGarbage = garbageCollector();
  const i = g.info;
  const lavapipe = /llvmpipe|lavapipe/i.test(`${i.vendor} ${i.architecture} ${i.device} ${i.description}`);
  if (lavapipe && maxMapCount !== null) g.submitCache.budget = mappingBudget(maxMapCount);
}

/** New bind groups one submit may make under vm.max_map_count = `max` (cache + process reserve). */
export function mappingBudget(max: number): number {
  return Math.max(1024, max - RESERVED_MAPPINGS);
}

/** The submit cache's groups and the process' own mappings (libraries, heaps: up to ~7K seen). */
const RESERVED_MAPPINGS = MAX_BIND_GROUPS + 8192;

function readMaxMapCount(): number | null {
  try {
    const n = Number(readFileSync('/proc/sys/vm/max_map_count', 'utf8').trim());
    return Number.isFinite(n) && n > 0 ? n : null;
  } catch {
    return null; // not Linux
  }
}

/** global.gc, exposed at run time when node was not started with --expose-gc. */
function garbageCollector(): (() => void) | null {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) return gc;
  try {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  } catch {
    return null;
  }
}

/** Writes each shader to dir/<label>.wgsl (label-2.wgsl, ... when a label has several sources). */
function shaderDumper(dir: string): (label: string, code: string, entryPoint: string) => void {
  mkdirSync(dir, { recursive: true });
  const seen = new Map<string, number>();
  return (label, code, entryPoint) => {
    const base = `${label}${entryPoint === 'main' ? '' : `.${entryPoint}`}`.replace(/[^\w.-]+/g, '_');
    const n = (seen.get(base) ?? 0) + 1;
    seen.set(base, n);
    writeFileSync(join(dir, `${base}${n > 1 ? `-${n}` : ''}.wgsl`), code);
  };
}
