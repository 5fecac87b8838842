#!/usr/bin/env bash
# The benchmarks on a real GPU, one command: `scripts/gpu-bench.sh [out-dir]` (default bench-gpu/).
# Uses the system's Vulkan driver (TABTUNE_VK_ICD=system) through Dawn, checks that the adapter is
# not a CPU driver, then writes, each as one JSON line plus the human-readable log:
#   kernels.json  the matmul family side by side (bench kernels: per-member GFLOP/s against the
#                 FMA ceiling, the GPU members wg64 / wg128 included, the LoRA linear
#                 512x1024x1024 r=16 fwd+bwd per member, and tuned; then TF.js's WebGPU backend on
#                 the same layer, alternately with tabtune's)
#   suite.json    the whole `npm run bench -- --json` suite (training step and generation)
#   step-qwen.json a training step of the Qwen2.5-0.5B shape (bench memory: time and memory)
#   profile.json  per-kernel GPU time (timestamp queries) of one SmolLM2-135M-shaped training step
#                 at S=512 and of 8 decoded tokens, by kernel family (bench profile)
# Needs Node >= 20.6 and `npm ci` done in the repository. Nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench-gpu}"
mkdir -p "$out"
export TABTUNE_VK_ICD="${TABTUNE_VK_ICD:-system}"
node bin/tabtune.mjs info | tee "$out/info.txt"
if grep -qiE 'llvmpipe|lavapipe|swiftshader' "$out/info.txt"; then
  echo "gpu-bench: the adapter is a CPU driver; run this on a machine with a GPU (or set TABTUNE_VK_ICD)." >&2
  exit 1
fi
node bin/tabtune.mjs bench kernels --json > "$out/kernels.json" 2> >(tee "$out/kernels.log" >&2)
node bin/tabtune.mjs bench --json --seq 512 > "$out/suite.json" 2> >(tee "$out/suite.log" >&2)
node bin/tabtune.mjs bench memory --seq 512 --json > "$out/step-qwen.json" 2> >(tee "$out/step-qwen.log" >&2)
node bin/tabtune.mjs bench profile --seq 512 --tokens 8 --json > "$out/profile.json" 2> >(tee "$out/profile.log" >&2)
echo "gpu-bench: results in $out/"
