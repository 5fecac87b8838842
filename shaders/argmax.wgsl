// Greedy token pick on the GPU: the first index of the largest of n f32 logits, and the first
// non-finite logit (NaN or ±infinity, tested on the bits as shaders/finite.wgsl does), so generation
// can choose the next token without reading the logits back (src/generate/generator.ts) and still
// refuse non-finite logits as the CPU path does.
//
// Bindings (after the uniform P at 0): 1 logits f32 [>= n], 2 pick u32 [4]:
//   pick[0] = the argmax (first index among equal maxima; 0 when n = 0 or every logit is
//             non-finite), pick[1] = first non-finite index (0xffffffff: none), pick[2] = its bits.
// One workgroup of WG invocations: invocation l scans l, l + WG, ... (keeping the first maximum it
// meets), then a tree reduction in workgroup memory keeps the larger value and, on ties, the
// smaller index, so the result is the sequential first argmax. Nothing is fused.

const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;

struct P { n: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> logits: array<u32>;
@group(0) @binding(2) var<storage, read_write> pick: array<u32>;

var<workgroup> bestV: array<f32, WG>;
var<workgroup> bestI: array<u32, WG>;
var<workgroup> badI: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) l: u32) {
  var v = 0.0;
  var vi = NONE;
  var bad = NONE;
  for (var i = l; i < p.n; i += WG) {
    let w = logits[i];
    if ((w & 0x7f800000u) == 0x7f800000u) {
      bad = min(bad, i);
    } else {
      let x = bitcast<f32>(w);
      if (vi == NONE || x > v) { v = x; vi = i; }
    }
  }
  bestV[l] = v;
  bestI[l] = vi;
  badI[l] = bad;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (l < s) {
      let ov = bestV[l + s];
      let oi = bestI[l + s];
      let mine = bestI[l];
      // A slot without a finite logit (NONE) never wins; equal values keep the smaller index.
      if (oi != NONE && (mine == NONE || ov > bestV[l] || (ov == bestV[l] && oi < mine))) {
        bestV[l] = ov;
        bestI[l] = oi;
      }
      badI[l] = min(badI[l], badI[l + s]);
    }
    workgroupBarrier();
  }
  if (l == 0u) {
    pick[0] = select(bestI[0], 0u, bestI[0] == NONE);
    pick[1] = badI[0];
    pick[2] = select(0u, logits[min(badI[0], p.n - 1u)], badI[0] != NONE);
    pick[3] = 0u;
  }
}
