// The device's multiply-add ceiling, for `tabtune bench kernels` (src/bench/ceilings.ts): each
// invocation runs `p.iters` rounds of 16 independent vec4 multiply-adds (64 FMAs, no memory
// traffic in the loop; 16 accumulators hide the latency) and writes one sum so nothing is removed.
//   bindings 0 uniform P { iters }, 1 out f32 [invocations] (read_write)
//   grid     (p.groups, 1, 1) workgroups of 64; FLOPs = 2 * 64 * 4 * 16 * iters * invocations.
struct P {
  iters: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let s = f32(gid.x) * 1e-6;
  let m = vec4<f32>(0.999, 0.998, 0.997, 0.996);
  let d = vec4<f32>(s, s, s, s);
  var a0 = d; var a1 = d + 1.0; var a2 = d + 2.0; var a3 = d + 3.0;
  var a4 = d + 4.0; var a5 = d + 5.0; var a6 = d + 6.0; var a7 = d + 7.0;
  var a8 = d + 8.0; var a9 = d + 9.0; var a10 = d + 10.0; var a11 = d + 11.0;
  var a12 = d + 12.0; var a13 = d + 13.0; var a14 = d + 14.0; var a15 = d + 15.0;
  for (var i = 0u; i < p.iters; i++) {
    a0 = a0 * m + d; a1 = a1 * m + d; a2 = a2 * m + d; a3 = a3 * m + d;
    a4 = a4 * m + d; a5 = a5 * m + d; a6 = a6 * m + d; a7 = a7 * m + d;
    a8 = a8 * m + d; a9 = a9 * m + d; a10 = a10 * m + d; a11 = a11 * m + d;
    a12 = a12 * m + d; a13 = a13 * m + d; a14 = a14 * m + d; a15 = a15 * m + d;
  }
  let t = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11 + a12 + a13 + a14 + a15;
  out[gid.x] = t.x + t.y + t.z + t.w;
}
