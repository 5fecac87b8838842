// Dequantizes an NF4 weight into f32: out[i] = code[idx(i)] * absmax(i / 64) (shaders/nf4.wgsl).
// Used by tests, the self-test and the interop dump; the matmuls read NF4 weights directly.
//
// Prelude (src/kernels/nf4.ts): const NF4_DQ, then shaders/nf4.wgsl.
//   bindings 0 uniform U {n, absOff, abs2Off, stride}
//            1 NF4W u32, packed indices        2 NF4S u32, statistics
//            3 out  f32 [n]
//   grid     2-D of 256-wide workgroups covering n (element = y * stride + x)

struct U {
  n: u32,
  absOff: u32,
  abs2Off: u32,
  stride: u32,
}

@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read> NF4W: array<u32>;
@group(0) @binding(2) var<storage, read> NF4S: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let i = g.y * u.stride + g.x;
  if (i >= u.n) { return; }
  out[i] = nf4_load(i, u.absOff, u.abs2Off);
}
