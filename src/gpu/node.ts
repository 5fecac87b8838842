/**
 * WebGPU in Node through the `webgpu` npm package (Google's Dawn). Used by the tests, the CLI
 * and the benchmarks. Not imported by the browser bundle.
 *
 * Dawn needs a Vulkan driver. Without a GPU, Mesa's lavapipe (CPU Vulkan, `mesa-vulkan-drivers`
 * >= 25) works; it is selected automatically when present and VK_ICD_FILENAMES is not set.
 * Set TABTUNE_VK_ICD=system to use whatever driver the Vulkan loader finds (a real GPU).
 * TABTUNE_DUMP_WGSL=dir writes the WGSL of every pipeline compiled to dir/<label>.wgsl.
 */

import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Gpu, type GpuOptions } from './context';
import { WebGpuUnavailableError } from './errors';

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
  navigatorGpu = mod.create([]);
  return navigatorGpu;
}

/** Node's WebGPU entry point (Dawn), the object a browser has as navigator.gpu (for the TF.js comparison). */
export function nodeNavigatorGpu(): GPU {
  return nodeGpuObject();
}

/** Creates a Gpu in Node. Throws WebGpuUnavailableError with install instructions on failure. */
export async function createNodeGpu(opts: GpuOptions = {}): Promise<Gpu> {
  const gpu = nodeGpuObject();
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new WebGpuUnavailableError(`No WebGPU adapter was found. ${INSTALL_HINT}`);
  const g = await Gpu.fromAdapter(adapter, 'node', opts);
  const dump = process.env.TABTUNE_DUMP_WGSL;
  if (dump) g.onShader = shaderDumper(dump);
  return g;
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
