// Embedding gather: out[t, :] (+)= table[ids[t], :] * scale, for the token embedding and (with
// accumulate) GPT-2's learned position embedding (ids = positions).
//
// Template: src/kernels/embedding.ts builds one module per table dtype from a generated prelude
// (the loader `tload(i)` widening element i of the table, bound as array<u32>: f32 via bitcast,
// f16 / bf16 packed two per word) and the section below.
//
// Windows: a table bigger than the storage binding limit (e.g. a 150k-row vocabulary) is bound one
// window of rows at a time, at byte offsets aligned to minStorageBufferOffsetAlignment; `elemOff` is
// the element index, inside the binding, of row v0. Each dispatch writes only the tokens whose id is
// in [v0, v0 + vCount); the dispatch with `writeMissing` = 1 also handles ids >= V: they produce a
// zero row (out = 0), or nothing when accumulating. Ids are never used to read out of bounds.
//
// Layouts: ids u32 [T]; table [V, H] (f32 | f16 | bf16); out f32 [T, H].
//
// Kernel `embed` (bindings after the uniform at 0): 1 ids, 2 table window, 3 out.
// Flat 256-wide workgroups on a 2D grid: e = gid.x + gid.y * stride, t = e / H, j = e % H.

//#kernel embed
struct P {
  n: u32,            // T * H
  stride: u32,
  H: u32,
  V: u32,
  v0: u32,           // first row of the window
  vCount: u32,       // rows in the window
  elemOff: u32,      // element index of row v0 inside the binding
  accumulate: u32,
  writeMissing: u32,
  scale: f32,
  _pad0: u32,
  _pad1: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x + gid.y * p.stride;
  if (e >= p.n) { return; }
  let t = e / p.H;
  let j = e - t * p.H;
  let id = ids[t];
  if (id >= p.v0 && id - p.v0 < p.vCount) {
    let v = tload(p.elemOff + (id - p.v0) * p.H + j) * p.scale;
    if (p.accumulate == 1u) { out[e] = out[e] + v; } else { out[e] = v; }
  } else if (id >= p.V && p.writeMissing == 1u && p.accumulate == 0u) {
    out[e] = 0.0;
  }
}
