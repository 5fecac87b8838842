// Column-block copy between row-major matrices (used to split GPT-2's fused qkv projection into
// q, k, v and to merge their gradients back).
//
//   dst[t, dstCol0 + j] = src[t, srcCol0 + j]        (accumulate = 0)
//   dst[t, dstCol0 + j] += src[t, srcCol0 + j]       (accumulate = 1)
//   for t < rows, j < width.
//
// Bindings: 0 uniform P; 1 src f32 [rows, srcStride]; 2 dst f32 [rows, dstStride].
// One invocation per element; x covers j, y covers rows.

struct P {
  rows: u32,
  width: u32,
  srcStride: u32,
  srcCol0: u32,
  dstStride: u32,
  dstCol0: u32,
  accumulate: u32,
  _pad: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64, 4)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let j = g.x;
  let t = g.y;
  if (j >= p.width || t >= p.rows) { return; }
  let v = src[t * p.srcStride + p.srcCol0 + j];
  let d = t * p.dstStride + p.dstCol0 + j;
  if (p.accumulate == 1u) { dst[d] = dst[d] + v; } else { dst[d] = v; }
}
