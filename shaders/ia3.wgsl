// (IA)³: the per-column scaling of a linear layer's input or output and the gradient of the
// scaling vector (PEFT's IA3 Linear; the layer itself is the ordinary matmul, src/kernels/linear.ts).
//
// Template: src/kernels/ia3.ts builds one module per kernel from the section after `//#kernel <name>`
// (no generated prelude). Tensors are row-major f32; nothing is fused beyond what is listed.
//
// Kernels (binding 0 is the uniform P of each section):
//   ia3_scale  1 x f32 [rows, cols], 2 l f32 [cols], 3 out f32 [rows, cols]:
//                out[m, j] (+)= x[m, j] * l[j]            (`acc` = 1 adds, 0 overwrites)
//              256-wide workgroups on a 2D grid: element e = gid.x + gid.y * p.stride.
//   ia3_grad   1 a f32 [rows, cols], 2 b f32 [rows, cols], 3 dl f32 [cols]:
//                dl[j] (+)= Σ_m a[m, j] * b[m, j]
//              One invocation per column summing its rows in order (64-wide workgroups, adjacent
//              columns read adjacent words): no atomics, bit-identical from run to run.

//#kernel ia3_scale
struct P { n: u32, stride: u32, cols: u32, acc: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> l: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let e = g.x + g.y * p.stride;
  if (e >= p.n) { return; }
  let v = x[e] * l[e % p.cols];
  if (p.acc != 0u) { out[e] = out[e] + v; } else { out[e] = v; }
}

//#kernel ia3_grad
struct P { rows: u32, cols: u32, acc: u32, _pad: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> dl: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let j = g.x;
  if (j >= p.cols) { return; }
  var s = 0.0;
  for (var m = 0u; m < p.rows; m++) {
    let i = m * p.cols + j;
    s = fma(a[i], b[i], s);
  }
  if (p.acc != 0u) { dl[j] = dl[j] + s; } else { dl[j] = s; }
}
