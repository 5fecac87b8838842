// Non-finite scan: flags[slot] = min(flags[slot], index of the first element of `words` that is NaN
// or ±infinity). Used once per tensor after a model or adapter is uploaded, one dispatch per tensor
// (or per binding window of a big one) into one shared flags buffer, read back once: a damaged file
// (NaN/Inf weights, F32 bytes labelled F16) is found before any forward pass.
//
// The test is on the bits (exponent all ones), so it does not depend on how a driver compares NaN:
// f32 (mode 0) 0x7f800000 of each word; f16 (mode 1) 0x7c00 and bf16 (mode 2) 0x7f80 of each half of
// a word (element 2w is the low half, 2w + 1 the high half, as the weight loaders read them).
//
// Layouts: words u32 [n] (the tensor's raw bytes, or a window of them starting at word `base`);
// flags u32 [slots], set to 0xffffffff before the first dispatch.
//
// Kernel `scan` (bindings after the uniform at 0): 1 words, 2 flags (atomic). Flat 256-wide
// workgroups on a 2D grid: i = gid.x + gid.y * stride. Nothing is fused.

//#kernel scan
struct P {
  n: u32,        // words in this binding
  stride: u32,
  mode: u32,     // 0 f32, 1 f16, 2 bf16
  slot: u32,
  base: u32,     // word index of this binding's first word within the tensor
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> words: array<u32>;
@group(0) @binding(2) var<storage, read_write> flags: array<atomic<u32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * p.stride;
  if (i >= p.n) { return; }
  let w = words[i];
  let word = p.base + i;
  var bad = 0xffffffffu;
  if (p.mode == 0u) {
    if ((w & 0x7f800000u) == 0x7f800000u) { bad = word; }
  } else {
    let m = select(0x7f80u, 0x7c00u, p.mode == 1u);
    if ((w & m) == m) {
      bad = word * 2u;
    } else if (((w >> 16u) & m) == m) {
      bad = word * 2u + 1u;
    }
  }
  if (bad != 0xffffffffu) { atomicMin(&flags[p.slot], bad); }
}
