// Element-wise helpers and the deterministic sum-of-squares reduction.
//
// Template: src/kernels/elementwise.ts builds one module per kernel from a generated prelude (only
// for sumsq: `const WG`), the common part below (nothing) and the section after `//#kernel <name>`.
// Flat kernels use 256-wide workgroups on a 2D grid: element e = gid.x + gid.y * p.stride (the row
// pitch of the grid, so more than 65535 * 256 elements fit).
//
// Kernels (binding 0 is the uniform P of each section):
//   ew_add        1 a f32 [n], 2 b f32 [n], 3 out f32 [n]:   out[e] = a[e] + alpha * b[e]
//   ew_axpy       1 a f32 [n] (read_write), 2 b f32 [n]:      a[e] = a[e] + alpha * b[e]
//   ew_scale      1 x f32 [n], 2 out f32 [n]:                 out[e] = x[e] * s
//   ew_scale_ip   1 x f32 [n] (read_write):                    x[e] = x[e] * s
//   ew_fill       1 out u32 words [off + n]:                  out[off + e] = bits (an f32's bits or an integer)
//   ew_copy_rows  1 src u32 words, 2 dst u32 words. For t < rows, j < width:
//                   dst[(dstRow0 + t) * dstStride + dstCol0 + j] (+)= src[(srcRow0 + t) * srcStride + srcCol0 + j]
//                 Words are copied bit for bit (works for f32, u32, i32); `accumulate` adds them as f32.
//                 Grid: x over j (64-wide), y over rows (4 per group), z splits rows past 65535*4.
//   sumsq_partial 1 x f32 [n], 2 partials f32 [base + groups]. Workgroup w (of WG threads) sums x[i]²
//                 for i in [w*chunk, min(n, (w+1)*chunk)) with a fixed per-thread stride and a fixed
//                 tree, and writes partials[base + w]. No atomics: bit-reproducible for fixed shapes.
//   sumsq_final   1 partials f32 [count], 2 out f32 [outIndex + 1]. One workgroup sums the partials
//                 in the same fixed order and writes out[outIndex].

//#kernel ew_add
struct P { n: u32, stride: u32, alpha: f32, _pad: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let e = g.x + g.y * p.stride;
  if (e >= p.n) { return; }
  out[e] = a[e] + p.alpha * b[e];
}

//#kernel ew_axpy
struct P { n: u32, stride: u32, alpha: f32, _pad: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let e = g.x + g.y * p.stride;
  if (e >= p.n) { return; }
  a[e] = a[e] + p.alpha * b[e];
}

//#kernel ew_scale
struct P { n: u32, stride: u32, s: f32, _pad: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let e = g.x + g.y * p.stride;
  if (e >= p.n) { return; }
  out[e] = x[e] * p.s;
}

//#kernel ew_scale_ip
struct P { n: u32, stride: u32, s: f32, _pad: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let e = g.x + g.y * p.stride;
  if (e >= p.n) { return; }
  x[e] = x[e] * p.s;
}

//#kernel ew_fill
struct P { n: u32, stride: u32, bits: u32, off: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let e = g.x + g.y * p.stride;
  if (e >= p.n) { return; }
  out[p.off + e] = p.bits;
}

//#kernel ew_copy_rows
struct P {
  rows: u32,
  width: u32,
  srcStride: u32,
  srcRow0: u32,
  srcCol0: u32,
  dstStride: u32,
  dstRow0: u32,
  dstCol0: u32,
  accumulate: u32,
  rowsPerZ: u32,   // rows covered by one z slice of the grid (gy * 4)
  _pad0: u32,
  _pad1: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(64, 4)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let j = g.x;
  let t = g.y + g.z * p.rowsPerZ;
  if (j >= p.width || t >= p.rows) { return; }
  let v = src[(p.srcRow0 + t) * p.srcStride + p.srcCol0 + j];
  let d = (p.dstRow0 + t) * p.dstStride + p.dstCol0 + j;
  if (p.accumulate == 1u) {
    dst[d] = bitcast<u32>(bitcast<f32>(dst[d]) + bitcast<f32>(v));
  } else {
    dst[d] = v;
  }
}

//#kernel sumsq_partial
struct P { n: u32, chunk: u32, base: u32, gx: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let w = wid.x + wid.y * p.gx;
  let start = w * p.chunk;
  if (start >= p.n) { return; }   // uniform per workgroup
  let end = min(p.n, start + p.chunk);
  var s = 0.0;
  for (var i = start + li; i < end; i += WG) {
    let v = x[i];
    s += v * v;
  }
  red[li] = s;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k = k >> 1u) {
    if (li < k) { red[li] = red[li] + red[li + k]; }
    workgroupBarrier();
  }
  if (li == 0u) { partials[p.base + w] = red[0]; }
}

//#kernel sumsq_final
struct P { count: u32, outIndex: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32) {
  var s = 0.0;
  for (var i = li; i < p.count; i += WG) { s += partials[i]; }
  red[li] = s;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k = k >> 1u) {
    if (li < k) { red[li] = red[li] + red[li + k]; }
    workgroupBarrier();
  }
  if (li == 0u) { out[p.outIndex] = red[0]; }
}
