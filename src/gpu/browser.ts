/**
 * WebGPU in the browser through `navigator.gpu`. The page must be a secure context
 * (https or http://localhost).
 */

import { Gpu, type GpuOptions } from './context';
import { WebGpuUnavailableError } from './errors';

export async function createBrowserGpu(opts: GpuOptions = {}): Promise<Gpu> {
  const nav = (globalThis as { navigator?: Navigator }).navigator;
  if (!nav?.gpu) {
    const secure = (globalThis as { isSecureContext?: boolean }).isSecureContext;
    throw new WebGpuUnavailableError(
      secure === false
        ? 'WebGPU needs a secure context: open the app over https or from http://localhost.'
        : 'This browser has no WebGPU (navigator.gpu is missing). Use a recent Chrome or Edge; in Firefox ' +
            'enable dom.webgpu.enabled, in Safari enable the WebGPU feature flag.',
    );
  }
  const adapter = await nav.gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    throw new WebGpuUnavailableError(
      'The browser has WebGPU but gave no adapter: the GPU may be blocklisted or disabled. ' +
        'Check chrome://gpu, update the graphics driver, or try another browser.',
    );
  }
  return Gpu.fromAdapter(adapter, 'browser', opts);
}
