/**
 * Subgroup layout probe. WGSL's `subgroups` extension does not promise how a workgroup's
 * invocations are split into subgroups, but kernels that reduce with shuffles need to know which
 * invocations share one. On the hardware we know, a one-dimensional workgroup is cut into aligned
 * runs of `subgroup_size` consecutive local_invocation_index values; this probe checks exactly
 * that on the device at hand, and the kernels use subgroups only when it holds.
 *
 * probeSubgroups() runs one 256-wide workgroup that records, per invocation, whether
 * subgroup_invocation_id == index mod subgroup_size and whether the subgroup's first invocation is
 * index - subgroup_invocation_id, and the subgroup_size it saw. It returns the number of lanes a
 * kernel may treat as one aligned run (the smaller of the sizes seen and the adapter's
 * subgroupMinSize, a power of two >= 4, at most 64), or 0 when the layout is anything else.
 */

const PROBE_WGSL = `
enable subgroups;
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(256)
fn main(
  @builtin(local_invocation_index) li: u32,
  @builtin(subgroup_invocation_id) sid: u32,
  @builtin(subgroup_size) size: u32,
) {
  let first = subgroupBroadcastFirst(li);
  let ok = size > 0u && sid == li % size && first == li - sid;
  out[li] = select(0u, 1u, ok);
  out[256u + li] = size;
}
`;

const isPow2 = (n: number) => n > 0 && (n & (n - 1)) === 0;

/** See the file comment. `minSize` is GPUAdapterInfo.subgroupMinSize where the browser reports it. */
export async function probeSubgroups(device: GPUDevice, minSize?: number): Promise<number> {
  if (!device.features.has('subgroups')) return 0;
  device.pushErrorScope('validation');
  device.pushErrorScope('internal');
  let out: GPUBuffer | null = null;
  let read: GPUBuffer | null = null;
  let scopes = 2;
  const popScope = async () => {
    scopes--;
    return device.popErrorScope();
  };
  try {
    const module = device.createShaderModule({ label: 'subgroup-probe', code: PROBE_WGSL });
    const pipeline = device.createComputePipeline({
      label: 'subgroup-probe',
      layout: 'auto',
      compute: { module, entryPoint: 'main' },
    });
    out = device.createBuffer({
      label: 'subgroup-probe',
      size: 512 * 4,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
    });
    read = device.createBuffer({
      label: 'subgroup-probe-read',
      size: 512 * 4,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const bind = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: out } }],
    });
    const enc = device.createCommandEncoder({ label: 'subgroup-probe' });
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(1);
    pass.end();
    enc.copyBufferToBuffer(out, 0, read, 0, 512 * 4);
    device.queue.submit([enc.finish()]);
    const internal = await popScope();
    const validation = await popScope();
    if (internal || validation) return 0;
    await read.mapAsync(GPUMapMode.READ);
    const v = new Uint32Array(read.getMappedRange().slice(0));
    read.unmap();
    let size = Infinity;
    for (let i = 0; i < 256; i++) {
      if (v[i] !== 1) return 0;
      size = Math.min(size, v[256 + i]!);
    }
    if (minSize !== undefined && minSize > 0) size = Math.min(size, minSize);
    if (!isPow2(size) || size < 4) return 0;
    return Math.min(size, 64);
  } catch {
    return 0;
  } finally {
    while (scopes > 0) await popScope().catch(() => null);
    out?.destroy();
    read?.destroy();
  }
}
