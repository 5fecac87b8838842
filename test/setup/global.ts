/**
 * Runs once before the suite: proves a WebGPU adapter exists, prints which one, and fails the whole
 * run with install instructions when there is none.
 */
import { createNodeGpu, INSTALL_HINT } from '../../src/gpu/node';

export default async function setup(): Promise<void> {
  let gpu;
  try {
    gpu = await createNodeGpu();
  } catch (e) {
    throw new Error(`GPU tests cannot run: ${(e as Error).message}\n${INSTALL_HINT}`, { cause: e });
  }
  const { vendor, architecture, description } = gpu.info;
  console.log(
    `[tabtune] WebGPU adapter (node): ${vendor || '?'} / ${architecture || '?'} ${description ? `(${description})` : ''}; ` +
      `shader-f16=${gpu.features.f16} subgroups=${gpu.features.subgroups}; ` +
      `maxStorageBufferBindingSize=${gpu.limits.maxStorageBufferBindingSize}`,
  );
  gpu.destroy();
}
