/**
 * `tabtune info`: the WebGPU adapter in use, its features, the limits that bound model size, and
 * the attention kernel set that runs (by device class, or TABTUNE_ATTENTION) and why.
 */

export async function info(): Promise<number> {
  const { createNodeGpu } = await import('../gpu/node');
  const [{ attentionSet }, { kernelSetup }, { adapterName }] = await Promise.all([
    import('../kernels/attention-variants'),
    import('./kernels'),
    import('./common'),
  ]);
  const gpu = await createNodeGpu();
  try {
    kernelSetup(gpu);
    const attention = attentionSet(gpu);
    process.stdout.write(
      `adapter: ${adapterName(gpu)}\n` +
        `shader-f16: ${gpu.features.f16 ? 'yes' : 'no'}, subgroups: ${gpu.features.subgroups ? `yes (kernels use ${gpu.features.subgroupLanes || 'none: layout probe failed'}${gpu.features.subgroupLanes ? ' lanes' : ''})` : 'no'}\n` +
        `maxBufferSize: ${gpu.limits.maxBufferSize}, maxStorageBufferBindingSize: ${gpu.limits.maxStorageBufferBindingSize}, ` +
        `maxComputeWorkgroupStorageSize: ${gpu.limits.maxComputeWorkgroupStorageSize}\n` +
        `attention kernels: ${attention.set} (${attention.why})\n`,
    );
  } finally {
    gpu.destroy();
  }
  return 0;
}
