/** `tabtune info`: the WebGPU adapter in use, its features and the limits that bound model size. */

export async function info(): Promise<number> {
  const { createNodeGpu } = await import('../gpu/node');
  const gpu = await createNodeGpu();
  const i = gpu.info;
  process.stdout.write(
    `adapter: ${i.vendor || '?'} / ${i.architecture || '?'}${i.description ? ` (${i.description})` : ''}\n` +
      `shader-f16: ${gpu.features.f16 ? 'yes' : 'no'}, subgroups: ${gpu.features.subgroups ? `yes (kernels use ${gpu.features.subgroupLanes || 'none: layout probe failed'}${gpu.features.subgroupLanes ? ' lanes' : ''})` : 'no'}\n` +
      `maxBufferSize: ${gpu.limits.maxBufferSize}, maxStorageBufferBindingSize: ${gpu.limits.maxStorageBufferBindingSize}, ` +
      `maxComputeWorkgroupStorageSize: ${gpu.limits.maxComputeWorkgroupStorageSize}\n`,
  );
  gpu.destroy();
  return 0;
}
